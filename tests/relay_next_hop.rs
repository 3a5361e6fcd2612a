//! The relay's next-hop client against next hops that offer, or do not offer, PIPELINING
//! and CHUNKING (sigstamp's own sink over loopback, its offer switched): each recipient
//! hears its own reply, a refused RCPT in the middle of a pipelined group leaves the
//! others, multi-line refusals arrive whole, a next hop that closes after MAIL costs a 4xx
//! and nothing else, and what goes out is one write per group when the next hop pipelines.

mod smtp_support;

use sigstamp::smtp::replies::Reply;
use sigstamp::smtp::sink::{Delivered, Extensions, Sink, SinkOptions, Stage};
use smtp_support::{expected_delivery, policy, relay, RawClient, TestRelay, MESSAGE};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The four kinds of next hop.
fn offers() -> Vec<(bool, bool)> {
    vec![(true, true), (true, false), (false, true), (false, false)]
}

struct Hop {
    _sink: Sink,
    delivered: UnboundedReceiver<Delivered>,
    reads: Arc<Mutex<Vec<Vec<String>>>>,
    relay: TestRelay,
}

/// A relay whose next hop is a sink offering `pipelining`/`chunking`, refusing what `opts`
/// says, hanging up as `hang_up` says.
async fn hop(
    pipelining: bool,
    chunking: bool,
    opts: SinkOptions,
    hang_up: Option<&'static str>,
) -> Hop {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let ext = Extensions {
        pipelining,
        chunking,
        hang_up,
        reads: Some(reads.clone()),
        ..Extensions::default()
    };
    let (sink, delivered) = Sink::start_with("127.0.0.1:0", opts, ext).await.unwrap();
    let next_hop = sink.addr().to_string();
    let relay = relay(move |c| c.next_hop = next_hop, SinkOptions::default()).await;
    Hop {
        _sink: sink,
        delivered,
        reads,
        relay,
    }
}

impl Hop {
    async fn next(&mut self) -> Option<Delivered> {
        tokio::time::timeout(Duration::from_secs(5), self.delivered.recv())
            .await
            .ok()
            .flatten()
    }

    fn reads(&self) -> Vec<Vec<String>> {
        self.reads.lock().unwrap().clone()
    }
}

/// The first word of each line of each read (`MAIL`, `RCPT`, `BDAT` …).
fn verbs(reads: &[Vec<String>]) -> Vec<Vec<String>> {
    reads
        .iter()
        .map(|r| {
            r.iter()
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect()
        })
        .collect()
}

/// The test message as a client sends it in DATA.
fn stuffed() -> String {
    MESSAGE.replace("\r\n.", "\r\n..")
}

