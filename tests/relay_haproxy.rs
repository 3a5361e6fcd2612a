//! A real HAProxy (PROXY protocol v2, health checks on `/readyz`) in front of two
//! `sigstamp serve` instances, as in docs/ha.md: every message the client was told 250 for
//! reaches the sink even when one instance is killed mid-load, and `allowed_clients` applies
//! to the real client address the PROXY header carries, not to HAProxy's.

mod serve_support;
mod smtp_support;

use serve_support::{serve_until, Guard};
use sigstamp::smtp::sink::{Sink, SinkOptions};
use sigstamp_testkit::{free_port, require_tool, wait_listening_blocking};
use smtp_support::*;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A bounded load: enough to be in the middle of it when an instance dies.
const MESSAGES: usize = 300;

struct Instance {
    guard: Guard,
    smtp: u16,
    admin: u16,
    log: std::sync::mpsc::Receiver<String>,
}

/// An instance greeting as `name` (so the client knows which one it reached).
fn instance(sink: SocketAddr, name: &str) -> Instance {
    let (smtp, admin) = (free_port(), free_port());
    let config = format!(
        r#"[smtp]
listen = "127.0.0.1:{smtp}"
hostname = "{name}"
next_hop = "{sink}"
allowed_clients = ["127.0.0.2"]
proxy_protocol = true
proxy_trusted = ["127.0.0.1/32"]
drain_time = "2s"

[admin]
listen = "127.0.0.1:{admin}"

[directory]
file = "directory.json"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("directory.json"), DIRECTORY_JSON).unwrap();
    let (guard, _, _, log) = serve_until(
        &config,
        dir,
        &[
            ("SMTP relay listening", "listen"),
            ("admin HTTP listening", "addr"),
        ],
    );
    Instance {
        guard,
        smtp,
        admin,
        log,
    }
}

fn haproxy(front: u16, backends: &[&Instance]) -> (Guard, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "  server s{i} 127.0.0.1:{} send-proxy-v2 check port {} inter 300ms fall 2 rise 2\n",
                b.smtp, b.admin
            )
        })
        .collect();
    let cfg = format!(
        "global
  maxconn 200
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch
frontend smtp
  bind 127.0.0.1:{front}
  default_backend sigstamp
backend sigstamp
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz
  http-check expect status 200
{servers}"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let guard = Guard(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening_blocking(
        format!("127.0.0.1:{front}").parse().unwrap(),
        Duration::from_secs(10),
    )
    .unwrap();
    (guard, dir)
}

