//! Active Directory / OpenLDAP as the directory source (`[ldap]`, issue 16), with the same
//! guarantees as Microsoft Graph: the directory is seeded from the snapshot before any LDAP
//! call, each round is swapped in whole and written to the snapshot, and while the server
//! refuses the bind (`expired`: admin needed) or cannot be reached (`failing`) mail keeps
//! being stamped with the last-known values.
//!
//! The Graph source's pieces are reused: the staged id-ordered user set, the [`Sink`] that
//! publishes to the directory, snapshot, status and metrics, and the state tracker.

pub mod client;
pub mod error;
pub mod map;
pub mod photos;
pub mod sync;

use crate::config::ConfigError;
use crate::directory::graph::clock::{Clock, SystemClock};
use crate::directory::graph::state::{SourceNames, TokenTracker};
use crate::directory::graph::sync::SyncReport;
use crate::directory::graph::Sink;
use crate::directory::Source;
use error::LdapError;
use map::Flavor;
use photos::LdapPhotos;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use sync::LdapSyncer;

/// `[ldap]`. Key names are a contract (README, sigstamp.example.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `starttls = true`.
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// PEM CA bundle the server's certificate is verified against (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate and name (default true; false only for tests).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// The service account (DN, or on AD also `user@domain`); empty: anonymous.
    #[serde(default)]
    pub bind_dn: String,
    pub bind_password: Option<String>,
    /// The password in a file instead, re-read at every bind (rotate without restart).
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// Default by server: AD `(&(objectCategory=person)(objectClass=user)(mail=*))`,
    /// OpenLDAP `(&(objectClass=inetOrgPerson)(mail=*))`.
    pub filter: Option<String>,
    /// `auto` (from the root DSE), `active_directory` or `openldap`: which defaults apply.
    #[serde(default = "auto")]
    pub flavor: Flavor,
    #[serde(default = "default_sync_interval", with = "crate::config::duration")]
    pub sync_interval: Duration,
    /// How often a full round replaces the set (catching deletions); incremental between.
    #[serde(
        default = "default_full_sync_interval",
        with = "crate::config::duration"
    )]
    pub full_sync_interval: Duration,
    /// Entries a page (RFC 2696 paged results); AD's MaxPageSize is 1000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Connection and per-answer timeout.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// Target (template) name → LDAP attribute, over the defaults; `""` drops a default.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

fn auto() -> Flavor {
    Flavor::Auto
}

