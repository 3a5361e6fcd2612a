//! One milter connection: option negotiation, collecting the envelope, headers and body,
//! and the end-of-message answer.

use super::message::{self, Header, HeaderEdit, MtaChanges};
use super::wire::{self, Command, WireError, BODY_CHUNK};
use super::{MilterHandles, OnError, Settings};
use crate::pipeline::{self, Envelope, Stamper, Verdict};
use crate::smtp::io::RateDeadline;
use miltr_common::actions::{Action, Continue, Tempfail};
use miltr_common::encoding::ServerMessage;
use miltr_common::modifications::headers::{AddHeader, ChangeHeader, InsertHeader};
use miltr_common::modifications::ModificationAction;
use miltr_common::optneg::{Capability, OptNeg, Protocol};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tracing::{debug, warn};

/// The only modifications we ever send.
const ACTIONS: Capability = Capability::SMFIF_ADDHDRS
    .union(Capability::SMFIF_CHGBODY)
    .union(Capability::SMFIF_CHGHDRS);

/// Events we do not need, replies we do not send, and exact header values. Intersected with
/// what the MTA offers. RCPT stays on: the envelope carries the recipients.
const WANTED_PROTOCOL: Protocol = Protocol::NO_CONNECT
    .union(Protocol::NO_HELO)
    .union(Protocol::NO_UNKNOWN)
    .union(Protocol::NO_DATA)
    .union(Protocol::NO_END_OF_HEADER)
    .union(Protocol::NR_CONNECT)
    .union(Protocol::NR_HELO)
    .union(Protocol::NR_MAIL)
    .union(Protocol::NR_RECIPIENT)
    .union(Protocol::NR_DATA)
    .union(Protocol::NR_UNKNOWN)
    .union(Protocol::NR_HEADER)
    .union(Protocol::NR_END_OF_HEADER)
    .union(Protocol::NR_BODY)
    .union(Protocol::SMFIP_HDR_LEADSPC);

const MAX_VERSION: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{0} before option negotiation")]
    NotNegotiated(&'static str),
    #[error("MTA speaks milter protocol version {0}; 2 or later is needed")]
    Version(u32),
    #[error("MTA does not allow the modifications we need ({0:?})")]
    Actions(Capability),
}

/// What to do after a command.
enum Step {
    Silent,
    Reply(ServerMessage),
    EndOfMessage(Answer),
    Close,
}

/// The end-of-message answer.
struct Answer {
    headers: Vec<ServerMessage>,
    body: Option<Vec<u8>>,
    last: ServerMessage,
}

impl Answer {
    fn only(last: Action) -> Self {
        Answer {
            headers: Vec::new(),
            body: None,
            last: ServerMessage::Action(last),
        }
    }
}

/// One message in progress. Dropped whole on abort, end of message or disconnect.
#[derive(Default)]
struct Message {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    headers: Vec<Header>,
    body: Vec<u8>,
    size: usize,
    too_large: bool,
    /// Headers or body have started: the MTA sends the rest without pause.
    in_content: bool,
}

pub struct Session {
    handles: MilterHandles,
    settings: Arc<Settings>,
    protocol: Option<Protocol>,
    /// `{mail_addr}` from the MAIL macros: a fallback if MAIL itself is not sent.
    macro_mail_addr: Option<String>,
    /// The MTA's queue id (macro `i`, sent by Postfix with MAIL and end of message): the
    /// message log line's key into the MTA's own log.
    queue_id: Option<String>,
    msg: Message,
}

impl Session {
    pub fn new(handles: MilterHandles, settings: Arc<Settings>) -> Self {
        Session {
            handles,
            settings,
            protocol: None,
            macro_mail_addr: None,
            queue_id: None,
            msg: Message::default(),
        }
    }

    /// Between commands of the SMTP client's pace (not inside message content).
    fn idle(&self) -> bool {
        !self.msg.in_content
    }

    fn has(&self, flag: Protocol) -> bool {
        self.protocol.is_some_and(|p| p.contains(flag))
    }

    fn reply_unless(&self, flag: Protocol) -> Step {
        if self.has(flag) {
            Step::Silent
        } else {
            Step::Reply(ServerMessage::Action(Continue.into()))
        }
    }

