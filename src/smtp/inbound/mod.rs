//! The client session: smtp-proto's receivers drive a small state machine; each verb family
//! lives in its own file. The session is generic over the stream so tests run it in memory.
//!
//! Pipelining: every complete command in the input buffer is handled in order, replies are
//! queued, and the queue is flushed before the session waits for more input (RFC 2920 §3.2),
//! before a TLS handshake and before the session closes. MAIL and RCPT are handed to the
//! next hop as they come but answered together ([`Session::settle`]): the ones in hand form
//! one group, which a next hop offering PIPELINING gets in one write; every other command,
//! and the end of the input, first settles them, so replies keep the commands' order.

mod data;
mod dot;
mod ehlo;
#[doc(hidden)]
pub mod harness;
mod line;
mod log;
mod mail;
mod misc;
mod rcpt;
mod starttls;
mod xforward;

pub use dot::DotReader;

use super::io::{MaybeTls, RateDeadline};
use super::outbound::{Connector, Delivery, HopError};
use super::replies::{self, Reply, SmtpError};
use super::SmtpConfig;
use crate::metrics::{KindLabels, Metrics};
use crate::pipeline::Stamper;
use line::Precheck;
use smtp_proto::request::receiver::BdatReceiver;
use smtp_proto::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// Opens next-hop sessions: lettre's SMTP client in production, an in-memory one in
    /// the session tests.
    pub next_hop: Arc<dyn Connector>,
    pub shutdown: CancellationToken,
    /// Queues the Sent Items update of accepted stamped messages.
    pub sent_items: crate::sent_items::SentItems,
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
    /// Reading a command line (into `Session::line`).
    Command,
    /// After an over-long command line: skip to its end.
    SkipLine,
    Data(DotReader),
    Bdat(BdatReceiver),
    /// Swallow data that will not be relayed, then answer `reply`.
    Discard(Discard, Reply),
}

/// Data being swallowed: DATA up to its end line, or the bytes left of a BDAT chunk.
enum Discard {
    Data(DotReader),
    Bdat(usize),
}

impl State {
    fn command() -> Self {
        State::Command
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
    /// MAIL carried SMTPUTF8: addresses may be non-ASCII.
    smtputf8: bool,
    /// MAIL FROM's arrival, for the message log line's `time_ms`.
    started: std::time::Instant,
}

/// A MAIL or RCPT for the next hop whose reply is not known yet (see [`Session::settle`]).
enum Pending {
    Mail { line: String },
    Rcpt { address: String, line: String },
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
            smtputf8: false,
            started: std::time::Instant::now(),
        }
    }
}

/// The result of feeding bytes to the current receiver.
enum Step {
    Request(Request<String>),
    /// XFORWARD (which smtp-proto does not know) and its arguments.
    Xforward(String),
    /// A command refused before it was handled (syntax, over-long line).
    Error(SmtpError),
    NeedMore,
    /// The rest of an over-long line was skipped; what follows is read as commands.
    Skipped,
    DataDone,
    BdatChunkDone {
        last: bool,
    },
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
    /// The command line received so far.
    line: Vec<u8>,
    /// When the command line in progress began: it must be complete by `command_deadline`.
    line_started: Option<Instant>,
    /// While a message is being received: the rate it must keep (`min_data_rate`).
    data_deadline: Option<RateDeadline>,
    helo: Option<String>,
    tx: Option<Transaction>,
    hop: Option<Box<dyn Delivery>>,
    /// MAIL/RCPT commands handed to the next hop, in order, not yet answered.
    pending: Vec<Pending>,
    errors: usize,
    starttls_pending: bool,
    done: bool,
    forwarded: xforward::Forwarded,
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
            line: Vec::new(),
            line_started: None,
            data_deadline: None,
            helo: None,
            tx: None,
            hop: None,
            pending: Vec::new(),
            errors: 0,
            starttls_pending: false,
            done: false,
            forwarded: Default::default(),
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
            let wait = self.read_wait();
            if wait.is_zero() {
                self.reply(replies::TIMEOUT);
                break;
            }
            let idle = self.tx.is_none() && matches!(self.state, State::Command);
            let shutdown = self.shared.shutdown.clone();
            let started = Instant::now();
            let read = tokio::select! {
                r = tokio::time::timeout(wait, self.io.read_buf(&mut buf)) => r,
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
                Ok(Ok(n)) => {
                    if let Some(d) = self.data_deadline.as_mut() {
                        d.spend(started.elapsed(), n);
                    }
                    let input = std::mem::take(&mut buf);
                    self.ingest(&input).await;
                    buf = input;
                    buf.clear();
                    self.update_deadlines();
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

    /// How long the next read may wait: the idle timeout, cut by the deadline of a command
    /// line in progress and by the rate a message in progress must keep. Zero: time is up.
    fn read_wait(&self) -> Duration {
        let cfg = &self.shared.cfg;
        let mut wait = if self.state.in_data() {
            cfg.data_timeout
        } else {
            cfg.command_timeout
        };
        if let Some(started) = self.line_started {
            wait = wait.min(cfg.command_deadline.saturating_sub(started.elapsed()));
        }
        if let Some(d) = &self.data_deadline {
            wait = wait.min(d.left());
        }
        wait
    }

    /// After input was handled: a command line left incomplete keeps (or starts) its
    /// deadline; a message in progress (DATA, or BDAT chunks and the commands between them
    /// up to LAST) keeps (or starts) its rate deadline.
    fn update_deadlines(&mut self) {
        let partial = match self.state {
            State::Command => !self.line.is_empty(),
            State::SkipLine => true,
            _ => false,
        };
        if !partial {
            self.line_started = None;
        } else if self.line_started.is_none() {
            self.line_started = Some(Instant::now());
        }
        let receiving = self.state.in_data() || self.tx.as_ref().is_some_and(|t| t.bdat);
        if !receiving {
            self.data_deadline = None;
        } else if self.data_deadline.is_none() {
            let cfg = &self.shared.cfg;
            self.data_deadline = Some(RateDeadline::new(cfg.data_timeout, cfg.min_data_rate));
        }
    }

    fn greet(&mut self) {
        let greeting = format!("{} {}", self.shared.cfg.hostname, replies::GREETING.text);
        self.reply(Reply::new(replies::GREETING.code, greeting));
    }

    fn reply(&mut self, r: impl Into<Reply>) {
        r.into().write_to(&mut self.out);
    }

    /// Send the queued replies. A client that does not read them costs `command_timeout`,
    /// not a session slot forever.
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let write = async {
                self.io.write_all(&self.out).await?;
                self.io.flush().await
            };
            tokio::time::timeout(self.shared.cfg.command_timeout, write)
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            self.out.clear();
        }
        Ok(())
    }

