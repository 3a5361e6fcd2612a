//! MAIL FROM: policy checks, then the command joins the group for the next hop; `settle`
//! hands the group (MAIL and RCPTs) to the open or a new next-hop session and relays each
//! answer.

use super::{Pending, Session, Transaction};
use crate::smtp::outbound::commands;
use crate::smtp::outbound::{Command, DeliveryError, HopError};
use crate::smtp::replies::{self, Reply, SmtpError};
use crate::smtp::tls;
use crate::smtp::xforward::{self, Attrs};
use smtp_proto::{MailFrom, MAIL_SMTPUTF8};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn on_mail(&mut self, from: MailFrom<String>) -> Result<Option<Reply>, SmtpError> {
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
        let mut tx = Transaction::new(from.address, from.size, line.clone());
        tx.smtputf8 = smtputf8;
        // Open until the next hop refuses MAIL (`settle`), so that pipelined RCPTs join it.
        self.tx = Some(tx);
        self.pending.push(Pending::Mail { line });
        Ok(None)
    }

    /// Hand the pending MAIL/RCPT commands to the next hop as one group and queue their
    /// replies in order: a refused MAIL ends the transaction, an accepted RCPT joins it, a
    /// transport failure is a 4xx for that command and ends the transaction (later ones of
    /// the group hear 503, as they would have sent one by one).
    pub(super) async fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let group: Vec<Command<'_>> = pending
            .iter()
            .map(|p| match p {
                Pending::Mail { line } => Command::Mail(line),
                Pending::Rcpt { line, .. } => Command::Rcpt(line),
            })
            .collect();
        let opens = matches!(pending.first(), Some(Pending::Mail { .. }));
        let results = self.hop_envelope(&group, opens).await;
        drop(group);
        let mut lost = false;
        for (p, result) in pending.into_iter().zip(results) {
            let answer = match (p, result) {
                (Pending::Rcpt { address, line }, Ok(reply)) => {
                    if let Some(tx) = self.tx.as_mut() {
                        tx.rcpts.push(address);
                        tx.rcpt_lines.push(line);
                    }
                    Ok(Some(reply))
                }
                (_, Ok(reply)) => Ok(Some(reply)),
                (p, Err(DeliveryError::Rejected(reply))) => {
                    if let Pending::Mail { .. } = p {
                        self.tx = None;
                    }
                    Ok(Some(reply))
                }
                // The transaction went with the connection: as if sent after the failure.
                (_, Err(DeliveryError::Hop(_))) if lost => Err(replies::NEED_MAIL.into()),
                (_, Err(DeliveryError::Hop(e))) => {
                    lost = true;
                    Err(self.hop_failed(e))
                }
            };
            self.answer(answer);
        }
    }

    /// The group on the open next-hop session, or on a new one. A group opening a
    /// transaction on a reused session the next hop has meanwhile closed (connection lost,
    /// or its 421 on the way out) goes once more on a new session.
    async fn hop_envelope(
        &mut self,
        group: &[Command<'_>],
        opens: bool,
    ) -> Vec<Result<Reply, DeliveryError>> {
        if self.hop.is_none() && !opens {
            // Recipients without the session their MAIL opened: it is gone.
            self.tx = None;
            let lost = DeliveryError::Rejected(replies::NEXT_HOP_BROKEN.into());
            return vec![Err(lost); group.len()];
        }
        let reused = self.hop.as_ref().is_some_and(|h| h.is_usable());
        if opens && !reused {
            self.hop = None;
        }
        // The client's attributes go with each transaction (they are the client's view once
        // per MAIL, as Postfix's proxy filters send them).
        let attrs = opens.then(|| self.xforward_attrs());
        let first = self.try_envelope(group, attrs.as_ref()).await;
        let closed = match first.first() {
            Some(Err(DeliveryError::Hop(HopError::Network(_) | HopError::Timeout))) => true,
            Some(Err(DeliveryError::Rejected(r))) => r.code == 421,
            _ => false,
        };
        if opens && reused && closed {
            self.hop = None;
            return self.try_envelope(group, attrs.as_ref()).await;
        }
        first
    }

    async fn try_envelope(
        &mut self,
        group: &[Command<'_>],
        attrs: Option<&Attrs>,
    ) -> Vec<Result<Reply, DeliveryError>> {
        if self.hop.is_none() {
            match self.shared.next_hop.connect().await {
                Ok(hop) => self.hop = Some(hop),
                Err(e) => return vec![Err(e.into()); group.len()],
            }
        }
        let Some(hop) = self.hop.as_mut() else {
            unreachable!("connected above")
        };
        // XFORWARD before the MAIL, in the same group, when the next hop offers it; its
        // replies are ours to log, never the client's.
        let lines = match (attrs, hop.xforward_offer()) {
            (Some(attrs), Some(offer)) => xforward::command_lines(attrs, offer),
            _ => Vec::new(),
        };
        if lines.is_empty() {
            return hop.envelope(group).await;
        }
        let full: Vec<Command<'_>> = lines
            .iter()
            .map(|l| Command::Xforward(l))
            .chain(group.iter().copied())
            .collect();
        let mut results = hop.envelope(&full).await;
        let rest = results.split_off(lines.len());
        for refused in results.into_iter().filter_map(|r| r.err()) {
            if let DeliveryError::Rejected(reply) = refused {
                tracing::warn!(reply = %reply, "next hop refused XFORWARD");
            }
        }
        rest
    }
}
