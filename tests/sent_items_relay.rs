//! Sent Items update end to end through the relay: a real SMTP client (swaks) → sigstamp →
//! sink, with the worker replacing the sender's sent copy in the fake Graph. Only messages the
//! next hop accepted and sigstamp stamped are touched; when a message is split per recipient
//! group, the external recipients' copy is the one shown.

mod fake_graph;
mod rules_support;
mod sent_items_support;
mod smtp_support;

use fake_graph::{FakeGraph, MailAttachment, MailMessage};
use sent_items_support::*;
use sigstamp::smtp::replies::Reply;
use sigstamp::smtp::sink::{SinkOptions, Stage};
use sigstamp_testkit::require_tool;
use smtp_support::{policy, relay_with_sent_items, run, stamper, TestRelay};
use std::sync::Arc;
use std::time::Duration;

/// A multipart message with an attachment, as a mail client sends it.
fn message(from: &str, to: &str, message_id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: with attachment\r\nMessage-ID: {message_id}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<p>Please find the notes attached.</p>\r\n--m\r\n\
         Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n\
         meeting notes\r\n--m--\r\n"
    )
}

async fn swaks(relay: &TestRelay, from: &str, to: &str, data: &str) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.eml");
    std::fs::write(&p, data.strip_suffix("\r\n").unwrap()).unwrap();
    let mut args: Vec<String> = vec![
        "--server".into(),
        relay.addr.to_string(),
        "--from".into(),
        from.into(),
        "--ehlo".into(),
        "client.test".into(),
        "--data".into(),
        p.display().to_string(),
    ];
    // swaks takes several recipients comma-separated in one --to.
    args.extend(["--to".into(), to.to_string()]);
    run("swaks", args).await
}

/// One message with an attachment from `from` to `to` through the relay.
async fn send(relay: &TestRelay, from: &str, to: &str, message_id: &str) -> std::process::Output {
    swaks(relay, from, to, &message(from, to, message_id)).await
}

/// The sent copy as Exchange saved it (the attachment included).
fn sent_copy(message_id: &str, from: &str, to: &[&str]) -> MailMessage {
    let mut m = MailMessage::sent(message_id, "with attachment", from, to);
    m.attachments = vec![MailAttachment::file(
        "notes.txt",
        "text/plain",
        b"meeting notes".to_vec(),
    )];
    m
}

