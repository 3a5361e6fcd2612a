//! A 100,000-user fake tenant: full sync time and peak RSS of `sigstamp sync --once`.
//! Ignored by default (a measurement, not a check of speed):
//! `cargo test --release --test graph_scale -- --ignored --nocapture`

mod fake_graph;

use fake_graph::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly with --release"]
async fn hundred_thousand_users() {
    let n: usize = std::env::var("SIGSTAMP_SCALE_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let fake = FakeGraph::start().await;
    fake.add_generated_users(n);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sigstamp.toml");
    let snap = dir.path().join("directory.json");
    std::fs::write(
        &cfg,
        format!(
            "[graph]\ntenant_id = {TENANT:?}\nclient_id = {CLIENT_ID:?}\nclient_secret = {SECRET:?}\nauthority = {b:?}\nendpoint = {b:?}\n[directory]\nsnapshot = {snap:?}\n",
            b = fake.base
        ),
    )
    .unwrap();
    // /usr/bin/time reports the child's peak RSS; fall back to running it bare.
    let timed = std::path::Path::new("/usr/bin/time").exists();
    let mut cmd = if timed {
        let mut c = tokio::process::Command::new("/usr/bin/time");
        c.args(["-f", "wall=%es maxrss=%MkB"])
            .arg(env!("CARGO_BIN_EXE_sigstamp"));
        c
    } else {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sigstamp"))
    };
    let started = std::time::Instant::now();
    let out = cmd
        .args(["sync", "--once", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("synced {n} users")), "{stdout}");
    let size = std::fs::metadata(&snap).unwrap().len();
    eprintln!("{n} users: {elapsed:.2?} end to end; {stdout}{stderr}snapshot {size} bytes");
}
