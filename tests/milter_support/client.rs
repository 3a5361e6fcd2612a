//! A raw milter client (the MTA side), written against the protocol itself so tests can
//! also send what no real MTA would.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What Postfix 3.x offers: protocol 6, every action, every protocol flag.
pub const POSTFIX_ACTIONS: u32 = 0x1ff;
pub const POSTFIX_PROTOCOL: u32 = 0x1f_ffff;

pub const NR_ALL: u32 = 0x000f_f080;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One reply from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u8,
    pub data: Vec<u8>,
}

impl Reply {
    /// Is this a final decision for the current event (not a modification)?
    pub fn is_action(&self) -> bool {
        matches!(self.code, b'a' | b'c' | b't' | b'r' | b'd' | b'y' | b's')
    }
}

pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to milter");
        Client { stream }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, code: u8, payload: &[u8]) {
        let mut p = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(code);
        p.extend_from_slice(payload);
        self.send_raw(&p).await;
    }

    /// The next reply, or `None` when the milter closed the connection.
    pub async fn read(&mut self) -> Option<Reply> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut len)).await {
            Err(_) => panic!("no reply from the milter within {TIMEOUT:?}"),
            Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
        }
        let len = u32::from_be_bytes(len) as usize;
        assert!(len >= 1, "empty reply packet");
        let mut buf = vec![0u8; len];
        tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut buf))
            .await
            .expect("reply timed out")
            .expect("reply truncated");
        Some(Reply {
            code: buf[0],
            data: buf[1..].to_vec(),
        })
    }

    pub async fn reply(&mut self) -> Reply {
        self.read().await.expect("milter closed the connection")
    }

    /// Asserts the milter closes the connection (without replying first).
    pub async fn expect_closed(&mut self) {
        let mut b = [0u8; 1];
        match tokio::time::timeout(TIMEOUT, self.stream.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("milter answered instead of closing: {:?}", b[0] as char),
            Err(_) => panic!("milter kept the connection open"),
        }
    }

    /// Option negotiation; returns (version, actions, protocol) as the milter answered.
    pub async fn negotiate(
        &mut self,
        version: u32,
        actions: u32,
        protocol: u32,
    ) -> (u32, u32, u32) {
        let mut p = version.to_be_bytes().to_vec();
        p.extend_from_slice(&actions.to_be_bytes());
        p.extend_from_slice(&protocol.to_be_bytes());
        self.send(b'O', &p).await;
        let r = self.reply().await;
        assert_eq!(r.code, b'O', "expected an OPTNEG reply, got {r:?}");
        assert!(r.data.len() >= 12);
        let word = |i: usize| u32::from_be_bytes(r.data[i..i + 4].try_into().unwrap());
        (word(0), word(4), word(8))
    }

    /// Connect and negotiate like Postfix 3.x does.
    pub async fn like_postfix(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        let (_, _, protocol) = c.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
        assert_eq!(protocol & NR_ALL, NR_ALL, "no-reply flags negotiated");
        c
    }

    /// Send one whole message the way Postfix does with no-reply flags negotiated:
    /// macros, MAIL, RCPT, each header, body chunks of at most 65535 bytes, end of body.
    /// Returns every reply up to and including the final action.
    pub async fn message_nr(&mut self, mail_from: &str, rcpts: &[&str], raw: &[u8]) -> Vec<Reply> {
        self.envelope(mail_from, rcpts).await;
        self.content(raw, 65535).await;
        self.send(b'E', b"").await;
        self.replies().await
    }

    pub async fn envelope(&mut self, mail_from: &str, rcpts: &[&str]) {
        let mut m = b"M".to_vec();
        m.extend_from_slice(b"{mail_addr}\0");
        m.extend_from_slice(mail_from.as_bytes());
        m.push(0);
        self.send(b'D', &m).await;
        self.send(b'M', &nul(&[&format!("<{mail_from}>"), "SIZE=100"]))
            .await;
        for r in rcpts {
            self.send(b'R', &nul(&[&format!("<{r}>")])).await;
        }
    }

    /// Headers (as Postfix sends them with SMFIP_HDR_LEADSPC: value after the colon,
    /// folded lines joined by bare LF) and the body in chunks.
    pub async fn content(&mut self, raw: &[u8], chunk: usize) {
        for (name, value) in headers_for_milter(raw) {
            let mut p = name.clone();
            p.push(0);
            p.extend_from_slice(&value);
            p.push(0);
            self.send(b'L', &p).await;
        }
        let body = body_of(raw);
        for c in body.chunks(chunk) {
            self.send(b'B', c).await;
        }
    }

    /// Replies up to and including the first action.
    pub async fn replies(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        loop {
            let r = self.reply().await;
            let done = r.is_action();
            out.push(r);
            if done {
                return out;
            }
        }
    }
}

fn nul(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

/// Split a CRLF message into (name, value) pairs the way Postfix hands them to a milter
/// that asked for SMFIP_HDR_LEADSPC.
pub fn headers_for_milter(raw: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = &raw[..header_end(raw)];
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            let last = out.last_mut().expect("continuation first");
            last.1.push(b'\n');
            last.1.extend_from_slice(line);
        } else {
            let c = line.iter().position(|&b| b == b':').expect("header colon");
            out.push((line[..c].to_vec(), line[c + 1..].to_vec()));
        }
    }
    out
}

fn header_end(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .expect("header/body separator")
}

pub fn body_of(raw: &[u8]) -> &[u8] {
    &raw[header_end(raw) + 2..]
}

/// Apply the milter's modifications to `raw` as an MTA would (with HDR_LEADSPC), giving
/// the message it would deliver.
pub fn apply(raw: &[u8], replies: &[Reply]) -> Vec<u8> {
    let mut headers = headers_for_milter(raw);
    let mut body: Option<Vec<u8>> = None;
    for r in replies {
        let d = &r.data;
        match r.code {
            b'i' => {
                let index = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
                let (n, v) = two_strings(&d[4..]);
                headers.insert(index.min(headers.len()), (n, v));
            }
            b'h' => {
                let (n, v) = two_strings(d);
                headers.push((n, v));
            }
            b'm' => {
                let index = u32::from_be_bytes(d[..4].try_into().unwrap()).max(1) as usize;
                let (n, v) = two_strings(&d[4..]);
                let pos = headers
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.0.eq_ignore_ascii_case(&n))
                    .nth(index - 1)
                    .map(|(i, _)| i);
                match (pos, v.is_empty()) {
                    (Some(i), true) => {
                        headers.remove(i);
                    }
                    (Some(i), false) => headers[i].1 = v,
                    (None, false) => headers.push((n, v)),
                    (None, true) => {}
                }
            }
            b'b' => body.get_or_insert_with(Vec::new).extend_from_slice(d),
            b'c' | b'a' => {}
            other => panic!("unexpected reply {:?}", other as char),
        }
    }
    let mut out = Vec::new();
    for (n, v) in headers {
        out.extend_from_slice(&n);
        out.push(b':');
        for &b in &v {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_deref().unwrap_or(body_of(raw)));
    out
}

fn two_strings(d: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = d.iter().position(|&b| b == 0).expect("name NUL");
    let rest = &d[n + 1..];
    let v = rest.iter().position(|&b| b == 0).expect("value NUL");
    assert_eq!(v + 1, rest.len(), "bytes after the value");
    (d[..n].to_vec(), rest[..v].to_vec())
}
