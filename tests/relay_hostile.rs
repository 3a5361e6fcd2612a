//! Hostile and careless clients over real TCP (issue 11, findings 3–7): the DATA reader
//! starts at a line start, input after an over-long line is kept, slow clients are cut off
//! by deadlines, BDAT sizes are exact, addresses are refused rather than rewritten.

mod smtp_support;

use sigstamp::smtp::sink::SinkOptions;
use smtp_support::*;
use std::time::{Duration, Instant};

async fn client(r: &TestRelay) -> RawClient {
    let mut c = RawClient::connect(r.addr).await.unwrap();
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    c
}

/// MAIL and RCPT, from a sender the directory does not know (the message goes on as sent).
async fn envelope(c: &mut RawClient) {
    for line in [
        "MAIL FROM:<nobody@example.com>",
        "RCPT TO:<bob@example.org>",
    ] {
        let r = c.cmd(line).await;
        assert!(r.starts_with("250"), "{line}: {r}");
    }
}

#[tokio::test]
async fn data_starts_at_a_line_start() {
    let mut r = relay(|_| {}, SinkOptions::default()).await;
    let mut c = client(&r).await;
    envelope(&mut c).await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    // A lone dot right after 354 ends the (empty) message at once.
    let end = c.cmd(".").await;
    assert!(end.starts_with("250"), "{end}");
    assert!(r.next().await.is_some());
    envelope(&mut c).await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send("..first line\r\nSubject: dots\r\n\r\n..body\r\n")
        .await;
    let end = c.cmd(".").await;
    assert!(end.starts_with("250"), "{end}");
    let d = r.next().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&d.message),
        ".first line\r\nSubject: dots\r\n\r\n.body\r\n"
    );
}

#[tokio::test]
async fn pipelined_commands_after_an_overlong_line_are_answered() {
    let r = relay(|_| {}, SinkOptions::default()).await;
    let mut c = client(&r).await;
    c.send(&format!("NOOP {}", "x".repeat(5000))).await;
    let long = c.reply().await;
    assert!(long.starts_with("500 5.5.2"), "{long}");
    c.send("\r\nNOOP\r\n").await;
    let noop = c.reply().await;
    assert!(
        noop.starts_with("250"),
        "the pipelined NOOP was lost: {noop:?}"
    );
    assert!(c.cmd("QUIT").await.starts_with("221"));
}

/// One byte a second, never pausing long enough for an idle timeout: the deadline of the
/// command line (or the rate of the message) must close the session while the client is
/// still sending.
#[tokio::test]
async fn a_client_sending_one_byte_a_second_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = relay(
        |c| {
            c.command_deadline = Duration::from_secs(2);
            c.data_timeout = Duration::from_secs(2);
        },
        SinkOptions::default(),
    )
    .await;
    for in_data in [false, true] {
        let mut c = client(&r).await;
        if in_data {
            envelope(&mut c).await;
            assert!(c.cmd("DATA").await.starts_with("354"));
        }
        let (mut rd, mut wr) = c.into_stream().into_split();
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        });
        let started = Instant::now();
        for b in b"NOOP NOOP NOOP NOOP NOOP".iter().cycle() {
            if reader.is_finished() || started.elapsed() > Duration::from_secs(20) {
                break;
            }
            let _ = wr.write_all(&[*b]).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(
            reader.is_finished(),
            "in_data={in_data}: still open after 20 s of one byte a second"
        );
        let answer = reader.await.unwrap();
        assert!(
            answer.starts_with("421 4.4.2"),
            "in_data={in_data}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn bdat_size_that_does_not_fit_is_refused() {
    let mut r = relay(|c| c.max_message_size = 100, SinkOptions::default()).await;
    let mut c = client(&r).await;
    envelope(&mut c).await;
    c.send("BDAT 184467440737095516150005 LAST\r\nabcde").await;
    let reply = c.reply().await;
    assert!(reply.starts_with("501 5.5.4"), "{reply}");
    assert!(c.closed().await);
    let mut c = client(&r).await;
    envelope(&mut c).await;
    c.send(&format!("BDAT 101 LAST\r\n{}", "x".repeat(101)))
        .await;
    let reply = c.reply().await;
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    assert!(r.none_left(), "nothing relayed");
}

#[tokio::test]
async fn addresses_are_never_rewritten() {
    let mut r = relay(|_| {}, SinkOptions::default()).await;
    let mut c = client(&r).await;
    c.send_bytes(b"MAIL FROM:<j\xf6rg@example.com>\r\n").await;
    let reply = c.reply().await;
    assert!(reply.starts_with("501 5.1.7"), "{reply}");
    let reply = c.cmd("MAIL FROM:<j\u{f6}rg@example.com>").await;
    assert!(reply.starts_with("553 5.6.7"), "{reply}");
    assert!(c
        .cmd("MAIL FROM:<alice@example.com>")
        .await
        .starts_with("250"));
    let reply = c.cmd("RCPT TO:<b\u{f6}b@example.org>").await;
    assert!(reply.starts_with("553 5.6.7"), "{reply}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
    assert!(r.none_left());
}
