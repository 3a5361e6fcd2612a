//! The next hop: one SMTP client session per client session ([`SmtpDelivery`], over our
//! own [`client::Conn`]), reached by the session through the [`Delivery`] trait.
//!
//! Commands are sent as the preformatted lines the session built ([`commands`]): a proxy
//! passes the client's path as received. When the next hop offers PIPELINING, the MAIL and
//! RCPT commands the session has in hand go in one write (RFC 2920) and each reply is read
//! after, so every recipient still hears its own; with CHUNKING the message goes as
//! `BDAT n LAST` (RFC 3030: no 354 round trip, no dot-stuffing); otherwise DATA, with CRLF
//! normalisation and dot-stuffing in one pass ([`wire::Encoder`]).

pub mod client;
pub mod commands;
pub mod delivery;
pub mod memory;
pub mod tls;
pub mod wire;

pub use delivery::{verdict, Command, Connector, Delivery, DeliveryError, Replies, Step};

use super::replies::{self, Canned, Reply};
use crate::config::{NextHopTls, SmtpConfig};
use crate::tls::TlsError;
use client::Conn;
use futures::future::BoxFuture;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

/// A transport failure towards the next hop: the connection is unusable afterwards.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HopError {
    #[error("next hop unreachable: {0}")]
    Connect(String),
    #[error("next hop timed out")]
    Timeout,
    #[error("next hop TLS: {0}")]
    Tls(String),
    #[error("next hop connection: {0}")]
    Network(String),
}

impl HopError {
    /// What the client hears: always temporary, nothing was accepted.
    pub fn reply(&self) -> Canned {
        match self {
            HopError::Connect(_) => replies::NEXT_HOP_UNREACHABLE,
            HopError::Timeout => replies::NEXT_HOP_TIMEOUT,
            HopError::Tls(_) => replies::NEXT_HOP_NO_TLS,
            HopError::Network(_) => replies::NEXT_HOP_BROKEN,
        }
    }

    /// The `kind` label of `sigstamp_next_hop_errors`.
    pub fn kind(&self) -> &'static str {
        match self {
            HopError::Connect(_) => "connect",
            HopError::Timeout => "timeout",
            HopError::Tls(_) => "tls",
            HopError::Network(_) => "network",
        }
    }
}

/// How to reach the next hop; built once at start.
#[derive(Clone)]
pub struct NextHop {
    addr: String,
    helo: String,
    mode: NextHopTls,
    /// Verifying for `required`, unverified for `opportunistic`; `None` for `none`.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
    data_timeout: Duration,
}

impl NextHop {
    pub fn from_config(cfg: &SmtpConfig) -> Result<Self, TlsError> {
        Ok(NextHop {
            addr: cfg.next_hop.clone(),
            helo: cfg.hostname.clone(),
            mode: cfg.next_hop_tls,
            tls: tls::client(cfg)?,
            timeout: cfg.next_hop_timeout,
            data_timeout: cfg.next_hop_data_timeout,
        })
    }

    /// Connect, read the greeting, EHLO, and STARTTLS as configured.
    pub async fn open(&self) -> Result<SmtpDelivery, HopError> {
        let mut conn = self.connect_plain().await?;
        match (self.mode, &self.tls) {
            (NextHopTls::Required, Some((config, name))) => {
                if !conn.offer.starttls {
                    conn.quit().await;
                    return Err(HopError::Tls("STARTTLS not offered".into()));
                }
                conn = conn
                    .starttls(config.clone(), name.clone(), &self.helo)
                    .await?;
            }
            (NextHopTls::Opportunistic, Some((config, name))) if conn.offer.starttls => {
                match conn
                    .starttls(config.clone(), name.clone(), &self.helo)
                    .await
                {
                    Ok(tls) => conn = tls,
                    Err(e) => {
                        // As Postfix does at `may`: a failed handshake falls back to plain text.
                        tracing::info!(error = %e, "next hop STARTTLS failed, retrying without TLS");
                        conn = self.connect_plain().await?;
                    }
                }
            }
            _ => {}
        }
        Ok(SmtpDelivery {
            conn,
            data_timeout: self.data_timeout,
            in_transaction: false,
        })
    }

