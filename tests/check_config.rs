//! `sigstamp check`: a table of broken configurations, each naming its finding, and the
//! command's output and exit code.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sigstamp::check::{check_text, Severity};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        // A good certificate (1 year) and its key, 0600.
        let (cert, key) = self_signed("relay.example.com", 365);
        f.write("good.pem", &cert, 0o644);
        f.write("good.key", &key, 0o600);
        let (cert, key) = self_signed("relay.example.com", -2);
        f.write("expired.pem", &cert, 0o644);
        f.write("expired.key", &key, 0o600);
        let (cert, key) = self_signed("relay.example.com", 10);
        f.write("soon.pem", &cert, 0o644);
        f.write("soon.key", &key, 0o600);
        f.write(
            "open.key",
            &std::fs::read_to_string(f.path("good.key")).unwrap(),
            0o644,
        );
        let (leaf, ca, leaf_key) = chain();
        f.write("ordered.pem", &format!("{leaf}{ca}"), 0o644);
        f.write("reversed.pem", &format!("{ca}{leaf}"), 0o644);
        f.write("chain.key", &leaf_key, 0o600);
        // A good template folder, and one whose template fails when rendered.
        for (folder, html) in [
            ("templates", "<p>{{displayName}}</p>"),
            ("broken", "<p>{{lookup displayName}}</p>"),
        ] {
            std::fs::create_dir(f.path(folder)).unwrap();
            f.write(&format!("{folder}/default.html.hbs"), html, 0o644);
            f.write(
                &format!("{folder}/default.txt.hbs"),
                "{{displayName}}",
                0o644,
            );
        }
        std::fs::copy("examples/directory.json", f.path("users.json")).unwrap();
        f.write("not-a-folder", "x", 0o644);
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str, mode: u32) {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A working configuration with `extra` appended to its `[smtp]` section and `tail`
    /// after it; `$D` stands for the fixture folder.
    fn config(&self, smtp_extra: &str, tail: &str) -> String {
        let d = self.dir.path().display().to_string();
        let listen = if smtp_extra.starts_with("listen") {
            ""
        } else {
            "listen = \"127.0.0.1:2525\"\n"
        };
        format!(
            "[smtp]\n{listen}next_hop = \"127.0.0.1:2526\"\n{smtp_extra}\n\
             [directory]\nfile = \"$D/users.json\"\n\
             [templates]\ndir = \"$D/templates\"\n{tail}"
        )
        .replace("$D", &d)
    }
}

fn self_signed(name: &str, days: i64) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(400);
    p.not_after = now + Duration::days(days);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// (leaf PEM, CA PEM, the leaf's key PEM).
fn chain() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "check test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["relay.example.com".to_string()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "relay.example.com");
    let leaf = p.signed_by(&key, &issuer).unwrap();
    (leaf.pem(), ca_cert.pem(), key.serialize_pem())
}

/// An `[ldap]` section on loopback (no connection is made offline); the password line follows.
const LDAP: &str = "[ldap]\nurl = \"ldap://127.0.0.1:389\"\nbase_dn = \"dc=example,dc=com\"\nbind_dn = \"cn=sigstamp,dc=example,dc=com\"\n";

fn cert(name: &str) -> String {
    format!("tls_cert = \"$D/{name}.pem\"\ntls_key = \"$D/{name}.key\"")
}

