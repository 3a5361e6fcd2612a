//! The milter over a real loopback socket, driven by a raw client that speaks the protocol
//! as Postfix does (and as no MTA should, for the malformed cases).

mod milter_support;

use milter_support::client::{
    apply, apply_with, body_of, Client, Reply, NR_ALL, POSTFIX_ACTIONS, POSTFIX_PROTOCOL,
};
use milter_support::{assert_pipeline_stamps, config, reference, start, text_message};
use sigstamp::milter::MilterConfig;
use sigstamp::pipeline::Verdict;
use sigstamp::stamp::TRACE_HEADER;
use std::time::Duration;

fn codes(replies: &[Reply]) -> String {
    replies.iter().map(|r| r.code as char).collect()
}

#[tokio::test]
async fn negotiation_asks_only_for_what_it_uses() {
    let m = start(config()).await;
    let mut c = Client::connect(m.addr).await;
    let (version, actions, protocol) = c.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    assert_eq!(version, 6);
    // ADDHDRS | CHGBODY | CHGHDRS, nothing about recipients, sender or quarantine.
    assert_eq!(actions, 0x01 | 0x02 | 0x10);
    // NOCONNECT, NOHELO, NOEOH, NOUNKNOWN, NODATA; every no-reply flag; HDR_LEADSPC.
    let skip = 0x01 | 0x02 | 0x40 | 0x100 | 0x200;
    assert_eq!(protocol, skip | NR_ALL | 0x10_0000);
    // Never asks to skip MAIL, RCPT, headers or body.
    assert_eq!(protocol & (0x04 | 0x08 | 0x10 | 0x20), 0);

    // An older MTA (protocol 2, only the v2 flags): the answer never exceeds the offer.
    let mut old = Client::connect(m.addr).await;
    let (version, actions, protocol) = old.negotiate(2, 0x1f, 0x7f).await;
    assert_eq!(version, 2);
    assert_eq!(actions, 0x13);
    assert_eq!(protocol, 0x01 | 0x02 | 0x40);

    // An MTA that does not allow body replacement cannot be served: closed.
    let mut weak = Client::connect(m.addr).await;
    let mut p = 6u32.to_be_bytes().to_vec();
    p.extend_from_slice(&0x01u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    weak.send(b'O', &p).await;
    weak.expect_closed().await;
    m.stop().await;
}

#[tokio::test]
async fn every_callback_is_answered_when_replies_are_expected() {
    let m = start(config()).await;
    let mut c = Client::connect(m.addr).await;
    // An MTA that offers no protocol flags: it sends every event and waits for each reply.
    c.negotiate(6, POSTFIX_ACTIONS, 0).await;
    let raw = text_message("nobody@elsewhere.test", "callbacks", "Hi\r\n");
    let steps: Vec<(u8, Vec<u8>)> = vec![
        (b'C', b"mta.example\0\x34\x00\x19127.0.0.1\0".to_vec()),
        (b'H', b"client.example\0".to_vec()),
        (b'M', b"<nobody@elsewhere.test>\0".to_vec()),
        (b'R', b"<rcpt@example.net>\0".to_vec()),
        (b'T', Vec::new()),
        (b'L', b"From\0 nobody@elsewhere.test\0".to_vec()),
        (b'L', b"Subject\0 callbacks\0".to_vec()),
        (b'N', Vec::new()),
        (b'B', body_of(&raw).to_vec()),
        (b'U', b"XFOO\0".to_vec()),
    ];
    for (code, payload) in steps {
        // Macros come before their event and are never answered.
        c.send(b'D', &[&[code][..], b"{x}\0y\0"].concat()).await;
        c.send(code, &payload).await;
        let r = c.reply().await;
        assert_eq!(r.code, b'c', "event {:?} answered with {r:?}", code as char);
    }
    c.send(b'E', b"").await;
    assert_eq!(
        codes(&c.replies().await),
        "c",
        "unknown sender: no modification"
    );
    assert!(m
        .app
        .metrics
        .encode()
        .contains(r#"sigstamp_messages_total{edge="milter",outcome="unknown_sender"} 1"#));
    m.stop().await;
}

#[tokio::test]
async fn no_reply_flags_are_honoured() {
    let m = start(config()).await;
    let mut c = Client::like_postfix(m.addr).await;
    // Three messages on one connection: the only replies are the end-of-message ones.
    for i in 0..3 {
        let raw = text_message("nobody@elsewhere.test", &format!("nr{i}"), "Hi\r\n");
        let replies = c
            .message_nr("nobody@elsewhere.test", &["rcpt@example.net"], &raw)
            .await;
        assert_eq!(codes(&replies), "c");
    }
    m.stop().await;
}

#[tokio::test]
async fn stamped_message_gets_trace_header_and_body_and_matches_the_relay() {
    let m = start(config()).await;
    assert_pipeline_stamps(&m.app);
    let raw = text_message("ann@example.com", "stamp", "Hello Bob,\r\nsee you.\r\n");
    let mut c = Client::like_postfix(m.addr).await;
    let replies = c
        .message_nr("ann@example.com", &["rcpt@example.net"], &raw)
        .await;
    let cs = codes(&replies);
    assert!(cs.starts_with('i'), "trace header first: {cs}");
    assert!(cs.ends_with("bc"), "body then continue: {cs}");
    assert_eq!(replies[0].data[..4], [0, 0, 0, 0], "inserted on top");
    assert!(replies[0].data[4..].starts_with(TRACE_HEADER.as_bytes()));
    let Verdict::Stamped { message, .. } = reference(&m.app, &raw, "ann@example.com") else {
        panic!("reference not stamped");
    };
    assert_eq!(
        String::from_utf8_lossy(&apply(&raw, &replies)),
        String::from_utf8_lossy(&message),
        "the MTA ends up with exactly what the relay would deliver"
    );
    m.stop().await;
}

#[tokio::test]
async fn changed_top_level_headers_are_sent_as_header_changes() {
    let m = start(config()).await;
    assert_pipeline_stamps(&m.app);
    // A non-ASCII name into a us-ascii 7bit text/plain message: the core re-encodes the
    // part, which changes the message's own Content-Type (and transfer encoding).
    let raw = text_message("zoe@example.com", "charset", "Bonjour,\r\n");
    let mut c = Client::like_postfix(m.addr).await;
    let replies = c
        .message_nr("zoe@example.com", &["rcpt@example.net"], &raw)
        .await;
    let changed: Vec<String> = replies
        .iter()
        .filter(|r| r.code == b'm')
        .map(|r| String::from_utf8_lossy(&r.data[4..]).into_owned())
        .collect();
    assert!(
        changed.iter().any(|h| h.starts_with("Content-Type\0")),
        "{changed:?}"
    );
    let Verdict::Stamped { message, .. } = reference(&m.app, &raw, "zoe@example.com") else {
        panic!("reference not stamped");
    };
    assert_eq!(
        String::from_utf8_lossy(&apply(&raw, &replies)),
        String::from_utf8_lossy(&message)
    );
    m.stop().await;
}

#[tokio::test]
async fn end_of_body_may_carry_the_last_chunk() {
    let m = start(config()).await;
    assert_pipeline_stamps(&m.app);
    let raw = text_message("ann@example.com", "eob-data", "first line\r\nlast line\r\n");
    let body = body_of(&raw);
    let split = body.len() - "last line\r\n".len();
    let mut c = Client::like_postfix(m.addr).await;
    c.envelope("ann@example.com", &["rcpt@example.net"]).await;
    let headers_only = [&raw[..raw.len() - body.len()], &body[..split]].concat();
    c.content(&headers_only, 65535).await;
    c.send(b'E', &body[split..]).await;
    let replies = c.replies().await;
    let Verdict::Stamped { message, .. } = reference(&m.app, &raw, "ann@example.com") else {
        panic!("reference not stamped");
    };
    assert_eq!(apply(&raw, &replies), message);

    m.stop().await;
}

#[tokio::test]
async fn header_values_without_leading_space_when_the_mta_does_not_offer_it() {
    // An MTA without SMFIP_HDR_LEADSPC (older Sendmail, Postfix < 2.6) eats the space
    // after the colon and puts one back in front of edited values.
    let m = start(config()).await;
    assert_pipeline_stamps(&m.app);
    let mut c = Client::connect(m.addr).await;
    let (_, _, protocol) = c
        .negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL & !0x10_0000)
        .await;
    assert_eq!(protocol & 0x10_0000, 0);
    let raw = text_message("zoe@example.com", "no-leadspc", "Bonjour,\r\n");
    let replies = c
        .message_nr("zoe@example.com", &["rcpt@example.net"], &raw)
        .await;
    let inserted = replies
        .iter()
        .find(|r| r.code == b'i')
        .expect("trace header");
    assert!(inserted.data[4..].starts_with(format!("{TRACE_HEADER}\0s").as_bytes()));
    let Verdict::Stamped { message, .. } = reference(&m.app, &raw, "zoe@example.com") else {
        panic!("reference not stamped");
    };
    assert_eq!(
        String::from_utf8_lossy(&apply_with(&raw, &replies, false)),
        String::from_utf8_lossy(&message)
    );
    m.stop().await;
}

#[tokio::test]
async fn big_body_is_replaced_in_chunks_of_at_most_64k() {
    let m = start(config()).await;
    assert_pipeline_stamps(&m.app);
    let line = "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n";
    // Over 256 KiB: also takes the path that stamps on the blocking pool.
    let body = line.repeat(1100 * 1024 / line.len());
    let raw = text_message("ann@example.com", "big", &body);
    let mut c = Client::like_postfix(m.addr).await;
    let replies = c
        .message_nr("ann@example.com", &["rcpt@example.net"], &raw)
        .await;
    let chunks: Vec<&Reply> = replies.iter().filter(|r| r.code == b'b').collect();
    assert!(chunks.len() >= 17, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|r| r.data.len() <= 65535));
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|r| r.data.len() == 65535));
    let Verdict::Stamped { message, .. } = reference(&m.app, &raw, "ann@example.com") else {
        panic!("reference not stamped");
    };
    assert_eq!(apply(&raw, &replies), message);
    m.stop().await;
}