/// The fake with one mailbox, and the worker for `stamper`'s directory; the temporary
/// directory holds the spool.
async fn setup(
    mailbox: &str,
    address: &str,
    stamper: &sigstamp::pipeline::Stamper,
) -> (FakeGraph, Worker, tempfile::TempDir) {
    let fake = FakeGraph::start().await;
    fake.with_mail(|m| m.add_mailbox(mailbox, address, true));
    let tmp = tempfile::tempdir().unwrap();
    let w = start(
        &fake,
        config(&tmp.path().join("spool")),
        stamper.directory.clone(),
    );
    (fake, w, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sent_copy_is_replaced_once_after_the_next_hop_accepted() {
    if !require_tool("swaks") {
        return;
    }
    let stamper = stamper();
    let (fake, w, _tmp) = setup("1", "alice@example.com", &stamper).await;
    // The next hop refuses one message: that one is never touched.
    let sink = policy(|stage| match stage {
        Stage::Data(d) if String::from_utf8_lossy(&d.message).contains("<refused@example.com>") => {
            Some(Reply::new(550, "5.7.1 refused"))
        }
        _ => None,
    });
    let mut relay = relay_with_sent_items(stamper, w.handle.clone(), |_| {}, sink).await;
    let orig = fake.put_sent(
        "1",
        sent_copy(
            "<e2e1@example.com>",
            "alice@example.com",
            &["bob@example.org"],
        ),
    );
    let refused = fake.put_sent(
        "1",
        sent_copy(
            "<refused@example.com>",
            "alice@example.com",
            &["bob@example.org"],
        ),
    );

    let out = send(
        &relay,
        "alice@example.com",
        "bob@example.org",
        "<e2e1@example.com>",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let delivered = relay.next().await.expect("delivered");
    smtp_support::assert_stamped(&delivered.message);
    let out = send(
        &relay,
        "alice@example.com",
        "bob@example.org",
        "<refused@example.com>",
    )
    .await;
    assert!(!out.status.success(), "the next hop refused it");
    // Unstamped: a sender outside the directory.
    let out = send(
        &relay,
        "nobody@example.com",
        "bob@example.org",
        "<unknown@example.com>",
    )
    .await;
    assert!(out.status.success());

    wait_for(20, "replaced", || w.stats().replaced == 1).await;
    let r = assert_replaced_once(&fake, "1", "<e2e1@example.com>", &orig);
    assert!(
        r.body.contains("Engineer"),
        "the replacement carries the signature: {}",
        r.body
    );
    assert!(r.body.contains("Please find the notes attached."));
    let notes = r
        .attachments
        .iter()
        .find(|a| a.name == "notes.txt")
        .expect("the original attachment");
    assert_eq!(notes.bytes, b"meeting notes");
    // Give a wrongly queued job time to show, then check nothing else was touched.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = w.stats();
    assert_eq!(
        (s.replaced, s.pending, s.failed, s.not_found),
        (1, 0, 0, 0),
        "{s:?}"
    );
    let sent = fake.with_mail(|m| m.folder("1", "sentitems"));
    assert!(
        sent.iter().any(|m| m.id == refused && !m.is_draft),
        "the refused message's copy is untouched"
    );
    assert_eq!(creates(&fake), 1);
    w.stop().await;
}

/// Alice's internal recipients get `short`, external ones `sales`: the message is split and
/// her Sent Items shows the external copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_message_shows_the_external_copy() {
    if !require_tool("swaks") {
        return;
    }
    let stamper = Arc::new(rules_support::stamper(rules_support::RULES_TOML));
    let (fake, w, _tmp) = setup("1", "alice@contoso.example", &stamper).await;
    let mut relay =
        relay_with_sent_items(stamper, w.handle.clone(), |_| {}, SinkOptions::default()).await;
    let to = "bob@contoso.example,dave@fabrikam.example";
    let orig = fake.put_sent(
        "1",
        sent_copy(
            "<split@contoso.example>",
            "alice@contoso.example",
            &["bob@contoso.example", "dave@fabrikam.example"],
        ),
    );
    let out = send(
        &relay,
        "alice@contoso.example",
        to,
        "<split@contoso.example>",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        relay.next().await.is_some() && relay.next().await.is_some(),
        "two parts"
    );
    wait_for(20, "replaced", || w.stats().replaced == 1).await;
    let r = assert_replaced_once(&fake, "1", "<split@contoso.example>", &orig);
    assert!(
        r.body.contains(rules_support::SALES_MARK),
        "the external copy: {}",
        r.body
    );
    assert!(
        !r.body.contains(rules_support::SHORT_MARK),
        "not the internal copy: {}",
        r.body
    );
    w.stop().await;
}

/// Internal recipients stamped, external ones not: the copy shown is unstamped, so the sent
/// copy stays as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_message_whose_external_copy_is_unstamped_is_not_touched() {
    if !require_tool("swaks") {
        return;
    }
    let rules = r#"
[recipients]
internal_domains = ["contoso.example"]

[[rules]]
name = "nothing outside"
recipients = "external"
template = "none"
"#;
    let stamper = Arc::new(rules_support::stamper(rules));
    let (fake, w, _tmp) = setup("2", "bob@contoso.example", &stamper).await;
    let mut relay =
        relay_with_sent_items(stamper, w.handle.clone(), |_| {}, SinkOptions::default()).await;
    let to = "alice@contoso.example,dave@fabrikam.example";
    fake.put_sent(
        "2",
        sent_copy(
            "<split2@contoso.example>",
            "bob@contoso.example",
            &["alice@contoso.example"],
        ),
    );
    let out = send(
        &relay,
        "bob@contoso.example",
        to,
        "<split2@contoso.example>",
    )
    .await;
    assert!(out.status.success());
    assert!(
        relay.next().await.is_some() && relay.next().await.is_some(),
        "two parts"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = w.stats();
    assert_eq!((s.pending, s.replaced), (0, 0), "{s:?}");
    assert_eq!(creates(&fake), 0);
    w.stop().await;
}
