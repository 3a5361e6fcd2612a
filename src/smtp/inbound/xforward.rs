//! XFORWARD from the client (an allowed upstream MTA such as Postfix), and the attributes
//! sent to the next hop before each MAIL: the client's own when it sent some for this
//! transaction, else sigstamp's view of the client.
//!
//! smtp-proto does not know the verb, so its lines are collected here before they reach the
//! request parser.

use super::{Session, State, Step, MAX_COMMAND_LINE};
use crate::smtp::replies::{self, Reply, SmtpError};
use crate::smtp::xforward::{self, Attrs};
use smtp_proto::request::receiver::{DummyLineReceiver, RequestReceiver};
use tokio::io::{AsyncRead, AsyncWrite};

const VERB: &[u8] = b"XFORWARD ";

/// What the session knows for XFORWARD.
#[derive(Default)]
pub(super) struct Forwarded {
    /// Attributes the client sent since its last MAIL.
    client: Option<Attrs>,
    /// The client said EHLO (PROTO=ESMTP) rather than HELO.
    pub(super) esmtp: bool,
}

/// Whether a command line starting with `rest` may be XFORWARD: the whole verb, or as much
/// of it as has arrived with no line end yet.
pub(super) fn may_start(rest: &[u8]) -> bool {
    let n = rest.len().min(VERB.len());
    rest[..n].eq_ignore_ascii_case(&VERB[..n])
        && (n == VERB.len() || memchr::memchr(b'\n', rest).is_none())
}

/// Collect the line in `line`; at its end, the XFORWARD request or whatever the parser makes
/// of a line that turned out to be another command.
pub(super) fn feed_line(line: &mut Vec<u8>, it: &mut std::slice::Iter<'_, u8>) -> Option<Step> {
    let rest = it.as_slice();
    let (take, done) = match memchr::memchr(b'\n', rest) {
        Some(p) => (p + 1, true),
        None => (rest.len(), false),
    };
    line.extend_from_slice(&rest[..take]);
    *it = rest[take..].iter();
    if line.len() > MAX_COMMAND_LINE {
        return Some(Step::TooLong);
    }
    if !done {
        return None;
    }
    if line.len() >= VERB.len() && line[..VERB.len()].eq_ignore_ascii_case(VERB) {
        let args = String::from_utf8_lossy(&line[VERB.len()..])
            .trim()
            .to_string();
        return Some(Step::Xforward(args));
    }
    Some(match RequestReceiver::default().ingest(&mut line.iter()) {
        Ok(req) => Step::Request(req.into_owned()),
        Err(smtp_proto::Error::NeedsMoreData { .. }) => {
            Step::ParseError(smtp_proto::Error::UnknownCommand)
        }
        Err(e) => Step::ParseError(e),
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// After the XFORWARD line: back to commands, or skip the rest of an over-long line.
    pub(super) fn after_xforward_line(&mut self, step: &Step) {
        self.state = match step {
            Step::TooLong if !matches!(&self.state, State::Xforward(l) if l.ends_with(b"\n")) => {
                State::SkipLine(DummyLineReceiver::default())
            }
            _ => State::command(),
        };
    }

    pub(super) fn on_xforward(&mut self, args: &str) -> Result<Option<Reply>, SmtpError> {
        if self.helo.is_none() {
            return Err(replies::NEED_HELO.into());
        }
        if self.tx.is_some() {
            return Err(replies::XFORWARD_IN_TRANSACTION.into());
        }
        let attrs = xforward::parse(args).map_err(|e| replies::BAD_PARAMETER.with_detail(e))?;
        let held = self.forwarded.client.get_or_insert_with(Vec::new);
        for (name, value) in attrs {
            held.retain(|(n, _)| *n != name);
            held.push((name, value));
        }
        Ok(Some(replies::OK.into()))
    }

    /// The attributes for the transaction being opened; the client's are used up by it.
    pub(super) fn xforward_attrs(&mut self) -> Attrs {
        self.forwarded.client.take().unwrap_or_else(|| {
            xforward::own_view(self.peer, self.helo.as_deref(), self.forwarded.esmtp)
        })
    }
}