#[test]
fn broken_configs_name_their_finding() {
    let f = Fixture::new();
    let now = OffsetDateTime::now_utc();
    // (what is broken, [smtp] extra, tail, severity, key, words in the message)
    let table: Vec<(&str, String, String, Severity, &str, &str)> = vec![
        ("not TOML", String::new(), "[[[".into(), Severity::Error, "config", ""),
        ("unknown key", String::new(), "colour = 1\n".into(), Severity::Error, "config", "unknown field"),
        ("bad listen", "listen = \"nowhere\"".into(), String::new(), Severity::Error, "smtp.listen", "nowhere"),
        ("missing templates", String::new(), "[log]\nformat = \"text\"\n".into(), Severity::Error, "templates.dir", ""),
        ("unknown default", String::new(), "default = \"gone\"\n".into(), Severity::Error, "templates.default", "gone"),
        ("rule names no template", String::new(), "[[rules]]\nsender_domain = \"example.com\"\ntemplate = \"sales\"\n".into(), Severity::Error, "rules[1].template", "sales"),
        ("rule names an unknown group", String::new(), "[[rules]]\ngroup = \"Nobody's group\"\ntemplate = \"default\"\n".into(), Severity::Warning, "rules[1].group", "Nobody's group"),
        ("expired certificate", cert("expired"), String::new(), Severity::Error, "smtp.tls_cert", "expired"),
        ("certificate expiring soon", cert("soon"), String::new(), Severity::Warning, "smtp.tls_cert", "expires in"),
        ("key of another certificate", "tls_cert = \"$D/good.pem\"\ntls_key = \"$D/soon.key\"".into(), String::new(), Severity::Error, "smtp.tls_key", "does not match"),
        ("chain in the wrong order", "tls_cert = \"$D/reversed.pem\"\ntls_key = \"$D/chain.key\"".into(), String::new(), Severity::Error, "smtp.tls_cert", "out of order"),
        ("world-readable key", "tls_cert = \"$D/good.pem\"\ntls_key = \"$D/open.key\"".into(), String::new(), Severity::Warning, "smtp.tls_key", "every local user"),
        ("world-readable LDAP password file", String::new(), format!("{LDAP}bind_password_file = \"$D/open.key\"\n"), Severity::Warning, "ldap.bind_password_file", "every local user"),
        ("rule names a group no LDAP user is in", String::new(), format!("{LDAP}bind_password_file = \"$D/good.key\"\n[[rules]]\ngroup = \"Nobody's group\"\ntemplate = \"default\"\n"), Severity::Warning, "rules[1].group", "last LDAP sync"),
        ("Sent Items spool not creatable", String::new(), "[graph]\ntenant_id = \"contoso.example\"\nclient_id = \"c\"\nclient_secret_file = \"$D/good.key\"\n[sent_items]\nenabled = true\nspool = \"$D/not-a-folder/spool\"\n".into(), Severity::Error, "sent_items.spool", "not-a-folder"),
        ("world-readable admin TLS key", String::new(), "[admin]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"$D/good.pem\"\ntls_key = \"$D/open.key\"\n".into(), Severity::Warning, "admin.tls_key", "every local user"),
        ("expired admin certificate", String::new(), "[admin]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"$D/expired.pem\"\ntls_key = \"$D/expired.key\"\n".into(), Severity::Error, "admin.tls_cert", "expired"),
        ("state folder not creatable", String::new(), "[graph]\ntenant_id = \"contoso.example\"\nclient_id = \"c\"\nclient_secret_file = \"$D/good.key\"\n".into(), Severity::Error, "directory.snapshot", "not-a-folder"),
    ];
    for (what, smtp, tail, severity, key, words) in table {
        // `templates.dir` problems: point it at a folder that is not there.
        let mut text = f.config(&smtp, &tail);
        if key == "templates.dir" {
            text = text.replace("/templates\"", "/no-templates\"");
        }
        if key == "directory.snapshot" {
            text = text.replace(
                "[directory]\n",
                &format!(
                    "[directory]\nsnapshot = \"{}/not-a-folder/state/dir.json\"\n",
                    f.dir.path().display()
                ),
            );
        }
        let text = text.replace("$D", &f.dir.path().display().to_string());
        let report = check_text(&text, now);
        let found = report.findings.iter().find(|x| {
            x.severity == severity && x.key.starts_with(key) && x.to_string().contains(words)
        });
        assert!(
            found.is_some(),
            "{what}: expected {severity:?} {key} ({words}), got {:#?}\n{text}",
            report.findings
        );
        assert_eq!(
            report.material.is_some(),
            severity == Severity::Warning,
            "{what}: material is built exactly when there is no error"
        );
    }
}

