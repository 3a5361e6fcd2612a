//! EHLO and HELO.

use super::{Session, State};
use crate::smtp::replies::{Reply, SmtpError};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn on_ehlo(&mut self, host: String) -> Result<Option<Reply>, SmtpError> {
        self.new_helo(host);
        self.forwarded.esmtp = true;
        let cfg = &self.shared.cfg;
        let mut lines = vec![
            cfg.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", cfg.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "DSN".into(),
            "CHUNKING".into(),
            // Only allowed clients get this far (the others are refused at connect).
            crate::smtp::xforward::ehlo_keyword(),
        ];
        if self.shared.tls.load().is_some() && !self.io.is_tls() {
            lines.push("STARTTLS".into());
        }
        Ok(Some(Reply { code: 250, lines }))
    }

    pub(super) fn on_helo(&mut self, host: String) -> Result<Option<Reply>, SmtpError> {
        self.new_helo(host);
        self.forwarded.esmtp = false;
        Ok(Some(Reply::new(250, self.shared.cfg.hostname.clone())))
    }

    /// EHLO/HELO reset the transaction (RFC 5321 §4.1.4); the next hop is reset lazily.
    fn new_helo(&mut self, host: String) {
        self.helo = Some(host);
        self.tx = None;
        self.state = State::command();
    }
}
