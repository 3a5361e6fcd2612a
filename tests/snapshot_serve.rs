//! The directory snapshot with the real `sigstamp serve` (issue 11, finding 1): the example
//! config's `snapshot = "state/directory.json"` with no `state/` folder, a restart with dead
//! tokens, a snapshot that cannot be written, and a bad one read once.

mod fake_graph;
mod serve_support;
mod smtp_support;

use fake_graph::{seed_abc, FakeGraph, CLIENT_ID, SECRET, TENANT};
use serde_json::Value;
use serve_support::{get_text, Guard};
use sigstamp::directory::graph::clock::Clock;
use sigstamp::smtp::sink::{Delivered, Sink, SinkOptions};
use smtp_support::RawClient;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// A config for `sigstamp serve` in its own folder: the relay to `next_hop`, the admin HTTP,
/// Graph from the fake, and `snapshot` as given (relative to the folder).
fn config(fake: &FakeGraph, next_hop: &str, snapshot: &str) -> String {
    format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{next_hop}\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [directory]\nsnapshot = {snapshot:?}\n\n\
         [graph]\ntenant_id = {TENANT:?}\nclient_id = {CLIENT_ID:?}\nclient_secret = {SECRET:?}\n\
         authority = {base:?}\nendpoint = {base:?}\nsync_interval = \"1h\"\nrequest_timeout = \"5s\"\n",
        base = fake.base,
    )
}

struct Serving {
    _guard: Guard,
    smtp: std::net::SocketAddr,
    admin: String,
    /// The log lines until both listeners were up, then the rest as they come.
    started: Vec<String>,
    log: Receiver<String>,
}

/// `sigstamp serve` on `config` in `dir`; waits for its relay and admin listeners.
async fn serve(config: String, dir: PathBuf) -> Serving {
    tokio::task::spawn_blocking(move || {
        let (guard, values, started, log) = serve_support::serve_until(
            &config,
            dir,
            &[
                ("SMTP relay listening", "listen"),
                ("admin HTTP listening", "addr"),
            ],
        );
        Serving {
            _guard: guard,
            smtp: values[0].parse().unwrap(),
            admin: format!("http://{}", values[1]),
            started,
            log,
        }
    })
    .await
    .unwrap()
}

