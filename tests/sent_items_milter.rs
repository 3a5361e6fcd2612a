//! Sent Items update end to end through a real Postfix with the milter: swaks → Postfix
//! (smtpd_milters → sigstamp) → sink, and the worker replacing the sender's sent copy in the
//! fake Graph once Postfix accepted the message.

mod fake_graph;
mod milter_support;
mod sent_items_support;

use fake_graph::{FakeGraph, MailAttachment, MailMessage};
use milter_support::{app_with_sent_items, config, postfix_to_sink, start_app, swaks};
use sent_items_support::*;
use sigstamp::sent_items::SentItems;
use sigstamp_testkit::require_tool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn message(from: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: Ann <{from}>\r\nTo: rcpt@example.net\r\nSubject: milter sent items\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\nHello,\r\nsee attached\r\n--m\r\n\
         Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         AAECAwQF\r\n--m--\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_and_the_milter_replace_the_sent_copy_once() {
    if !require_tool("postfix") || !require_tool("swaks") {
        return;
    }
    let fake = FakeGraph::start().await;
    fake.with_mail(|m| {
        m.add_mailbox("1", "ann@example.com", true);
        // Bob's mailbox is outside the app's RBAC scope: 403.
        m.add_mailbox("2", "bob@example.com", false);
    });
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let worker: Arc<Mutex<Option<Worker>>> = Arc::default();
    let app = {
        let (fake_ref, worker, spool) = (&fake, worker.clone(), spool.clone());
        app_with_sent_items(config(), move |dir| {
            let w = start(fake_ref, config_for(&spool), dir);
            let h: SentItems = w.handle.clone();
            *worker.lock().unwrap() = Some(w);
            h
        })
    };
    let milter = start_app(app, config()).await;
    let (pf, sink) = postfix_to_sink(&milter).await;
    let w = worker.lock().unwrap().take().unwrap();

    let mut orig = MailMessage::sent(
        "<pf-si1@example.com>",
        "milter sent items",
        "ann@example.com",
        &["rcpt@example.net"],
    );
    orig.attachments = vec![MailAttachment::file(
        "data.bin",
        "application/octet-stream",
        vec![0, 1, 2, 3, 4, 5],
    )];
    let orig_id = fake.put_sent("1", orig);
    let bobs = fake.put_sent(
        "2",
        MailMessage::sent(
            "<pf-si2@example.com>",
            "b",
            "bob@example.com",
            &["rcpt@example.net"],
        ),
    );

    for (from, id) in [
        ("ann@example.com", "<pf-si1@example.com>"),
        ("bob@example.com", "<pf-si2@example.com>"),
    ] {
        swaks(&pf, from, &message(from, id)).await;
    }
    let delivered = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(delivered.len(), 2, "{}", pf.log());

    wait_for(30, "one replaced, one refused", || {
        let s = w.stats();
        s.replaced == 1 && s.failed == 1
    })
    .await;
    let r = assert_replaced_once(&fake, "1", "<pf-si1@example.com>", &orig_id);
    assert!(
        r.body.contains("Engineer"),
        "signature in the replacement: {}",
        r.body
    );
    assert_eq!(r.body_type, "text", "a text-only message stays text");
    let data = r
        .attachments
        .iter()
        .find(|a| a.name == "data.bin")
        .expect("the attachment");
    assert_eq!(data.bytes, vec![0, 1, 2, 3, 4, 5]);
    // The 403 mailbox keeps its original, untouched.
    let bob = fake.with_mail(|m| m.messages("2"));
    assert_eq!(bob.len(), 1);
    assert!(bob[0].id == bobs && bob[0].folder == "sentitems" && !bob[0].is_draft);
    assert!(w.stats().last_error.unwrap_or_default().contains("403"));
    assert_eq!(creates(&fake), 1);
    w.stop().await;
    milter.stop().await;
}

fn config_for(spool: &std::path::Path) -> sigstamp::sent_items::SentItemsConfig {
    sent_items_support::config(spool)
}
