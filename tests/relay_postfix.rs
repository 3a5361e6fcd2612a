//! A real Postfix on loopback in front of and behind sigstamp, as in the README recipes:
//! Postfix `relayhost` → sigstamp → sink, and Postfix `smtpd_proxy_filter` → sigstamp →
//! Postfix (after-filter smtpd) → sink.

mod smtp_support;

use sigstamp::smtp::sink::{Sink, SinkOptions};
use sigstamp_testkit::{free_port, require_tool, Postfix};
use smtp_support::*;
use std::time::Duration;

fn inject(port: u16) -> String {
    format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
print("refused", s.sendmail("alice@example.com", ["bob@example.org"], {msg:?}.encode(),
    mail_options=["RET=HDRS", "ENVID=pf-env-1"], rcpt_options=["NOTIFY=SUCCESS,FAILURE"]))
s.quit()
"#,
        msg = MESSAGE
    )
}

/// Postfix adds its Received header, so the exact bytes are not predictable: check the
/// stamp, and that the original body is still there.
fn assert_stamped_through_postfix(got: &[u8]) {
    assert_stamped(got);
    let text = String::from_utf8_lossy(got);
    assert!(text.contains("Hello Bob,\r\n.leading dot\r\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_relayhost_through_sigstamp() {
    if !require_tool("postfix") || !require_tool("python3") {
        return;
    }
    let mut relay = relay(|_| {}, SinkOptions::default()).await;
    let pf = Postfix::relaying_to(relay.addr).start().unwrap();
    let out = python_async(inject(pf.smtpd.port())).await;
    assert!(out.contains("refused {}"), "{out}");
    let d = tokio::time::timeout(Duration::from_secs(30), relay.delivered.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing delivered; postfix log:\n{}", pf.log()))
        .unwrap();
    assert_eq!(d.mail_from, "alice@example.com");
    assert!(
        d.mail_params.contains("RET=HDRS") && d.mail_params.contains("ENVID=pf-env-1"),
        "{}",
        d.mail_params
    );
    assert_eq!(d.rcpts[0].0, "bob@example.org");
    assert!(
        d.rcpts[0].1.contains("NOTIFY=SUCCESS,FAILURE"),
        "{:?}",
        d.rcpts
    );
    assert_stamped_through_postfix(&d.message);
    assert!(relay.none_left());
    // Postfix logs the delivery once it has read sigstamp's 250.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pf.log().contains("status=sent") {
        assert!(std::time::Instant::now() < deadline, "{}", pf.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_proxy_filter_through_sigstamp() {
    if !require_tool("postfix") || !require_tool("python3") {
        return;
    }
    let (sink, mut delivered) = Sink::start("127.0.0.1:0", SinkOptions::default())
        .await
        .unwrap();
    let back = free_port();
    // sigstamp's next hop is Postfix's after-filter smtpd.
    let mut relay = relay(
        |c| c.next_hop = format!("127.0.0.1:{back}"),
        SinkOptions::default(),
    )
    .await;
    let pf = Postfix::relaying_to(sink.addr())
        .proxy_filter(relay.addr, back)
        .start()
        .unwrap();
    let out = python_async(inject(pf.smtpd.port())).await;
    assert!(out.contains("refused {}"), "{out}\n{}", pf.log());
    let d = tokio::time::timeout(Duration::from_secs(30), delivered.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing delivered; postfix log:\n{}", pf.log()))
        .unwrap();
    assert_eq!(d.mail_from, "alice@example.com");
    assert!(
        d.mail_params.contains("ENVID=pf-env-1"),
        "{}",
        d.mail_params
    );
    assert!(
        d.rcpts[0].1.contains("NOTIFY=SUCCESS,FAILURE"),
        "{:?}",
        d.rcpts
    );
    assert_stamped_through_postfix(&d.message);
    assert!(delivered.try_recv().is_err());
    assert!(
        relay.none_left(),
        "sigstamp's own sink is unused in this layout"
    );
}
