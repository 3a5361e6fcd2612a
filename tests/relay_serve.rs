//! The real binary: `sigstamp serve` with a bad config, and SIGTERM with sessions in flight.

mod serve_support;
mod smtp_support;

use serve_support::Guard;
use sigstamp::smtp::sink::SinkOptions;
use smtp_support::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn sigstamp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sigstamp"))
}

/// Start `sigstamp serve` and read the relay's address from its log.
fn serve(config: &str) -> (Guard, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (guard, addr, rx) = serve_support::serve(config, dir, "SMTP relay listening", "listen");
    (guard, addr.parse().unwrap(), rx)
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:25\"\nallowed_clients = [\"everyone\"]\n",
    )
    .unwrap();
    let out = sigstamp()
        .args(["serve", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("smtp.allowed_clients"), "{err}");

    std::fs::write(
        &path,
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:25\"\nmax_sesions = 3\n",
    )
    .unwrap();
    let out = sigstamp()
        .args(["serve", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_sesions"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sessions_in_flight_and_exits_0() {
    let (sink, mut delivered) =
        sigstamp::smtp::sink::Sink::start("127.0.0.1:0", SinkOptions::default())
            .await
            .unwrap();
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{}\"\ndrain_time = \"20s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        sink.addr()
    );
    let (mut guard, addr, _log) = tokio::task::spawn_blocking(move || serve(&config))
        .await
        .unwrap();

    // A session in the middle of DATA, and an idle one.
    let mut busy = RawClient::connect(addr).await.unwrap();
    assert!(busy.reply().await.starts_with("220 "));
    for line in [
        "EHLO c.test",
        "MAIL FROM:<alice@example.com>",
        "RCPT TO:<bob@example.org>",
    ] {
        assert!(busy.cmd(line).await.starts_with("250"), "{line}");
    }
    assert!(busy.cmd("DATA").await.starts_with("354"));
    busy.send("Subject: in flight\r\n\r\nfirst half\r\n").await;
    let mut idle = RawClient::connect(addr).await.unwrap();
    assert!(idle.reply().await.starts_with("220 "));
    assert!(idle.cmd("EHLO c.test").await.starts_with("250"));

    let pid = guard.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    // The idle session is told to come back later.
    let bye = idle.reply().await;
    assert!(bye.starts_with("421 4.3.2"), "{bye}");
    // The listener stops accepting.
    let deadline = Instant::now() + Duration::from_secs(10);
    while RawClient::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The busy session finishes its message.
    busy.send("second half\r\n").await;
    let done = busy.cmd(".").await;
    assert!(done.starts_with("250"), "{done}");
    let next = busy.cmd("MAIL FROM:<alice@example.com>").await;
    assert!(next.starts_with("421 4.3.2"), "{next}");

    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = guard.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sigstamp did not exit after draining"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
    let d = delivered.recv().await.unwrap();
    assert!(String::from_utf8_lossy(&d.message).ends_with("first half\r\nsecond half\r\n"));
    assert!(delivered.try_recv().is_err(), "delivered exactly once");
}

#[test]
fn example_config_smtp_section_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sigstamp.example.toml"
    ))
    .unwrap();
    let value: toml::Table = toml::from_str(&text).unwrap();
    let smtp: sigstamp::smtp::SmtpConfig = value["smtp"].clone().try_into().unwrap();
    smtp.validate().unwrap();
    assert_eq!(smtp.listen, "127.0.0.1:2525");
    let dir = value["directory"]["file"].as_str().unwrap();
    assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .is_file());
}

#[test]
fn demo_runs_with_no_setup_and_writes_a_stamped_message() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("delivered.eml");
    let out = sigstamp()
        .args(["demo", "--out", out_file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&out_file.display().to_string()), "{stdout}");
    assert!(stdout.contains("stamped for"), "{stdout}");
    let delivered = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        delivered.starts_with("X-Sigstamp: stamped\r\n"),
        "{delivered}"
    );
}

/// `[log] format`: one line per message with its session, client, sender, recipient count,
/// size, outcome, stamp, template, rule, next-hop reply and time, as text and as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_log_line_per_message_in_text_and_json() {
    use std::io::BufRead;
    let sink = sigstamp_testkit::RecordingSink::start().await;
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sigstamp.toml");
        std::fs::write(
            &path,
            format!(
                "[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"{}\"\nnext_hop_tls = \"none\"\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\n\
                 [directory]\nfile = \"{}/examples/directory.json\"\n\
                 [log]\nformat = \"{format}\"\n\
                 [[rules]]\nname = \"emea\"\nsender_domain = \"lumen-optics.example\"\ntemplate = \"default\"\n",
                sink.addr,
                env!("CARGO_MANIFEST_DIR")
            ),
        )
        .unwrap();
        let mut guard = Guard(
            sigstamp()
                .args(["serve", "--config", path.to_str().unwrap()])
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let stderr = guard.0.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        let next = |what: &str| loop {
            let l = lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("{format}: a log line with {what}"));
            if l.contains(what) {
                return l;
            }
        };
        let listening = next("SMTP relay listening");
        let addr: SocketAddr = if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&listening).unwrap();
            v["listen"].as_str().unwrap().parse().unwrap()
        } else {
            listening
                .split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
                .unwrap()
                .parse()
                .unwrap()
        };
        let mut c = RawClient::connect(addr).await.unwrap();
        assert!(c.reply().await.starts_with("220"));
        for line in [
            "EHLO c.test",
            "MAIL FROM:<jose.mueller@lumen-optics.example>",
            "RCPT TO:<a@example.org>",
            "RCPT TO:<b@example.org>",
            "DATA",
        ] {
            assert!(c.cmd(line).await.starts_with(['2', '3']), "{line}");
        }
        let body = "From: <jose.mueller@lumen-optics.example>\r\nSubject: log\r\n\r\nHi.\r\n";
        assert!(c.cmd(&format!("{body}.")).await.starts_with("250"));
        let line = next("jose.mueller@lumen-optics.example");
        let fields: std::collections::HashMap<String, String> = if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["level"], "INFO", "{line}");
            assert_eq!(v["message"], "message", "{line}");
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
                .collect()
        } else {
            assert!(
                line.contains(" INFO ") && line.contains(": message "),
                "{line}"
            );
            // key=value; `reply` comes last and takes the rest of the line.
            let rest = line.split_once(": message ").unwrap().1;
            let (fields, reply) = rest.split_once(" reply=").unwrap();
            let mut out: std::collections::HashMap<String, String> = fields
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            out.insert("reply".into(), reply.to_string());
            out
        };
        let f = |k: &str| {
            fields
                .get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{format}: {k} in {line}"))
        };
        assert_eq!(f("session").len(), 10, "{line}");
        assert!(f("client").starts_with("127.0.0.1:"), "{line}");
        assert_eq!(f("from"), "jose.mueller@lumen-optics.example");
        assert_eq!(f("rcpts"), "2");
        assert_eq!(f("size"), body.len().to_string());
        assert_eq!(f("outcome"), "sent");
        assert_eq!(f("stamp"), "stamped");
        assert_eq!(f("template"), "default");
        assert_eq!(f("rule"), "emea");
        assert!(f("reply").starts_with("250"), "{line}");
        assert!(f("time_ms").parse::<u64>().is_ok(), "{line}");
        let _ = c.cmd("QUIT").await;
    }
}