/// Poll `/status` until `f` accepts it (15 s at most); returns it.
async fn status_until(s: &Serving, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{}/status", s.admin)).await {
            if let Ok(v) = r.json::<Value>().await {
                if f(&v) {
                    return v;
                }
                last = v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; last /status: {last}");
}

/// Send one message from `from` through the relay; the next hop's copy.
async fn send(s: &Serving, from: &str, delivered: &mut UnboundedReceiver<Delivered>) -> String {
    let mut c = RawClient::connect(s.smtp).await.unwrap();
    assert!(c.reply().await.starts_with("220"));
    for line in [
        "EHLO client.test".to_string(),
        format!("MAIL FROM:<{from}>"),
        "RCPT TO:<someone@example.org>".to_string(),
    ] {
        assert!(c.cmd(&line).await.starts_with("250"), "{line}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&format!(
        "From: <{from}>\r\nTo: <someone@example.org>\r\nSubject: hi\r\n\r\nHello.\r\n.\r\n"
    ))
    .await;
    assert!(c.reply().await.starts_with("250"));
    let m = tokio::time::timeout(Duration::from_secs(10), delivered.recv())
        .await
        .expect("delivered")
        .unwrap();
    String::from_utf8(m.message).unwrap()
}

/// The fake Graph with three users, a next hop and a folder to serve in.
async fn setup() -> (
    FakeGraph,
    Sink,
    UnboundedReceiver<Delivered>,
    tempfile::TempDir,
) {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let (sink, delivered) = Sink::start("127.0.0.1:0", SinkOptions::default())
        .await
        .unwrap();
    (fake, sink, delivered, tempfile::tempdir().unwrap())
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The seed's own scenario: no `state/` folder; serve syncs and writes the snapshot; after a
/// restart with the tokens dead the directory comes from the snapshot and mail is stamped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_dead_tokens_stamps_from_a_snapshot_in_a_new_folder() {
    let (fake, sink, mut delivered, dir) = setup().await;
    let cfg = config(&fake, &sink.addr().to_string(), "state/directory.json");
    assert!(!dir.path().join("state").exists());

    let first = serve(cfg.clone(), dir.path().to_path_buf()).await;
    let st = status_until(&first, "the snapshot written", |v| {
        v["directory"]["snapshot"]["written_at"].is_string()
    })
    .await;
    assert_eq!(st["directory"]["snapshot"]["path"], "state/directory.json");
    assert!(st["directory"]["snapshot"]["error"].is_null(), "{st}");
    let state = dir.path().join("state");
    assert!(state.join("directory.json").is_file());
    #[cfg(unix)]
    assert_eq!(mode(&state), 0o700, "the state folder is private");
    let written = st["directory"]["snapshot"]["written_at"].clone();
    drop(first); // killed: what survives is what was on disk

    fake.expire_secret_at(fake.clock.now());
    let second = serve(cfg, dir.path().to_path_buf()).await;
    let st = status_until(&second, "expired", |v| v["token"]["state"] == "expired").await;
    assert_eq!(st["token"]["error_code"], "AADSTS7000222", "{st}");
    let d = &st["directory"];
    assert_eq!(d["source"], "snapshot", "{st}");
    assert_eq!(d["users"], 3, "{st}");
    assert_eq!(
        d["last_sync"], written,
        "the last sync is the snapshot's: {st}"
    );
    assert_eq!(d["snapshot"]["written_at"], written, "{st}");
    assert!(d["snapshot"]["error"].is_null(), "{st}");

    let message = send(&second, "bob.alias@contoso.test", &mut delivered).await;
    assert!(
        message.contains("Bob Kelly"),
        "stamped from the snapshot: {message}"
    );
}

/// A snapshot whose folder cannot be created (under a regular file): mail still flows, and
/// /status, the page and the metrics say a restart would start with no directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_snapshot_shows_on_status_and_the_page() {
    let (fake, sink, mut delivered, dir) = setup().await;
    std::fs::write(dir.path().join("blocker"), b"a file, not a folder").unwrap();
    let cfg = config(&fake, &sink.addr().to_string(), "blocker/directory.json");
    let s = serve(cfg, dir.path().to_path_buf()).await;

    // Synced, and still no snapshot.
    let st = status_until(&s, "the first sync", |v| {
        v["directory"]["source"] == "graph" && v["directory"]["snapshot"]["error"].is_string()
    })
    .await;
    let snap = &st["directory"]["snapshot"];
    assert_eq!(snap["path"], "blocker/directory.json");
    assert!(snap["written_at"].is_null(), "{st}");
    let error = snap["error"].as_str().unwrap();
    assert!(error.contains("blocker/directory.json"), "{error}");

    let page = get_text(&format!("{}/", s.admin)).await;
    let line = page
        .lines()
        .find(|l| l.contains("id=\"snapshot-error\""))
        .unwrap_or_else(|| panic!("the red line: {page}"));
    assert!(
        line.contains("a restart now would start with no directory"),
        "{line}"
    );
    let metrics = get_text(&format!("{}/metrics", s.admin)).await;
    assert!(
        metrics.contains("sigstamp_snapshot_write_failing 1"),
        "{metrics}"
    );

    let message = send(&s, "adele@contoso.test", &mut delivered).await;
    assert!(message.contains("Adele Vance"), "{message}");
}

/// A corrupt snapshot is read (and reported) once at start, not again by the refresher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_snapshot_is_read_once() {
    let fake = FakeGraph::start().await;
    seed_abc(&fake);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/directory.json"),
        b"{\"version\": 1, \"users\": [{\"id\": ",
    )
    .unwrap();
    let cfg = config(&fake, "127.0.0.1:9", "state/directory.json");
    let s = serve(cfg, dir.path().to_path_buf()).await;
    let st = status_until(&s, "synced", |v| v["directory"]["source"] == "graph").await;
    // The good snapshot written after the sync clears the error.
    status_until(&s, "the snapshot written", |v| {
        v["directory"]["snapshot"]["error"].is_null()
    })
    .await;
    assert_eq!(st["directory"]["users"], 3);
    let log: Vec<String> = s.started.iter().cloned().chain(s.log.try_iter()).collect();
    let reports = log.iter().filter(|l| l.contains("is corrupt")).count();
    assert_eq!(reports, 1, "{log:#?}");
}
