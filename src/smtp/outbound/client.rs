//! The SMTP client connection to the next hop: replies read with smtp-proto's parser, the
//! EHLO offer, STARTTLS, and every read and write under a timeout.
//!
//! Written here rather than over lettre: lettre's `AsyncSmtpConnection` sends one command
//! and waits for its reply (no RFC 2920 pipelining), has no BDAT, and keeps only the EHLO
//! keywords it knows (no XFORWARD). lettre stays for the notification mail.

use super::HopError;
use crate::smtp::replies::Reply;
use smtp_proto::response::parser::ResponseReceiver;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Any byte stream: TCP, TLS over TCP, or an in-memory pipe in tests.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Most lines one reply may have (a hostile next hop cannot grow memory without bound;
/// smtp-proto bounds the bytes of the whole reply at 4 KiB).
const MAX_REPLY_LINES: usize = 100;

/// What the next hop offered in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    pub pipelining: bool,
    pub chunking: bool,
    pub starttls: bool,
    /// The attribute names after `XFORWARD`, upper-cased; `None`: not offered.
    pub xforward: Option<Vec<String>>,
}

impl Offer {
    /// From the lines of a 250 EHLO reply (the first is the greeting name).
    pub fn parse(lines: &[String]) -> Offer {
        let mut offer = Offer::default();
        for line in lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => offer.pipelining = true,
                "CHUNKING" => offer.chunking = true,
                "STARTTLS" => offer.starttls = true,
                "XFORWARD" => {
                    offer.xforward = Some(words.map(str::to_ascii_uppercase).collect());
                }
                _ => {}
            }
        }
        offer
    }
}

/// One connection: the stream, the bytes read but not yet parsed, the offer.
pub struct Conn {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    /// Where the unparsed bytes of `buf` start.
    pos: usize,
    pub offer: Offer,
    /// Per command (connect, reply, write).
    pub timeout: Duration,
    pub encrypted: bool,
    /// A read or write failed or timed out: nothing more may be sent.
    pub broken: bool,
}

impl Conn {
    /// Read the greeting and say EHLO (HELO when EHLO is refused). The greeting's refusal is
    /// a connect failure carrying the next hop's words.
    pub async fn open(
        io: Box<dyn Stream>,
        helo: &str,
        timeout: Duration,
    ) -> Result<Conn, HopError> {
        let mut conn = Conn {
            io,
            buf: Vec::with_capacity(4096),
            pos: 0,
            offer: Offer::default(),
            timeout,
            encrypted: false,
            broken: false,
        };
        let greeting = conn.reply(timeout).await?;
        if greeting.code != 220 {
            return Err(HopError::Connect(format!("greeting: {greeting}")));
        }
        conn.ehlo(helo).await?;
        Ok(conn)
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), HopError> {
        let ehlo = self.command(&format!("EHLO {helo}\r\n")).await?;
        if ehlo.code == 250 {
            self.offer = Offer::parse(&ehlo.lines);
            return Ok(());
        }
        let hello = self.command(&format!("HELO {helo}\r\n")).await?;
        if hello.code != 250 {
            return Err(HopError::Connect(format!("EHLO/HELO refused: {hello}")));
        }
        self.offer = Offer::default();
        Ok(())
    }

    /// STARTTLS, the handshake, and EHLO again (RFC 3207: the offer may change).
    pub async fn starttls(
        mut self,
        config: Arc<rustls::ClientConfig>,
        name: rustls_pki_types::ServerName<'static>,
        helo: &str,
    ) -> Result<Conn, HopError> {
        let reply = self.command("STARTTLS\r\n").await?;
        if reply.code != 220 {
            return Err(HopError::Tls(format!("STARTTLS refused: {reply}")));
        }
        if self.pos < self.buf.len() {
            // Bytes after the 220 were sent before the handshake: never trust them.
            return Err(HopError::Tls("data after the STARTTLS reply".into()));
        }
        let connector = tokio_rustls::TlsConnector::from(config);
        let handshake = connector.connect(name, self.io);
        let tls = match tokio::time::timeout(self.timeout, handshake).await {
            Err(_) => return Err(HopError::Timeout),
            Ok(Err(e)) => return Err(HopError::Tls(e.to_string())),
            Ok(Ok(tls)) => tls,
        };
        let mut conn = Conn {
            io: Box::new(tls),
            buf: Vec::with_capacity(4096),
            pos: 0,
            offer: Offer::default(),
            timeout: self.timeout,
            encrypted: true,
            broken: false,
        };
        conn.ehlo(helo).await?;
        Ok(conn)
    }

