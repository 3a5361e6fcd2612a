//! RSET and QUIT (NOOP, VRFY, HELP answer from the reply table in the dispatcher).

use super::Session;
use crate::smtp::replies::{self, Reply, SmtpError};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn on_rset(&mut self) -> Result<Option<Reply>, SmtpError> {
        self.abort_transaction().await;
        Ok(Some(replies::RESET.into()))
    }

    pub(super) fn on_quit(&mut self) -> Result<Option<Reply>, SmtpError> {
        self.done = true;
        Ok(Some(replies::BYE.into()))
    }
}
