//! Issue 11, the stamping side, end to end over loopback TCP: what leaves sigstamp is clean
//! SMTP whatever the directory and the templates hold (finding 2), and a panic in stamping
//! never costs a message on any edge (finding 11).

mod milter_support;
mod smtp_support;
mod support;

use proptest::prelude::*;
use sigstamp::app::App;
use sigstamp::config::Config;
use sigstamp::directory::photo::{Photo, PhotoSource};
use sigstamp::directory::{file, Directory, Source};
use sigstamp::metrics::Metrics;
use sigstamp::pipeline::Stamper;
use sigstamp::render::Templates;
use sigstamp::smtp::{Relay, SmtpConfig};
use sigstamp::status::Status;
use smtp_support::RawClient;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One session as a strict next hop saw it.
#[derive(Debug, Default)]
struct Seen {
    /// The DATA bytes of each message exactly as on the wire (terminator excluded).
    wire: Vec<Vec<u8>>,
    /// Every command line, in order.
    commands: Vec<String>,
}

/// A next hop that reads SMTP strictly (RFC 5321: lines end in CRLF, data ends at
/// CRLF "." CRLF) and reports the raw bytes of each session when it ends.
async fn strict_hop() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let _ = hop_session(stream, &mut seen).await;
                let _ = tx.send(seen);
            });
        }
    });
    (addr, rx)
}

async fn hop_session(stream: tokio::net::TcpStream, seen: &mut Seen) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    io.get_mut().write_all(b"220 hop ESMTP\r\n").await?;
    loop {
        let mut line = Vec::new();
        if io.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = cmd.get(..4).unwrap_or("").to_ascii_uppercase();
        seen.commands.push(cmd);
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-hop\r\n250 8BITMIME\r\n",
            "DATA" => {
                io.get_mut().write_all(b"354 go\r\n").await?;
                let mut data = Vec::new();
                // Strict: only CRLF "." CRLF ends the data (a first line "." too).
                loop {
                    let mut b = [0u8; 1];
                    if io.read(&mut b).await? == 0 {
                        return Ok(());
                    }
                    data.push(b[0]);
                    if data == b".\r\n" {
                        data.clear();
                        break;
                    }
                    if data.ends_with(b"\r\n.\r\n") {
                        data.truncate(data.len() - 3);
                        break;
                    }
                }
                seen.wire.push(data);
                b"250 queued\r\n"
            }
            "QUIT" => {
                io.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
            _ => b"500 what\r\n",
        };
        io.get_mut().write_all(reply).await?;
    }
}

/// The bytes a strict reader takes from DATA: the wire is all CRLF lines, each line that
/// starts with "." loses that dot.
fn check_wire(wire: &[u8]) -> Result<Vec<u8>, String> {
    for (i, b) in wire.iter().enumerate() {
        let bare = match b {
            b'\r' => wire.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || wire[i - 1] != b'\r',
            _ => false,
        };
        if bare {
            return Err(format!(
                "bare CR or LF at {i}: {:?}",
                String::from_utf8_lossy(&wire[i.saturating_sub(20)..(i + 20).min(wire.len())])
            ));
        }
    }
    let mut out = Vec::with_capacity(wire.len());
    for line in wire.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    Ok(out)
}

use support::crlf;

const USERS: &str = r#"[{"id":"1","displayName":"Alice Example","jobTitle":"Engineer","mail":"alice@example.com","userPrincipalName":"alice@example.com"}]"#;

fn directory_with(jobtitle: &str) -> Arc<Directory> {
    let directory = Arc::new(Directory::new());
    set_user(&directory, jobtitle);
    directory
}

fn set_user(directory: &Directory, jobtitle: &str) {
    let mut users: serde_json::Value = serde_json::from_str(USERS).unwrap();
    users[0]["jobTitle"] = jobtitle.into();
    directory.replace_users(
        file::parse(users.to_string().as_bytes()).unwrap(),
        Source::File,
    );
}

fn templates(dir: &Path, html: &str, text: &str) -> Templates {
    std::fs::write(dir.join("default.html.hbs"), html).unwrap();
    std::fs::write(dir.join("default.txt.hbs"), text).unwrap();
    Templates::load(dir).unwrap()
}

