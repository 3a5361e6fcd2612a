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
use crate::smtp::replies::{self, Reply};
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

/// One command of an envelope group ([`Delivery::envelope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// MAIL (an open transaction is ended first).
    Mail(&'a str),
    Rcpt(&'a str),
    /// An XFORWARD line (before MAIL), for a next hop that offers it
    /// ([`Delivery::xforward_offer`]); its reply is the caller's to log, never the client's.
    Xforward(&'a str),
}

/// The outcome of each command of a group, in order.
pub type Replies<'a> = BoxFuture<'a, Vec<Result<Reply, DeliveryError>>>;

/// Opens sessions with the next hop; one per client session, shared by all of them.
pub trait Connector: Send + Sync {
    /// Connect (greeting, EHLO, STARTTLS as configured).
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Delivery>, HopError>>;
}

/// One open session with the next hop. A transaction is `mail`, `add_rcpt` for each
/// recipient, then `body` (whose final reply commits it: the next hop has taken the message,
/// or has not) or `abort`.
///
/// The client hears each reply in turn, so the session hands over the MAIL and RCPT
/// commands it has in hand as one group ([`Delivery::envelope`]): a next hop that offers
/// PIPELINING (RFC 2920) gets them in one write and the replies are read after, one per
/// command; otherwise they go one by one. [`Delivery::transaction`] is the whole
/// transaction at once (used per recipient group of a split message).
pub trait Delivery: Send {
    /// MAIL (ending an open transaction first).
    fn mail<'a>(&'a mut self, line: &'a str) -> Step<'a>;

    /// One XFORWARD line (ending an open transaction first: it is refused inside one), for a
    /// next hop that offers it ([`Delivery::xforward_offer`]). A hop without it refuses.
    fn xforward<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        let _ = line;
        Box::pin(async { Err(DeliveryError::Rejected(replies::NOT_IMPLEMENTED.into())) })
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

    /// The attributes the next hop takes in XFORWARD (Postfix's extension); `None`: not
    /// offered, and [`Command::Xforward`] must not be sent.
    fn xforward_offer(&self) -> Option<&[String]> {
        None
    }

    /// MAIL and RCPT commands (and XFORWARD before MAIL) as one group: one result per
    /// command, in order. A transport failure fails that command and every later one.
    /// Without pipelining they go one at a time ([`one_by_one`]).
    fn envelope<'a>(&'a mut self, group: &'a [Command<'a>]) -> Replies<'a> {
        one_by_one(self, group)
    }

    /// One whole transaction: MAIL (after ending the open one), every RCPT (one group), the
    /// message. The first refusal ends it and is the error; the message reaches all of
    /// `rcpts` or none of them.
    fn transaction<'a>(
        &'a mut self,
        mail: &'a str,
        rcpts: &'a [&'a str],
        message: &'a [u8],
    ) -> Step<'a> {
        Box::pin(async move {
            let group: Vec<Command<'a>> = std::iter::once(Command::Mail(mail))
                .chain(rcpts.iter().map(|r| Command::Rcpt(r)))
                .collect();
            let results = self.envelope(&group).await;
            for (n, result) in results.into_iter().enumerate() {
                if let Err(e) = result {
                    if n > 0 && matches!(e, DeliveryError::Rejected(_)) {
                        self.abort().await?;
                    }
                    return Err(e);
                }
            }
            self.body(message).await
        })
    }
}

/// [`Delivery::envelope`] one command at a time. After a refused MAIL the recipients are
/// not sent: they hear 503 as from a next hop without a transaction.
pub fn one_by_one<'a, D: Delivery + ?Sized>(d: &'a mut D, group: &'a [Command<'a>]) -> Replies<'a> {
    Box::pin(async move {
        let mut out = Vec::with_capacity(group.len());
        let mut failed: Option<HopError> = None;
        let mut no_mail = false;
        for cmd in group {
            if let Some(e) = &failed {
                out.push(Err(DeliveryError::Hop(e.clone())));
                continue;
            }
            let result = match cmd {
                Command::Mail(line) => {
                    let r = d.mail(line).await;
                    no_mail = r.is_err();
                    r
                }
                Command::Rcpt(_) if no_mail => {
                    Err(DeliveryError::Rejected(replies::NEED_MAIL.into()))
                }
                Command::Rcpt(line) => d.add_rcpt(line).await,
                Command::Xforward(line) => d.xforward(line).await,
            };
            if let Err(DeliveryError::Hop(e)) = &result {
                failed = Some(e.clone());
            }
            out.push(result);
        }
        out
    })
}
