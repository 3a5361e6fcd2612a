//! In-memory session tests: a scripted client on one end of a duplex pipe, the session on
//! the other, the in-memory next hop behind the `Delivery` trait (the real client is tested
//! end to end over TCP in tests/). The pipe's buffer is small so commands and data arrive
//! split at arbitrary points.

use super::*;
use crate::directory::Directory;
use crate::render::Templates;
use crate::smtp::outbound::memory::{MemoryHop, MemoryHopOptions, StageKind};
use crate::smtp::sink::{Delivered, Policy, Stage};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

struct Harness {
    shared: Arc<Shared>,
    delivered: UnboundedReceiver<Delivered>,
}

async fn harness_with(edit: impl FnOnce(&mut SmtpConfig), policy: Option<Policy>) -> Harness {
    let (hop, delivered) = MemoryHop::new(MemoryHopOptions {
        policy,
        ..MemoryHopOptions::default()
    });
    let mut cfg = SmtpConfig::new("127.0.0.1:0", "next-hop.test:25");
    cfg.hostname = "relay.test".into();
    cfg.command_timeout = Duration::from_secs(5);
    cfg.data_timeout = Duration::from_secs(5);
    cfg.next_hop_timeout = Duration::from_secs(5);
    edit(&mut cfg);
    Harness {
        shared: shared_for(cfg, hop),
        delivered,
    }
}

fn shared_for(cfg: SmtpConfig, next_hop: Arc<dyn Connector>) -> Arc<Shared> {
    let stamper = Arc::new(Stamper::new(
        Arc::new(Directory::new()),
        Templates::embedded(),
    ));
    Arc::new(Shared {
        next_hop,
        tls: Default::default(),
        cfg,
        stamper,
        metrics: Arc::new(Metrics::new()),
        shutdown: CancellationToken::new(),
        sent_items: Default::default(),
    })
}

async fn harness() -> Harness {
    harness_with(|_| {}, None).await
}

/// Write `script` (all at once: pipelined), read until the session closes, return the
/// reply codes in order and the raw transcript.
async fn converse(shared: Arc<Shared>, script: &[u8]) -> (Vec<u16>, String) {
    let (mut client, server) = tokio::io::duplex(700);
    let session = tokio::spawn(Session::new(server, shared, None).run());
    let script = script.to_vec();
    let writer = async move {
        client.write_all(&script).await.unwrap();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        out
    };
    let out = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("session did not finish");
    session.await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    (codes(&text), text)
}