#[tokio::test]
async fn unchanged_cases_get_no_modification() {
    let m = start(config()).await;
    assert_pipeline_stamps(&m.app);
    let mut c = Client::like_postfix(m.addr).await;
    // Unknown sender.
    let raw = text_message("stranger@elsewhere.test", "unknown", "Hi\r\n");
    let r = c
        .message_nr("stranger@elsewhere.test", &["rcpt@example.net"], &raw)
        .await;
    assert_eq!(codes(&r), "c");
    // Null sender (a bounce), even though the From header is a known user.
    let raw = text_message("ann@example.com", "bounce", "Hi\r\n");
    let r = c.message_nr("", &["rcpt@example.net"], &raw).await;
    assert_eq!(codes(&r), "c");
    // A signed message from a known user.
    let signed = b"From: Ann <ann@example.com>\r\nTo: rcpt@example.net\r\nSubject: signed\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\
        \tmicalg=sha-256; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nHi\r\n\
        --b1\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--b1--\r\n";
    let r = c
        .message_nr("ann@example.com", &["rcpt@example.net"], signed)
        .await;
    assert_eq!(codes(&r), "c");
    // Already stamped.
    let mut stamped = format!("{TRACE_HEADER}: stamped\r\n").into_bytes();
    stamped.extend_from_slice(&text_message("ann@example.com", "again", "Hi\r\n"));
    let r = c
        .message_nr("ann@example.com", &["rcpt@example.net"], &stamped)
        .await;
    assert_eq!(codes(&r), "c");
    let metrics = m.app.metrics.encode();
    assert!(metrics.contains(r#"outcome="null_sender"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"outcome="signed"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"outcome="already_stamped"} 1"#),
        "{metrics}"
    );
    m.stop().await;
}

#[tokio::test]
async fn abort_forgets_the_message_and_the_connection_goes_on() {
    let m = start(config()).await;
    assert_pipeline_stamps(&m.app);
    let mut c = Client::like_postfix(m.addr).await;
    let first = text_message("ann@example.com", "aborted", "FIRST-BODY\r\n");
    c.envelope("ann@example.com", &["rcpt@example.net"]).await;
    c.content(&first, 65535).await;
    c.send(b'A', b"").await;
    let second = text_message("ann@example.com", "second", "SECOND-BODY\r\n");
    let replies = c
        .message_nr("ann@example.com", &["rcpt@example.net"], &second)
        .await;
    let delivered = apply(&second, &replies);
    let text = String::from_utf8_lossy(&delivered);
    assert!(
        !text.contains("FIRST-BODY") && !text.contains("aborted"),
        "{text}"
    );
    assert!(text.contains("SECOND-BODY"));
    assert!(codes(&replies).contains('b'));

    m.stop().await;
}

#[tokio::test]
async fn quit_closes_and_quit_nc_keeps_the_connection() {
    let m = start(config()).await;
    let mut c = Client::like_postfix(m.addr).await;
    c.send(b'K', b"").await; // QUIT_NC: same connection, next SMTP session
    let raw = text_message("nobody@elsewhere.test", "after-quit-nc", "Hi\r\n");
    let r = c
        .message_nr("nobody@elsewhere.test", &["rcpt@example.net"], &raw)
        .await;
    assert_eq!(codes(&r), "c");
    c.send(b'Q', b"").await;
    c.expect_closed().await;
    m.stop().await;
}

#[tokio::test]
async fn malformed_packets_close_the_connection_and_the_milter_stays_up() {
    let m = start(config()).await;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("unknown command", b"\0\0\0\x01Z".to_vec(), true),
        ("header without NUL", b"\0\0\0\x05Lname".to_vec(), true),
        ("huge length", b"\xff\xff\xff\xffL".to_vec(), true),
        ("zero length", b"\0\0\0\0".to_vec(), true),
        ("short OPTNEG", b"\0\0\0\x03O\0\0".to_vec(), false),
        ("MAIL before OPTNEG", b"\0\0\0\x05M<a>\0".to_vec(), false),
        ("truncated packet", b"\0\0\0\x10Lab".to_vec(), true),
    ];
    for (what, bytes, negotiate_first) in cases {
        let mut c = Client::connect(m.addr).await;
        if negotiate_first {
            c.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
        }
        c.send_raw(&bytes).await;
        if what == "truncated packet" {
            // The MTA goes away in the middle of a packet.
            drop(c);
            continue;
        }
        eprintln!("case: {what}");
        c.expect_closed().await;
    }
    // Still serving.
    let mut c = Client::like_postfix(m.addr).await;
    let raw = text_message("nobody@elsewhere.test", "still-up", "Hi\r\n");
    let r = c
        .message_nr("nobody@elsewhere.test", &["rcpt@example.net"], &raw)
        .await;
    assert_eq!(codes(&r), "c");
    m.stop().await;
}

