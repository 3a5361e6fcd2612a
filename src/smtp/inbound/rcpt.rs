//! RCPT TO: checked, then it joins the group for the next hop (see `Session::settle`); the
//! next hop's answer for this recipient is the client's answer.

use super::{Pending, Session};
use crate::smtp::outbound::commands;
use crate::smtp::replies::{self, Reply, SmtpError};
use smtp_proto::RcptTo;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn on_rcpt(&mut self, to: RcptTo<String>) -> Result<Option<Reply>, SmtpError> {
        let max = self.shared.cfg.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return Err(replies::NEED_MAIL.into());
        };
        if tx.attempted >= max {
            return Err(replies::TOO_MANY_RECIPIENTS.into());
        }
        if !tx.smtputf8 && !to.address.is_ascii() {
            return Err(replies::NON_ASCII_ADDRESS.into());
        }
        let line = commands::rcpt_line(&to)?;
        tx.attempted += 1;
        self.pending.push(Pending::Rcpt {
            address: to.address,
            line,
        });
        Ok(None)
    }
}
