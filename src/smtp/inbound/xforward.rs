//! XFORWARD from the client (an allowed upstream MTA such as Postfix), and the attributes
//! sent to the next hop before each MAIL: the client's own when it sent some for this
//! transaction, else sigstamp's view of the client.
//!
//! smtp-proto does not know the verb: the session hands complete XFORWARD lines here before
//! they reach the request parser.

use super::Session;
use crate::smtp::replies::{self, Reply, SmtpError};
use crate::smtp::xforward::{self, Attrs};
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

/// The arguments of an XFORWARD command line (CRLF or LF included), or `None` for any
/// other command.
pub(super) fn args(line: &[u8]) -> Option<String> {
    let verb = line.get(..VERB.len())?;
    verb.eq_ignore_ascii_case(VERB).then(|| {
        String::from_utf8_lossy(&line[VERB.len()..])
            .trim()
            .to_string()
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
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
