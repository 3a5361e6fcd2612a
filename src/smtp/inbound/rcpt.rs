//! RCPT TO: relayed one by one; the next hop's answer is the client's answer.

use super::Session;
use crate::smtp::outbound::{commands, DeliveryError};
use crate::smtp::replies::{self, Reply, SmtpError};
use smtp_proto::RcptTo;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn on_rcpt(&mut self, to: RcptTo<String>) -> Result<Option<Reply>, SmtpError> {
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
        let Some(hop) = self.hop.as_mut() else {
            // A transaction implies a next-hop session; should it be gone, say so.
            self.tx = None;
            return Err(replies::NEXT_HOP_BROKEN.into());
        };
        match hop
            .add_rcpt(&line)
            .await
            .or_else(DeliveryError::into_answer)
        {
            Ok(reply) => {
                if reply.is_positive() {
                    if let Some(tx) = self.tx.as_mut() {
                        tx.rcpts.push(to.address);
                        tx.rcpt_lines.push(line);
                    }
                }
                Ok(Some(reply))
            }
            Err(e) => Err(self.hop_failed(e)),
        }
    }
}