#[tokio::test]
async fn client_gone_mid_message_frees_its_slot() {
    // One connection slot: if the abandoned session leaked, the next one would never run.
    let m = start(MilterConfig {
        max_sessions: 1,
        ..config()
    })
    .await;
    for i in 0..3 {
        let mut c = Client::like_postfix(m.addr).await;
        let raw = text_message("ann@example.com", &format!("gone{i}"), &"x".repeat(100_000));
        c.envelope("ann@example.com", &["rcpt@example.net"]).await;
        c.content(&raw, 65535).await;
        drop(c); // no end of body
    }
    let mut c = Client::like_postfix(m.addr).await;
    let raw = text_message("nobody@elsewhere.test", "after", "Hi\r\n");
    let r = c
        .message_nr("nobody@elsewhere.test", &["rcpt@example.net"], &raw)
        .await;
    assert_eq!(codes(&r), "c");
    m.stop().await;
}

#[tokio::test]
async fn reads_time_out() {
    let m = start(MilterConfig {
        data_timeout: Duration::from_millis(300),
        command_timeout: Duration::from_millis(600),
        ..config()
    })
    .await;
    // Half a packet, then silence.
    let mut c = Client::like_postfix(m.addr).await;
    c.send_raw(b"\0\0\0\x20Lsub").await;
    c.expect_closed().await;
    // Inside a message (headers sent), the MTA stalls before the body.
    let mut c = Client::like_postfix(m.addr).await;
    c.envelope("ann@example.com", &["rcpt@example.net"]).await;
    c.send(b'L', b"Subject\0 x\0").await;
    c.expect_closed().await;
    // Idle between messages longer than command_timeout.
    let mut c = Client::like_postfix(m.addr).await;
    c.expect_closed().await;
    m.stop().await;
}