/// The code of each final reply line (`250 x`, not `250-x`).
fn codes(text: &str) -> Vec<u16> {
    text.lines()
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

const ENVELOPE: &str =
    "EHLO client.test\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\n";
const MESSAGE: &str =
    "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello\r\n..dot\r\n";

fn transaction() -> String {
    format!("{ENVELOPE}DATA\r\n{MESSAGE}.\r\n")
}

#[tokio::test]
async fn table_of_command_sequences() {
    let long = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE + 10));
    let cases: Vec<(&str, String, Vec<u16>)> = vec![
        (
            "whole transaction, pipelined",
            format!("{}QUIT\r\n", transaction()),
            vec![220, 250, 250, 250, 354, 250, 221],
        ),
        (
            "HELO works too",
            "HELO c\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n".into(),
            vec![220, 250, 250, 221],
        ),
        (
            "MAIL before EHLO",
            "MAIL FROM:<a@b.example>\r\nQUIT\r\n".into(),
            vec![220, 503, 221],
        ),
        (
            "RCPT before MAIL",
            "EHLO c\r\nRCPT TO:<a@b.example>\r\nQUIT\r\n".into(),
            vec![220, 250, 503, 221],
        ),
        (
            "DATA before RCPT",
            "EHLO c\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nQUIT\r\n".into(),
            vec![220, 250, 250, 503, 221],
        ),
        (
            "DATA before MAIL",
            "EHLO c\r\nDATA\r\nQUIT\r\n".into(),
            vec![220, 250, 503, 221],
        ),
        (
            "nested MAIL",
            "EHLO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n".into(),
            vec![220, 250, 250, 503, 221],
        ),
        (
            "unknown verb and bad syntax",
            "EHLO c\r\nFOO\r\nMAIL FROM:nobrackets\r\nRCPT\r\nQUIT\r\n".into(),
            vec![220, 250, 500, 501, 501, 221],
        ),
        (
            "unadvertised and unknown parameters",
            "EHLO c\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\nMAIL FROM:<a@b.example> X-FOO=1\r\nQUIT\r\n".into(),
            vec![220, 250, 555, 555, 221],
        ),
        (
            "over-long command line, then the session goes on",
            format!("EHLO c\r\n{long}NOOP\r\nQUIT\r\n"),
            vec![220, 250, 500, 250, 221],
        ),
        (
            "misc verbs",
            "EHLO c\r\nNOOP\r\nVRFY bob\r\nHELP\r\nRSET\r\nEXPN list\r\nAUTH PLAIN AAAA\r\nSTARTTLS\r\nQUIT\r\n".into(),
            vec![220, 250, 250, 252, 214, 250, 502, 502, 502, 221],
        ),
        (
            "declared SIZE over the limit",
            "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=999999999999\r\nQUIT\r\n".into(),
            vec![220, 250, 552, 221],
        ),
        (
            "BDAT in two chunks",
            format!("{ENVELOPE}BDAT 10\r\n0123456789BDAT 5 LAST\r\nabcdeQUIT\r\n"),
            vec![220, 250, 250, 250, 250, 250, 221],
        ),
        (
            "BDAT 0 LAST ends the message",
            format!("{ENVELOPE}BDAT 3\r\nabcBDAT 0 LAST\r\nQUIT\r\n"),
            vec![220, 250, 250, 250, 250, 250, 221],
        ),
        (
            "BDAT without a transaction: chunk swallowed, 503",
            "EHLO c\r\nBDAT 4 LAST\r\nNOOPNOOP\r\nQUIT\r\n".into(),
            vec![220, 250, 503, 250, 221],
        ),
        (
            "DATA after BDAT",
            format!("{ENVELOPE}BDAT 2\r\nabDATA\r\nQUIT\r\n"),
            vec![220, 250, 250, 250, 250, 503, 221],
        ),
        (
            "bare LF before a dot is refused",
            format!("{ENVELOPE}DATA\r\nSubject: x\r\n\r\na\n.\r\nMAIL FROM:<x@y.example>\r\n.\r\nQUIT\r\n"),
            vec![220, 250, 250, 250, 354, 550, 221],
        ),
        (
            "two transactions on one session, RSET between",
            format!("{}MAIL FROM:<c@d.example>\r\nRSET\r\n{}QUIT\r\n", transaction(), transaction().replace("EHLO client.test\r\n", "")),
            vec![220, 250, 250, 250, 354, 250, 250, 250, 250, 250, 354, 250, 221],
        ),
    ];
    for (name, script, want) in cases {
        let h = harness().await;
        let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
        assert_eq!(got, want, "{name}:\n{text}");
    }
}

#[tokio::test]
async fn ehlo_advertises_the_extensions() {
    let h = harness().await;
    let (_, text) = converse(h.shared.clone(), b"EHLO c\r\nQUIT\r\n").await;
    for ext in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "CHUNKING",
    ] {
        assert!(
            text.contains(&format!("250-{ext}\r\n")) || text.contains(&format!("250 {ext}\r\n")),
            "{ext} missing:\n{text}"
        );
    }
    assert!(
        !text.contains("STARTTLS"),
        "no certificate, no STARTTLS:\n{text}"
    );
    assert!(text.starts_with("220 relay.test ESMTP"), "{text}");
}

