//! A minimal SMTP sink on loopback: accepts every message and keeps it (dot-unstuffed).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Delivered {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub messages: Arc<Mutex<Vec<Delivered>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let store = messages.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(s, store).await;
                });
            }
        });
        Sink {
            addr,
            messages,
            task,
        }
    }

    pub fn take(&self) -> Vec<Delivered> {
        std::mem::take(&mut *self.messages.lock().unwrap())
    }

    /// Wait (polling, bounded) until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize, within: std::time::Duration) -> Vec<Delivered> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.messages.lock().unwrap().len() >= n {
                return self.take();
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "expected {n} delivered message(s), got {}",
                    self.messages.lock().unwrap().len()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn session(
    s: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Delivered>>>,
) -> std::io::Result<()> {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    let mut cur = Delivered {
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        data: Vec::new(),
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            cur.mail_from = addr(&cmd[10..]);
            w.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            cur.rcpt_to.push(addr(&cmd[8..]));
            w.write_all(b"250 ok\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 go\r\n").await?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                let l = if line.starts_with(b"..") {
                    &line[1..]
                } else {
                    &line[..]
                };
                data.extend_from_slice(l);
            }
            cur.data = data;
            store.lock().unwrap().push(std::mem::replace(
                &mut cur,
                Delivered {
                    mail_from: String::new(),
                    rcpt_to: Vec::new(),
                    data: Vec::new(),
                },
            ));
            w.write_all(b"250 queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            // RSET, NOOP, anything else.
            w.write_all(b"250 ok\r\n").await?;
        }
    }
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let end = s.find('>').map_or(s.len(), |i| i + 1);
    s[..end]
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}