struct TestRelay {
    addr: SocketAddr,
    hop: mpsc::UnboundedReceiver<Seen>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn relay(stamper: Arc<Stamper>) -> TestRelay {
    let (hop_addr, hop) = strict_hop().await;
    let mut cfg = SmtpConfig::new("127.0.0.1:0", hop_addr.to_string());
    cfg.hostname = "relay.test".into();
    cfg.command_timeout = Duration::from_secs(10);
    cfg.next_hop_timeout = Duration::from_secs(5);
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let r = Relay::bind(cfg, stamper, metrics.clone(), shutdown.clone())
        .await
        .unwrap();
    let addr = r.local_addr().unwrap();
    tokio::spawn(r.serve());
    TestRelay {
        addr,
        hop,
        metrics,
        shutdown,
    }
}

/// Send one message (`data` already dot-stuffed, CRLF lines, without the final ".") and
/// return the client's final reply and what the next hop saw of that session.
async fn send(relay: &mut TestRelay, data: &str) -> (String, Seen) {
    let mut c = RawClient::connect(relay.addr).await.unwrap();
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert!(c
        .cmd("MAIL FROM:<alice@example.com>")
        .await
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.org>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(data).await;
    let reply = c.cmd(".").await;
    c.cmd("QUIT").await;
    let seen = tokio::time::timeout(Duration::from_secs(10), relay.hop.recv())
        .await
        .expect("the next hop session ends")
        .unwrap();
    (reply, seen)
}

const MESSAGE: &str = "From: Alice Example <alice@example.com>\r\nTo: bob@example.org\r\nSubject: t\r\nMessage-ID: <h1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n..leading dot\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>Hello</p>\r\n--b--\r\n";

/// The message the relay received from the client (dot-unstuffed).
fn received(data: &str) -> Vec<u8> {
    check_wire(data.as_bytes()).unwrap()
}

/// Finding 2: a directory value holding `\n.\n` and SMTP commands, and templates with LF
/// lines, reach a strict next hop as one message of CRLF lines, every dot line stuffed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_values_cannot_smuggle_a_second_message() {
    let tmp = tempfile::tempdir().unwrap();
    let evil = "Eng\n.\nMAIL FROM:<evil@attacker.test>\nRCPT TO:<victim@example.org>\nDATA\nspoofed\n.\r\n.\r.\n";
    let stamper = Arc::new(Stamper::new(
        directory_with(evil),
        templates(
            tmp.path(),
            "<p>{{displayName}}</p>\n<p>{{{jobTitle}}}</p>\n<p>{{jobTitle}}</p>",
            "-- \n{{displayName}}\n{{jobTitle}}\n",
        ),
    ));
    let mut relay = relay(stamper).await;
    let (reply, seen) = send(&mut relay, MESSAGE).await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(
        seen.wire.len(),
        1,
        "exactly one message: {:?}",
        seen.commands
    );
    let mails = seen
        .commands
        .iter()
        .filter(|c| c.starts_with("MAIL"))
        .count();
    assert_eq!(mails, 1, "{:?}", seen.commands);
    let got = check_wire(&seen.wire[0]).unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("X-Sigstamp: stamped"), "{text}");
    // In text the value's lines are lines of the message (CRLF); in HTML one line.
    assert!(
        text.contains("\r\nEng\r\n.\r\nMAIL FROM:<evil@attacker.test>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("<p>Eng . MAIL FROM:&lt;evil@attacker.test&gt; RCPT"),
        "{text}"
    );
    // The client's own dot line went through stuffed, and came out as the client sent it.
    assert!(text.contains("\r\n.leading dot\r\n"), "{text}");
}

/// Finding 2: the client's own bare LFs (no dot after them) leave as CRLF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_line_feeds_from_the_client_leave_as_crlf() {
    let tmp = tempfile::tempdir().unwrap();
    let stamper = Arc::new(Stamper::new(
        directory_with("Engineer"),
        templates(
            tmp.path(),
            "<p>{{displayName}}</p>",
            "-- \n{{displayName}}\n",
        ),
    ));
    let mut relay = relay(stamper).await;
    let data = "From: alice@example.com\nSubject: lf\r\nContent-Type: text/plain\n\nline one\nline two\rthree\r\n";
    let (reply, seen) = send(&mut relay, data).await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(seen.wire.len(), 1);
    let got = check_wire(&seen.wire[0]).unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("line one\r\nline two\r\nthree\r\n"), "{text}");
    assert!(text.contains("Alice Example"), "{text}");
}

/// A photo source that panics: stands for any bug inside stamping.
struct PanickingPhotos;