#[tokio::test]
async fn message_reaches_the_next_hop_unstuffed_with_envelope_and_dsn() {
    let mut h = harness().await;
    let script = "EHLO c\r\nMAIL FROM:<alice@example.com> RET=HDRS ENVID=id+2B1 SIZE=100\r\n\
                  RCPT TO:<bob@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@example.org\r\n\
                  RCPT TO:<carol@example.org>\r\nDATA\r\n";
    let script = format!("{script}{MESSAGE}.\r\nQUIT\r\n");
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 250, 354, 250, 221], "{text}");
    let d = h.delivered.try_recv().expect("one message delivered");
    assert_eq!(d.mail_from, "alice@example.com");
    assert_eq!(d.mail_params, "SIZE=100 RET=HDRS ENVID=id+2B1");
    assert_eq!(
        d.rcpts,
        vec![
            (
                "bob@example.org".to_string(),
                "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob@example.org".to_string()
            ),
            ("carol@example.org".to_string(), String::new()),
        ]
    );
    assert_eq!(
        d.message,
        MESSAGE.replace("\r\n..dot", "\r\n.dot").as_bytes()
    );
    assert!(h.delivered.try_recv().is_err(), "delivered once");
}

#[tokio::test]
async fn bdat_message_is_delivered_whole() {
    let mut h = harness().await;
    let script = format!("{ENVELOPE}BDAT 10\r\n0123456789BDAT 7 LAST\r\nabcde\r\nQUIT\r\n");
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 250, 250, 221], "{text}");
    assert_eq!(
        h.delivered.try_recv().unwrap().message,
        b"0123456789abcde\r\n"
    );
}

#[tokio::test]
async fn oversize_data_is_refused_and_nothing_delivered() {
    let mut h = harness_with(|c| c.max_message_size = 100, None).await;
    let body = "x".repeat(300);
    let script = format!("{ENVELOPE}DATA\r\n{body}\r\n.\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n");
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 354, 552, 250, 221], "{text}");
    assert!(text.contains("552 5.3.4"), "{text}");
    let script = format!("{ENVELOPE}BDAT 300\r\n{body}QUIT\r\n");
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 552, 221], "{text}");
    assert!(h.delivered.try_recv().is_err());
}

#[tokio::test]
async fn recipient_limit() {
    let h = harness_with(|c| c.max_recipients = 2, None).await;
    let script = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@x.example>\r\nRCPT TO:<2@x.example>\r\nRCPT TO:<3@x.example>\r\nQUIT\r\n";
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 250, 452, 221], "{text}");
    assert!(text.contains("452 4.5.3"), "{text}");
}

#[tokio::test]
async fn next_hop_refusals_are_relayed_as_is() {
    let policy: Policy = Arc::new(|stage| match stage {
        Stage::Rcpt(line) if line.contains("nobody@") => Some(Reply::new(
            550,
            "5.1.1 <nobody@x.example>: Recipient address rejected",
        )),
        Stage::Rcpt(line) if line.contains("later@") => Some(Reply::new(450, "4.2.0 try later")),
        Stage::Data(d) if d.message.windows(6).any(|w| w == b"REJECT") => {
            Some(Reply::new(554, "5.7.1 content refused"))
        }
        _ => None,
    });
    let mut h = harness_with(|_| {}, Some(policy)).await;
    let script = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<nobody@x.example>\r\nRCPT TO:<later@x.example>\r\nDATA\r\nQUIT\r\n";
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 550, 450, 554, 221], "{text}");
    assert!(
        text.contains("550 5.1.1 <nobody@x.example>: Recipient address rejected"),
        "{text}"
    );
    assert!(text.contains("450 4.2.0 try later"), "{text}");
    assert!(text.contains("554 5.5.1 No valid recipients"), "{text}");

    let script = format!(
        "{ENVELOPE}DATA\r\nSubject: REJECT\r\n\r\nx\r\n.\r\n{}QUIT\r\n",
        transaction().replace("EHLO client.test\r\n", "")
    );
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(
        got,
        vec![220, 250, 250, 250, 354, 554, 250, 250, 354, 250, 221],
        "{text}"
    );
    assert!(text.contains("554 5.7.1 content refused"), "{text}");
    assert_eq!(
        h.delivered.try_recv().unwrap().message,
        MESSAGE.replace("..", ".").as_bytes()
    );
    assert!(
        h.delivered.try_recv().is_err(),
        "the refused message was not delivered"
    );
}

