//! The next hop as the client session sees it (maddy's `module.Delivery`): a connector opens
//! a [`Delivery`], one session with the next hop reused across the client's transactions;
//! each step answers with the next hop's reply, and a step that fails says, in its error,
//! what the client hears. Nothing here knows lettre: the production client
//! ([`super::SmtpDelivery`]) and the in-memory one of the session tests
//! ([`super::memory::MemoryHop`]) both sit behind it.
//!
//! Lines are passed as the session built them (`MAIL FROM:<…> params\r\n`, see
//! [`super::commands`]), so DSN and size parameters reach the next hop unchanged whatever
//! client is behind the trait.

use super::HopError;
use crate::smtp::replies::Reply;
use crate::smtp::xforward::Attrs;
use futures::future::BoxFuture;

/// Why a step did not succeed, and so what the client hears.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// The next hop answered with a negative reply (all its lines): relayed as is.
    #[error("next hop refused: {0}")]
    Rejected(Reply),
    /// The connection failed: the client hears a 4xx ([`HopError::reply`]) and the session
    /// forgets the connection.
    #[error(transparent)]
    Hop(#[from] HopError),
}

impl DeliveryError {
    /// The next hop's answer, positive or not, or the transport failure: for callers that
    /// relay refusals and positive replies alike.
    pub fn into_answer(self) -> Result<Reply, HopError> {
        match self {
            DeliveryError::Rejected(reply) => Ok(reply),
            DeliveryError::Hop(e) => Err(e),
        }
    }

    /// What the client hears.
    pub fn reply(&self) -> Reply {
        match self {
            DeliveryError::Rejected(reply) => reply.clone(),
            DeliveryError::Hop(e) => e.reply().into(),
        }
    }
}

/// A reply of the next hop as a step's outcome: positive goes on, negative is `Rejected`.
pub fn verdict(reply: Reply) -> Result<Reply, DeliveryError> {
    if reply.is_positive() {
        Ok(reply)
    } else {
        Err(DeliveryError::Rejected(reply))
    }
}

/// The outcome of one step.
pub type Step<'a> = BoxFuture<'a, Result<Reply, DeliveryError>>;

/// Opens sessions with the next hop; one per client session, shared by all of them.
pub trait Connector: Send + Sync {
    /// Connect (greeting, EHLO, STARTTLS as configured).
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Delivery>, HopError>>;
}

/// One open session with the next hop. A transaction is `mail`, `add_rcpt` for each
/// recipient, then `body` (whose final reply commits it: the next hop has taken the message,
/// or has not) or `abort`.
///
/// The session calls the steps one at a time, since the client hears each reply in turn.
/// [`Delivery::transaction`] is the whole transaction at once (used per recipient group of
/// a split message): a pipelining client (RFC 2920, CHUNKING) overrides it to send MAIL,
/// every RCPT and DATA/BDAT as one group and read the replies after.
pub trait Delivery: Send {
    /// MAIL (ending an open transaction first).
    fn mail<'a>(&'a mut self, line: &'a str) -> Step<'a>;

    /// XFORWARD the client's attributes, before MAIL, when the next hop offers it (a Postfix
    /// `smtpd_proxy_filter` after-filter smtpd); one that does not gets nothing. A refusal
    /// is logged, never fatal: the mail goes on.
    fn xforward<'a>(&'a mut self, attrs: &'a Attrs) -> BoxFuture<'a, Result<(), HopError>> {
        let _ = attrs;
        Box::pin(async { Ok(()) })
    }

    /// One RCPT; a refusal concerns this recipient only.
    fn add_rcpt<'a>(&'a mut self, line: &'a str) -> Step<'a>;

    /// The message (any line breaks; it goes out with CRLF, dot-stuffed) and the next hop's
    /// final reply. The transaction is over either way.
    fn body<'a>(&'a mut self, message: &'a [u8]) -> Step<'a>;

    /// End the open transaction, if any (client RSET, or a refused message).
    fn abort(&mut self) -> BoxFuture<'_, Result<(), HopError>>;

    /// Whether the connection can carry another command.
    fn is_usable(&self) -> bool;

    /// Say goodbye; errors do not matter any more.
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()>;

    /// One whole transaction: MAIL (after ending the open one), every RCPT, the message.
    /// The first refusal ends it and is the error; the message reaches all of `rcpts` or
    /// none of them.
    fn transaction<'a>(
        &'a mut self,
        mail: &'a str,
        rcpts: &'a [&'a str],
        message: &'a [u8],
    ) -> Step<'a> {
        Box::pin(async move {
            self.mail(mail).await?;
            for line in rcpts {
                if let Err(e) = self.add_rcpt(line).await {
                    if let DeliveryError::Rejected(_) = e {
                        self.abort().await?;
                    }
                    return Err(e);
                }
            }
            self.body(message).await
        })
    }
}