impl PhotoSource for PanickingPhotos {
    fn photo(&self, _user_id: &str) -> Option<Arc<Photo>> {
        panic!("photo store bug")
    }
}

fn panicking_stamper(dir: &Path) -> Arc<Stamper> {
    let t = templates(
        dir,
        "<p>{{displayName}}</p>{{#if photo}}<img src=\"{{photo}}\">{{/if}}",
        "-- \n{{displayName}}\n",
    )
    .with_photos(Arc::new(PanickingPhotos));
    Arc::new(Stamper::new(directory_with("Engineer"), t))
}

fn outcome_count(metrics: &Metrics, edge: &str, outcome: &str) -> bool {
    let m = metrics.encode();
    m.lines().any(|l| {
        l.starts_with("sigstamp_messages_total{")
            && l.contains(&format!("edge=\"{edge}\""))
            && l.contains(&format!("outcome=\"{outcome}\""))
            && l.ends_with(" 1")
    })
}

/// Finding 11: a panic in stamping under the relay: the client hears the next hop's 250,
/// the message goes on unchanged, the outcome is `internal_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_passes_the_message_on_when_stamping_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = relay(panicking_stamper(tmp.path())).await;
    let (reply, seen) = send(&mut relay, MESSAGE).await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(seen.wire.len(), 1);
    assert_eq!(check_wire(&seen.wire[0]).unwrap(), received(MESSAGE));
    assert!(
        outcome_count(&relay.metrics, "relay", "internal_error"),
        "{}",
        relay.metrics.encode()
    );
    // The relay still works for the next message.
    let (reply, _) = send(&mut relay, MESSAGE).await;
    assert!(reply.starts_with("250"), "{reply}");
}

/// Finding 11: the two-line HTML template that panicked on every 8bit HTML part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_line_html_template_stamps_8bit_html() {
    let tmp = tempfile::tempdir().unwrap();
    let stamper = Arc::new(Stamper::new(
        directory_with("Engineer"),
        templates(
            tmp.path(),
            "<p>{{displayName}}</p>\n<p>{{jobTitle}}</p>",
            "-- \n{{displayName}}\n",
        ),
    ));
    let mut relay = relay(stamper).await;
    let (reply, seen) = send(&mut relay, MESSAGE).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = check_wire(&seen.wire[0]).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("<p>Alice Example</p>\r\n<p>Engineer</p>"),
        "{text}"
    );
    assert!(outcome_count(&relay.metrics, "relay", "stamped"));
}