#[tokio::test]
async fn next_hop_down_is_a_temporary_failure() {
    let (hop, _) = MemoryHop::new(MemoryHopOptions {
        unreachable: true,
        ..MemoryHopOptions::default()
    });
    let cfg = SmtpConfig::new("127.0.0.1:0", "next-hop.test:25");
    let shared = shared_for(cfg, hop);
    let script = format!("{ENVELOPE}DATA\r\nQUIT\r\n");
    let (got, text) = converse(shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 451, 503, 503, 221], "{text}");
    assert!(text.contains("451 4.4.1"), "{text}");
    let m = shared.metrics.encode();
    assert!(
        m.contains("sigstamp_next_hop_errors_total{kind=\"connect\"} 1"),
        "{m}"
    );
}

/// A next hop that drops the connection at end of data: the client hears a 4xx, and its next
/// MAIL opens a new connection.
#[tokio::test]
async fn next_hop_lost_at_data_is_a_temporary_failure_and_reconnects() {
    let (hop, mut delivered) = MemoryHop::new(MemoryHopOptions {
        break_at: Some(StageKind::Data),
        ..MemoryHopOptions::default()
    });
    let shared = shared_for(
        SmtpConfig::new("127.0.0.1:0", "next-hop.test:25"),
        hop.clone(),
    );
    let script = format!("{}MAIL FROM:<a@b.example>\r\nQUIT\r\n", transaction());
    let (got, text) = converse(shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 354, 451, 250, 221], "{text}");
    assert!(
        text.contains("451 4.4.2 Next hop connection lost"),
        "{text}"
    );
    assert_eq!(hop.connections(), 2);
    assert!(delivered.try_recv().is_err());
    let m = shared.metrics.encode();
    assert!(
        m.contains("sigstamp_next_hop_errors_total{kind=\"network\"} 1"),
        "{m}"
    );
}

