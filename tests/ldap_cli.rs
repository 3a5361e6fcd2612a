//! The real binary with `[ldap]`: `sigstamp sync --once`, `sigstamp serve` saying which source
//! it reads at start-up, and `[graph]` with `[ldap]` refused naming the keys.

mod ldap_support;
mod serve_support;

use ldap_support::*;
use std::process::Command;

fn sigstamp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sigstamp"))
}

#[test]
fn sync_once_writes_the_snapshot() {
    if !have_slapd() {
        return;
    }
    let slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 7));
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snapshot.json");
    let cfg = dir.path().join("sigstamp.toml");
    std::fs::write(
        &cfg,
        format!(
            "[directory]\nsnapshot = \"{}\"\n{}",
            snap.display(),
            ldap_section(&slapd.url(), "")
        ),
    )
    .unwrap();
    let out = sigstamp()
        .args(["sync", "--once", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("synced 7 users from LDAP"), "{text}");
    assert!(text.contains("2 pages"), "{text}");
    let d = sigstamp::directory::Directory::new();
    let loaded = sigstamp::directory::snapshot::load(&snap, &d)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.users, 7);
    assert!(d.lookup("user0006@example.test").is_some());

    // The bind refused: a failure exit and the explained state.
    slapd.set_bind_password("changed");
    let out = sigstamp()
        .args(["sync", "--once", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("invalidCredentials"), "{err}");
}

#[test]
fn serve_says_which_source_it_reads() {
    if !have_slapd() {
        return;
    }
    let slapd = Slapd::start(None);
    slapd.add(&users_ldif(0, 2));
    let config = format!(
        "[milter]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{}",
        ldap_section(&slapd.url(), "")
    );
    let dir = tempfile::tempdir().unwrap();
    let (_guard, url, log) = serve_support::serve(&config, dir, "directory source: LDAP", "url");
    assert_eq!(url, slapd.url());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let synced = std::iter::from_fn(|| {
        log.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .ok()
    })
    .any(|l| l.contains("LDAP directory state: valid"));
    assert!(synced, "the first LDAP sync is logged");
}

#[test]
fn graph_and_ldap_together_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sigstamp.toml");
    std::fs::write(
        &cfg,
        format!(
            "[milter]\nlisten = \"127.0.0.1:0\"\n\n[graph]\ntenant_id = \"contoso.example\"\n\
             client_id = \"x\"\nclient_secret = \"s\"\n\n{}",
            ldap_section("ldap://127.0.0.1:389", "")
        ),
    )
    .unwrap();
    let out = sigstamp()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[graph] and [ldap]"), "{err}");
}
