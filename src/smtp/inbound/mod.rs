//! The client session: smtp-proto's receivers drive a small state machine; each verb family
//! lives in its own file. The session is generic over the stream so tests run it in memory.
//!
//! Pipelining: every complete command in the input buffer is handled in order, replies are
//! queued, and the queue is flushed before the session waits for more input (RFC 2920 §3.2),
//! before a TLS handshake and before the session closes.

mod data;
mod ehlo;
mod log;
mod mail;
mod misc;
mod rcpt;
mod starttls;

use super::io::MaybeTls;
use super::outbound::{Delivery, HopError, NextHop};
use super::replies::{self, Reply, SmtpError};
use super::SmtpConfig;
use crate::metrics::{KindLabels, Metrics};
use crate::pipeline::Stamper;
use smtp_proto::request::receiver::{
    BdatReceiver, DataReceiver, DummyDataReceiver, DummyLineReceiver, RequestReceiver,
};
use smtp_proto::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Longest command line accepted (Postfix's `line_length_limit` is 2048; ESMTP parameters
/// make lines longer than RFC 5321's 512).
pub const MAX_COMMAND_LINE: usize = 4096;
/// Protocol errors tolerated before the session is closed.
const MAX_ERRORS: usize = 20;

/// What every session of one listener shares.
pub struct Shared {
    pub cfg: SmtpConfig,
    pub stamper: Arc<Stamper>,
    pub metrics: Arc<Metrics>,
    /// Swapped by a reload: each handshake takes the certificate current at its start.
    pub tls: Arc<arc_swap::ArcSwapOption<rustls::ServerConfig>>,
    pub next_hop: NextHop,
    pub shutdown: CancellationToken,
}

impl Shared {
    fn hop_error(&self, e: &HopError) {
        tracing::warn!(error = %e, "next hop failure");
        self.metrics
            .next_hop_errors
            .get_or_create(&KindLabels {
                kind: e.kind().into(),
            })
            .inc();
    }
}

enum State {
    Command(RequestReceiver),
    /// After an over-long command line: skip to its end.
    SkipLine(DummyLineReceiver),
    Data(DataReceiver),
    Bdat(BdatReceiver),
    /// Swallow data that will not be relayed, then answer `reply`.
    Discard(DummyDataReceiver, Reply),
}

impl State {
    fn command() -> Self {
        State::Command(RequestReceiver::default())
    }

    fn in_data(&self) -> bool {
        matches!(self, State::Data(_) | State::Bdat(_) | State::Discard(..))
    }
}

/// One mail transaction, open once the next hop accepted MAIL.
struct Transaction {
    mail_from: String,
    /// The MAIL line sent to the next hop, parameters included (sent again per part when a
    /// message is split by recipient group).
    mail_line: String,
    /// Recipients the next hop accepted.
    rcpts: Vec<String>,
    /// Their RCPT lines as sent, parameters included; parallel to `rcpts`.
    rcpt_lines: Vec<String>,
    /// RCPT commands tried, accepted or not.
    attempted: usize,
    data: Vec<u8>,
    bdat: bool,
    /// MAIL FROM's arrival, for the message log line's `time_ms`.
    started: std::time::Instant,
}

/// Most the declared SIZE may reserve up front (a declared size is only a promise).
const MAX_PRESIZE: usize = 1024 * 1024;

impl Transaction {
    fn new(mail_from: String, declared_size: usize, mail_line: String) -> Self {
        Transaction {
            mail_from,
            mail_line,
            rcpts: Vec::new(),
            rcpt_lines: Vec::new(),
            attempted: 0,
            data: Vec::with_capacity(declared_size.min(MAX_PRESIZE)),
            bdat: false,
            started: std::time::Instant::now(),
        }
    }
}

/// The result of feeding bytes to the current receiver.
enum Step {
    Request(Request<String>),
    ParseError(smtp_proto::Error),
    TooLong,
    NeedMore,
    DataDone,
    BdatChunkDone { last: bool },
    DataTooBig,
    Discarded(Reply),
}

pub struct Session<S> {
    /// Names the session in every log line of it (as Postfix's queue id does).
    id: String,
    io: MaybeTls<S>,
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    out: Vec<u8>,
    state: State,
    /// Bytes of the command line received so far, for the length limit.
    partial_line: usize,
    helo: Option<String>,
    tx: Option<Transaction>,
    hop: Option<Delivery>,
    errors: usize,
    starttls_pending: bool,
    done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub fn new(stream: S, shared: Arc<Shared>, peer: Option<SocketAddr>) -> Self {
        Session {
            id: format!("{:010x}", rand::random::<u64>() & 0xff_ffff_ffff),
            io: MaybeTls::Plain(stream),
            shared,
            peer,
            out: Vec::with_capacity(512),
            state: State::command(),
            partial_line: 0,
            helo: None,
            tx: None,
            hop: None,
            errors: 0,
            starttls_pending: false,
            done: false,
        }
    }

    /// Serve the client until QUIT, disconnect, timeout or shutdown.
    pub async fn run(mut self) {
        self.greet();
        // Filled through `read_buf`: its spare capacity is used without zeroing it first.
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        while !self.done {
            if self.flush().await.is_err() {
                break;
            }
            if self.starttls_pending {
                self.starttls_pending = false;
                if !self.start_tls().await {
                    break;
                }
                continue;
            }
            let timeout = if self.state.in_data() {
                self.shared.cfg.data_timeout
            } else {
                self.shared.cfg.command_timeout
            };
            let idle = self.tx.is_none() && matches!(self.state, State::Command(_));
            let shutdown = self.shared.shutdown.clone();
            let read = tokio::select! {
                r = tokio::time::timeout(timeout, self.io.read_buf(&mut buf)) => r,
                _ = shutdown.cancelled(), if idle => {
                    self.reply(replies::SHUTTING_DOWN);
                    break;
                }
            };
            match read {
                Err(_) => {
                    self.reply(replies::TIMEOUT);
                    break;
                }
                // Client gone: a transaction in progress is dropped, nothing is forwarded.
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {
                    let input = std::mem::take(&mut buf);
                    self.ingest(&input).await;
                    buf = input;
                    buf.clear();
                }
            }
        }
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
        if let Some(hop) = self.hop.take() {
            hop.quit().await;
        }
        tracing::debug!(peer = ?self.peer, "session closed");
    }

    fn greet(&mut self) {
        let greeting = format!("{} {}", self.shared.cfg.hostname, replies::GREETING.text);
        self.reply(Reply::new(replies::GREETING.code, greeting));
    }

    fn reply(&mut self, r: impl Into<Reply>) {
        r.into().write_to(&mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Handle every complete command or data chunk in `bytes`.
    async fn ingest(&mut self, bytes: &[u8]) {
        let mut it = bytes.iter();
        while !it.as_slice().is_empty() && !self.done && !self.starttls_pending {
            let step = self.feed(&mut it);
            match step {
                Step::NeedMore => break,
                Step::Request(req) => {
                    let result = self.handle(req).await;
                    self.answer(result);
                }
                Step::ParseError(e) => self.answer(Err(parse_error(e))),
                Step::TooLong => self.answer(Err(replies::LINE_TOO_LONG.into())),
                Step::DataDone => {
                    self.state = State::command();
                    let result = self.deliver().await.map(Some);
                    self.answer(result);
                }
                Step::BdatChunkDone { last } => {
                    self.state = State::command();
                    let result = if last {
                        self.deliver().await.map(Some)
                    } else {
                        Ok(Some(replies::CHUNK_OK.into()))
                    };
                    self.answer(result);
                }
                Step::DataTooBig => {
                    let State::Data(rx) = &self.state else {
                        unreachable!("DataTooBig only comes from DATA")
                    };
                    self.state = State::Discard(
                        DummyDataReceiver::new_data(rx),
                        replies::MESSAGE_TOO_BIG.into(),
                    );
                    self.abort_transaction().await;
                }
                Step::Discarded(reply) => {
                    self.state = State::command();
                    self.answer(Err(reply.into()));
                }
            }
        }
        // With STARTTLS pending, the rest of `bytes` is dropped here: RFC 3207 §4.2 (and
        // CVE-2011-0411) — nothing sent before the handshake may count after it.
    }

    /// Feed bytes to the current receiver; no I/O, no awaiting.
    fn feed(&mut self, it: &mut std::slice::Iter<'_, u8>) -> Step {
        let max_size = self.shared.cfg.max_message_size;
        match &mut self.state {
            State::Command(rx) => {
                let rest = it.as_slice();
                let line_end = memchr::memchr(b'\n', rest);
                let len = self.partial_line + line_end.map_or(rest.len(), |p| p + 1);
                if len > MAX_COMMAND_LINE {
                    *rx = RequestReceiver::default();
                    self.partial_line = 0;
                    match line_end {
                        Some(p) => *it = rest[p + 1..].iter(),
                        None => {
                            *it = [].iter();
                            self.state = State::SkipLine(DummyLineReceiver::default());
                        }
                    }
                    return Step::TooLong;
                }
                let step = match rx.ingest(it) {
                    Ok(req) => Step::Request(req.into_owned()),
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => Step::NeedMore,
                    Err(smtp_proto::Error::ResponseTooLong) => Step::TooLong,
                    Err(e) => Step::ParseError(e),
                };
                self.partial_line = if line_end.is_some() { 0 } else { len };
                step
            }
            State::SkipLine(rx) => {
                if rx.ingest(it) {
                    self.state = State::command();
                }
                Step::NeedMore
            }
            State::Data(rx) => {
                let Some(tx) = self.tx.as_mut() else {
                    unreachable!("DATA state without a transaction")
                };
                if rx.ingest(it, &mut tx.data) {
                    Step::DataDone
                } else if tx.data.len() > max_size {
                    Step::DataTooBig
                } else {
                    Step::NeedMore
                }
            }
            State::Bdat(rx) => {
                let Some(tx) = self.tx.as_mut() else {
                    unreachable!("BDAT state without a transaction")
                };
                if rx.ingest(it, &mut tx.data) {
                    Step::BdatChunkDone { last: rx.is_last }
                } else {
                    Step::NeedMore
                }
            }
            State::Discard(rx, reply) => {
                if rx.ingest(it) {
                    Step::Discarded(reply.clone())
                } else {
                    Step::NeedMore
                }
            }
        }
    }

    /// Queue the reply of one step, count errors, close when asked to.
    fn answer(&mut self, result: Result<Option<Reply>, SmtpError>) {
        match result {
            Ok(Some(r)) => self.reply(r),
            Ok(None) => {}
            Err(e) => {
                if e.reply.code >= 500 {
                    self.errors += 1;
                }
                self.reply(e.reply);
                if e.close {
                    self.done = true;
                } else if self.errors >= MAX_ERRORS {
                    self.reply(replies::TOO_MANY_ERRORS);
                    self.done = true;
                }
            }
        }
    }

    async fn handle(&mut self, req: Request<String>) -> Result<Option<Reply>, SmtpError> {
        match req {
            Request::Ehlo { host } => self.on_ehlo(host),
            Request::Helo { host } => self.on_helo(host),
            Request::Mail { from } => self.on_mail(from).await,
            Request::Rcpt { to } => self.on_rcpt(to).await,
            Request::Data => self.on_data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.on_bdat(chunk_size, is_last).await,
            Request::StartTls => self.on_starttls(),
            Request::Rset => self.on_rset().await,
            Request::Noop { .. } => Ok(Some(replies::OK.into())),
            Request::Quit => self.on_quit(),
            Request::Vrfy { .. } => Ok(Some(replies::VRFY.into())),
            Request::Help { .. } => Ok(Some(replies::HELP.into())),
            Request::Lhlo { .. }
            | Request::Auth { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Err(replies::NOT_IMPLEMENTED.into()),
        }
    }

    /// Drop the client's transaction; the next hop's is reset lazily at the next MAIL.
    async fn abort_transaction(&mut self) {
        self.tx = None;
        if let Some(hop) = self.hop.as_mut() {
            if let Err(e) = hop.reset().await {
                self.shared.hop_error(&e);
                self.hop = None;
            }
        }
    }

    /// A transport failure towards the next hop: forget the connection and the transaction.
    fn hop_failed(&mut self, e: HopError) -> SmtpError {
        self.shared.hop_error(&e);
        self.hop = None;
        self.tx = None;
        e.reply().into()
    }
}

fn parse_error(e: smtp_proto::Error) -> SmtpError {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => replies::UNKNOWN_COMMAND.into(),
        E::InvalidSenderAddress => replies::BAD_SENDER.into(),
        E::InvalidRecipientAddress => replies::BAD_RECIPIENT.into(),
        E::SyntaxError { syntax } => replies::SYNTAX.with_detail(syntax).into(),
        E::InvalidParameter { param } => replies::BAD_PARAMETER.with_detail(param).into(),
        E::UnsupportedParameter { param } => {
            replies::UNSUPPORTED_PARAMETER.with_detail(param).into()
        }
        E::ResponseTooLong => replies::LINE_TOO_LONG.into(),
        E::NeedsMoreData { .. } | E::InvalidResponse { .. } => replies::SYNTAX.into(),
    }
}

#[cfg(test)]
mod tests;