fn default_sync_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_full_sync_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_page_size() -> u32 {
    500
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl LdapConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ConfigError::invalid("ldap.url", format!("{:?}: {e}", self.url)))?;
        let host = url.host_str().unwrap_or("");
        if host.is_empty() {
            return Err(ConfigError::invalid("ldap.url", "needs a host name"));
        }
        let loopback = crate::directory::graph::is_loopback_host(host);
        match (url.scheme(), self.starttls) {
            ("ldaps", true) => {
                return Err(ConfigError::invalid(
                    "ldap.starttls",
                    "ldaps:// is TLS already; StartTLS is for ldap:// URLs",
                ))
            }
            ("ldap", false) if !loopback => {
                return Err(ConfigError::invalid(
                    "ldap.url",
                    format!("{:?}: ldap:// without StartTLS sends the bind password in clear; use ldaps:// or set ldap.starttls = true", self.url),
                ))
            }
            ("ldap" | "ldaps", _) => {}
            (other, _) => {
                return Err(ConfigError::invalid(
                    "ldap.url",
                    format!("{:?}: unsupported scheme {other} (ldap:// or ldaps://)", self.url),
                ))
            }
        }
        if let Some(ca) = &self.ca_file {
            crate::smtp::tls::roots("ldap.ca_file", Some(ca))
                .map_err(|e| ConfigError::invalid("ldap.ca_file", e.to_string()))?;
        }
        if self.bind_password.is_some() && self.bind_password_file.is_some() {
            return Err(ConfigError::invalid(
                "ldap.bind_password_file",
                "set either bind_password or bind_password_file, not both",
            ));
        }
        let has_password = self.bind_password.as_deref().is_some_and(|p| !p.is_empty())
            || self.bind_password_file.is_some();
        if !self.bind_dn.trim().is_empty() && !has_password {
            return Err(ConfigError::invalid(
                "ldap.bind_password",
                "ldap.bind_dn needs a password: bind_password or bind_password_file",
            ));
        }
        if self.bind_dn.trim().is_empty() && has_password {
            return Err(ConfigError::invalid(
                "ldap.bind_dn",
                "a bind password is set but no bind_dn",
            ));
        }
        if self.base_dn.trim().is_empty() {
            return Err(ConfigError::invalid("ldap.base_dn", "must not be empty"));
        }
        if let Some(f) = &self.filter {
            ldap3::parse_filter(f).map_err(|_| {
                ConfigError::invalid("ldap.filter", format!("{f:?} is not an LDAP filter"))
            })?;
        }
        if self.sync_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "ldap.sync_interval",
                "must be at least 1s",
            ));
        }
        if self.full_sync_interval < self.sync_interval {
            return Err(ConfigError::invalid(
                "ldap.full_sync_interval",
                "must not be shorter than ldap.sync_interval",
            ));
        }
        if !(1..=100_000).contains(&self.page_size) {
            return Err(ConfigError::invalid(
                "ldap.page_size",
                "must be between 1 and 100000",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid("ldap.timeout", "must not be zero"));
        }
        for (target, attr) in &self.attributes {
            let key = format!("ldap.attributes.{target}");
            if target.is_empty() || target == "id" {
                return Err(ConfigError::invalid(
                    &key,
                    "not a target name templates can use (`id` is the directory's own)",
                ));
            }
            let ok = attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(ConfigError::invalid(
                    &key,
                    format!("{attr:?} is not an LDAP attribute name"),
                ));
            }
        }
        if !self.tls_verify {
            tracing::warn!("ldap.tls_verify = false: the LDAP server's certificate is not checked");
        }
        Ok(())
    }

    /// The bind password: inline, or the file's first line (read at every bind).
    pub fn password(&self) -> Result<String, LdapError> {
        if let Some(p) = &self.bind_password {
            return Ok(p.clone());
        }
        let Some(path) = &self.bind_password_file else {
            return Ok(String::new());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            LdapError::Credential(format!(
                "cannot read ldap.bind_password_file {}: {e}",
                path.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(LdapError::Credential(format!(
                "ldap.bind_password_file {} is empty",
                path.display()
            )));
        }
        Ok(line)
    }
}

/// How the LDAP source's state is named in logs and on `/status`.
pub const NAMES: SourceNames = SourceNames {
    state: "LDAP directory state",
    working: "LDAP directory sync is working",
};

/// The background refresher of `sigstamp serve` for `[ldap]`. Returns when `app.shutdown`
/// fires; does nothing without `[ldap]`.
pub async fn run(app: Arc<crate::app::App>, photos: Arc<LdapPhotos>) -> anyhow::Result<()> {
    run_with_clock(app, photos, Arc::new(SystemClock)).await
}

/// [`run`] on an injectable clock.
pub async fn run_with_clock(
    app: Arc<crate::app::App>,
    photos: Arc<LdapPhotos>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let Some(cfg) = app.config.ldap.clone() else {
        return Ok(());
    };
    let sink = Sink::for_app(&app, clock.clone());
    let tracker = TokenTracker::for_source(
        app.status.clone(),
        app.metrics.clone(),
        clock.clone(),
        NAMES,
    );
    // Until the first round ends, /status says what it waits for (not "no [graph]").
    tracker.set(crate::status::TokenStatus::starting(format!(
        "waiting for the first LDAP sync from {}",
        cfg.url
    )));
    let mut refresher = Refresher {
        syncer: Some(seeded(&cfg, &sink)),
        cfg,
        sink,
        tracker,
        photos,
        failures: 0,
        snapshot_ok: true,
    };
    loop {
        let wait = tokio::select! {
            _ = app.shutdown.cancelled() => return Ok(()),
            wait = refresher.step() => wait,
        };
        tokio::select! {
            _ = app.shutdown.cancelled() => return Ok(()),
            _ = clock.sleep(wait) => {}
        }
    }
}

/// A syncer sharing the directory's users when they came from the snapshot.
fn seeded(cfg: &LdapConfig, sink: &Sink) -> LdapSyncer {
    let mut syncer = LdapSyncer::new(cfg.clone());
    if matches!(sink.directory.source(), Source::Snapshot | Source::Ldap) {
        syncer.seed_from(&sink.directory.base_users());
    }
    syncer
}

struct Refresher {
    cfg: LdapConfig,
    // Taken while a round runs in its own task, so a panic there (hostile bytes deep in a
    // library) costs a round, never the service.
    syncer: Option<LdapSyncer>,
    sink: Sink,
    tracker: TokenTracker,
    photos: Arc<LdapPhotos>,
    failures: u32,
    snapshot_ok: bool,
}

impl Refresher {
    /// One round; returns how long to wait before the next one.
    async fn step(&mut self) -> Duration {
        let mut syncer = self
            .syncer
            .take()
            .unwrap_or_else(|| seeded(&self.cfg, &self.sink));
        let round = tokio::spawn(async move {
            let r = syncer.sync().await;
            (syncer, r)
        })
        .await;
        let result = match round {
            Ok((syncer, r)) => {
                self.syncer = Some(syncer);
                r
            }
            Err(e) => Err(LdapError::Protocol(format!("the LDAP round failed: {e}"))),
        };
        match result {
            Ok(report) => {
                self.failures = 0;
                self.tracker.round_ok(&report);
                let syncer = self.syncer.as_ref().expect("syncer back from its round");
                let written = publish(&self.sink, syncer, &report).await;
                crate::directory::graph::snapshot_result(&mut self.snapshot_ok, written);
                self.photos.publish(syncer.photos());
                self.cfg.sync_interval
            }
            Err(e) => {
                self.failures += 1;
                self.tracker
                    .round_failed(e.kind(), error::describe(&e, self.tracker.now()));
                crate::directory::graph::backoff(self.failures, self.cfg.sync_interval)
            }
        }
    }
}

/// Publish a round: directory, snapshot, status, metrics (the Graph [`Sink`]'s path).
pub async fn publish(
    sink: &Sink,
    syncer: &LdapSyncer,
    report: &SyncReport,
) -> Result<(), crate::directory::snapshot::SnapshotError> {
    let unchanged = !report.full && report.entries == 0 && sink.directory.source() == Source::Ldap;
    let users = (!unchanged).then(|| syncer.users());
    sink.publish_users(users, None, None, report, Source::Ldap)
        .await
}

/// `sigstamp sync --once` with `[ldap]`: one full round, published to `sink`.
pub async fn sync_once(
    cfg: &LdapConfig,
    sink: &Sink,
) -> Result<
    (
        SyncReport,
        Result<(), crate::directory::snapshot::SnapshotError>,
    ),
    LdapError,
> {
    let mut syncer = LdapSyncer::new(cfg.clone());
    let report = syncer.sync().await?;
    let written = publish(sink, &syncer, &report).await;
    Ok((report, written))
}