/// A multi-line refusal reaches the client with all its lines.
#[tokio::test]
async fn multi_line_refusal_is_relayed_whole() {
    let policy: Policy = Arc::new(|stage| match stage {
        Stage::Rcpt(_) => Some(Reply {
            code: 550,
            lines: vec!["5.7.1 first line".into(), "5.7.1 second line".into()],
        }),
        _ => None,
    });
    let h = harness_with(|_| {}, Some(policy)).await;
    let (got, text) = converse(h.shared.clone(), format!("{ENVELOPE}QUIT\r\n").as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 550, 221], "{text}");
    assert!(
        text.contains("550-5.7.1 first line\r\n550 5.7.1 second line\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn client_gone_mid_data_forwards_nothing() {
    let mut h = harness().await;
    let (mut client, server) = tokio::io::duplex(700);
    let session = tokio::spawn(Session::new(server, h.shared.clone(), None).run());
    client
        .write_all(format!("{ENVELOPE}DATA\r\nSubject: half\r\n\r\nhalf a mess").as_bytes())
        .await
        .unwrap();
    // Wait for the 354, then vanish.
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("354 ") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .unwrap()
        .unwrap();
    assert!(h.delivered.try_recv().is_err());
}

#[tokio::test]
async fn idle_client_times_out_with_421() {
    let h = harness_with(|c| c.command_timeout = Duration::from_millis(200), None).await;
    let (mut client, server) = tokio::io::duplex(700);
    let session = tokio::spawn(Session::new(server, h.shared.clone(), None).run());
    client.write_all(b"EHLO c\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    session.await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.ends_with("421 4.4.2 Timeout exceeded, closing connection\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let h = harness().await;
    let script = "BOGUS\r\n".repeat(MAX_ERRORS + 5);
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got.len(), 1 + MAX_ERRORS + 1, "{text}");
    assert_eq!(*got.last().unwrap(), 421);
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_and_refuses_new_mail() {
    let h = harness().await;
    h.shared.shutdown.cancel();
    let (got, text) = converse(h.shared.clone(), b"").await;
    assert_eq!(got, vec![220, 421], "{text}");
    assert!(text.contains("421 4.3.2"), "{text}");
}

mod tls {
    use super::*;
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    fn server_tls() -> (
        Arc<rustls::ServerConfig>,
        rustls_pki_types::CertificateDer<'static>,
    ) {
        let ck = rcgen::generate_simple_self_signed(vec!["relay.test".to_string()]).unwrap();
        let der = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let cfg = rustls::ServerConfig::builder_with_provider(crate::smtp::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        (Arc::new(cfg), der)
    }

    async fn tls_harness(
        edit: impl FnOnce(&mut SmtpConfig),
    ) -> (Harness, rustls_pki_types::CertificateDer<'static>) {
        let mut h = harness_with(edit, None).await;
        let (cfg, der) = server_tls();
        let shared = Arc::get_mut(&mut h.shared).unwrap();
        shared.tls = Arc::new(arc_swap::ArcSwapOption::from(Some(cfg)));
        (h, der)
    }

    async fn read_reply(s: &mut (impl AsyncRead + Unpin)) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        loop {
            s.read_exact(&mut b).await.unwrap();
            out.push(b[0]);
            if out.ends_with(b"\r\n") {
                let text = String::from_utf8_lossy(&out).into_owned();
                let last = text.trim_end().rsplit("\r\n").next().unwrap().to_string();
                if last.as_bytes().get(3) == Some(&b' ') {
                    return text;
                }
            }
        }
    }

    #[tokio::test]
    async fn require_tls_refuses_mail_in_clear() {
        let (h, _) = tls_harness(|c| c.require_tls = true).await;
        let (got, text) = converse(
            h.shared.clone(),
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n",
        )
        .await;
        assert_eq!(got, vec![220, 250, 530, 221], "{text}");
        assert!(
            text.contains("250-STARTTLS") || text.contains("250 STARTTLS"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn starttls_discards_injected_commands_and_restarts_the_session() {
        let (mut h, ca) = tls_harness(|c| c.require_tls = true).await;
        let (mut client, server) = tokio::io::duplex(4096);
        let session = tokio::spawn(Session::new(server, h.shared.clone(), None).run());
        assert!(read_reply(&mut client).await.starts_with("220"));
        client.write_all(b"EHLO c\r\n").await.unwrap();
        read_reply(&mut client).await;
        // The injected MAIL must not survive the handshake.
        client
            .write_all(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
            .await
            .unwrap();
        assert!(read_reply(&mut client).await.starts_with("220 2.0.0"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(crate::smtp::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("relay.test").unwrap(), client)
            .await
            .unwrap();
        tls.write_all(b"MAIL FROM:<a@b.example>\r\n").await.unwrap();
        let r = read_reply(&mut tls).await;
        assert!(r.starts_with("503 5.5.1 Send HELO/EHLO first"), "{r}");
        tls.write_all(b"EHLO c\r\n").await.unwrap();
        let r = read_reply(&mut tls).await;
        assert!(!r.contains("STARTTLS"), "{r}");
        tls.write_all(format!("MAIL FROM:<a@b.example>\r\nRCPT TO:<b@c.example>\r\nDATA\r\n{MESSAGE}.\r\nQUIT\r\n").as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        let rest = String::from_utf8_lossy(&rest);
        assert_eq!(codes(&rest), vec![250, 250, 354, 250, 221], "{rest}");
        session.await.unwrap();
        let d = h.delivered.try_recv().unwrap();
        assert_eq!(d.mail_from, "a@b.example");
        assert!(
            h.delivered.try_recv().is_err(),
            "the injected MAIL started nothing"
        );
    }

    #[tokio::test]
    async fn client_certificate_required_when_names_configured() {
        let (h, _) =
            tls_harness(|c| c.client_cert_names = vec!["mail.protection.outlook.com".into()]).await;
        let (got, text) = converse(
            h.shared.clone(),
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n",
        )
        .await;
        assert_eq!(got, vec![220, 250, 554, 221], "{text}");
        assert!(text.contains("554 5.7.1"), "{text}");
    }
}

#[tokio::test]
async fn xforward_from_the_client() {
    // Starts at byte 696 of the script: the pipe's 700-byte buffer splits the verb.
    let pad = format!("NOOP {}\r\n", "x".repeat(696 - 8 - 7));
    let cases: Vec<(&str, String, Vec<u16>)> = vec![
        (
            "accepted, then a transaction",
            format!(
                "EHLO c\r\nXFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.1\r\nxforward proto=ESMTP helo=a+20b\r\n{}QUIT\r\n",
                transaction().split_once('\n').unwrap().1
            ),
            vec![220, 250, 250, 250, 250, 250, 354, 250, 221],
        ),
        (
            "split across reads",
            format!("EHLO c\r\n{pad}XFORWARD ADDR=192.0.2.1\r\nQUIT\r\n"),
            vec![220, 250, 250, 250, 221],
        ),
        (
            "a command that only starts like it",
            format!("EHLO c\r\n{pad}XFORWARDS\r\nXF\r\nQUIT\r\n"),
            vec![220, 250, 250, 500, 500, 221],
        ),
        (
            "before EHLO",
            "XFORWARD ADDR=192.0.2.1\r\nQUIT\r\n".into(),
            vec![220, 503, 221],
        ),
        (
            "inside a transaction",
            "EHLO c\r\nMAIL FROM:<a@b.example>\r\nXFORWARD ADDR=192.0.2.1\r\nQUIT\r\n".into(),
            vec![220, 250, 250, 503, 221],
        ),
        (
            "unknown attribute, bad xtext, nothing",
            "EHLO c\r\nXFORWARD FOO=1\r\nXFORWARD HELO=a+2\r\nXFORWARD \r\nQUIT\r\n".into(),
            vec![220, 250, 501, 501, 501, 221],
        ),
        (
            "too long",
            format!("EHLO c\r\nXFORWARD HELO={}\r\nQUIT\r\n", "x".repeat(MAX_COMMAND_LINE)),
            vec![220, 250, 500, 221],
        ),
    ];
    for (name, script, expected) in cases {
        let h = harness().await;
        let (codes, text) = converse(h.shared.clone(), script.as_bytes()).await;
        assert_eq!(codes, expected, "{name}: {text}");
    }
    let h = harness().await;
    let (_, text) = converse(h.shared.clone(), b"EHLO c\r\nQUIT\r\n").await;
    assert!(
        text.contains("XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE\r\n"),
        "{text}"
    );
}

/// Issue 11, finding 3: the data begins at a line start.
#[tokio::test]
async fn data_begins_at_a_line_start() {
    let mut h = harness().await;
    let script = format!("{ENVELOPE}DATA\r\n.\r\nNOOP\r\nQUIT\r\n");
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 354, 250, 250, 221], "{text}");
    assert!(h.delivered.try_recv().is_ok(), "the empty message went on");
    let script = format!("{ENVELOPE}DATA\r\n..x\r\n..\r\nSubject: y\r\n\r\nz\r\n.\r\nQUIT\r\n");
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 354, 250, 221], "{text}");
    assert_eq!(
        h.delivered.try_recv().unwrap().message,
        b".x\r\n.\r\nSubject: y\r\n\r\nz\r\n"
    );
}

/// Write `first`, wait for a reply containing `until`, then write `rest`; the transcript.
async fn two_packets(shared: Arc<Shared>, first: &[u8], until: &str, rest: &[u8]) -> String {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(Session::new(server, shared, None).run());
    client.write_all(first).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(until) {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    client.write_all(rest).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut seen))
        .await
        .expect("session did not finish")
        .unwrap();
    session.await.unwrap();
    String::from_utf8_lossy(&seen).into_owned()
}

/// Issue 11, finding 4: what follows an over-long line in the same packet is read.
#[tokio::test]
async fn input_after_an_overlong_line_is_not_lost() {
    let h = harness().await;
    let long = format!("EHLO c\r\nNOOP {}", "x".repeat(MAX_COMMAND_LINE + 10));
    let text = two_packets(
        h.shared.clone(),
        long.as_bytes(),
        "500 5.5.2",
        b"xx\r\nNOOP\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(codes(&text), vec![220, 250, 500, 250, 221], "{text}");
}

/// Send `prefix`, then `trickle` one byte every 100 ms; the transcript once the session
/// closed (within 10 s).
async fn trickle(shared: Arc<Shared>, prefix: &[u8], trickle: &[u8]) -> String {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (mut rd, mut wr) = tokio::io::split(client);
    let session = tokio::spawn(Session::new(server, shared, None).run());
    let (prefix, trickle) = (prefix.to_vec(), trickle.to_vec());
    let writer = tokio::spawn(async move {
        wr.write_all(&prefix).await?;
        for b in trickle.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wr.write_all(&[*b]).await?;
        }
        std::io::Result::Ok(())
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out))
        .await
        .expect("a trickling client must be cut off")
        .unwrap();
    writer.abort();
    session.await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Issue 11, finding 5: one byte at a time never times out an idle timer, but the deadline
/// of a command line and the rate of a message cut the client off.
#[tokio::test]
async fn slow_clients_are_cut_off_by_deadlines() {
    let h = harness_with(
        |c| {
            c.command_deadline = Duration::from_secs(1);
            c.data_timeout = Duration::from_secs(1);
        },
        None,
    )
    .await;
    let text = trickle(h.shared.clone(), b"EHLO c\r\n", b"NOOP").await;
    assert!(
        text.ends_with("421 4.4.2 Timeout exceeded, closing connection\r\n"),
        "{text}"
    );
    let script = format!("{ENVELOPE}DATA\r\nSubject: slow\r\n\r\n");
    let text = trickle(h.shared.clone(), script.as_bytes(), b"x").await;
    assert_eq!(codes(&text), vec![220, 250, 250, 250, 354, 421], "{text}");
    // BDAT: the rate holds across chunks and the commands between them.
    let script = format!("{ENVELOPE}BDAT 1\r\nx");
    let text = trickle(h.shared.clone(), script.as_bytes(), b"BDAT 1\r\nx").await;
    assert!(
        text.ends_with("421 4.4.2 Timeout exceeded, closing connection\r\n"),
        "{text}"
    );
}

/// Issue 11, finding 6: a BDAT size that does not fit is refused, never read as another
/// number; the session closes since the chunk cannot be skipped.
#[tokio::test]
async fn bdat_size_overflow_is_refused() {
    let mut h = harness_with(|c| c.max_message_size = 100, None).await;
    let script = format!("{ENVELOPE}BDAT 184467440737095516150005 LAST\r\nabcdeQUIT\r\n");
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 501], "{text}");
    assert!(text.contains("501 5.5.4"), "{text}");
    // Fits, but over the limit: 552, the chunk is skipped, the session goes on.
    let script = format!("{ENVELOPE}BDAT 101 LAST\r\n{}QUIT\r\n", "y".repeat(101));
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 552, 221], "{text}");
    assert!(text.contains("552 5.3.4"), "{text}");
    let script = "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=184467440737095516150005\r\nQUIT\r\n";
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 501, 221], "{text}");
    assert!(h.delivered.try_recv().is_err(), "nothing relayed");
}

