//! The load: C sessions, each one connection reused for message after message: EHLO once,
//! then per message `RSET` (after the first), `MAIL`, `RCPT`, `DATA` written in one go when
//! the server offers PIPELINING, the body after 354. A message's latency runs from writing
//! its MAIL (or, at a fixed rate, from its scheduled start) to the 250 after the data.

use crate::args::Load;
use crate::message::Prepared;
use crate::stats::{new_histogram, record, Measured};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single wait for the server, so a stuck path fails instead of hanging.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Failure reasons kept per run.
const MAX_ERRORS: usize = 5;

/// What to send where.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    pub sessions: u32,
    pub load: Load,
    /// Total messages per second across all sessions; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub messages: Arc<Vec<Prepared>>,
    pub rcpt: String,
}

/// One server reply: its code and the text of its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// The first complete reply at the start of `buf` and the bytes it took, if there is one.
/// Multi-line replies (`250-…`) end at the first line whose fourth byte is not `-`.
pub fn parse_reply(buf: &[u8]) -> Option<(usize, Reply)> {
    let mut pos = 0;
    loop {
        let end = pos + memchr::memchr(b'\n', &buf[pos..])?;
        let line = &buf[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = end + 1;
        if line.get(3) != Some(&b'-') {
            let code = std::str::from_utf8(line.get(..3).unwrap_or(b""))
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let text = String::from_utf8_lossy(line).into_owned();
            return Some((pos, Reply { code, text }));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// One SMTP client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pipelining: bool,
    /// A transaction ran on this connection: the next one starts with RSET.
    used: bool,
    cmds: Vec<u8>,
}

impl Conn {
    /// Connect, read the greeting, EHLO.
    pub async fn open(addr: SocketAddr) -> Result<Conn, SessionError> {
        let stream = timeout(TcpStream::connect(addr)).await??;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: Vec::with_capacity(4096),
            pipelining: false,
            used: false,
            cmds: Vec::with_capacity(256),
        };
        expect(&c.read_reply().await?, 220)?;
        c.stream.write_all(b"EHLO bench.localhost\r\n").await?;
        let ehlo = c.read_raw_reply().await?;
        expect(&ehlo.1, 250)?;
        c.pipelining = ehlo.0.to_ascii_uppercase().contains("PIPELINING");
        Ok(c)
    }

    /// Send one message. `Ok(Err(reply))`: the server refused it, the connection is usable.
    pub async fn send(
        &mut self,
        msg: &Prepared,
        rcpt: &str,
    ) -> Result<Result<(), Reply>, SessionError> {
        let mut steps: Vec<(Vec<u8>, u16)> = Vec::with_capacity(4);
        if self.used {
            steps.push((b"RSET\r\n".to_vec(), 250));
        }
        self.used = true;
        steps.push((format!("MAIL FROM:<{}>\r\n", msg.from).into_bytes(), 250));
        steps.push((format!("RCPT TO:<{rcpt}>\r\n").into_bytes(), 250));
        steps.push((b"DATA\r\n".to_vec(), 354));
        let mut refused: Option<Reply> = None;
        let mut data_open = false;
        if self.pipelining {
            self.cmds.clear();
            for (cmd, _) in &steps {
                self.cmds.extend_from_slice(cmd);
            }
            self.stream.write_all(&self.cmds).await?;
            for (_, want) in &steps {
                let r = self.read_reply().await?;
                data_open = *want == 354 && r.code == 354;
                if r.code != *want && refused.is_none() {
                    refused = Some(r);
                }
            }
        } else {
            for (cmd, want) in &steps {
                self.stream.write_all(cmd).await?;
                let r = self.read_reply().await?;
                data_open = *want == 354 && r.code == 354;
                if r.code != *want {
                    refused = Some(r);
                    break;
                }
            }
        }
        match (refused, data_open) {
            (None, _) => {
                self.stream.write_all(&msg.wire).await?;
                let r = self.read_reply().await?;
                Ok(if r.code == 250 { Ok(()) } else { Err(r) })
            }
            (Some(r), true) => {
                // DATA was accepted although an earlier command failed: end it empty.
                self.stream.write_all(b".\r\n").await?;
                self.read_reply().await?;
                Ok(Err(r))
            }
            (Some(r), false) => Ok(Err(r)),
        }
    }

    pub async fn quit(mut self) {
        if self.stream.write_all(b"QUIT\r\n").await.is_ok() {
            let _ = self.read_reply().await;
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, SessionError> {
        Ok(self.read_raw_reply().await?.1)
    }

    /// The next reply, with all its lines as text (for EHLO's keywords).
    async fn read_raw_reply(&mut self) -> Result<(String, Reply), SessionError> {
        loop {
            if let Some((used, reply)) = parse_reply(&self.buf) {
                let raw = String::from_utf8_lossy(&self.buf[..used]).into_owned();
                self.buf.drain(..used);
                return Ok((raw, reply));
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(self.stream.read(&mut chunk)).await??;
            if n == 0 {
                return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn expect(r: &Reply, code: u16) -> Result<(), SessionError> {
    if r.code == code {
        Ok(())
    } else {
        Err(SessionError::Unexpected(r.text.clone()))
    }
}

async fn timeout<F: std::future::Future>(f: F) -> Result<F::Output, SessionError> {
    tokio::time::timeout(REPLY_TIMEOUT, f)
        .await
        .map_err(|_| SessionError::Timeout)
}

/// Hands out message numbers and, at a fixed rate, their start times.
struct Schedule {
    next: AtomicU64,
    start: Instant,
    load: Load,
    rate: Option<f64>,
}

impl Schedule {
    /// The next message: its number and when it is due; `None` when the run is over.
    fn take(&self) -> Option<(u64, Instant)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let due = match self.rate {
            Some(r) => self.start + Duration::from_secs_f64(i as f64 / r),
            None => Instant::now(),
        };
        let over = match self.load {
            Load::Count(n) => i >= n,
            Load::For(d) => due >= self.start + d,
        };
        (!over).then_some((i, due))
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    bytes: u64,
    errors: Vec<String>,
}

impl Tally {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(why);
        }
    }
}

/// Run `plan`; `done` counts messages as they finish (for a progress bar).
pub async fn run(plan: &Plan, done: Arc<AtomicU64>) -> Measured {
    let schedule = Arc::new(Schedule {
        next: AtomicU64::new(0),
        start: Instant::now(),
        load: plan.load,
        rate: plan.rate,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..plan.sessions {
        let (plan, schedule, done) = (plan.clone(), schedule.clone(), done.clone());
        tasks.spawn(async move { session(&plan, &schedule, &done).await });
    }
    let mut latency = new_histogram();
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        let (h, t) = joined.expect("a session task panicked");
        latency.add(&h).expect("same histogram bounds");
        tally.ok += t.ok;
        tally.bytes += t.bytes;
        tally.failed += t.failed;
        for e in t.errors {
            if tally.errors.len() < MAX_ERRORS {
                tally.errors.push(e);
            }
        }
    }
    Measured {
        ok: tally.ok,
        failed: tally.failed,
        bytes: tally.bytes,
        elapsed: schedule.start.elapsed(),
        latency,
        errors: tally.errors,
    }
}

async fn session(plan: &Plan, schedule: &Schedule, done: &AtomicU64) -> (Histogram<u64>, Tally) {
    let mut hist = new_histogram();
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    while let Some((i, due)) = schedule.take() {
        let msg = &plan.messages[(i % plan.messages.len() as u64) as usize];
        if plan.rate.is_some() {
            tokio::time::sleep_until(due.into()).await;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(plan.target).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    // The path is down: this session stops rather than spinning.
                    tally.fail(format!("connect: {e}"));
                    done.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            },
        };
        let started = if plan.rate.is_some() {
            due
        } else {
            Instant::now()
        };
        match c.send(msg, &plan.rcpt).await {
            Ok(Ok(())) => {
                record(&mut hist, started.elapsed());
                tally.ok += 1;
                tally.bytes += msg.size;
            }
            Ok(Err(r)) => tally.fail(r.text),
            Err(e) => {
                tally.fail(e.to_string());
                conn = None;
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(c) = conn {
        c.quit().await;
    }
    (hist, tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_single_and_multi_line() {
        assert_eq!(parse_reply(b"250 ok\r\n").unwrap().0, 8);
        assert_eq!(parse_reply(b"250 ok\r\n").unwrap().1.code, 250);
        let ehlo = b"250-sink\r\n250-PIPELINING\r\n250 SIZE 10\r\n354 go\r\n";
        let (used, r) = parse_reply(ehlo).unwrap();
        assert_eq!((used, r.code, r.text.as_str()), (39, 250, "250 SIZE 10"));
        assert_eq!(parse_reply(&ehlo[used..]).unwrap().1.code, 354);
        assert_eq!(parse_reply(b"250-partial\r\n250 no end"), None);
        assert_eq!(parse_reply(b"221\n").unwrap().1.code, 221);
        assert_eq!(parse_reply(b"garbage\r\n").unwrap().1.code, 0);
    }

    #[test]
    fn schedule_counts_and_paces() {
        let s = Schedule {
            next: AtomicU64::new(0),
            start: Instant::now(),
            load: Load::Count(3),
            rate: Some(100.0),
        };
        let due: Vec<_> = std::iter::from_fn(|| s.take()).collect();
        assert_eq!(due.len(), 3);
        assert_eq!(due[2].1 - due[0].1, Duration::from_millis(20));
        let s = Schedule {
            next: AtomicU64::new(0),
            start: Instant::now(),
            load: Load::For(Duration::from_secs(2)),
            rate: Some(10.0),
        };
        assert_eq!(std::iter::from_fn(|| s.take()).count(), 20);
    }
}
