//! The next hop: one SMTP client session per client session, over lettre's low-level
//! `AsyncSmtpConnection`.
//!
//! Commands are sent as preformatted lines (`command(String)`) rather than lettre's
//! `Mail`/`Rcpt` types: those take a lettre `Address`, which re-validates the client's path
//! and would refuse some that RFC 5321 allows; a proxy passes the path as received.
//! lettre turns a negative reply into an `Error` holding the code and the reply text (lines
//! joined); [`SmtpDelivery`] turns it back into a [`Reply`] so it is relayed to the client.
//! The session reaches it through the [`Delivery`] trait.

pub mod commands;
pub mod delivery;
pub mod memory;
pub mod wire;
mod xforward;

pub use delivery::{verdict, Connector, Delivery, DeliveryError, Step};

use super::replies::{self, Canned, Reply};
use super::tls::{self, TlsError};
use super::xforward::Attrs;
use crate::config::{NextHopTls, SmtpConfig};
use futures::future::BoxFuture;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, Identity,
};
use lettre::transport::smtp::client::{TlsParameters, TlsParametersBuilder};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use std::future::Future;
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
    helo: ClientId,
    mode: NextHopTls,
    /// Verified parameters for `required`, unverified ones for `opportunistic`.
    tls: Option<TlsParameters>,
    timeout: Duration,
    data_timeout: Duration,
}

impl NextHop {
    pub fn from_config(cfg: &SmtpConfig) -> Result<Self, TlsError> {
        let name = cfg
            .next_hop_tls_name
            .clone()
            .unwrap_or_else(|| cfg.next_hop_host());
        let identity = match (&cfg.next_hop_cert, &cfg.next_hop_key) {
            (Some(cert), Some(key)) => {
                let key = std::fs::read(key).map_err(|e| TlsError::Pem {
                    key: "smtp.next_hop_key",
                    path: key.display().to_string(),
                    message: e.to_string(),
                })?;
                // lettre 0.11's rustls `Identity::from_pem` takes its first argument as the
                // DER of one certificate (not PEM), so hand it the leaf's DER.
                let leaf = tls::load_certs("smtp.next_hop_cert", cert)?.remove(0);
                Some(
                    Identity::from_pem(leaf.as_ref(), &key)
                        .map_err(|e| TlsError::Rustls(format!("smtp.next_hop_cert: {e}")))?,
                )
            }
            _ => None,
        };
        let builder = |name: String| {
            let b = TlsParametersBuilder::new(name);
            match identity.clone() {
                Some(id) => b.identify_with(id),
                None => b,
            }
        };
        let tls = match cfg.next_hop_tls {
            NextHopTls::None => None,
            NextHopTls::Opportunistic => Some(
                // Postfix's `may` level: encrypt when offered, do not authenticate.
                builder(name)
                    .certificate_store(CertificateStore::None)
                    .dangerous_accept_invalid_certs(true)
                    .build_rustls()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?,
            ),
            NextHopTls::Required => {
                let mut b = builder(name);
                if let Some(ca) = &cfg.next_hop_ca {
                    b = b.certificate_store(CertificateStore::None);
                    for der in tls::load_certs("smtp.next_hop_ca", ca)? {
                        let cert = Certificate::from_der(der.to_vec())
                            .map_err(|e| TlsError::Rustls(e.to_string()))?;
                        b = b.add_root_certificate(cert);
                    }
                }
                Some(
                    b.build_rustls()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?,
                )
            }
        };
        Ok(NextHop {
            addr: cfg.next_hop.clone(),
            helo: ClientId::Domain(cfg.hostname.clone()),
            mode: cfg.next_hop_tls,
            tls,
            timeout: cfg.next_hop_timeout,
            data_timeout: cfg.next_hop_data_timeout,
        })
    }