/// The client: 4 threads sending concurrently, one connection per message from `127.0.0.2`
/// (HAProxy balances connections), each retrying a message that did not get 250 as an MTA
/// would. After a third of the load, the first session greeted by the victim (`victim.test`)
/// sends MAIL, RCPT, DATA and half the message, then SIGKILLs `victim` in the middle of it
/// (other sessions on it are cut too). Prints the attempts, the Message-ID cut mid-DATA and
/// the Message-IDs that got 250.
fn load(front: u16, victim: u32) -> String {
    format!(
        r#"
import os, signal, smtplib, threading, time
N = {MESSAGES}
lock = threading.Lock()
ok, cut, tries, nxt = [], [], [0], [0]

def take():
    with lock:
        if nxt[0] >= N:
            return None
        nxt[0] += 1
        return nxt[0] - 1

def send(i):
    mid = "<ha-%d@example.com>" % i
    msg = ("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: ha %d\r\nMessage-ID: %s\r\n\r\nbody\r\n" % (i, mid)).encode()
    for attempt in range(50):
        with lock:
            tries[0] += 1
        try:
            s = smtplib.SMTP(timeout=10)
            code, greeting = s.connect("127.0.0.1", {front}, source_address=("127.0.0.2", 0))
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            with lock:
                kill = not cut and len(ok) >= N // 3 and b"victim.test" in greeting
                if kill:
                    cut.append(mid)
            if kill:
                s.ehlo()
                s.mail("alice@example.com")
                s.rcpt("bob@example.org")
                s.putcmd("data")
                s.getreply()
                s.send(msg[: len(msg) // 2])
                os.kill({victim}, signal.SIGKILL)
                s.send(msg[len(msg) // 2 :] + b".\r\n")
                s.getreply()
                raise Exception("the session was cut; retry")
            s.sendmail("alice@example.com", ["bob@example.org"], msg)
            s.quit()
            with lock:
                ok.append(mid)
            return
        except Exception:
            time.sleep(0.1)

def worker():
    while (i := take()) is not None:
        send(i)

threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("tries", tries[0])
print("cut", " ".join(cut))
print("ok", " ".join(ok))
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_proxy_v2_two_instances_one_killed() {
    if !require_tool("haproxy") || !require_tool("python3") {
        return;
    }
    let (sink, mut delivered) = Sink::start("127.0.0.1:0", SinkOptions::default())
        .await
        .unwrap();
    let sink_addr = sink.addr();
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            instance(sink_addr, "victim.test"),
            instance(sink_addr, "survivor.test"),
        )
    })
    .await
    .unwrap();
    let front = free_port();
    let (_haproxy, _dir) = haproxy(front, &[&a, &b]);

    // allowed_clients = 127.0.0.2 only: a client on 127.0.0.1 is refused although HAProxy,
    // the TCP peer, is 127.0.0.1 itself.
    let refused = python_async(format!(
        r#"
import smtplib
try:
    smtplib.SMTP("127.0.0.1", {front}, source_address=("127.0.0.1", 0), timeout=10)
    print("accepted")
except smtplib.SMTPConnectError as e:
    print("refused", e.smtp_code)
"#
    ))
    .await;
    assert_eq!(refused.trim(), "refused 554", "{refused}");
    // A peer outside proxy_trusted (here 127.0.0.2 straight to an instance) is dropped
    // before the greeting.
    let direct = python_async(format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {}), timeout=10, source_address=("127.0.0.2", 0))
print("closed" if s.recv(100) == b"" else "greeted")
"#,
        a.smtp
    ))
    .await;
    assert_eq!(direct.trim(), "closed", "an untrusted peer got a session");

    let out = python_async(load(front, a.guard.0.id())).await;
    let field = |name: &str| -> HashSet<String> {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let (told_250, cut) = (field("ok"), field("cut"));
    eprintln!(
        "haproxy: {} messages, {} attempts, cut mid-DATA: {cut:?}",
        told_250.len(),
        out.lines()
            .find_map(|l| l.strip_prefix("tries "))
            .unwrap_or("?")
    );
    // The kill did land in the middle of a message: that one was retried and got 250.
    assert_eq!(cut.len(), 1, "no session was cut mid-DATA\n{out}");
    assert!(cut.is_subset(&told_250), "{out}");
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !told_250.is_subset(&seen) && tokio::time::Instant::now() < deadline {
        if let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(200), delivered.recv()).await
        {
            let text = String::from_utf8_lossy(&d.message).into_owned();
            let mid = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap_or_default()
                .to_string();
            seen.insert(mid);
        }
    }
    while let Ok(d) = delivered.try_recv() {
        let _ = d;
    }
    let lost: Vec<_> = told_250.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "told 250 but never delivered: {lost:?}\n{out}"
    );
    // The survivor took the load over: every message was eventually accepted.
    assert_eq!(told_250.len(), MESSAGES, "{out}");
    // Its per-message lines name the real client (the PROXY header's), not HAProxy.
    let lines: Vec<String> = b
        .log
        .try_iter()
        .filter(|l| l.contains(" message ") && l.contains("outcome="))
        .collect();
    assert!(!lines.is_empty(), "no message log line");
    assert!(
        lines.iter().all(|l| l.contains("client=127.0.0.2:")),
        "{}",
        lines.join("\n")
    );
    drop(b);
}