    async fn connect_plain(&self) -> Result<Conn, HopError> {
        let connect = tokio::net::TcpStream::connect(self.addr.as_str());
        let tcp = match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => return Err(HopError::Timeout),
            Ok(Err(e)) => return Err(HopError::Connect(e.to_string())),
            Ok(Ok(tcp)) => tcp,
        };
        // Without Nagle: each group is one write, and its reply is awaited before the next.
        let _ = tcp.set_nodelay(true);
        Conn::open(Box::new(tcp), &self.helo, self.timeout).await
    }
}

/// The message is normalised (and stuffed) and written in pieces of this size: memory per
/// session stays bounded by the piece, not the message. With CHUNKING, one BDAT per piece.
const WIRE_PIECE: usize = 256 * 1024;

impl Connector for NextHop {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Delivery>, HopError>> {
        Box::pin(async move { Ok(Box::new(self.open().await?) as Box<dyn Delivery>) })
    }
}

/// One open SMTP session with the next hop, reused across the client's transactions.
pub struct SmtpDelivery {
    conn: Conn,
    data_timeout: Duration,
    in_transaction: bool,
}

impl Delivery for SmtpDelivery {
    fn mail<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        Box::pin(async move {
            self.abort().await?;
            let reply = self.conn.command(line).await?;
            self.in_transaction = reply.is_positive();
            verdict(reply)
        })
    }

    fn xforward<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        Box::pin(async move {
            self.abort().await?;
            verdict(self.conn.command(line).await?)
        })
    }

    fn add_rcpt<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        Box::pin(async move { verdict(self.conn.command(line).await?) })
    }

    fn body<'a>(&'a mut self, message: &'a [u8]) -> Step<'a> {
        Box::pin(async move {
            let result = if self.conn.offer.chunking {
                self.bdat(message).await
            } else {
                self.data(message).await
            };
            self.in_transaction = false;
            verdict(result?)
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), HopError>> {
        Box::pin(async move {
            if self.in_transaction {
                self.conn.command("RSET\r\n").await?;
                self.in_transaction = false;
            }
            Ok(())
        })
    }

    fn is_usable(&self) -> bool {
        !self.conn.broken
    }

    /// Bounded by the command timeout.
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.conn.quit())
    }

    fn xforward_offer(&self) -> Option<&[String]> {
        self.conn.offer.xforward.as_deref()
    }

    fn envelope<'a>(&'a mut self, group: &'a [Command<'a>]) -> Replies<'a> {
        if !self.conn.offer.pipelining {
            return delivery::one_by_one(self, group);
        }
        Box::pin(self.pipelined(group))
    }
}

impl SmtpDelivery {
    pub fn is_encrypted(&self) -> bool {
        self.conn.encrypted
    }

    /// What the next hop offered in its (last) EHLO reply.
    pub fn offer(&self) -> &client::Offer {
        &self.conn.offer
    }

