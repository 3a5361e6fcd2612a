//! The relay with `[[rules]]`, over real SMTP on loopback: a message whose internal and
//! external recipients get different signatures goes to the next hop as one transaction
//! per recipient group; one that does not stays one transaction.

mod rules_support;
mod smtp_support;

use rules_support::*;
use sigstamp::smtp::replies::Reply;
use sigstamp::smtp::sink::{Sink, SinkOptions, Stage};
use sigstamp_testkit::{free_port, require_tool, Postfix};
use smtp_support::{policy, python_async, relay_with, RawClient, TestRelay};
use std::sync::Arc;
use std::time::Duration;

const ALICE: &str = "alice@contoso.example";
const IN: &str = "bob@contoso.example";
const OUT: &str = "dave@fabrikam.example";

async fn rules_relay(sink: SinkOptions) -> TestRelay {
    relay_with(Arc::new(rules_support::stamper(RULES_TOML)), |_| {}, sink).await
}

/// A client session after EHLO.
async fn session(relay: &TestRelay) -> RawClient {
    let mut c = RawClient::connect(relay.addr).await.unwrap();
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    c
}

/// MAIL, each RCPT (with parameters), DATA; returns the final reply.
async fn transaction(c: &mut RawClient, from: &str, rcpts: &[&str], message: &str) -> String {
    let mail = c
        .cmd(&format!("MAIL FROM:<{from}> RET=HDRS ENVID=e1"))
        .await;
    assert!(mail.starts_with("250"), "{mail}");
    for r in rcpts {
        let reply = c
            .cmd(&format!("RCPT TO:<{r}> NOTIFY=FAILURE ORCPT=rfc822;{r}"))
            .await;
        assert!(reply.starts_with("250"), "{r}: {reply}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(message).await;
    c.cmd(".").await
}

/// One message in its own session.
async fn send(relay: &TestRelay, from: &str, rcpts: &[&str], message: &str) -> String {
    let mut c = session(relay).await;
    let end = transaction(&mut c, from, rcpts, message).await;
    assert!(c.cmd("QUIT").await.starts_with("221"));
    end
}

fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_recipients_get_one_transaction_each_with_their_own_signature() {
    let mut relay = rules_relay(SinkOptions::default()).await;
    let mut c = session(&relay).await;
    let reply = transaction(&mut c, ALICE, &[OUT, IN], &message(ALICE)).await;
    assert!(
        reply.starts_with("250 2.0.0 Accepted as one transaction per recipient group"),
        "{reply}"
    );
    assert!(reply.contains("internal: 2.0.0 Ok: queued"), "{reply}");
    assert!(reply.contains("external: 2.0.0 Ok: queued"), "{reply}");

    let first = relay.next().await.expect("the internal part");
    let second = relay.next().await.expect("the external part");
    assert!(relay.none_left(), "exactly two transactions");
    for (d, rcpt, mark, other) in [
        (&first, IN, SHORT_MARK, SALES_MARK),
        (&second, OUT, SALES_MARK, SHORT_MARK),
    ] {
        // Envelope and parameters as the client sent them, only this group's recipient.
        assert_eq!(d.mail_from, ALICE);
        assert_eq!(d.mail_params, "RET=HDRS ENVID=e1");
        assert_eq!(
            d.rcpts,
            vec![(
                rcpt.to_string(),
                format!("NOTIFY=FAILURE ORCPT=rfc822;{rcpt}")
            )]
        );
        let m = text(&d.message);
        assert!(m.contains(mark), "{rcpt}: {mark} missing\n{m}");
        assert!(!m.contains(other), "{rcpt}: {other} present\n{m}");
        assert_eq!(signatures(&d.message), 1, "{rcpt}: one signature\n{m}");
        assert!(m.contains("\r\nHello,\r\nbye\r\n"), "{m}");
    }
    let metrics = relay.metrics.encode();
    assert!(
        metrics.contains("sigstamp_messages_total{edge=\"relay\",outcome=\"stamped\"} 2"),
        "{metrics}"
    );
    // The next-hop session is reused for the client's next message, split again.
    let reply = transaction(&mut c, ALICE, &[IN, OUT], &message(ALICE)).await;
    assert!(reply.starts_with("250 2.0.0 Accepted"), "{reply}");
    assert_eq!(relay.next().await.unwrap().rcpts[0].0, IN);
    assert_eq!(relay.next().await.unwrap().rcpts[0].0, OUT);
    assert!(relay.none_left());
    assert!(c.cmd("QUIT").await.starts_with("221"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_signature_for_every_recipient_stays_one_transaction() {
    let mut relay = rules_relay(SinkOptions::default()).await;
    // Two internal recipients: both get `short`.
    let reply = send(
        &relay,
        ALICE,
        &[IN, "carol@eu.contoso.example"],
        &message(ALICE),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued"), "{reply}");
    let d = relay.next().await.unwrap();
    assert_eq!(d.rcpts.len(), 2);
    assert!(text(&d.message).contains(SHORT_MARK));
    assert_eq!(signatures(&d.message), 1);
    assert!(relay.none_left(), "one transaction");
    // The shared mailbox: no signature for anyone, internal or external.
    let info = "info@contoso.example";
    let reply = send(&relay, info, &[IN, OUT], &message(info)).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued"), "{reply}");
    let d = relay.next().await.unwrap();
    assert_eq!(d.rcpts.len(), 2);
    assert_eq!(text(&d.message), message(info), "unchanged");
    assert!(relay.none_left(), "one transaction");
    let metrics = relay.metrics.encode();
    assert!(
        metrics.contains("sigstamp_messages_total{edge=\"relay\",outcome=\"no_signature\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_second_part_is_the_clients_answer() {
    for (code, text_) in [
        (452, "4.3.1 Insufficient system storage"),
        (554, "5.7.1 Message refused"),
    ] {
        // The next hop refuses the data of the external part only (at RCPT time, during
        // the client's transaction, it accepted everyone).
        let mut relay = rules_relay(policy(move |stage| match stage {
            Stage::Data(d) if d.rcpts.iter().any(|(r, _)| r == OUT) => {
                Some(Reply::new(code, text_))
            }
            _ => None,
        }))
        .await;
        let mut c = session(&relay).await;
        let reply = transaction(&mut c, ALICE, &[IN, OUT], &message(ALICE)).await;
        assert_eq!(reply, format!("{code} {text_}\r\n"));
        // The internal part went first and was delivered.
        let d = relay.next().await.unwrap();
        assert_eq!(d.rcpts[0].0, IN);
        assert!(relay.none_left());
        // The session goes on: the next message (internal only) is one transaction.
        let reply = transaction(&mut c, ALICE, &[IN], &message(ALICE)).await;
        assert!(reply.starts_with("250 2.0.0 Ok: queued"), "{reply}");
        assert_eq!(relay.next().await.unwrap().rcpts.len(), 1);
        assert!(relay.none_left());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_and_bdat_clients_see_one_acceptance_for_a_split_message() {
    let mut relay = rules_relay(SinkOptions::default()).await;
    // BDAT: the message in two chunks.
    let msg = message(ALICE);
    let (a, b) = msg.split_at(40);
    let mut c = session(&relay).await;
    assert!(c
        .cmd(&format!("MAIL FROM:<{ALICE}>"))
        .await
        .starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{OUT}>")).await.starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{IN}>")).await.starts_with("250"));
    c.send(&format!("BDAT {}\r\n{a}", a.len())).await;
    assert!(c.reply().await.starts_with("250"));
    c.send(&format!("BDAT {} LAST\r\n{b}", b.len())).await;
    let reply = c.reply().await;
    assert!(reply.starts_with("250 2.0.0 Accepted"), "{reply}");
    for (rcpt, mark) in [(IN, SHORT_MARK), (OUT, SALES_MARK)] {
        let d = relay.next().await.unwrap();
        assert_eq!(d.rcpts, vec![(rcpt.to_string(), String::new())]);
        assert!(text(&d.message).contains(mark), "{rcpt}");
    }
    assert!(relay.none_left());

    if !require_tool("python3") {
        return;
    }
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
refused = s.sendmail({ALICE:?}, [{OUT:?}, {IN:?}], {msg:?}.encode(), mail_options=["BODY=8BITMIME"])
print("refused", refused)
s.quit()
"#,
        port = relay.addr.port()
    );
    let out = python_async(script).await;
    assert!(out.contains("refused {}"), "{out}");
    for rcpt in [IN, OUT] {
        let d = relay.next().await.unwrap();
        assert_eq!(d.rcpts[0].0, rcpt);
        assert!(d.mail_params.contains("BODY=8BITMIME"), "{}", d.mail_params);
        assert_eq!(signatures(&d.message), 1);
    }
    assert!(relay.none_left());
}

/// The README's Postfix layout (smtpd_proxy_filter → sigstamp → after-filter smtpd): the
/// after-filter smtpd takes the reset and the two transactions, and queues two messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_before_and_after_the_split() {
    if !require_tool("postfix") || !require_tool("python3") {
        return;
    }
    let (sink, mut delivered) = Sink::start("127.0.0.1:0", SinkOptions::default())
        .await
        .unwrap();
    let back = free_port();
    let relay = relay_with(
        Arc::new(rules_support::stamper(RULES_TOML)),
        |c| c.next_hop = format!("127.0.0.1:{back}"),
        SinkOptions::default(),
    )
    .await;
    let pf = Postfix::relaying_to(sink.addr())
        .proxy_filter(relay.addr, back)
        .start()
        .unwrap();
    let front = pf.smtpd.port();
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {front})
print("refused", s.sendmail({ALICE:?}, [{OUT:?}, {IN:?}], {msg:?}.encode()))
s.quit()
"#,
        msg = message(ALICE)
    );
    let out = python_async(script).await;
    assert!(out.contains("refused {}"), "{out}\n{}", pf.log());
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(30), delivered.recv())
            .await
            .unwrap_or_else(|_| panic!("not delivered; postfix log:\n{}", pf.log()))
            .unwrap();
        got.push(d);
    }
    got.sort_by(|a, b| a.rcpts[0].0.cmp(&b.rcpts[0].0));
    for (d, rcpt, mark, other) in [
        (&got[0], IN, SHORT_MARK, SALES_MARK),
        (&got[1], OUT, SALES_MARK, SHORT_MARK),
    ] {
        assert_eq!(d.rcpts.len(), 1, "{:?}", d.rcpts);
        assert_eq!(d.rcpts[0].0, rcpt);
        let m = text(&d.message);
        assert!(m.contains(mark) && !m.contains(other), "{rcpt}:\n{m}");
        assert_eq!(signatures(&d.message), 1, "{rcpt}:\n{m}");
    }
    assert!(delivered.try_recv().is_err());
}
