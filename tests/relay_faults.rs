//! Fault tests: what the client hears when the next hop is down, slow or refusing, when the
//! client vanishes mid-DATA, when it is not allowed, or when sessions run out. Each checks
//! that nothing was delivered twice or lost.

mod smtp_support;

use sigstamp::smtp::replies::Reply;
use sigstamp::smtp::sink::{SinkOptions, Stage};
use smtp_support::*;
use std::time::Duration;

const ENVELOPE: [&str; 3] = [
    "EHLO client.test",
    "MAIL FROM:<alice@example.com>",
    "RCPT TO:<bob@example.org>",
];

async fn open_transaction(c: &mut RawClient) {
    assert!(c.reply().await.starts_with("220 "));
    for line in ENVELOPE {
        let r = c.cmd(line).await;
        assert!(r.starts_with("250"), "{line}: {r}");
    }
}

async fn send_message(c: &mut RawClient) -> String {
    let r = c.cmd("DATA").await;
    assert!(r.starts_with("354"), "{r}");
    c.send(MESSAGE).await;
    c.cmd(".").await
}

#[tokio::test]
async fn next_hop_down_means_451_and_nothing_accepted() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut r = relay(|c| c.next_hop = dead.to_string(), SinkOptions::default()).await;
    let mut c = RawClient::connect(r.addr).await.unwrap();
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO client.test").await;
    let mail = c.cmd("MAIL FROM:<alice@example.com>").await;
    assert!(mail.starts_with("451 4.4.1"), "{mail}");
    let rcpt = c.cmd("RCPT TO:<bob@example.org>").await;
    assert!(rcpt.starts_with("503"), "{rcpt}");
    assert!(c.cmd("DATA").await.starts_with("503"));
    assert!(r.none_left());
    let m = r.metrics.encode();
    assert!(
        m.contains("sigstamp_next_hop_errors_total{kind=\"connect\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn silent_next_hop_times_out_with_451_4_4_2() {
    // Accepts TCP, never greets.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut r = relay(
        |c| {
            c.next_hop = silent_addr.to_string();
            c.next_hop_timeout = Duration::from_millis(300);
        },
        SinkOptions::default(),
    )
    .await;
    let mut c = RawClient::connect(r.addr).await.unwrap();
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO client.test").await;
    let mail = c.cmd("MAIL FROM:<alice@example.com>").await;
    assert!(mail.starts_with("451 4.4.2"), "{mail}");
    assert!(r.none_left());
    holder.abort();
}

#[tokio::test]
async fn next_hop_refusals_at_rcpt_and_data_are_relayed() {
    let opts = policy(|stage| match stage {
        Stage::Rcpt(l) if l.contains("<gone@") => {
            Some(Reply::new(550, "5.1.1 gone@example.org: no such user"))
        }
        Stage::Rcpt(l) if l.contains("<full@") => Some(Reply::new(452, "4.2.2 mailbox full")),
        Stage::Data(d) if d.rcpts.iter().any(|(a, _)| a.starts_with("tempfail")) => {
            Some(Reply::new(451, "4.3.0 try again later"))
        }
        Stage::Data(d) if d.rcpts.iter().any(|(a, _)| a.starts_with("permfail")) => {
            Some(Reply::new(554, "5.6.0 content rejected"))
        }
        _ => None,
    });
    let mut r = relay(|_| {}, opts).await;
    let port = r.addr.port();
    let script = format!(
        r#"
import smtplib
msg = {msg:?}.encode()
s = smtplib.SMTP("127.0.0.1", {port})
print("partial", s.sendmail("alice@example.com", ["gone@example.org", "full@example.org", "bob@example.org"], msg))
for rcpt in ["tempfail@example.org", "permfail@example.org"]:
    try:
        s.sendmail("alice@example.com", [rcpt], msg)
        print("accepted", rcpt)
    except smtplib.SMTPDataError as e:
        print("data", rcpt, e.smtp_code, e.smtp_error.decode())
try:
    s.sendmail("alice@example.com", ["gone@example.org"], msg)
except smtplib.SMTPRecipientsRefused as e:
    print("allrefused", e.recipients)
s.quit()
"#,
        msg = MESSAGE,
    );
    let out = python_async(script).await;
    assert!(
        out.contains("'gone@example.org': (550, b'5.1.1 gone@example.org: no such user')"),
        "{out}"
    );
    assert!(
        out.contains("'full@example.org': (452, b'4.2.2 mailbox full')"),
        "{out}"
    );
    assert!(
        out.contains("data tempfail@example.org 451 4.3.0 try again later"),
        "{out}"
    );
    assert!(
        out.contains("data permfail@example.org 554 5.6.0 content rejected"),
        "{out}"
    );
    assert!(out.contains("allrefused"), "{out}");
    // Only the partially accepted message went through, to its one accepted recipient.
    let d = r.next().await.expect("one delivery");
    assert_eq!(
        d.rcpts,
        vec![("bob@example.org".to_string(), String::new())]
    );
    assert!(r.none_left(), "nothing else delivered");
}

