//! STARTTLS (RFC 3207).

use super::{Session, State};
use crate::smtp::replies::{self, Reply, SmtpError};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn on_starttls(&mut self) -> Result<Option<Reply>, SmtpError> {
        if self.shared.tls.load().is_none() {
            return Err(replies::NOT_IMPLEMENTED.into());
        }
        if self.io.is_tls() {
            return Err(replies::TLS_ACTIVE.into());
        }
        // The session loop flushes this reply, drops any input that came with the command and
        // runs the handshake.
        self.starttls_pending = true;
        Ok(Some(replies::READY_TLS.into()))
    }

    /// Handshake; on success the session starts over (no HELO, no transaction).
    pub(super) async fn start_tls(&mut self) -> bool {
        let Some(config) = self.shared.tls.load_full() else {
            return false;
        };
        let handshake =
            tokio::time::timeout(self.shared.cfg.command_timeout, self.io.upgrade(config));
        match handshake.await {
            Ok(Ok(())) => {
                self.helo = None;
                self.tx = None;
                self.state = State::command();
                self.line.clear();
                self.line_started = None;
                true
            }
            Ok(Err(e)) => {
                tracing::info!(peer = ?self.peer, error = %e, "TLS handshake failed");
                false
            }
            Err(_) => {
                tracing::info!(peer = ?self.peer, "TLS handshake timed out");
                false
            }
        }
    }
}
