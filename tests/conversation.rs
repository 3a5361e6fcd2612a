//! Signatures that know the conversation, through the real `sigstamp serve` over SMTP on
//! loopback: a thread's second reply with `once_per_thread` passes unchanged, the first gets
//! the short signature and the disclaimer at the very bottom, out-of-office replies are
//! stamped with `[stamp] auto_replies`, bounces and other automatic mail are not; and
//! `sigstamp stamp --config` on the same file gives the bytes the relay delivered.

mod serve_support;
mod smtp_support;

use sigstamp::smtp::sink::{Delivered, Sink, SinkOptions};
use smtp_support::RawClient;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

const JOSE: &str = "jose.mueller@lumen-optics.example";
const BOB: &str = "bob@harbor.example";

fn config(sink: SocketAddr) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    format!(
        r#"
[smtp]
listen = "127.0.0.1:0"
next_hop = "{sink}"

[admin]
listen = "127.0.0.1:0"

[directory]
file = "{dir}"

[templates]
dir = "{templates}"
default = "full"

[stamp]
auto_replies = true

[recipients]
internal_domains = ["lumen-optics.example"]

[[rules]]
name = "away"
message = "auto-reply"
template = "short"

[[rules]]
name = "first reply"
message = "reply"
once_per_thread = true
template = "short-legal"

[[rules]]
name = "later replies"
message = "reply"
template = "none"
"#,
        dir = root.join("examples/directory.json").display(),
        templates = root.join("examples/templates-conversation").display(),
    )
}

async fn send(relay: SocketAddr, from: &str, to: &str, message: &str) {
    let mut c = RawClient::connect(relay).await.unwrap();
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    assert!(c
        .cmd(&format!("MAIL FROM:<{from}>"))
        .await
        .starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{to}>")).await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(message).await;
    let end = c.cmd(".").await;
    assert!(end.starts_with("250"), "{end}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Delivered>) -> Delivered {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery")
        .expect("the sink runs")
}

/// `sigstamp stamp --config FILE --to ADDR` on `message`: (stdout, stderr).
fn cli_stamp(config: &Path, to: &str, message: &[u8]) -> (Vec<u8>, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .args(["stamp", "--config", config.to_str().unwrap(), "--to", to])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn text_body(message: &[u8]) -> String {
    let m = mail_parser::MessageParser::new().parse(message).unwrap();
    m.body_text(0).unwrap().into_owned()
}

fn quote(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                ">\r\n".to_string()
            } else {
                format!("> {l}\r\n")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_carries_the_signature_once() {
    let (sink, mut delivered) = Sink::start("127.0.0.1:0", SinkOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sigstamp.toml");
    let cfg = config(sink.addr());
    let (_guard, addr, _log) = tokio::task::spawn_blocking(move || {
        serve_support::serve(&cfg, dir, "SMTP relay listening", "listen")
    })
    .await
    .unwrap();
    let relay: SocketAddr = addr.parse().unwrap();

    // José's first reply: the short signature above the quote, the disclaimer below it.
    let first = format!(
        "From: José Müller <{JOSE}>\r\nTo: {BOB}\r\nSubject: Re: Review\r\n\
         Message-ID: <r1@lumen-optics.example>\r\nIn-Reply-To: <m0@harbor.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\nThursday works.\r\n\r\n\
         On Mon, Bob <{BOB}> wrote:\r\n> Can we meet this week?\r\n"
    );
    send(relay, JOSE, BOB, &first).await;
    let d1 = next(&mut delivered).await;
    let body = text_body(&d1.message);
    let (sig, disclaimer, quote_at) = (
        body.find("José Müller | +49 30 1234 5670").expect(&body),
        body.find("this message and any attachment are")
            .expect(&body),
        body.find("> Can we meet").expect(&body),
    );
    assert!(sig < quote_at && quote_at < disclaimer, "{body}");

    // The CLI on the same config and message gives the very bytes the relay delivered.
    let (out, err) = cli_stamp(&config_path, BOB, first.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&d1.message)
    );
    assert_eq!(out, d1.message);
    assert!(
        err.contains("template short-legal; chosen by rule first reply"),
        "{err}"
    );

    // Bob answers, quoting José's stamped reply; José answers again: the thread already
    // holds his signature, so `later replies` decides (no signature) and the message passes
    // unchanged, byte for byte.
    let second = format!(
        "From: José Müller <{JOSE}>\r\nTo: {BOB}\r\nSubject: Re: Review\r\n\
         Message-ID: <r2@lumen-optics.example>\r\nIn-Reply-To: <m2@harbor.example>\r\n\
         References: <m0@harbor.example> <r1@lumen-optics.example> <m2@harbor.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\nSee you then.\r\n\r\n\
         On Tue, Bob <{BOB}> wrote:\r\n{}",
        quote(&format!(
            "Great, Thursday it is.\n\nOn Mon, José wrote:\n{}",
            quote(&body).replace("\r\n", "\n")
        ))
    );
    send(relay, JOSE, BOB, &second).await;
    let d2 = next(&mut delivered).await;
    assert_eq!(String::from_utf8_lossy(&d2.message), second, "unchanged");
    let (out, err) = cli_stamp(&config_path, BOB, second.as_bytes());
    assert_eq!(out, second.as_bytes());
    assert!(
        err.contains("no_signature") && err.contains("chosen by rule later replies"),
        "{err}"
    );

    // Out of office: stamped (`away`), once. Auto-generated mail and a bounce-style null
    // sender pass unchanged.
    let ooo = |value: &str| {
        format!(
            "From: {JOSE}\r\nTo: {BOB}\r\nSubject: Automatic reply: Review\r\n\
             Auto-Submitted: {value}\r\nIn-Reply-To: <m3@harbor.example>\r\n\r\n\
             I am away until Monday.\r\n"
        )
    };
    send(relay, JOSE, BOB, &ooo("auto-replied")).await;
    let d3 = next(&mut delivered).await;
    let m = String::from_utf8_lossy(&d3.message).into_owned();
    assert!(m.starts_with("X-Sigstamp: stamped\r\n"), "{m}");
    assert_eq!(m.matches("X-Sigstamp").count(), 1, "{m}");
    assert_eq!(
        text_body(&d3.message),
        "I am away until Monday.\r\n\r\n-- \r\nJosé Müller | +49 30 1234 5670\r\n",
        "{m}"
    );
    for (from, value) in [(JOSE, "auto-generated"), ("", "auto-replied")] {
        send(relay, from, BOB, &ooo(value)).await;
        let d = next(&mut delivered).await;
        assert_eq!(
            String::from_utf8_lossy(&d.message),
            ooo(value),
            "{from:?} {value}"
        );
    }

    // The preview says which rule would choose for a reply to an outsider.
    let out = Command::new(env!("CARGO_BIN_EXE_sigstamp"))
        .args([
            "preview",
            JOSE,
            "--config",
            config_path.to_str().unwrap(),
            "--reply",
            "--to",
            BOB,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("template short-legal (chosen by rule first reply) for a reply message to external recipients"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("==> Text (template short-legal, bottom part)"),
        "{stdout}"
    );
}