    async fn handle(&mut self, cmd: Command) -> Result<Step, SessionError> {
        if self.protocol.is_none() && !matches!(cmd, Command::OptNeg(_) | Command::Quit) {
            return Err(SessionError::NotNegotiated(cmd.name()));
        }
        Ok(match cmd {
            Command::OptNeg(theirs) => {
                let ours = negotiate(&theirs)?;
                debug!(version = ours.version, protocol = ?ours.protocol, "milter negotiated");
                self.protocol = Some(ours.protocol);
                self.reset();
                Step::Reply(ServerMessage::Optneg(ours))
            }
            Command::Macro { stage, pairs } => {
                if let Some((_, v)) = pairs.iter().find(|(k, _)| k == b"i" || k == b"{i}") {
                    self.queue_id = Some(log_safe(v));
                }
                if stage == b'M' {
                    self.macro_mail_addr = pairs
                        .iter()
                        .find(|(k, _)| k == b"{mail_addr}" || k == b"mail_addr")
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                }
                Step::Silent
            }
            Command::Connect => self.reply_unless(Protocol::NR_CONNECT),
            Command::Helo => self.reply_unless(Protocol::NR_HELO),
            Command::Data => self.reply_unless(Protocol::NR_DATA),
            Command::Unknown => self.reply_unless(Protocol::NR_UNKNOWN),
            Command::EndOfHeaders => self.reply_unless(Protocol::NR_END_OF_HEADER),
            Command::Mail(sender) => {
                self.msg = Message {
                    mail_from: Some(strip_brackets(&sender).to_string()),
                    ..Message::default()
                };
                self.reply_unless(Protocol::NR_MAIL)
            }
            Command::Rcpt(rcpt) => {
                self.msg.rcpt_to.push(strip_brackets(&rcpt).to_string());
                self.reply_unless(Protocol::NR_RECIPIENT)
            }
            Command::Header(h) => {
                self.msg.in_content = true;
                if self.account(h.name.len() + h.value.len() + 4) {
                    self.msg.headers.push(h);
                }
                self.reply_unless(Protocol::NR_HEADER)
            }
            Command::Body(chunk) => {
                self.msg.in_content = true;
                if self.account(chunk.len()) {
                    self.msg.body.extend_from_slice(&chunk);
                }
                self.reply_unless(Protocol::NR_BODY)
            }
            Command::EndOfBody(last) => {
                if !last.is_empty() && self.account(last.len()) {
                    self.msg.body.extend_from_slice(&last);
                }
                Step::EndOfMessage(self.end_of_message().await)
            }
            Command::Abort => {
                self.reset();
                Step::Silent
            }
            Command::QuitNc => {
                // The MTA reuses this connection for another SMTP session.
                self.reset();
                Step::Silent
            }
            Command::Quit => Step::Close,
        })
    }

    fn reset(&mut self) {
        self.msg = Message::default();
        self.macro_mail_addr = None;
        self.queue_id = None;
    }

    /// Count `n` more bytes; past the limit, stop buffering (the message passes unchanged).
    fn account(&mut self, n: usize) -> bool {
        if self.msg.too_large {
            return false;
        }
        self.msg.size += n;
        if self.msg.size as u64 > self.settings.max_message_size {
            self.msg.too_large = true;
            self.msg.headers = Vec::new();
            self.msg.body = Vec::new();
            return false;
        }
        true
    }

    async fn end_of_message(&mut self) -> Answer {
        let msg = std::mem::take(&mut self.msg);
        let macro_addr = self.macro_mail_addr.take();
        let queue_id = self.queue_id.take();
        let metrics = &self.handles.metrics;
        let started = Instant::now();
        let line = MessageLine {
            queue_id: queue_id.as_deref().unwrap_or("-"),
            from: log_safe(
                msg.mail_from
                    .as_deref()
                    .or(macro_addr.as_deref())
                    .unwrap_or("-")
                    .as_bytes(),
            ),
            rcpts: msg.rcpt_to.len(),
            size: msg.size,
            started,
        };
        if msg.too_large {
            metrics.count_message("milter", "too_large");
            line.log("too_large", None, "continue");
            return Answer::only(Continue.into());
        }
        if self.settings.echo {
            return Answer {
                headers: Vec::new(),
                body: Some(msg.body),
                last: ServerMessage::Action(Continue.into()),
            };
        }
        let leadspc = self.has(Protocol::SMFIP_HDR_LEADSPC);
        let size = msg.size;
        let stamper = self.handles.stamper.clone();
        // Inline or on the blocking pool by size. A panic in stamping is contained in
        // `stamp_message` (outcome `internal_error`, message unchanged); only a failed
        // blocking task is answered per `on_error`.
        let keep = self.handles.sent_items.enabled();
        let outcome = pipeline::run(size, &metrics.stamp_cpu_seconds, move || {
            stamp_message(&stamper, msg, macro_addr, leadspc, keep)
        })
        .await;
        metrics
            .stamp_seconds
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(s) => {
                metrics.count_message("milter", s.label);
                line.log(s.label, s.template.as_deref(), "continue");
                match s.changes {
                    Some(changes) => {
                        debug!(sender = %s.detail, "milter: stamped");
                        // Queued as we accept: the milter protocol says nothing after end
                        // of message, so this is the last point Postfix tells us about
                        // (see docs/sent-items.md).
                        if let Some(message) = s.stamped {
                            self.handles.sent_items.enqueue(&s.detail, message);
                        }
                        answer(changes, s.body_changed)
                    }
                    None => {
                        debug!(outcome = s.label, reason = %s.detail, "milter: left unchanged");
                        Answer::only(Continue.into())
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, on_error = ?self.settings.on_error, "milter: stamping failed");
                metrics.count_message("milter", "error");
                let answer = self.on_error();
                let action = match answer.last {
                    ServerMessage::Action(Action::Tempfail(_)) => "tempfail",
                    _ => "continue",
                };
                line.log("error", None, action);
                answer
            }
        }
    }