fn code(reply: &str) -> u16 {
    reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A client that pipelines: MAIL, three RCPTs (the middle one refused by the next hop with a
/// two-line reply) and DATA in one write, then the message.
#[tokio::test]
async fn each_recipient_hears_its_own_reply_whatever_the_next_hop_offers() {
    for (pipelining, chunking) in offers() {
        let refuse = policy(|stage| match stage {
            Stage::Rcpt(line) if line.contains("nobody@") => Some(Reply {
                code: 550,
                lines: vec![
                    "5.1.1 <nobody@example.org>: Recipient address rejected:".into(),
                    "5.1.1 User unknown in virtual mailbox table".into(),
                ],
            }),
            _ => None,
        });
        let mut h = hop(pipelining, chunking, refuse, None).await;
        let label = format!("pipelining {pipelining}, chunking {chunking}");
        let mut c = RawClient::connect(h.relay.addr).await.unwrap();
        assert_eq!(code(&c.reply().await), 220);
        assert_eq!(code(&c.cmd("EHLO client.test").await), 250);
        c.send(
            "MAIL FROM:<alice@example.com> RET=HDRS\r\n\
             RCPT TO:<bob@example.org> NOTIFY=FAILURE\r\n\
             RCPT TO:<nobody@example.org>\r\n\
             RCPT TO:<carol@example.org>\r\n\
             DATA\r\n",
        )
        .await;
        let mut replies = Vec::new();
        for _ in 0..5 {
            replies.push(c.reply().await);
        }
        let codes: Vec<u16> = replies.iter().map(|r| code(r)).collect();
        assert_eq!(codes, vec![250, 250, 550, 250, 354], "{label}: {replies:?}");
        assert_eq!(
            replies[2],
            "550-5.1.1 <nobody@example.org>: Recipient address rejected:\r\n\
             550 5.1.1 User unknown in virtual mailbox table\r\n",
            "{label}: the refusal arrives whole"
        );
        c.send(&format!("{}.\r\n", stuffed())).await;
        assert_eq!(code(&c.reply().await), 250, "{label}");
        let got = h.next().await.expect("delivered");
        let rcpts: Vec<&str> = got.rcpts.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rcpts, ["bob@example.org", "carol@example.org"], "{label}");
        assert_eq!(got.rcpts[0].1, "NOTIFY=FAILURE", "{label}");
        assert_eq!(got.mail_params, "RET=HDRS", "{label}");
        let rcpts = [
            "bob@example.org".to_string(),
            "carol@example.org".to_string(),
        ];
        let want = expected_delivery(
            &h.relay.stamper,
            MESSAGE.as_bytes(),
            "alice@example.com",
            &rcpts,
        );
        assert_eq!(
            String::from_utf8_lossy(&got.message),
            String::from_utf8_lossy(&want),
            "{label}: the stamped message, unstuffed, byte for byte"
        );
        // Once more on the same connection: it is reused, the transaction reset lazily.
        c.send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
            .await;
        for want in [250, 250, 354] {
            assert_eq!(code(&c.reply().await), want, "{label}");
        }
        c.send(&format!("{}.\r\n", stuffed())).await;
        assert_eq!(code(&c.reply().await), 250, "{label}");
        assert!(h.next().await.is_some(), "{label}");
        assert_eq!(code(&c.cmd("QUIT").await), 221);

        let verbs = verbs(&h.reads());
        let envelope = ["MAIL", "RCPT", "RCPT", "RCPT"].map(String::from).to_vec();
        assert_eq!(
            verbs.contains(&envelope),
            pipelining,
            "{label}: MAIL and the RCPTs in one write exactly when PIPELINING is offered: {verbs:?}"
        );
        if !pipelining {
            assert!(
                verbs.iter().all(|r| r.len() == 1),
                "{label}: one command per write: {verbs:?}"
            );
        }
        let all: Vec<&String> = verbs.iter().flatten().collect();
        let bdat = all.iter().any(|v| *v == "BDAT");
        let data = all.iter().any(|v| *v == "DATA");
        assert_eq!((bdat, data), (chunking, !chunking), "{label}: {verbs:?}");
        assert_eq!(
            all.iter().filter(|v| **v == "EHLO").count(),
            1,
            "{label}: one next-hop connection for both messages"
        );
    }
}

/// The next hop closes the connection as MAIL arrives: the client hears 451 for MAIL, 503
/// for what it pipelined after it, nothing is delivered; its next try goes through on a
/// new connection.
#[tokio::test]
async fn a_next_hop_that_closes_after_mail_costs_a_4xx_and_nothing_else() {
    for (pipelining, chunking) in offers() {
        let mut h = hop(pipelining, chunking, SinkOptions::default(), Some("MAIL")).await;
        let label = format!("pipelining {pipelining}, chunking {chunking}");
        let mut c = RawClient::connect(h.relay.addr).await.unwrap();
        c.reply().await;
        c.cmd("EHLO client.test").await;
        c.send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
            .await;
        let replies = [c.reply().await, c.reply().await, c.reply().await];
        let codes: Vec<u16> = replies.iter().map(|r| code(r)).collect();
        assert_eq!(codes, vec![451, 503, 503], "{label}: {replies:?}");
        assert!(replies[0].starts_with("451 4.4."), "{label}: {replies:?}");
        for (line, want) in [
            ("MAIL FROM:<alice@example.com>", 250),
            ("RCPT TO:<bob@example.org>", 250),
            ("DATA", 354),
        ] {
            assert_eq!(code(&c.cmd(line).await), want, "{label}: {line}");
        }
        c.send(&format!("{}.\r\n", stuffed())).await;
        assert_eq!(code(&c.reply().await), 250, "{label}");
        let got = h.next().await.expect("the retry is delivered");
        assert_eq!(got.rcpts.len(), 1);
        assert!(h.delivered.try_recv().is_err(), "{label}: delivered once");
        let errors = h.relay.metrics.encode();
        assert!(
            errors.contains("sigstamp_next_hop_errors_total{kind=\"network\"} 1"),
            "{label}: {errors}"
        );
    }
}

/// A next hop that drops the connection when the message is sent: 451, nothing delivered,
/// and the session goes on.
#[tokio::test]
async fn a_next_hop_lost_at_the_message_is_a_4xx() {
    for (pipelining, chunking) in offers() {
        let verb = if chunking { "BDAT" } else { "DATA" };
        let mut h = hop(pipelining, chunking, SinkOptions::default(), Some(verb)).await;
        let label = format!("pipelining {pipelining}, chunking {chunking}");
        let mut c = RawClient::connect(h.relay.addr).await.unwrap();
        c.reply().await;
        c.cmd("EHLO client.test").await;
        c.send(&format!(
            "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n{}.\r\n",
            stuffed()
        ))
        .await;
        let replies = [
            c.reply().await,
            c.reply().await,
            c.reply().await,
            c.reply().await,
        ];
        let codes: Vec<u16> = replies.iter().map(|r| code(r)).collect();
        assert_eq!(codes, vec![250, 250, 354, 451], "{label}: {replies:?}");
        assert!(h.delivered.try_recv().is_err(), "{label}");
        assert_eq!(code(&c.cmd("NOOP").await), 250, "{label}");
    }
}