/// A template that fails to render (here for every user) is an error naming the file.
#[test]
fn a_failing_template_is_an_error() {
    let f = Fixture::new();
    let text = f.config("", "").replace("/templates\"", "/broken\"");
    let report = check_text(&text, OffsetDateTime::now_utc());
    let found = report
        .findings
        .iter()
        .find(|x| x.key.starts_with("templates.dir") && x.message.contains("default.html.hbs"));
    assert!(
        found.is_some_and(|x| x.is_error()),
        "{:#?}",
        report.findings
    );
    assert!(report.material.is_none());
}

#[test]
fn a_good_config_has_no_finding_and_a_good_chain_passes() {
    let f = Fixture::new();
    for smtp in [
        String::new(),
        cert("good"),
        "tls_cert = \"$D/ordered.pem\"\ntls_key = \"$D/chain.key\"".into(),
    ] {
        let text = f
            .config(&smtp, "")
            .replace("$D", &f.dir.path().display().to_string());
        let report = check_text(&text, OffsetDateTime::now_utc());
        assert!(report.findings.is_empty(), "{smtp}: {:#?}", report.findings);
        assert!(report.material.is_some());
    }
}

/// The command: `ok` and exit 0 on a good file; one line per finding and exit 1 on errors.
#[test]
fn the_command_prints_one_line_per_finding() {
    let f = Fixture::new();
    let run = |text: &str| {
        let p = f.path("sigstamp.toml");
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigstamp"))
            .args(["check", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(run(&f.config("", "")), (Some(0), "ok\n".to_string()));
    let (code, out) = run(&f.config(
        &cert("soon").replace("$D", &f.dir.path().display().to_string()),
        "",
    ));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("warning: smtp.tls_cert: "), "{out}");
    let (code, out) = run(&f.config(
        &cert("expired").replace("$D", &f.dir.path().display().to_string()),
        "default = \"gone\"\n",
    ));
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("error: smtp.tls_cert: ") && l.contains("expired")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("error: templates.default: ")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("error: ") || l.starts_with("warning: ")),
        "{out}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .args(["check", "--config", "/nonexistent/sigstamp.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

/// `--online`: the next hop answers or not; the relay's certificate covers `hostname` or not.
#[tokio::test]
async fn online_opens_the_next_hop_and_compares_the_certificate_names() {
    let f = Fixture::new();
    let sink = sigstamp_testkit::RecordingSink::start().await;
    let closed = sigstamp_testkit::free_addr();
    let d = f.dir.path().display().to_string();
    for (next_hop, hostname, expect) in [
        (sink.addr, "relay.example.com", vec![]),
        (
            sink.addr,
            "other.example.com",
            vec![(Severity::Warning, "smtp.tls_cert", "do not cover")],
        ),
        (
            closed,
            "relay.example.com",
            vec![(Severity::Error, "smtp.next_hop", &closed.to_string()[..])],
        ),
    ] {
        let text = f
            .config(
                &format!(
                    "next_hop_tls = \"none\"\nhostname = \"{hostname}\"\n{}",
                    cert("good")
                ),
                "",
            )
            .replace("127.0.0.1:2526", &next_hop.to_string())
            .replace("$D", &d);
        let report = check_text(&text, OffsetDateTime::now_utc());
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        let found = sigstamp::check::check_online(&report.material.unwrap().config).await;
        assert_eq!(
            found.len(),
            expect.len(),
            "{next_hop} {hostname}: {found:#?}"
        );
        for ((severity, key, words), got) in expect.iter().zip(&found) {
            assert_eq!((got.severity, got.key.as_str()), (*severity, *key), "{got}");
            assert!(got.message.contains(words), "{got}");
        }
    }
}