    fn on_error(&self) -> Answer {
        match self.settings.on_error {
            OnError::Accept => Answer::only(Continue.into()),
            OnError::Tempfail => Answer::only(Tempfail.into()),
        }
    }
}

/// What the pipeline made of one message.
struct Stamping {
    /// The outcome label (`sigstamp_messages_total`).
    label: &'static str,
    /// For the log: the sender signed for, or why the message was left unchanged.
    detail: String,
    /// What the MTA must change; `None`: left unchanged.
    changes: Option<MtaChanges>,
    /// The body differs (replace it); else only headers change.
    body_changed: bool,
    /// The stamped message, when asked to keep it (Sent Items).
    stamped: Option<Vec<u8>>,
    /// The template signed with, if stamped.
    template: Option<String>,
}

/// The milter's per-message log line (the relay's is `smtp::inbound::log`): one line at
/// `info` per message, keyed by the MTA's queue id so it joins the MTA's own log, which has
/// the client and the final delivery.
struct MessageLine<'a> {
    queue_id: &'a str,
    from: String,
    rcpts: usize,
    size: usize,
    started: Instant,
}

impl MessageLine<'_> {
    fn log(&self, outcome: &str, template: Option<&str>, action: &str) {
        tracing::info!(
            queue_id = %self.queue_id,
            from = %self.from,
            rcpts = self.rcpts,
            size = self.size,
            outcome = %outcome,
            template = %template.unwrap_or("-"),
            action = %action,
            time_ms = self.started.elapsed().as_millis() as u64,
            "milter message"
        );
    }
}

