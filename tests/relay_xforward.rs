//! XFORWARD with a real Postfix, in the proxy-filter layout of docs/recipes-postfix.md:
//! the after-filter smtpd (`smtpd_authorized_xforward_hosts`) logs the real client
//! (`orig_client=`), both when the client came through Postfix's front smtpd (its
//! XFORWARD is passed on) and when it talked to sigstamp directly (sigstamp's own view),
//! and when a load balancer's PROXY header named the client (docs/ha.md).

mod smtp_support;

use sigstamp::smtp::sink::{Sink, SinkOptions};
use sigstamp_testkit::{free_port, require_tool, Postfix};
use smtp_support::*;
use std::time::Duration;

fn send_from(source: &str, helo: &str, port: u16, subject: &str) -> String {
    format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, local_hostname={helo:?}, source_address=({source:?}, 0))
s.sendmail("alice@example.com", ["bob@example.org"],
    b"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nHello\r\n")
s.quit()
print("sent")
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_after_the_filter_logs_the_real_client() {
    if !require_tool("postfix") || !require_tool("python3") {
        return;
    }
    let (sink, mut delivered) = Sink::start("127.0.0.1:0", SinkOptions::default())
        .await
        .unwrap();
    let back = free_port();
    let relay = relay(
        |c| c.next_hop = format!("127.0.0.1:{back}"),
        SinkOptions::default(),
    )
    .await;
    // A second instance behind a load balancer (PROXY protocol from 127.0.0.1), relaying
    // to the same after-filter smtpd.
    let balanced = smtp_support::relay(
        |c| {
            c.next_hop = format!("127.0.0.1:{back}");
            c.proxy_protocol = true;
            c.proxy_trusted = vec!["127.0.0.1/32".into()];
            c.allowed_clients = vec!["192.0.2.0/24".into()];
        },
        SinkOptions::default(),
    )
    .await;
    let pf = Postfix::relaying_to(sink.addr())
        .proxy_filter(relay.addr, back)
        .main_cf("smtpd_authorized_xforward_hosts = 127.0.0.0/8")
        .start()
        .unwrap();

    for (source, helo, port, subject) in [
        (
            "127.0.0.3",
            "via-postfix.test",
            pf.smtpd.port(),
            "through postfix",
        ),
        (
            "127.0.0.2",
            "direct.test",
            relay.addr.port(),
            "straight to sigstamp",
        ),
    ] {
        let out = python_async(send_from(source, helo, port, subject)).await;
        assert!(out.contains("sent"), "{out}\n{}", pf.log());
        delivered_and_logged(&mut delivered, &pf, subject, source).await;
    }

    // Through the load balancer: the PROXY header's client is what Postfix logs.
    let mut c = RawClient::connect(balanced.addr).await.unwrap();
    c.send("PROXY TCP4 192.0.2.44 127.0.0.1 40001 25\r\n").await;
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO balanced.test").await.starts_with("250"));
    assert!(c
        .cmd("MAIL FROM:<alice@example.com>")
        .await
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.org>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: behind haproxy\r\n\r\nHello\r\n")
        .await;
    let done = c.cmd(".").await;
    assert!(done.starts_with("250"), "{done}\n{}", pf.log());
    delivered_and_logged(&mut delivered, &pf, "behind haproxy", "192.0.2.44").await;
}

/// The message with `subject` reaches the sink, and the after-filter smtpd logged `client`
/// as the original client next to the connecting one (sigstamp, 127.0.0.1); without
/// XFORWARD there is no orig_client at all.
async fn delivered_and_logged(
    delivered: &mut tokio::sync::mpsc::UnboundedReceiver<sigstamp::smtp::sink::Delivered>,
    pf: &Postfix,
    subject: &str,
    client: &str,
) {
    let d = tokio::time::timeout(Duration::from_secs(30), delivered.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing delivered; postfix log:\n{}", pf.log()))
        .unwrap();
    let text = String::from_utf8_lossy(&d.message).into_owned();
    assert!(text.contains(&format!("Subject: {subject}")), "{text}");
    let want = format!("client=localhost[127.0.0.1], orig_client=unknown[{client}]");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pf.log().contains(&want) {
        assert!(std::time::Instant::now() < deadline, "{want}\n{}", pf.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
