//! `sigstamp sync --once` as a process against the fake Graph.

mod fake_graph;

use fake_graph::*;
use sigstamp::directory::graph::clock::Clock;
use sigstamp::directory::{snapshot, Directory};
use std::path::Path;

fn write_config(dir: &Path, fake: &FakeGraph, secret: &str) -> std::path::PathBuf {
    let cfg = dir.join("sigstamp.toml");
    let text = format!(
        "[graph]\ntenant_id = {TENANT:?}\nclient_id = {CLIENT_ID:?}\nclient_secret = {secret:?}\nauthority = {base:?}\nendpoint = {base:?}\n\n[directory]\nsnapshot = {snap:?}\n",
        base = fake.base,
        snap = dir.join("directory.json"),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

async fn sync_once(cfg: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .args(["sync", "--once", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn sync_once_writes_the_snapshot_and_prints_a_summary() {
    let fake = FakeGraph::start().await;
    fake.add_generated_users(450);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &fake, SECRET);
    let out = sync_once(&cfg).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("synced 450 users") && stdout.contains("3 pages"),
        "{stdout}"
    );
    assert!(stdout.contains("snapshot written"), "{stdout}");
    let d = Directory::new();
    assert_eq!(
        snapshot::load(&dir.path().join("directory.json"), &d)
            .unwrap()
            .unwrap()
            .users,
        450
    );
    assert!(d.lookup("u0000449@contoso.test").is_some());
}

#[tokio::test]
async fn sync_once_explains_a_dead_secret() {
    let fake = FakeGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    fake.expire_secret_at(fake.clock.now() - std::time::Duration::from_secs(1));
    let cfg = write_config(dir.path(), &fake, SECRET);
    let out = sync_once(&cfg).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("AADSTS7000222") && stderr.contains("What to do"),
        "{stderr}"
    );
    assert!(!dir.path().join("directory.json").exists());

    let bad = write_config(dir.path(), &fake, "wrong");
    let out = sync_once(&bad).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("AADSTS7000215"));
}
