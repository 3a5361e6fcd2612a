//! The real binary: `sigstamp serve` with `[graph]` on the fake and `[sent_items]` on; a
//! message through the relay gets its sent copy replaced, `/status` counts it, and a restart
//! resumes a job left in the spool.

mod fake_graph;
mod serve_support;
mod smtp_support;

use fake_graph::{FakeGraph, MailMessage, CLIENT_ID, SECRET, TENANT};
use sigstamp::smtp::sink::SinkOptions;
use sigstamp_testkit::free_port;
use smtp_support::RawClient;
use std::time::{Duration, Instant};

async fn status(admin: &str) -> serde_json::Value {
    match reqwest::get(format!("http://{admin}/status")).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

async fn until(
    admin: &str,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(admin).await;
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_replaces_the_sent_copy_and_reports_it() {
    let fake = FakeGraph::start().await;
    fake.put_user(serde_json::json!({"id": "u-alice", "displayName": "Alice Example", "jobTitle": "Engineer",
        "mail": "alice@example.com", "userPrincipalName": "alice@example.com", "accountEnabled": true}));
    fake.with_mail(|m| m.add_mailbox("u-alice", "alice@example.com", true));
    let (sink, mut delivered) =
        sigstamp::smtp::sink::Sink::start("127.0.0.1:0", SinkOptions::default())
            .await
            .unwrap();
    let state = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{sink}\"\n\n\
         [directory]\nsnapshot = \"{dir}/directory.json\"\n\n\
         [graph]\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {SECRET:?}\n\
         authority = \"{base}\"\nendpoint = \"{base}\"\n\n\
         [sent_items]\nenabled = true\ndelay = \"1s\"\ngive_up_after = \"2m\"\nspool = \"{dir}/sent-items\"\n\n\
         [admin]\nlisten = \"{admin}\"\n",
        sink = sink.addr(),
        dir = state.path().display(),
        base = fake.base,
    );
    let orig = fake.put_sent(
        "u-alice",
        MailMessage::sent(
            "<serve1@example.com>",
            "serve",
            "alice@example.com",
            &["bob@example.org"],
        ),
    );
    let run_dir = tempfile::tempdir().unwrap();
    let cfg = config.clone();
    let (guard, addr, _log) = tokio::task::spawn_blocking(move || {
        serve_support::serve(&cfg, run_dir, "SMTP relay listening", "listen")
    })
    .await
    .unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    until(&admin, "the first sync", |s| s["directory"]["users"] == 1).await;
    assert_eq!(status(&admin).await["sent_items"]["enabled"], true);

    let mut c = RawClient::connect(addr).await.unwrap();
    assert!(c.reply().await.starts_with("220"));
    for line in [
        "EHLO c.test",
        "MAIL FROM:<alice@example.com>",
        "RCPT TO:<bob@example.org>",
    ] {
        assert!(c.cmd(line).await.starts_with("250"), "{line}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send("From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: serve\r\nMessage-ID: <serve1@example.com>\r\n\r\nHello Bob\r\n").await;
    assert!(c.cmd(".").await.starts_with("250"));
    assert!(delivered.recv().await.is_some());

    let s = until(&admin, "replaced", |s| s["sent_items"]["replaced"] == 1).await;
    assert_eq!(s["sent_items"]["pending"], 0);
    let sent = fake.with_mail(|m| m.folder("u-alice", "sentitems"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].replaces(), Some(orig.as_str()));
    assert!(sent[0].body.contains("Engineer"), "{}", sent[0].body);
    let metrics = serve_support::get_text(&format!("http://{admin}/metrics")).await;
    assert!(
        metrics.contains("sigstamp_sent_items_total{kind=\"replaced\"} 1"),
        "{metrics}"
    );
    drop(guard);

    // A job left in the spool by a previous run (the sent copy was not saved yet then) is
    // resumed at start.
    let orig2 = fake.put_sent(
        "u-alice",
        MailMessage::sent(
            "<serve2@example.com>",
            "serve",
            "alice@example.com",
            &["bob@example.org"],
        ),
    );
    let job = serde_json::json!({
        "id": "0f0e0d0c-0000-4000-8000-000000000002", "mailbox": "u-alice", "sender": "alice@example.com",
        "internet_message_id": "<serve2@example.com>", "queued_at": "2026-05-01T10:00:00Z",
        "body": {"content_type": "Text", "content": "Hello\r\n-- \r\nAlice Example\r\nEngineer\r\n"},
        "images": []
    });
    let spool = state.path().join("sent-items");
    std::fs::write(
        spool.join("0f0e0d0c-0000-4000-8000-000000000002.json"),
        job.to_string(),
    )
    .unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let (_guard, _addr, _log) = tokio::task::spawn_blocking(move || {
        serve_support::serve(&config, run_dir, "SMTP relay listening", "listen")
    })
    .await
    .unwrap();
    // Queued long ago: past give_up_after already, yet it gets its look.
    let s = until(&admin, "the leftover job done", |s| {
        s["sent_items"]["pending"] == 0
            && s["sent_items"]["replaced"].as_u64().unwrap_or(0)
                + s["sent_items"]["not_found"].as_u64().unwrap_or(0)
                == 1
    })
    .await;
    assert_eq!(s["sent_items"]["replaced"], 1, "{s}");
    let sent = fake.with_mail(|m| m.folder("u-alice", "sentitems"));
    assert!(sent.iter().any(|m| m.replaces() == Some(orig2.as_str())));
    assert!(
        std::fs::read_dir(&spool).unwrap().next().is_none(),
        "spool empty"
    );
}