    /// Send `line` and read its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, HopError> {
        self.send(line.as_bytes(), self.timeout).await?;
        self.reply(self.timeout).await
    }

    /// Write all of `bytes` (and flush), within `timeout`.
    pub async fn send(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), HopError> {
        self.usable()?;
        let write = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Err(_) => Err(self.fail(HopError::Timeout)),
            Ok(Err(e)) => Err(self.fail(HopError::Network(e.to_string()))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The next reply, all its lines, within `timeout`. A connection closed or a reply
    /// that does not parse leaves the connection broken.
    pub async fn reply(&mut self, timeout: Duration) -> Result<Reply, HopError> {
        self.usable()?;
        match tokio::time::timeout(timeout, self.read_reply()).await {
            Err(_) => Err(self.fail(HopError::Timeout)),
            Ok(Err(e)) => Err(self.fail(e)),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, HopError> {
        let mut receiver = ResponseReceiver::default();
        loop {
            let mut it = self.buf[self.pos..].iter();
            let parsed = receiver.parse(&mut it);
            self.pos = self.buf.len() - it.as_slice().len();
            match parsed {
                Ok(response) => {
                    if self.pos == self.buf.len() {
                        self.buf.clear();
                        self.pos = 0;
                    }
                    return reply_from(response);
                }
                Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                Err(e) => {
                    return Err(HopError::Network(format!("unreadable reply: {e:?}")));
                }
            }
            // Everything so far was consumed by the receiver (it keeps its own state).
            self.buf.clear();
            self.pos = 0;
            self.buf.reserve(4096);
            let n = self
                .io
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| HopError::Network(e.to_string()))?;
            if n == 0 {
                return Err(HopError::Network(
                    "connection closed by the next hop".into(),
                ));
            }
        }
    }

    fn usable(&self) -> Result<(), HopError> {
        if self.broken {
            Err(HopError::Network("connection already failed".into()))
        } else {
            Ok(())
        }
    }

    fn fail(&mut self, e: HopError) -> HopError {
        self.broken = true;
        e
    }

    /// QUIT, bounded by the timeout; errors do not matter any more.
    pub async fn quit(mut self) {
        if !self.broken {
            let _ = self.command("QUIT\r\n").await;
            let _ = tokio::time::timeout(self.timeout, self.io.shutdown()).await;
        }
    }
}

/// smtp-proto's response as a [`Reply`]: one entry per line, the enhanced status code (which
/// the parser takes off) put back in front of each line as the next hop sent it.
fn reply_from(r: smtp_proto::Response<String>) -> Result<Reply, HopError> {
    if !(200..600).contains(&r.code) {
        return Err(HopError::Network(format!(
            "reply code {} out of range",
            r.code
        )));
    }
    let esc = (r.esc != [0, 0, 0]).then(|| format!("{}.{}.{}", r.esc[0], r.esc[1], r.esc[2]));
    let lines: Vec<String> = r
        .message
        .split('\n')
        .take(MAX_REPLY_LINES)
        .map(|l| {
            let l = l.trim_end_matches('\r');
            match &esc {
                Some(esc) if l.is_empty() => esc.clone(),
                Some(esc) => format!("{esc} {l}"),
                None => l.to_string(),
            }
        })
        .collect();
    Ok(Reply {
        code: r.code,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conn_reading(server_bytes: &'static [u8]) -> Conn {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            server.write_all(server_bytes).await.unwrap();
            let mut sink = Vec::new();
            let _ = server.read_to_end(&mut sink).await;
        });
        Conn {
            io: Box::new(client),
            buf: Vec::new(),
            pos: 0,
            offer: Offer::default(),
            timeout: Duration::from_secs(5),
            encrypted: false,
            broken: false,
        }
    }

    #[tokio::test]
    async fn replies_table() {
        let table: &[(&[u8], u16, &[&str])] = &[
            (b"250 2.1.0 Ok\r\n", 250, &["2.1.0 Ok"]),
            (b"250 Ok\r\n", 250, &["Ok"]),
            (
                b"550-5.1.1 <x@y>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n",
                550,
                &[
                    "5.1.1 <x@y>: Recipient address rejected:",
                    "5.1.1 User unknown",
                ],
            ),
            (b"451 4.3.0\r\n", 451, &["4.3.0"]),
            (
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
                354,
                &["End data with <CR><LF>.<CR><LF>"],
            ),
        ];
        for (bytes, code, lines) in table {
            let mut c = conn_reading(bytes).await;
            let r = c.reply(Duration::from_secs(5)).await.unwrap();
            assert_eq!(r.code, *code, "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(r.lines, *lines, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[tokio::test]
    async fn pipelined_replies_in_one_read_are_kept_apart() {
        let mut c = conn_reading(b"250 2.1.0 Ok\r\n550 5.1.1 no\r\n250 2.1.5 Ok\r\n").await;
        let codes: Vec<u16> = [
            c.reply(Duration::from_secs(5)).await.unwrap().code,
            c.reply(Duration::from_secs(5)).await.unwrap().code,
            c.reply(Duration::from_secs(5)).await.unwrap().code,
        ]
        .into();
        assert_eq!(codes, vec![250, 550, 250]);
    }

    #[tokio::test]
    async fn garbage_and_close_break_the_connection() {
        let mut c = conn_reading(b"hello\r\n").await;
        assert!(matches!(
            c.reply(Duration::from_secs(5)).await,
            Err(HopError::Network(_))
        ));
        assert!(c.broken);
        let mut c = conn_reading(b"250-half").await;
        assert!(c.reply(Duration::from_secs(5)).await.is_err());
        assert!(c.command("NOOP\r\n").await.is_err(), "broken stays broken");
    }

    #[tokio::test]
    async fn silent_next_hop_times_out() {
        let (client, _server) = tokio::io::duplex(1024);
        let opened = Conn::open(Box::new(client), "me", Duration::from_millis(50)).await;
        assert!(matches!(opened, Err(HopError::Timeout)));
    }

    #[test]
    fn offer_keywords() {
        let lines: Vec<String> = [
            "mx.example",
            "PIPELINING",
            "SIZE 10240000",
            "chunking",
            "STARTTLS",
            "XFORWARD NAME ADDR PROTO HELO",
        ]
        .map(String::from)
        .into();
        let o = Offer::parse(&lines);
        assert!(o.pipelining && o.chunking && o.starttls);
        assert_eq!(
            o.xforward.as_deref(),
            Some(&["NAME", "ADDR", "PROTO", "HELO"].map(String::from)[..])
        );
        assert_eq!(Offer::parse(&lines[..1]), Offer::default());
    }
}