#[tokio::test]
async fn client_cut_mid_data_forwards_nothing() {
    let mut r = relay(|_| {}, SinkOptions::default()).await;
    let mut c = RawClient::connect(r.addr).await.unwrap();
    open_transaction(&mut c).await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send("Subject: cut\r\n\r\nthis message never ends").await;
    drop(c);
    // The next session's message is the only one the sink sees.
    let mut c = RawClient::connect(r.addr).await.unwrap();
    open_transaction(&mut c).await;
    assert!(send_message(&mut c).await.starts_with("250"));
    let d = r.next().await.unwrap();
    assert!(!String::from_utf8_lossy(&d.message).contains("never ends"));
    assert!(r.none_left());
}

#[tokio::test]
async fn client_outside_allowed_clients_is_refused() {
    let mut r = relay(
        |c| c.allowed_clients = vec!["10.0.0.0/8".into()],
        SinkOptions::default(),
    )
    .await;
    let mut c = RawClient::connect(r.addr).await.unwrap();
    let greeting = c.reply().await;
    assert!(greeting.starts_with("554 5.7.1"), "{greeting}");
    assert!(c.closed().await);
    assert!(r.none_left());
}

#[tokio::test]
async fn sessions_over_the_limit_get_421() {
    let mut r = relay(|c| c.max_sessions = 1, SinkOptions::default()).await;
    let mut first = RawClient::connect(r.addr).await.unwrap();
    assert!(first.reply().await.starts_with("220 "));
    let mut second = RawClient::connect(r.addr).await.unwrap();
    let refused = second.reply().await;
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    // The first session is unaffected.
    first.cmd("EHLO client.test").await;
    first.cmd(ENVELOPE[1]).await;
    first.cmd(ENVELOPE[2]).await;
    assert!(send_message(&mut first).await.starts_with("250"));
    assert!(r.next().await.is_some());
    assert!(r.none_left());
}

#[tokio::test]
async fn one_session_many_messages_with_an_aborted_one_between() {
    let mut r = relay(|_| {}, SinkOptions::default()).await;
    let mut c = RawClient::connect(r.addr).await.unwrap();
    open_transaction(&mut c).await;
    assert!(send_message(&mut c).await.starts_with("250"));
    // An aborted transaction in between must not leak into the next one.
    assert!(c
        .cmd("MAIL FROM:<eve@example.com>")
        .await
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<x@example.org>").await.starts_with("250"));
    assert!(c.cmd("RSET").await.starts_with("250"));
    for line in &ENVELOPE[1..] {
        assert!(c.cmd(line).await.starts_with("250"));
    }
    assert!(send_message(&mut c).await.starts_with("250"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    for _ in 0..2 {
        let d = r.next().await.unwrap();
        assert_eq!(d.mail_from, "alice@example.com");
        assert_eq!(d.rcpts.len(), 1);
    }
    assert!(r.none_left());
}