/// Finding 11 under the milter: the MTA is told to continue with the message as it is.
#[tokio::test]
async fn milter_continues_unchanged_when_stamping_panics() {
    use milter_support::client::Client;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = milter_support::config();
    let stamper = panicking_stamper(tmp.path());
    let app = Arc::new(App {
        config: Config {
            milter: Some(cfg.clone()),
            ..Config::default()
        },
        directory: stamper.directory.clone(),
        stamper,
        metrics: Arc::new(Metrics::new()),
        status: Arc::new(Status::default()),
        photos: Arc::new(sigstamp::directory::photo::NoPhotos),
        shutdown: CancellationToken::new(),
    });
    let listener = sigstamp::milter::bind(&cfg).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let a = app.clone();
    let task =
        tokio::spawn(
            async move { sigstamp::milter::serve(a.milter_handles(), &cfg, listener).await },
        );
    let mut c = Client::like_postfix(addr).await;
    let replies = c
        .message_nr(
            "alice@example.com",
            &["bob@example.org"],
            MESSAGE.as_bytes(),
        )
        .await;
    assert_eq!(replies.len(), 1, "no modifications: {replies:?}");
    assert_eq!(replies[0].code, b'c', "continue: {replies:?}");
    assert!(
        outcome_count(&app.metrics, "milter", "internal_error"),
        "{}",
        app.metrics.encode()
    );
    app.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// Finding 11 under `sigstamp stamp`: exit 0 and the stamped message (exit 101 before).
#[test]
fn cli_stamps_with_a_two_line_html_template() {
    let tmp = tempfile::tempdir().unwrap();
    templates(
        tmp.path(),
        "<p>{{displayName}}</p>\n<p>{{jobTitle}}</p>",
        "-- \n{{displayName}}\n",
    );
    let dir = tmp.path().join("directory.json");
    std::fs::write(&dir, USERS).unwrap();
    let msg = tmp.path().join("m.eml");
    std::fs::write(&msg, received(MESSAGE)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .arg("stamp")
        .arg("--directory")
        .arg(&dir)
        .arg("--templates")
        .arg(tmp.path())
        .arg(&msg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stamped"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<p>Alice Example</p>\r\n<p>Engineer</p>")
    );
}

/// Text with arbitrary line structure: none, one or many breaks of any kind, dots at line
/// starts, and SMTP commands.
fn lines_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\r".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("MAIL FROM:<x@y>".to_string()),
        Just("é".to_string()),
        "[a-z <>&]{0,12}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

/// A template source: literal text with arbitrary breaks around `{{value}}` uses (escaped
/// and raw in HTML).
fn template(html: bool) -> impl Strategy<Value = String> {
    let var = if html {
        prop_oneof![Just("{{jobTitle}}"), Just("{{{jobTitle}}}")].boxed()
    } else {
        Just("{{jobTitle}}").boxed()
    };
    prop::collection::vec(
        (lines_text(), var).prop_map(|(t, v)| format!("{}{v}", t.replace(['{', '}'], ""))),
        1..4,
    )
    .prop_map(|p| format!("MARK{}", p.concat()))
}

const ENCODINGS: [&str; 4] = ["7bit", "8bit", "quoted-printable", "base64"];

fn alternative(cte: &str, eol: &str) -> String {
    let body = |s: &str| match cte {
        "base64" => String::from_utf8(sigstamp::stamp::transfer::base64_encode(
            s.as_bytes(),
            76,
            eol.as_bytes(),
            true,
        ))
        .unwrap(),
        "quoted-printable" => String::from_utf8(sigstamp::stamp::transfer::qp_encode(
            s.as_bytes(),
            eol.as_bytes(),
        ))
        .unwrap(),
        _ => format!("{s}{eol}"),
    };
    let text = body(&format!("Hello{eol}.dot line{eol}bye"));
    let html = body("<html><body><p>Hello</p></body></html>");
    format!(
        "From: Alice <alice@example.com>{eol}Subject: p{eol}Message-ID: <p@example.com>{eol}MIME-Version: 1.0{eol}Content-Type: multipart/alternative; boundary=b{eol}{eol}--b{eol}Content-Type: text/plain; charset=utf-8{eol}Content-Transfer-Encoding: {cte}{eol}{eol}{text}--b{eol}Content-Type: text/html; charset=utf-8{eol}Content-Transfer-Encoding: {cte}{eol}{eol}{html}--b--{eol}"
    )
}

/// The client side of DATA: CRLF lines, dot-stuffed.
fn stuffed(message: &str) -> String {
    let m = String::from_utf8(crlf(message.as_bytes())).unwrap();
    m.split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For arbitrary values and templates, every transfer encoding and both line endings:
    /// the relay's wire bytes hold no bare CR or LF, a strict reader sees exactly one
    /// message, and it carries the signature once in each part.
    #[test]
    fn wire_stays_clean_for_any_template_and_value(
        html in template(true),
        text in template(false),
        value in lines_text(),
        cte in prop::sample::select(ENCODINGS.to_vec()),
        lf in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let tmp = tempfile::tempdir().unwrap();
            let stamper = Arc::new(Stamper::new(directory_with(&value), templates(tmp.path(), &html, &text)));
            let mut relay = relay(stamper).await;
            let message = alternative(cte, if lf { "\n" } else { "\r\n" });
            let (reply, seen) = send(&mut relay, &stuffed(&message)).await;
            prop_assert!(reply.starts_with("250"), "{}", reply);
            prop_assert_eq!(seen.wire.len(), 1, "{:?}", seen.commands);
            let got = check_wire(&seen.wire[0]).map_err(TestCaseError::fail)?;
            let out = String::from_utf8_lossy(&got).into_owned();
            prop_assert!(out.contains("X-Sigstamp: stamped"), "{}", out);
            // The signature once per part: decode each part and count the marker.
            let parsed = mail_parser::MessageParser::default().parse(&got).expect("parses");
            let plain = parsed.body_text(0).unwrap_or_default().into_owned();
            let rich = parsed.body_html(0).unwrap_or_default().into_owned();
            prop_assert_eq!(plain.matches("MARK").count(), 1, "{}", out);
            prop_assert_eq!(rich.matches("MARK").count(), 1, "{}", out);
            Ok::<(), TestCaseError>(())
        })?;
    }
}