/// Issue 11, finding 7: addresses are never rewritten; non-ASCII needs SMTPUTF8.
#[tokio::test]
async fn addresses_are_refused_not_rewritten() {
    let mut h = harness().await;
    let cases: Vec<(&[u8], Vec<u16>, &str)> = vec![
        (
            b"MAIL FROM:<j\xf6rg@example.com>\r\n",
            vec![220, 250, 501, 221],
            "501 5.1.7",
        ),
        (
            b"MAIL FROM:<j\xc3\xb6rg@example.com>\r\n",
            vec![220, 250, 553, 221],
            "553 5.6.7",
        ),
        (
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b\xc3\xb6b@example.org>\r\n",
            vec![220, 250, 250, 553, 221],
            "553 5.6.7",
        ),
        (
            b"MAIL FROM:<a@example.com> SMTPUTF8\r\nRCPT TO:<b\xf6b@example.org>\r\n",
            vec![220, 250, 250, 501, 221],
            "501 5.1.3",
        ),
    ];
    for (lines, want, reply) in cases {
        let mut script = b"EHLO c\r\n".to_vec();
        script.extend_from_slice(lines);
        script.extend_from_slice(b"QUIT\r\n");
        let (got, text) = converse(h.shared.clone(), &script).await;
        assert_eq!(got, want, "{text}");
        assert!(text.contains(reply), "{text}");
    }
    let script = "EHLO c\r\nMAIL FROM:<j\u{f6}rg@example.com> SMTPUTF8\r\nRCPT TO:<b\u{f6}b@example.org>\r\nDATA\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n";
    let (got, text) = converse(h.shared.clone(), script.as_bytes()).await;
    assert_eq!(got, vec![220, 250, 250, 250, 354, 250, 221], "{text}");
    let d = h.delivered.try_recv().unwrap();
    assert_eq!(d.mail_from, "j\u{f6}rg@example.com");
    assert_eq!(d.rcpts[0].0, "b\u{f6}b@example.org");
}