    /// Connect, read the greeting, EHLO, and STARTTLS as configured.
    pub async fn open(&self) -> Result<SmtpDelivery, HopError> {
        let mut conn = self.connect_plain().await?;
        match (self.mode, &self.tls) {
            (NextHopTls::Required, Some(params)) => {
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(HopError::Tls("STARTTLS not offered".into()));
                }
                self.starttls(&mut conn, params).await?;
            }
            (NextHopTls::Opportunistic, Some(params)) if conn.can_starttls() => {
                if let Err(e) = self.starttls(&mut conn, params).await {
                    // As Postfix does at `may`: a failed handshake falls back to plain text.
                    tracing::info!(error = %e, "next hop STARTTLS failed, retrying without TLS");
                    conn = self.connect_plain().await?;
                }
            }
            _ => {}
        }
        Ok(SmtpDelivery {
            conn,
            timeout: self.timeout,
            data_timeout: self.data_timeout,
            in_transaction: false,
            broken: false,
            helo: self.helo.to_string(),
            xforward_offer: None,
        })
    }

    async fn connect_plain(&self) -> Result<AsyncSmtpConnection, HopError> {
        // Our own socket rather than lettre's `connect_tokio1`, which leaves Nagle on: with
        // it, each message's final "." waits for a delayed ACK (about 10 ms per message on
        // loopback).
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(self.addr.as_str())
                .await
                .map_err(|e| HopError::Connect(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.helo)
                .await
                .map_err(|e| HopError::Connect(error_text(&e)))
        };
        match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => Err(HopError::Timeout),
            Ok(result) => result,
        }
    }

    async fn starttls(
        &self,
        conn: &mut AsyncSmtpConnection,
        params: &TlsParameters,
    ) -> Result<(), HopError> {
        match tokio::time::timeout(self.timeout, conn.starttls(params.clone(), &self.helo)).await {
            Err(_) => Err(HopError::Timeout),
            Ok(Err(e)) => Err(HopError::Tls(error_text(&e))),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// The DATA content is normalised and written in pieces of this size.
const WIRE_PIECE: usize = 64 * 1024;

impl Connector for NextHop {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Delivery>, HopError>> {
        Box::pin(async move { Ok(Box::new(self.open().await?) as Box<dyn Delivery>) })
    }
}

/// One open SMTP session with the next hop, over lettre, reused across the client's
/// transactions.
pub struct SmtpDelivery {
    conn: AsyncSmtpConnection,
    timeout: Duration,
    data_timeout: Duration,
    in_transaction: bool,
    broken: bool,
    /// Our EHLO name, for the EHLO that reads the XFORWARD offer.
    helo: String,
    /// The XFORWARD attributes the next hop takes (empty: none); `None` until asked.
    xforward_offer: Option<Vec<String>>,
}

impl Delivery for SmtpDelivery {
    fn mail<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        Box::pin(async move {
            self.abort().await?;
            let reply = self.command(line.to_string(), self.timeout).await?;
            self.in_transaction = reply.is_positive();
            verdict(reply)
        })
    }

    fn xforward<'a>(&'a mut self, attrs: &'a Attrs) -> BoxFuture<'a, Result<(), HopError>> {
        Box::pin(self.send_xforward(attrs))
    }

    fn add_rcpt<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        Box::pin(async move { verdict(self.command(line.to_string(), self.timeout).await?) })
    }

    fn body<'a>(&'a mut self, message: &'a [u8]) -> Step<'a> {
        Box::pin(async move {
            let go = self.command("DATA\r\n".to_string(), self.timeout).await?;
            if go.code != 354 {
                self.in_transaction = false;
                return verdict(go);
            }
            // lettre appends CRLF "." CRLF; the message's own final line break would become
            // an extra empty line, so hand it over without one. Every other line break goes
            // out as CRLF (see `wire`), and lettre's codec stuffs each dot after a CRLF:
            // whatever the message holds, the next hop reads exactly one message.
            let body = wire::without_final_break(message);
            let timeout = self.data_timeout;
            let result = self
                .run(timeout, |c| c.message_iter(wire::pieces(body, WIRE_PIECE)))
                .await;
            self.in_transaction = false;
            verdict(result?)
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), HopError>> {
        Box::pin(async move {
            if self.in_transaction {
                self.command("RSET\r\n".to_string(), self.timeout).await?;
                self.in_transaction = false;
            }
            Ok(())
        })
    }

    fn is_usable(&self) -> bool {
        !self.broken && !self.conn.has_broken()
    }

    /// Bounded by the command timeout.
    fn quit(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if self.is_usable() {
                let _ = tokio::time::timeout(self.timeout, self.conn.quit()).await;
            }
        })
    }
}

impl SmtpDelivery {
    pub fn is_encrypted(&self) -> bool {
        self.conn.is_encrypted()
    }

    async fn command(&mut self, line: String, timeout: Duration) -> Result<Reply, HopError> {
        self.run(timeout, |c| c.command(line)).await
    }

    async fn run<'a, F, Fut>(&'a mut self, timeout: Duration, op: F) -> Result<Reply, HopError>
    where
        F: FnOnce(&'a mut AsyncSmtpConnection) -> Fut,
        Fut: Future<Output = Result<Response, lettre::transport::smtp::Error>> + 'a,
    {
        if !self.is_usable() {
            return Err(HopError::Network("connection already failed".into()));
        }
        // Split the borrow: the future holds `conn`, the flags are set after it resolves.
        let broken = &mut self.broken;
        let result = tokio::time::timeout(timeout, op(&mut self.conn)).await;
        match result {
            Err(_) => {
                *broken = true;
                Err(HopError::Timeout)
            }
            Ok(Ok(response)) => Ok(reply_from_response(&response)),
            Ok(Err(e)) => match e.status() {
                Some(code) => Ok(Reply::new(u16::from(code), error_text(&e))),
                None => {
                    *broken = true;
                    if e.is_timeout() {
                        Err(HopError::Timeout)
                    } else {
                        Err(HopError::Network(error_text(&e)))
                    }
                }
            },
        }
    }
}

fn reply_from_response(r: &Response) -> Reply {
    let mut lines: Vec<String> = r.message().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    Reply {
        code: u16::from(r.code()),
        lines,
    }
}

/// The text behind a lettre error: for a negative reply, the server's own words.
fn error_text(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}