    /// RSET if a transaction is open, then the group, in one write; then one reply each.
    async fn pipelined(&mut self, group: &[Command<'_>]) -> Vec<Result<Reply, DeliveryError>> {
        let mut out = Vec::with_capacity(group.len());
        let reset = self.in_transaction && group.iter().any(|c| matches!(c, Command::Mail(_)));
        let mut bytes = Vec::with_capacity(64 * (group.len() + 1));
        if reset {
            bytes.extend_from_slice(b"RSET\r\n");
        }
        for cmd in group {
            let (Command::Mail(line) | Command::Rcpt(line) | Command::Xforward(line)) = cmd;
            bytes.extend_from_slice(line.as_bytes());
        }
        let timeout = self.conn.timeout;
        let mut failed = self.conn.send(&bytes, timeout).await.err();
        if reset && failed.is_none() {
            // Its code does not matter: MAIL's reply says whether a transaction opened.
            failed = self.conn.reply(timeout).await.err();
            self.in_transaction = false;
        }
        for cmd in group {
            if let Some(e) = &failed {
                out.push(Err(DeliveryError::Hop(e.clone())));
                continue;
            }
            match self.conn.reply(timeout).await {
                Ok(reply) => {
                    if let Command::Mail(_) = cmd {
                        self.in_transaction = reply.is_positive();
                    }
                    out.push(verdict(reply));
                }
                Err(e) => {
                    failed = Some(e.clone());
                    out.push(Err(e.into()));
                }
            }
        }
        out
    }

    /// DATA, then the message stuffed and ended by `.`: the next hop's final reply.
    async fn data(&mut self, message: &[u8]) -> Result<Reply, HopError> {
        let go = self.conn.command("DATA\r\n").await?;
        if go.code != 354 {
            return Ok(go);
        }
        // The message's own final line break is the one before `.`; every other line break
        // goes out as CRLF and every line starting with a dot gets one more (see `wire`):
        // whatever the message holds, the next hop reads exactly one message.
        for (piece, _) in wire_pieces(message, true, b"\r\n.\r\n") {
            self.conn.send(&piece, self.data_timeout).await?;
        }
        self.conn.reply(self.data_timeout).await
    }

    /// The message as BDAT chunks, the last one `LAST`, written back to back (RFC 3030
    /// allows BDAT to be pipelined); then one reply per chunk. The first refusal is the
    /// answer, else the last chunk's reply.
    async fn bdat(&mut self, message: &[u8]) -> Result<Reply, HopError> {
        let mut chunks = 0;
        for (chunk, last) in wire_pieces(message, false, b"\r\n") {
            let verb = if last { " LAST" } else { "" };
            let mut buf = Vec::with_capacity(chunk.len() + 32);
            buf.extend_from_slice(format!("BDAT {}{verb}\r\n", chunk.len()).as_bytes());
            buf.extend_from_slice(&chunk);
            self.conn.send(&buf, self.data_timeout).await?;
            chunks += 1;
        }
        let mut answer: Option<Reply> = None;
        for _ in 0..chunks {
            let reply = self.conn.reply(self.data_timeout).await?;
            if answer.as_ref().is_none_or(|a| a.is_positive()) {
                answer = Some(reply);
            }
        }
        Ok(answer.unwrap_or_else(|| replies::NEXT_HOP_BROKEN.into()))
    }
}

/// The message as it goes out, in encoded pieces of about [`WIRE_PIECE`] bytes (`stuff`:
/// dot-stuffed, for DATA), without its own final line break and with `end` after the last
/// piece; each piece with whether it is the last. At least one piece, even for an empty
/// message.
fn wire_pieces<'a>(
    message: &'a [u8],
    stuff: bool,
    end: &'static [u8],
) -> impl Iterator<Item = (Vec<u8>, bool)> + 'a {
    let body = wire::without_final_break(message);
    let mut enc = wire::Encoder::new(stuff);
    let n = body.len().div_ceil(WIRE_PIECE).max(1);
    (0..n).map(move |i| {
        let piece = &body[(i * WIRE_PIECE).min(body.len())..((i + 1) * WIRE_PIECE).min(body.len())];
        let mut out = Vec::with_capacity(piece.len() + piece.len() / 64 + end.len() + 4);
        enc.push(piece, &mut out);
        let last = i + 1 == n;
        if last {
            out.extend_from_slice(end);
        }
        (out, last)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_pieces_cover_the_message_once_with_the_end_after_the_last() {
        let mut message = vec![b'a'; WIRE_PIECE - 1];
        message.extend_from_slice(b"\n.x\r\n");
        message.extend(std::iter::repeat_n(b'b', WIRE_PIECE + 3));
        message.extend_from_slice(b"\r\n");
        let pieces: Vec<(Vec<u8>, bool)> = wire_pieces(&message, true, b"\r\n.\r\n").collect();
        assert_eq!(pieces.len(), 3);
        let lasts: Vec<bool> = pieces.iter().map(|(_, l)| *l).collect();
        assert_eq!(lasts, [false, false, true]);
        let joined: Vec<u8> = pieces.into_iter().flat_map(|(p, _)| p).collect();
        let mut want = Vec::new();
        wire::Encoder::new(true).push(wire::without_final_break(&message), &mut want);
        want.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(joined, want);
        assert!(memchr::memmem::find(&joined, b"\r\n..x\r\n").is_some());
        let empty: Vec<(Vec<u8>, bool)> = wire_pieces(b"", false, b"\r\n").collect();
        assert_eq!(empty, vec![(b"\r\n".to_vec(), true)]);
    }
}