/// What a pipelining client sends at once reaches the next hop as one group (the next hop
/// gets it in one write when it offers PIPELINING), and each recipient still hears its own
/// reply, a refusal in the middle included; a client that waits for each reply makes groups
/// of one.
#[tokio::test]
async fn mail_and_rcpts_in_hand_go_as_one_group_with_a_reply_each() {
    let policy: Policy = Arc::new(|stage| match stage {
        Stage::Rcpt(line) if line.contains("nobody@") => Some(Reply::new(550, "5.1.1 unknown")),
        _ => None,
    });
    let (hop, mut delivered) = MemoryHop::new(MemoryHopOptions {
        policy: Some(policy),
        ..MemoryHopOptions::default()
    });
    let shared = shared_for(
        SmtpConfig::new("127.0.0.1:0", "next-hop.test:25"),
        hop.clone(),
    );
    let script = format!(
        "EHLO c\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<a@x.example>\r\n\
         RCPT TO:<nobody@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n{MESSAGE}.\r\nQUIT\r\n"
    );
    let (got, text) = converse(shared, script.as_bytes()).await;
    assert_eq!(
        got,
        vec![220, 250, 250, 250, 550, 250, 354, 250, 221],
        "{text}"
    );
    assert_eq!(
        hop.groups(),
        vec![vec![
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<a@x.example>",
            "RCPT TO:<nobody@x.example>",
            "RCPT TO:<b@x.example>",
        ]]
    );
    let d = delivered.try_recv().unwrap();
    assert_eq!(d.rcpts.len(), 2);

    // Waiting for each reply: one command per group, in order.
    let (hop, _delivered) = MemoryHop::new(MemoryHopOptions::default());
    let shared = shared_for(
        SmtpConfig::new("127.0.0.1:0", "next-hop.test:25"),
        hop.clone(),
    );
    let (mut client, server) = tokio::io::duplex(4096);
    let session = tokio::spawn(Session::new(server, shared, None).run());
    let mut buf = vec![0u8; 4096];
    let _ = client.read(&mut buf).await.unwrap();
    for line in [
        "EHLO c",
        "MAIL FROM:<alice@example.com>",
        "RCPT TO:<a@x.example>",
        "RCPT TO:<b@x.example>",
        "QUIT",
    ] {
        client
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0 && buf[0] != b'5', "{line}");
    }
    session.await.unwrap();
    assert_eq!(
        hop.groups(),
        vec![
            vec!["MAIL FROM:<alice@example.com>"],
            vec!["RCPT TO:<a@x.example>"],
            vec!["RCPT TO:<b@x.example>"],
        ]
    );
}
