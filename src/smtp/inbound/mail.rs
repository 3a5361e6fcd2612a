//! MAIL FROM: policy checks, then open (or reuse) the next-hop session and relay its answer.

use super::{Session, Transaction};
use crate::smtp::outbound::commands;
use crate::smtp::outbound::{DeliveryError, HopError};
use crate::smtp::replies::{self, Reply, SmtpError};
use crate::smtp::tls;
use crate::smtp::xforward::Attrs;
use smtp_proto::{MailFrom, MAIL_SMTPUTF8};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn on_mail(
        &mut self,
        from: MailFrom<String>,
    ) -> Result<Option<Reply>, SmtpError> {
        if self.helo.is_none() {
            return Err(replies::NEED_HELO.into());
        }
        if self.tx.is_some() {
            return Err(replies::NESTED_MAIL.into());
        }
        if self.shared.shutdown.is_cancelled() {
            return Err(SmtpError::closing(replies::SHUTTING_DOWN));
        }
        let cfg = &self.shared.cfg;
        if cfg.require_tls && !self.io.is_tls() {
            return Err(replies::MUST_STARTTLS.into());
        }
        if !cfg.client_cert_names.is_empty() {
            let ok = self
                .io
                .peer_certificate()
                .is_some_and(|der| tls::cert_matches(der, &cfg.client_cert_names));
            if !ok {
                tracing::warn!(peer = ?self.peer, "client certificate missing or not accepted");
                return Err(replies::CLIENT_CERT_REJECTED.into());
            }
        }
        if from.size > cfg.max_message_size {
            return Err(replies::MESSAGE_TOO_BIG.into());
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if !smtputf8 && !from.address.is_ascii() {
            return Err(replies::NON_ASCII_ADDRESS.into());
        }
        let line = commands::mail_line(&from)?;
        let reply = self.hop_mail(&line).await?;
        if reply.is_positive() {
            let mut tx = Transaction::new(from.address, from.size, line);
            tx.smtputf8 = smtputf8;
            self.tx = Some(tx);
        }
        Ok(Some(reply))
    }

    /// MAIL on the open next-hop session, or on a new one. A reused session the next hop
    /// has meanwhile closed is replaced once.
    async fn hop_mail(&mut self, line: &str) -> Result<Reply, SmtpError> {
        let reused = self.hop.as_ref().is_some_and(|h| h.is_usable());
        if !reused {
            self.hop = None;
        }
        let attrs = self.xforward_attrs();
        let first = self.try_hop_mail(line, &attrs).await;
        match first {
            Err(DeliveryError::Hop(HopError::Network(_) | HopError::Timeout)) if reused => {
                self.hop = None;
                self.try_hop_mail(line, &attrs).await
            }
            other => other,
        }
        .or_else(DeliveryError::into_answer)
        .map_err(|e| self.hop_failed(e))
    }

    async fn try_hop_mail(&mut self, line: &str, attrs: &Attrs) -> Result<Reply, DeliveryError> {
        if self.hop.is_none() {
            self.hop = Some(self.shared.next_hop.connect().await?);
        }
        let Some(hop) = self.hop.as_mut() else {
            unreachable!("connected above")
        };
        hop.xforward(attrs).await?;
        hop.mail(line).await
    }
}