/// An MTA-supplied value for the log: at most 256 characters, control characters as `?`,
/// so that a value can never forge or break a log line.
fn log_safe(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .chars()
        .take(256)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Rebuild the message, run the pipeline, compute what the MTA must change.
fn stamp_message(
    stamper: &Stamper,
    msg: Message,
    macro_addr: Option<String>,
    leadspc: bool,
    keep: bool,
) -> Stamping {
    let raw = message::rebuild(&msg.headers, &msg.body, leadspc);
    drop(msg.headers);
    let mail_from = msg.mail_from.or(macro_addr);
    let env = Envelope {
        mail_from: mail_from.as_deref(),
        rcpt_to: &msg.rcpt_to,
    };
    // A milter cannot split a transaction: when rules give internal and external
    // recipients different signatures, `process` applies the external recipients' choice.
    // The pipeline contains a panic in stamping; computing the edits is contained the same
    // way, so a panic anywhere leaves the message as the MTA has it.
    let stamped = crate::pipeline::contain(&raw, || {
        let verdict = stamper.process(&raw, &env);
        let label = verdict.label();
        let template = match &verdict {
            Verdict::Stamped { template, .. } => Some(template.clone()),
            Verdict::Unchanged(_) => None,
        };
        let detail = match &verdict {
            Verdict::Stamped { sender, .. } => sender.clone(),
            Verdict::Unchanged(why) => why.to_string(),
        };
        let (changes, stamped) = match verdict {
            Verdict::Stamped { message, .. } => (
                Some(message::edits(&raw, &message, leadspc)),
                keep.then_some(message),
            ),
            Verdict::Unchanged(_) => (None, None),
        };
        let body_changed = changes.as_ref().is_some_and(|c| c.body != msg.body);
        Stamping {
            label,
            detail,
            changes,
            body_changed,
            stamped,
            template,
        }
    });
    stamped.unwrap_or_else(|p| Stamping {
        label: "internal_error",
        detail: p.reason,
        changes: None,
        body_changed: false,
        stamped: None,
        template: None,
    })
}

fn answer(edits: MtaChanges, body_changed: bool) -> Answer {
    let headers = edits
        .headers
        .into_iter()
        .map(|e| {
            let m: ModificationAction = match e {
                HeaderEdit::Insert { index, name, value } => {
                    InsertHeader::new(index, &name, &value).into()
                }
                HeaderEdit::Change { index, name, value } => {
                    ChangeHeader::new(index, &name, &value).into()
                }
                HeaderEdit::Add { name, value } => AddHeader::new(&name, &value).into(),
            };
            ServerMessage::ModificationAction(m)
        })
        .collect();
    Answer {
        headers,
        body: body_changed.then_some(edits.body),
        last: ServerMessage::Action(Continue.into()),
    }
}

fn negotiate(theirs: &OptNeg) -> Result<OptNeg, SessionError> {
    if theirs.version < 2 {
        return Err(SessionError::Version(theirs.version));
    }
    if !theirs.capabilities.contains(ACTIONS) {
        return Err(SessionError::Actions(theirs.capabilities));
    }
    Ok(OptNeg {
        version: theirs.version.min(MAX_VERSION),
        capabilities: ACTIONS,
        protocol: WANTED_PROTOCOL.intersection(theirs.protocol),
        ..OptNeg::default()
    })
}

fn strip_brackets(addr: &str) -> &str {
    let a = addr.trim();
    a.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(a)
}

/// Drive one connection until QUIT, end of stream, an error, or shutdown while idle.
pub async fn serve<S>(stream: S, peer: String, handles: MilterHandles, settings: Arc<Settings>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (r, w) = tokio::io::split(stream);
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut w = BufWriter::new(w);
    let shutdown = handles.shutdown.clone();
    let timeout = settings.data_timeout;
    let mut session = Session::new(handles, settings.clone());
    // Inside a message's content: the rate the MTA must keep (`min_data_rate`).
    let mut rate: Option<RateDeadline> = None;
    loop {
        let idle = session.idle();
        if idle {
            rate = None;
        } else if rate.is_none() {
            rate = Some(RateDeadline::new(timeout, settings.min_data_rate));
        }
        let limits = wire::ReadLimits {
            wait: if idle {
                settings.command_timeout
            } else {
                timeout
            },
            timeout,
            deadline: settings.command_deadline,
        };
        let cmd = tokio::select! {
            // Between messages we may leave; inside one we finish it first.
            _ = shutdown.cancelled(), if idle => {
                debug!(%peer, "milter: shutting down, closing idle connection");
                break;
            }
            c = wire::read_command(&mut r, limits, rate.as_mut()) => c,
        };
        let cmd = match cmd {
            Ok(Some(c)) => c,
            Ok(None) => {
                if !idle || session.msg.mail_from.is_some() {
                    debug!(%peer, "milter: MTA closed the connection mid-message");
                }
                break;
            }
            Err(e) => {
                warn!(%peer, error = %e, "milter: closing connection");
                break;
            }
        };
        let step = match session.handle(cmd).await {
            Ok(s) => s,
            Err(e) => {
                warn!(%peer, error = %e, "milter: closing connection");
                break;
            }
        };
        let sent = match step {
            Step::Silent => Ok(()),
            Step::Close => break,
            Step::Reply(m) => wire::send(&mut w, &[m], timeout).await,
            Step::EndOfMessage(a) => send_answer(&mut w, a, timeout).await,
        };
        if let Err(e) = sent {
            warn!(%peer, error = %e, "milter: cannot answer the MTA, closing connection");
            break;
        }
    }
    let _ = w.shutdown().await;
    debug!(%peer, "milter: connection closed");
}

async fn send_answer<W: AsyncWrite + Unpin>(
    w: &mut W,
    a: Answer,
    timeout: std::time::Duration,
) -> Result<(), WireError> {
    // Headers first, then the body in one uninterrupted run of chunks (Postfix ends a body
    // replacement at the first other reply), then the verdict. Written a group of chunks
    // at a time, so the copy in the write buffer stays bounded whatever the body's size.
    let mut buf = wire::encode(&a.headers);
    if let Some(body) = &a.body {
        for group in body.chunks(16 * BODY_CHUNK) {
            wire::encode_body(group, &mut buf);
            if buf.len() >= 16 * BODY_CHUNK {
                wire::write_bytes(w, &buf, timeout).await?;
                buf.clear();
            }
        }
    }
    buf.extend_from_slice(&wire::encode(std::slice::from_ref(&a.last)));
    wire::write_bytes(w, &buf, timeout).await?;
    wire::flush(w, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_keeps_only_what_is_needed_and_offered() {
        let theirs = OptNeg {
            version: 6,
            capabilities: Capability::all(),
            protocol: Protocol::all(),
            ..OptNeg::default()
        };
        let ours = negotiate(&theirs).unwrap();
        assert_eq!(ours.version, 6);
        assert_eq!(ours.capabilities, ACTIONS);
        assert_eq!(ours.protocol, WANTED_PROTOCOL);
        assert!(!ours.protocol.contains(Protocol::NO_RECIPIENT));
        assert!(!ours.protocol.contains(Protocol::NO_MAIL));

        let old = OptNeg {
            version: 2,
            capabilities: Capability::all(),
            protocol: Protocol::NO_CONNECT | Protocol::NO_HELO,
            ..OptNeg::default()
        };
        let ours = negotiate(&old).unwrap();
        assert_eq!(ours.version, 2);
        assert_eq!(ours.protocol, Protocol::NO_CONNECT | Protocol::NO_HELO);

        let weak = OptNeg {
            capabilities: Capability::SMFIF_ADDHDRS,
            ..theirs
        };
        assert!(matches!(negotiate(&weak), Err(SessionError::Actions(_))));
    }

    fn session(on_error: OnError) -> Session {
        use crate::directory::Directory;
        use crate::render::Templates;
        let handles = MilterHandles {
            stamper: Arc::new(crate::pipeline::Stamper::new(
                Arc::new(Directory::new()),
                Templates::embedded(),
            )),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            status: Arc::new(crate::status::Status::default()),
            shutdown: tokio_util::sync::CancellationToken::new(),
            sent_items: Default::default(),
        };
        let settings = Settings {
            on_error,
            ..Settings::from(&super::super::MilterConfig::default())
        };
        Session::new(handles, Arc::new(settings))
    }

    #[test]
    fn internal_errors_answer_per_on_error() {
        let code = |a: Answer| match a.last {
            ServerMessage::Action(Action::Continue(_)) => 'c',
            ServerMessage::Action(Action::Tempfail(_)) => 't',
            other => panic!("{other:?}"),
        };
        assert_eq!(code(session(OnError::Accept).on_error()), 'c');
        assert_eq!(code(session(OnError::Tempfail).on_error()), 't');
    }

    #[tokio::test]
    async fn commands_before_negotiation_are_refused() {
        let mut s = session(OnError::Accept);
        assert!(matches!(
            s.handle(Command::Mail("<a@b>".into())).await,
            Err(SessionError::NotNegotiated("MAIL"))
        ));
    }

    /// The null milter answers with the body as received, no header edit, and continues.
    #[tokio::test]
    async fn echo_answers_with_the_body_itself() {
        let mut s = session(OnError::Accept);
        s.settings = Arc::new(Settings {
            echo: true,
            ..(*s.settings).clone()
        });
        s.msg.body = b"Hello\r\n".to_vec();
        s.msg.size = 7;
        let a = s.end_of_message().await;
        assert!(a.headers.is_empty());
        assert_eq!(a.body.as_deref(), Some(&b"Hello\r\n"[..]));
        assert!(matches!(a.last, ServerMessage::Action(Action::Continue(_))));
    }

    /// One `info` line per message with the queue id, sender, recipients, size, outcome and
    /// template; MTA-supplied values cannot break the line.
    #[test]
    fn one_log_line_per_message() {
        use std::io::Write;
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = session(OnError::Accept);
            s.protocol = Some(Protocol::empty());
            let q = Command::Macro {
                stage: b'M',
                pairs: vec![(b"i".to_vec(), b"4Xq1\r\nforged".to_vec())],
            };
            s.handle(q).await.unwrap();
            s.handle(Command::Mail("<nobody@example.com>".into()))
                .await
                .unwrap();
            s.handle(Command::Rcpt("<x@example.org>".into()))
                .await
                .unwrap();
            s.msg.body = b"Hello\r\n".to_vec();
            s.msg.size = 7;
            s.end_of_message().await;
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("milter message"))
            .collect();
        assert_eq!(lines.len(), 1, "{out}");
        for part in [
            "queue_id=4Xq1??forged",
            "from=nobody@example.com",
            "rcpts=1",
            "size=7",
            "outcome=unknown_sender",
            "template=-",
            "action=continue",
        ] {
            assert!(lines[0].contains(part), "{part} in {}", lines[0]);
        }
    }

    #[test]
    fn brackets() {
        assert_eq!(strip_brackets("<a@b>"), "a@b");
        assert_eq!(strip_brackets("<>"), "");
        assert_eq!(strip_brackets("a@b"), "a@b");
    }
}