#[tokio::test]
async fn message_over_the_size_limit_passes_unchanged() {
    let m = start(MilterConfig {
        max_message_size: 10_000,
        ..config()
    })
    .await;
    let mut c = Client::like_postfix(m.addr).await;
    let raw = text_message("ann@example.com", "large", &"y".repeat(20_000));
    let r = c
        .message_nr("ann@example.com", &["rcpt@example.net"], &raw)
        .await;
    assert_eq!(codes(&r), "c");
    assert!(m.app.metrics.encode().contains(r#"outcome="too_large"} 1"#));
    m.stop().await;
}

#[tokio::test]
async fn unix_socket_replaces_a_stale_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/sigstamp/milter.sock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A socket file left behind by a previous run: nothing listens on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let cfg = MilterConfig {
        listen: format!("unix:{}", path.display()),
        socket_mode: "0600".into(),
        ..config()
    };
    let app = milter_support::app(cfg.clone());
    let listener = sigstamp::milter::bind(&cfg)
        .await
        .expect("bind over stale socket");
    let a = app.clone();
    let task =
        tokio::spawn(
            async move { sigstamp::milter::serve(a.milter_handles(), &cfg, listener).await },
        );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut p = vec![0, 0, 0, 13, b'O', 0, 0, 0, 6];
    p.extend_from_slice(&POSTFIX_ACTIONS.to_be_bytes());
    p.extend_from_slice(&POSTFIX_PROTOCOL.to_be_bytes());
    s.write_all(&p).await.unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[4], b'O');
    // A second instance must not steal a live socket.
    assert!(sigstamp::milter::bind(&MilterConfig {
        listen: format!("unix:{}", path.display()),
        ..config()
    })
    .await
    .is_err());
    app.shutdown.cancel();
    drop(s);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!path.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn shutdown_finishes_messages_in_progress_and_closes_idle_connections() {
    let m = start(config()).await;
    let raw = text_message("nobody@elsewhere.test", "in-flight", "Hi\r\n");
    // Without no-reply flags every event is answered, so we know when the server is
    // inside the message.
    let mut busy = Client::connect(m.addr).await;
    busy.negotiate(6, POSTFIX_ACTIONS, 0).await;
    for (code, payload) in [
        (b'M', &b"<nobody@elsewhere.test>\0"[..]),
        (b'R', b"<rcpt@example.net>\0"),
        (b'L', b"Subject\0 in-flight\0"),
    ] {
        busy.send(code, payload).await;
        assert_eq!(busy.reply().await.code, b'c');
    }
    let mut idle = Client::like_postfix(m.addr).await;
    m.app.shutdown.cancel();
    idle.expect_closed().await;
    // The listener goes away promptly (polled, bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(m.addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    busy.send(b'B', body_of(&raw)).await;
    assert_eq!(busy.reply().await.code, b'c');
    busy.send(b'E', b"").await;
    assert_eq!(
        codes(&busy.replies().await),
        "c",
        "the message in progress is answered"
    );
    busy.expect_closed().await;
    tokio::time::timeout(Duration::from_secs(5), m.task)
        .await
        .expect("milter stops")
        .unwrap()
        .unwrap();
}