    /// Handle every complete command or data chunk in `bytes`.
    async fn ingest(&mut self, bytes: &[u8]) {
        let mut it = bytes.iter();
        while !it.as_slice().is_empty() && !self.done && !self.starttls_pending {
            let step = self.feed(&mut it);
            if !matches!(step, Step::Request(_) | Step::NeedMore | Step::Skipped) {
                self.settle().await;
            }
            match step {
                Step::NeedMore => break,
                Step::Skipped => {}
                Step::Request(req) => {
                    // RCPT joins the group in hand; anything else is answered after it.
                    if !matches!(req, Request::Rcpt { .. }) {
                        self.settle().await;
                    }
                    let result = self.handle(req).await;
                    // `Ok(None)` from MAIL/RCPT: handed over, answered when settled.
                    if !matches!(result, Ok(None)) {
                        self.settle().await;
                    }
                    self.answer(result);
                }
                Step::Xforward(args) => {
                    let result = self.on_xforward(&args);
                    self.answer(result);
                }
                Step::Error(e) => self.answer(Err(e)),
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
                    self.state =
                        State::Discard(Discard::Data(rx.clone()), replies::MESSAGE_TOO_BIG.into());
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
        self.settle().await;
    }

    /// Feed bytes to the current receiver; no I/O, no awaiting.
    fn feed(&mut self, it: &mut std::slice::Iter<'_, u8>) -> Step {
        let max_size = self.shared.cfg.max_message_size;
        match &mut self.state {
            State::Command => self.feed_line(it),
            State::SkipLine => {
                let rest = it.as_slice();
                match memchr::memchr(b'\n', rest) {
                    Some(p) => {
                        *it = rest[p + 1..].iter();
                        self.state = State::command();
                        Step::Skipped
                    }
                    None => {
                        *it = [].iter();
                        Step::NeedMore
                    }
                }
            }
            State::Data(rx) => {
                let Some(tx) = self.tx.as_mut() else {
                    unreachable!("DATA state without a transaction")
                };
                if rx.ingest(it, Some(&mut tx.data)) {
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
            State::Discard(discard, reply) => {
                let done = match discard {
                    Discard::Data(rx) => rx.ingest(it, None),
                    Discard::Bdat(left) => {
                        let rest = it.as_slice();
                        let n = rest.len().min(*left);
                        *left -= n;
                        *it = rest[n..].iter();
                        *left == 0
                    }
                };
                if done {
                    Step::Discarded(reply.clone())
                } else {
                    Step::NeedMore
                }
            }
        }
    }

    /// Collect a command line; once complete, check it raw, then let smtp-proto parse it.
    fn feed_line(&mut self, it: &mut std::slice::Iter<'_, u8>) -> Step {
        let rest = it.as_slice();
        let end = memchr::memchr(b'\n', rest);
        let take = end.map_or(rest.len(), |p| p + 1);
        *it = rest[take..].iter();
        if self.line.len() + take > MAX_COMMAND_LINE {
            self.line.clear();
            if end.is_none() {
                self.state = State::SkipLine;
            }
            return Step::Error(replies::LINE_TOO_LONG.into());
        }
        self.line.extend_from_slice(&rest[..take]);
        if end.is_none() {
            return Step::NeedMore;
        }
        if let Some(args) = xforward::args(&self.line) {
            self.line.clear();
            return Step::Xforward(args);
        }
        let step = match line::precheck(&self.line) {
            Err(e) => Step::Error(e),
            Ok(Precheck::Bdat { size, last }) => Step::Request(Request::Bdat {
                chunk_size: size,
                is_last: last,
            }),
            Ok(Precheck::Parse) => match Request::parse(&mut self.line.iter()) {
                Ok(req) => Step::Request(req.into_owned()),
                Err(e) => Step::Error(parse_error(e)),
            },
        };
        self.line.clear();
        step
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
            Request::Mail { from } => self.on_mail(from),
            Request::Rcpt { to } => self.on_rcpt(to),
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
            if let Err(e) = hop.abort().await {
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
