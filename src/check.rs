//! `sigstamp check`: everything a configuration needs before it may run, as findings (one
//! line each, naming the key). Reload runs the same check and applies only a configuration
//! without errors; the material it built (templates, rules, TLS) is what reload installs.

use crate::config::Config;
use crate::directory::{self, User};
use crate::render::Templates;
use crate::rules::RuleSet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;

/// A certificate expiring within this many days is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// Users of the directory sample every template is rendered for.
const SAMPLE_USERS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One line of `sigstamp check`: `error: smtp.tls_cert: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The config key it is about (`smtp.tls_cert`, `rules[2].template`, …).
    pub key: String,
    pub message: String,
}

impl Finding {
    pub fn error(key: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.key, self.message)
    }
}

/// What a configuration builds: reload installs exactly this when it has no error.
pub struct Material {
    pub config: Config,
    /// `None`: `[templates] dir` is unset, the embedded templates apply.
    pub templates: Option<Templates>,
    pub rules: RuleSet,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The result of checking one configuration file.
pub struct Report {
    pub findings: Vec<Finding>,
    /// Built when the file parsed and nothing it needs failed to build.
    pub material: Option<Material>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }

    /// The errors, one per line (what reload logs and `/status` shows).
    pub fn error_text(&self) -> Option<String> {
        let errors: Vec<String> = self
            .findings
            .iter()
            .filter(|f| f.is_error())
            .map(ToString::to_string)
            .collect();
        (!errors.is_empty()).then(|| errors.join("\n"))
    }
}

/// Check the file at `path` offline, as of now.
pub fn check_file(path: &Path) -> Report {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Report {
                findings: vec![Finding::error(
                    "config",
                    format!("cannot read {}: {e}", path.display()),
                )],
                material: None,
            }
        }
    };
    let mut report = check_text(&text, OffsetDateTime::now_utc());
    if let Some(m) = &report.material {
        report.findings.extend(inline_secret(path, m));
    }
    report
}

/// Check a configuration's text as of `now` (certificate expiry is measured from it).
pub fn check_text(text: &str, now: OffsetDateTime) -> Report {
    let config: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            return Report {
                findings: vec![Finding::error(toml_key(text, &e), one_line(e.message()))],
                material: None,
            }
        }
    };
    let mut report = check_config(config, now);
    // Keys written under an old name (the parse that knows them validates too, so only a
    // configuration without errors gets these warnings).
    if let Ok(parsed) = Config::parse(text) {
        for (old, new) in parsed.deprecated {
            report.findings.push(Finding::warning(
                old,
                format!("deprecated: rename it to `{new}`"),
            ));
        }
    }
    report
}

/// Check a parsed configuration.
pub fn check_config(config: Config, now: OffsetDateTime) -> Report {
    let mut out = Vec::new();
    if let Err(e) = config.validate() {
        out.push(from_config_error(&e));
    }
    let users = sample_users(&config, &mut out);
    let templates = check_templates(&config, &users, &mut out);
    let rules = check_rules(&config, templates.as_ref(), &users, &mut out);
    check_certificates(&config, now, &mut out);
    let tls = server_tls(&config, &mut out);
    check_permissions(&config, &mut out);
    let material = match (templates, rules, tls) {
        (Some(templates), Some(rules), Some(tls)) if !out.iter().any(Finding::is_error) => {
            Some(Material {
                templates: config.templates.dir.is_some().then_some(templates),
                config,
                rules,
                tls,
            })
        }
        _ => None,
    };
    Report {
        findings: out,
        material,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// toml names the failing key in its message (`unknown field`, `invalid type`); the span
/// gives the line.
fn toml_key(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |t| t.lines().count().max(1));
            format!("config (line {line})")
        }
        None => "config".into(),
    }
}

fn from_config_error(e: &crate::config::ConfigError) -> Finding {
    match e {
        crate::config::ConfigError::Invalid { key, message } => Finding::error(key, message),
        other => Finding::error("config", other.to_string()),
    }
}

/// The directory source serve syncs from, for findings' words: `None` for a file only.
fn synced_source(config: &Config) -> Option<&'static str> {
    if config.ldap.is_some() {
        Some("LDAP")
    } else if config.graph.is_some() {
        Some("Graph")
    } else {
        None
    }
}

/// The users templates are rendered for: the directory file, else the last Graph or LDAP
/// snapshot.
fn sample_users(config: &Config, out: &mut Vec<Finding>) -> Vec<Arc<User>> {
    let mut users = Vec::new();
    if let Some(path) = &config.directory.file {
        match directory::file::load(path) {
            Ok(u) => users = u.into_iter().map(Arc::new).collect(),
            Err(e) => out.push(Finding::error("directory.file", e.to_string())),
        }
    }
    if let Some(path) = &config.directory.overrides {
        if let Err(e) = directory::overrides::load(path) {
            out.push(Finding::error("directory.overrides", e.to_string()));
        }
    }
    if let (Some(path), Some(_)) = (&config.directory.snapshot, synced_source(config)) {
        match directory::snapshot::read(path) {
            Ok(Some(snap)) if users.is_empty() => {
                users = snap.into_users().into_iter().map(Arc::new).collect()
            }
            Ok(_) => {}
            // Serve ignores a corrupt snapshot and waits for the sync; so does check.
            Err(e) => out.push(Finding::warning("directory.snapshot", e.to_string())),
        }
    }
    users.truncate(SAMPLE_USERS);
    users
}

fn check_templates(
    config: &Config,
    users: &[Arc<User>],
    out: &mut Vec<Finding>,
) -> Option<Templates> {
    let t = &config.templates;
    let templates = match &t.dir {
        Some(dir) => match Templates::load_with(dir, &t.image_options()) {
            Ok(t) => t,
            Err(e) => {
                out.push(Finding::error("templates.dir", e.to_string()));
                return None;
            }
        },
        None => Templates::embedded(),
    };
    if !templates.has(&t.default) {
        out.push(Finding::error(
            "templates.default",
            format!("no template named {:?}", t.default),
        ));
    }
    let names: Vec<String> = templates.names().map(str::to_string).collect();
    for name in &names {
        // One finding per template: the first user it fails for, and how many more.
        let failures: Vec<(String, String)> = users
            .iter()
            .filter_map(|u| {
                templates.render(name, u).err().map(|e| {
                    (
                        u.addresses().into_iter().next().unwrap_or_default(),
                        e.to_string(),
                    )
                })
            })
            .collect();
        if let Some((who, why)) = failures.first() {
            out.push(Finding::error(
                format!("templates.dir ({name})"),
                format!(
                    "fails to render for {who}: {why} ({} of {} sample users fail)",
                    failures.len(),
                    users.len()
                ),
            ));
        }
    }
    Some(templates)
}

fn check_rules(
    config: &Config,
    templates: Option<&Templates>,
    users: &[Arc<User>],
    out: &mut Vec<Finding>,
) -> Option<RuleSet> {
    let rules = match RuleSet::compile(&config.rules, &config.recipients) {
        Ok(r) => r,
        Err(e) => {
            out.push(from_config_error(&e));
            return None;
        }
    };
    if let Some(t) = templates {
        for r in rules.rules() {
            if let Some(name) = r.template() {
                if !t.has(name) {
                    out.push(Finding::error(
                        format!("rules[{}].template", r.position()),
                        format!("no template named {name:?}"),
                    ));
                }
            }
        }
    }
    let known = known_groups(config, users);
    for (i, rule) in (1..).zip(&config.rules) {
        for group in &rule.group {
            let found = known
                .as_ref()
                .is_some_and(|k| k.iter().any(|g| g.eq_ignore_ascii_case(group.trim())));
            let why = match (synced_source(config), &known) {
                (_, Some(_)) if found => continue,
                (None, _) => {
                    "no [graph] or [ldap] section and no user of the directory file is a member"
                        .to_string()
                }
                (Some(_), None) => continue, // not synced yet: nothing to compare with
                (Some(source), Some(_)) => format!("no member in the last {source} sync"),
            };
            out.push(Finding::warning(
                format!("rules[{i}].group"),
                format!("group {group:?}: {why}; the rule matches no one"),
            ));
        }
    }
    Some(rules)
}

/// Every `memberOf` value known offline: the sample users' (the directory file, or an LDAP
/// snapshot: LDAP entries carry `memberOf`), then Graph's group cache beside the snapshot.
/// `None`: nothing is known yet (a synced source that has not synced).
fn known_groups(config: &Config, users: &[Arc<User>]) -> Option<Vec<String>> {
    let mut groups: Vec<String> = Vec::new();
    let mut any = synced_source(config).is_none() || (config.ldap.is_some() && !users.is_empty());
    let mut add = |v: &crate::directory::AttrValue| {
        for g in v.as_array().unwrap_or_default() {
            if let Some(s) = g.as_str() {
                groups.push(s.to_string());
            }
        }
    };
    for u in users {
        if let Some(v) = u.get(crate::rules::MEMBER_OF) {
            add(v);
        }
    }
    if config.graph.is_some() {
        let cache = directory::graph::groups::cache_path(config.directory.snapshot.as_deref());
        if let Some(Ok(Some(m))) = cache.map(|p| directory::graph::groups::read_cache(&p)) {
            any = true;
            for names in m.to_map().into_values() {
                groups.extend(names);
            }
        }
    }
    any.then_some(groups)
}

/// Every certificate/key pair the configuration names.
fn key_pairs(config: &Config) -> Vec<(&'static str, &Path, &'static str, &Path)> {
    let mut pairs = Vec::new();
    if let Some(s) = &config.smtp {
        if let (Some(c), Some(k)) = (&s.tls_cert, &s.tls_key) {
            pairs.push(("smtp.tls_cert", c.as_path(), "smtp.tls_key", k.as_path()));
        }
        if let (Some(c), Some(k)) = (&s.next_hop_cert, &s.next_hop_key) {
            pairs.push((
                "smtp.next_hop_cert",
                c.as_path(),
                "smtp.next_hop_key",
                k.as_path(),
            ));
        }
    }
    let a = &config.admin;
    if let (Some(c), Some(k)) = (&a.tls_cert, &a.tls_key) {
        pairs.push(("admin.tls_cert", c.as_path(), "admin.tls_key", k.as_path()));
    }
    if let Some(g) = &config.graph {
        if let (Some(c), Some(k)) = (&g.client_certificate, &g.client_key) {
            pairs.push((
                "graph.client_certificate",
                c.as_path(),
                "graph.client_key",
                k.as_path(),
            ));
        }
    }
    pairs
}

fn check_certificates(config: &Config, now: OffsetDateTime, out: &mut Vec<Finding>) {
    for (cert_key, cert, key_key, key) in key_pairs(config) {
        let chain = match CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                out.push(Finding::error(
                    cert_key,
                    format!("{}: no PEM certificate", cert.display()),
                ));
                continue;
            }
            Err(e) => {
                out.push(Finding::error(cert_key, format!("{}: {e}", cert.display())));
                continue;
            }
        };
        out.extend(chain_findings(cert_key, &chain, now));
        match PrivateKeyDer::from_pem_file(key) {
            Err(e) => out.push(Finding::error(key_key, format!("{}: {e}", key.display()))),
            Ok(der) => {
                if let Err(why) = key_matches(&chain[0], der) {
                    out.push(Finding::error(
                        key_key,
                        format!("{} does not match {cert_key}: {why}", key.display()),
                    ));
                }
            }
        }
    }
    if let Some(s) = &config.smtp {
        for (key, path) in [
            ("smtp.client_ca", &s.client_ca),
            ("smtp.next_hop_ca", &s.next_hop_ca),
        ] {
            if let Some(p) = path {
                if let Err(e) = crate::smtp::tls::load_certs("ca", p) {
                    out.push(Finding::error(key, e.to_string()));
                }
            }
        }
    }
}

/// The leaf's key and the private key are one pair.
fn key_matches(leaf: &CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Result<(), String> {
    let provider = crate::smtp::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    rustls::sign::CertifiedKey::new(vec![leaf.clone()], signing)
        .keys_match()
        .map_err(|e| e.to_string())
}

/// Order (each certificate issued by the next), validity, days to expiry.
pub fn chain_findings(
    key: &str,
    chain: &[CertificateDer<'static>],
    now: OffsetDateTime,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let parsed: Vec<_> = chain
        .iter()
        .map(|c| x509_parser::parse_x509_certificate(c.as_ref()).map(|(_, c)| c))
        .collect();
    for (i, p) in parsed.iter().enumerate() {
        let cert = match p {
            Ok(c) => c,
            Err(e) => {
                out.push(Finding::error(
                    key,
                    format!("certificate {}: not X.509: {e}", i + 1),
                ));
                return out;
            }
        };
        let subject = cert.subject().to_string();
        let not_after = cert.validity().not_after.timestamp();
        let not_before = cert.validity().not_before.timestamp();
        let days = (not_after - now.unix_timestamp()).div_euclid(86_400);
        let which = if i == 0 {
            format!("certificate ({subject})")
        } else {
            format!("chain certificate {} ({subject})", i + 1)
        };
        if not_after < now.unix_timestamp() {
            out.push(Finding::error(
                key,
                format!("{which} expired {} days ago", -days),
            ));
        } else if days < EXPIRY_WARNING_DAYS {
            out.push(Finding::warning(
                key,
                format!("{which} expires in {days} days"),
            ));
        }
        if not_before > now.unix_timestamp() {
            out.push(Finding::error(key, format!("{which} is not valid yet")));
        }
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if let [Ok(child), Ok(parent)] = pair {
            if child.issuer() != parent.subject() {
                out.push(Finding::error(
                    key,
                    format!(
                        "chain out of order: certificate {} ({}) did not issue certificate {} (issuer {}); list the leaf first, then each issuer",
                        i + 2,
                        parent.subject(),
                        i + 1,
                        child.issuer()
                    ),
                ));
            }
        }
    }
    out
}

fn server_tls(
    config: &Config,
    out: &mut Vec<Finding>,
) -> Option<Option<Arc<rustls::ServerConfig>>> {
    let Some(s) = &config.smtp else {
        return Some(None);
    };
    if s.tls_cert.is_none() || s.tls_key.is_none() {
        return Some(None);
    }
    match crate::smtp::tls::server_config(s) {
        Ok(tls) => Some(tls),
        Err(e) => {
            // Key mismatches and unreadable files are already named above.
            if !out
                .iter()
                .any(|f| f.is_error() && f.key.starts_with("smtp."))
            {
                out.push(Finding::error("smtp.tls_cert", e.to_string()));
            }
            None
        }
    }
}

/// Folders sigstamp writes to, by the key that decides them.
fn state_dirs(config: &Config) -> Vec<(&'static str, PathBuf)> {
    let mut dirs = Vec::new();
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let snapshot = config.directory.snapshot.as_deref();
    if let Some(s) = snapshot {
        dirs.push(("directory.snapshot", parent(s)));
    }
    if let Some(o) = &config.directory.overrides {
        dirs.push(("directory.overrides", parent(o)));
    }
    if let Some(g) = &config.graph {
        if let Some(d) = directory::graph::photos::cache_dir(g, snapshot).filter(|_| g.photos) {
            dirs.push(("graph.photo_dir", d));
        }
        if let Some(r) = &g.refresh_token_file {
            dirs.push(("graph.refresh_token_file", parent(r)));
        }
    }
    if let Some(n) = &config.notify {
        if let Some(p) = n.state_path(snapshot) {
            dirs.push(("notify.state_file", parent(&p)));
        }
    }
    if config.sent_items.enabled {
        dirs.push(("sent_items.spool", config.sent_items.spool.clone()));
    }
    if let Some(a) = &config.admin.audit_log {
        dirs.push(("admin.audit_log", parent(a)));
    }
    dirs
}

/// Files only sigstamp may read.
fn secret_files(config: &Config) -> Vec<(&'static str, &Path)> {
    let mut files = Vec::new();
    if let Some(s) = &config.smtp {
        files.extend(s.tls_key.as_deref().map(|p| ("smtp.tls_key", p)));
        files.extend(s.next_hop_key.as_deref().map(|p| ("smtp.next_hop_key", p)));
    }
    if let Some(g) = &config.graph {
        files.extend(
            g.client_secret_file
                .as_deref()
                .map(|p| ("graph.client_secret_file", p)),
        );
        files.extend(g.client_key.as_deref().map(|p| ("graph.client_key", p)));
        files.extend(
            g.refresh_token_file
                .as_deref()
                .map(|p| ("graph.refresh_token_file", p)),
        );
    }
    if let Some(l) = &config.ldap {
        files.extend(
            l.bind_password_file
                .as_deref()
                .map(|p| ("ldap.bind_password_file", p)),
        );
    }
    let admin = &config.admin;
    files.extend(admin.tls_key.as_deref().map(|p| ("admin.tls_key", p)));
    if let Some(auth) = &admin.auth {
        files.extend(
            auth.client_secret_file
                .as_deref()
                .map(|p| ("admin.auth.client_secret_file", p)),
        );
        files.extend(
            auth.session_key_file
                .as_deref()
                .map(|p| ("admin.auth.session_key_file", p)),
        );
    }
    files
}

fn check_permissions(config: &Config, out: &mut Vec<Finding>) {
    for (key, dir) in state_dirs(config) {
        if let Err(why) = writable_or_creatable(&dir) {
            out.push(Finding::error(key, why));
        }
    }
    for (key, file) in secret_files(config) {
        // A warning, as Postfix's `postfix check` does: the service still runs.
        if world_readable(file) {
            out.push(Finding::warning(
                key,
                format!(
                    "{} is readable by every local user; chmod o-rwx it",
                    file.display()
                ),
            ));
        }
    }
}

/// `graph.client_secret` or `ldap.bind_password` written into a config file every local user
/// can read.
fn inline_secret(path: &Path, m: &Material) -> Option<Finding> {
    let c = &m.config;
    let (key, instead) = if c.graph.as_ref().is_some_and(|g| g.client_secret.is_some()) {
        ("graph.client_secret", "client_secret_file")
    } else if c.ldap.as_ref().is_some_and(|l| l.bind_password.is_some()) {
        ("ldap.bind_password", "bind_password_file")
    } else {
        return None;
    };
    world_readable(path).then(|| {
        Finding::warning(
            key,
            format!(
                "set inline in {}, which every local user can read; use {instead} or chmod o-r",
                path.display()
            ),
        )
    })
}

#[cfg(unix)]
fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn world_readable(_: &Path) -> bool {
    false
}

/// The folder exists and a file can be created in it, or its nearest existing ancestor
/// lets sigstamp create it. Probed by creating (and removing) a file: permission bits alone
/// miss ACLs, read-only mounts and systemd's `ProtectSystem`.
fn writable_or_creatable(dir: &Path) -> Result<(), String> {
    let mut probe_in = dir;
    while !probe_in.exists() {
        match probe_in.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe_in = p,
            _ => {
                probe_in = Path::new(".");
                break;
            }
        }
    }
    if !probe_in.is_dir() {
        return Err(format!("{} is not a folder", probe_in.display()));
    }
    let probe = probe_in.join(format!(".sigstamp-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if probe_in == dir => Err(format!("{} is not writable: {e}", dir.display())),
        Err(e) => Err(format!(
            "{} does not exist and cannot be created in {}: {e}",
            dir.display(),
            probe_in.display()
        )),
    }
}

// ---- --online ---------------------------------------------------------------------------

/// `--online`: the next hop answers EHLO (and STARTTLS as configured), Graph gives a token
/// (or the LDAP server takes the bind), and the relay's certificates cover `[smtp] hostname`.
pub async fn check_online(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(s) = &config.smtp {
        match crate::smtp::outbound::NextHop::from_config(s) {
            Err(e) => out.push(Finding::error("smtp.next_hop", e.to_string())),
            Ok(hop) => match hop.open().await {
                Ok(d) => {
                    if s.next_hop_tls == crate::smtp::NextHopTls::Opportunistic && !d.is_encrypted()
                    {
                        out.push(Finding::warning(
                            "smtp.next_hop_tls",
                            format!(
                                "{} did not take STARTTLS: mail goes on unencrypted",
                                s.next_hop
                            ),
                        ));
                    }
                    crate::smtp::outbound::Delivery::quit(Box::new(d)).await;
                }
                Err(e) => out.push(Finding::error(
                    "smtp.next_hop",
                    format!("{}: {e}", s.next_hop),
                )),
            },
        }
        for (key, path) in [
            ("smtp.tls_cert", &s.tls_cert),
            ("smtp.next_hop_cert", &s.next_hop_cert),
        ] {
            let Some(path) = path else { continue };
            let Ok(chain) = crate::smtp::tls::load_certs("cert", path) else {
                continue; // reported offline
            };
            if !crate::smtp::tls::cert_covers(chain[0].as_ref(), &s.hostname) {
                out.push(Finding::warning(
                    key,
                    format!(
                        "the certificate's names do not cover smtp.hostname {:?}; Exchange Online's connector (TlsSenderCertificateName) and clients checking names will not match it",
                        s.hostname
                    ),
                ));
            }
        }
    }
    if let Some(g) = &config.graph {
        let clock = Arc::new(directory::graph::clock::SystemClock);
        match g.http_client() {
            Err(e) => out.push(Finding::error("graph", e.to_string())),
            Ok(http) => {
                if let Err(e) = g.token_provider(http, clock).access_token().await {
                    out.push(Finding::error("graph.client_id", format!("no token: {e}")));
                }
            }
        }
    }
    if let Some(l) = &config.ldap {
        // The sync's own connect, StartTLS/LDAPS and bind.
        match directory::ldap::client::Session::open(l).await {
            Ok(session) => session.close().await,
            Err(e) => out.push(Finding::error("ldap.bind_dn", format!("{}: {e}", l.url))),
        }
    }
    out
}
