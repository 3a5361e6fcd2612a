//! The SMTP sink of the tests: sigstamp's own sink (`sigstamp::smtp::sink`, the next hop of
//! `sigstamp demo` and of the bench), keeping what it accepts for the test to look at.

use sigstamp::smtp::replies::Reply;
use sigstamp::smtp::sink::{Policy, SinkOptions, Stage};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    /// The reverse-path without brackets (`""` for `<>`).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message, dot-unstuffed, with its final CRLF.
    pub data: Vec<u8>,
}

/// A running sink on loopback; stops when dropped. Every message is accepted unless
/// [`RecordingSink::fail`] is set, and kept before the sink answers 250, so it is there as soon as
/// the sender has its reply.
pub struct RecordingSink {
    pub addr: SocketAddr,
    /// While true, the end of each message is answered `451 4.3.0` and nothing is kept.
    pub fail: Arc<AtomicBool>,
    messages: Arc<Mutex<Vec<Received>>>,
    _sink: sigstamp::smtp::sink::Sink,
}

impl RecordingSink {
    /// A sink on 127.0.0.1, any port.
    pub async fn start() -> RecordingSink {
        RecordingSink::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// A sink on `addr` (e.g. one a test gave out before anything listened there).
    pub async fn start_on(addr: SocketAddr) -> RecordingSink {
        let messages: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail: Arc<AtomicBool> = Arc::default();
        let (keep, failing) = (messages.clone(), fail.clone());
        let policy: Policy = Arc::new(move |stage| {
            let Stage::Data(d) = stage else { return None };
            if failing.load(Ordering::SeqCst) {
                return Some(Reply::new(451, "4.3.0 sink says try later"));
            }
            keep.lock().unwrap().push(Received {
                mail_from: d.mail_from.clone(),
                rcpt_to: d.rcpts.iter().map(|(r, _)| r.clone()).collect(),
                data: d.message.clone(),
            });
            None
        });
        let opts = SinkOptions {
            tls: None,
            policy: Some(policy),
        };
        let (sink, _channel) = sigstamp::smtp::sink::Sink::start(&addr.to_string(), opts)
            .await
            .unwrap_or_else(|e| panic!("sink on {addr}: {e}"));
        RecordingSink {
            addr: sink.addr(),
            fail,
            messages,
            _sink: sink,
        }
    }

    /// How many messages arrived so far.
    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// Every message so far, in order (they stay).
    pub fn all(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Every message so far, in order, removing them.
    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.messages.lock().unwrap())
    }

    /// Wait (polling, bounded) until `n` messages arrived; returns and removes them. Panics
    /// when they do not arrive `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.count() >= n {
                return self.take();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("expected {n} delivered message(s), got {}", self.count());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Received {
    /// The message as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header `name` (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_string());
                }
            }
        }
        found
    }

    /// The body, with quoted-printable undone (lettre picks it for long lines).
    pub fn body(&self) -> String {
        let text = self.text();
        let raw = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        let qp = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("quoted-printable"));
        if !qp {
            return raw.to_string();
        }
        let raw = raw.replace("=\r\n", "");
        let b = raw.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) if b[i] == b'=' => {
                    out.push(byte);
                    i += 3;
                }
                _ => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
