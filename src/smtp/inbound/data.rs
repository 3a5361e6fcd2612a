//! DATA and BDAT: take the message whole, stamp it, send it, answer with the next hop's
//! final reply. 250 reaches the client only after the next hop said 250. When rules give
//! internal and external recipients different signatures, each group is sent as its own
//! next-hop transaction (`send_split`).

use super::log::MessageLog;
use super::{Discard, Session, State, Transaction};
use crate::pipeline::{self, Audience, Envelope, Share, Unchanged, Verdict};
use crate::smtp::outbound::DeliveryError;
use crate::smtp::replies::{self, Reply, SmtpError};
use crate::stamp::{Skip, TRACE_HEADER};
use smtp_proto::request::receiver::BdatReceiver;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// One part of a split message as sent: its audience, its recipients (indices into the
/// transaction's), its bytes.
type Outgoing = (Option<Audience>, Vec<usize>, Vec<u8>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn on_data(&mut self) -> Result<Option<Reply>, SmtpError> {
        self.ready_for_data()?;
        if self.tx.as_ref().is_some_and(|t| t.bdat) {
            return Err(replies::BDAT_AFTER_DATA.into());
        }
        self.state = State::Data(Default::default());
        Ok(Some(replies::START_DATA.into()))
    }

    pub(super) async fn on_bdat(
        &mut self,
        size: usize,
        last: bool,
    ) -> Result<Option<Reply>, SmtpError> {
        // The chunk follows the command unconditionally: on refusal it is read and dropped.
        let refusal = match self.ready_for_data() {
            Err(e) => Some(e),
            Ok(()) => {
                let held = self.tx.as_ref().map_or(0, |t| t.data.len());
                if held.saturating_add(size) > self.shared.cfg.max_message_size {
                    self.abort_transaction().await;
                    Some(replies::MESSAGE_TOO_BIG.into())
                } else {
                    None
                }
            }
        };
        if let Some(err) = refusal {
            if size == 0 {
                return Err(err);
            }
            self.state = State::Discard(Discard::Bdat(size), err.reply);
            return Ok(None);
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.bdat = true;
        }
        if size == 0 {
            // Nothing to read: the chunk is complete now.
            return if last {
                self.deliver().await.map(Some)
            } else {
                Ok(Some(replies::CHUNK_OK.into()))
            };
        }
        self.state = State::Bdat(BdatReceiver::new(size, last));
        Ok(None)
    }

    fn ready_for_data(&self) -> Result<(), SmtpError> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(replies::NEED_MAIL.into());
        };
        if tx.rcpts.is_empty() {
            return Err(if tx.attempted == 0 {
                replies::NEED_RCPT.into()
            } else {
                replies::NO_VALID_RECIPIENTS.into()
            });
        }
        Ok(())
    }

    /// The message is complete: stamp, send, relay the final reply; log the message line.
    pub(super) async fn deliver(&mut self) -> Result<Reply, SmtpError> {
        let Some(mut tx) = self.tx.take() else {
            return Err(replies::NEED_MAIL.into());
        };
        let size = tx.data.len();
        let mut info = MessageLog::default();
        let result = self.relay_message(&mut tx, &mut info).await;
        self.log_message(&tx, size, &info, &result);
        result
    }

    async fn relay_message(
        &mut self,
        tx: &mut Transaction,
        info: &mut MessageLog,
    ) -> Result<Reply, SmtpError> {
        if tx.data.len() > self.shared.cfg.max_message_size {
            // Data that arrived in one read is only measured here.
            self.abort_transaction().await;
            return Err(replies::MESSAGE_TOO_BIG.into());
        }
        if has_smuggled_dot(&tx.data) {
            self.abort_transaction().await;
            return Err(replies::SMUGGLING.into());
        }
        let data = std::mem::take(&mut tx.data);
        let started = Instant::now();
        let (data, mut parts) = self.stamp(tx, data).await?;
        info.parts(&parts);
        let metrics = &self.shared.metrics;
        metrics
            .stamp_seconds
            .observe(started.elapsed().as_secs_f64());
        for part in &parts {
            metrics.count_message("relay", part.verdict.label());
        }
        if parts.len() == 1 {
            // The common case: one transaction, already open at the next hop.
            let part = parts.remove(0);
            let stamped_for = stamped_sender(&part.verdict);
            let message = self.outgoing(part.verdict, data);
            let reply = self.send_whole(&message).await;
            if let (Ok(_), Some(sender)) = (&reply, stamped_for) {
                self.shared.sent_items.enqueue(&sender, message);
            }
            return reply;
        }
        // The rules gave internal and external recipients different signatures. The sender's
        // Sent Items shows the external recipients' copy, if that one was stamped.
        let shown = parts
            .iter()
            .find(|p| p.audience == Some(Audience::External))
            .and_then(|p| stamped_sender(&p.verdict));
        let split: Vec<Outgoing> = parts
            .into_iter()
            .map(|p| {
                let message = match p.verdict {
                    Verdict::Stamped { message, .. } => message,
                    unchanged => self.outgoing(unchanged, data.clone()),
                };
                (p.audience, p.rcpts, message)
            })
            .collect();
        let shown = shown
            .filter(|_| self.shared.sent_items.enabled())
            .and_then(|sender| {
                let (_, _, m) = split
                    .iter()
                    .find(|(a, _, _)| *a == Some(Audience::External))?;
                Some((sender, m.clone()))
            });
        let reply = self.send_split(tx, split).await;
        if let (Ok(_), Some((sender, message))) = (&reply, shown) {
            self.shared.sent_items.enqueue(&sender, message);
        }
        reply
    }

    /// One next-hop transaction per part, in order, on the session whose transaction MAIL
    /// and RCPT opened (it is reset first). The client hears 250 only if every part was
    /// accepted; otherwise the failing part's reply, so a 4xx stays temporary and the client
    /// retries. Parts accepted before a failure are delivered: that retry duplicates them
    /// (see README, "Mixed recipients").
    async fn send_split(
        &mut self,
        tx: &Transaction,
        parts: Vec<Outgoing>,
    ) -> Result<Reply, SmtpError> {
        let sent = Instant::now();
        let total = parts.len();
        let mut accepted: Vec<String> = Vec::with_capacity(total);
        for (n, (audience, rcpts, message)) in parts.iter().enumerate() {
            let audience = audience.map_or("all", |a| a.as_str());
            let rcpts: Vec<&str> = rcpts
                .iter()
                .filter_map(|&i| tx.rcpt_lines.get(i).map(String::as_str))
                .collect();
            let Some(hop) = self.hop.as_mut() else {
                return Err(replies::NEXT_HOP_BROKEN.into());
            };
            let result = hop
                .transaction(&tx.mail_line, &rcpts, message)
                .await
                .or_else(DeliveryError::into_answer);
            let reply = match result {
                Ok(reply) => reply,
                Err(e) => {
                    self.warn_partial(tx, n, total, &format!("{e}"));
                    return Err(self.hop_failed(e));
                }
            };
            tracing::debug!(
                session = %self.id,
                part = n + 1,
                parts = total,
                audience,
                rcpts = rcpts.len(),
                size = message.len(),
                reply = %reply,
                "relayed part"
            );
            if !reply.is_positive() {
                self.warn_partial(tx, n, total, &reply.to_string());
                return Err(reply.into());
            }
            accepted.push(format!("{audience}: {}", reply.lines.join(" ")));
        }
        self.shared
            .metrics
            .relay_seconds
            .observe(sent.elapsed().as_secs_f64());
        Ok(replies::SPLIT_ACCEPTED.with_detail(accepted.join("; ")))
    }

    /// A part failed after `delivered` parts were accepted: those are delivered, and the
    /// client's retry will deliver them again.
    fn warn_partial(&self, tx: &Transaction, delivered: usize, total: usize, why: &str) {
        if delivered > 0 {
            tracing::warn!(
                peer = ?self.peer,
                from = %tx.mail_from,
                delivered,
                parts = total,
                error = %why,
                "split message partly delivered; a retry by the client duplicates the delivered parts"
            );
        }
    }

    /// Run the pipeline ([`pipeline::run`]): one part, or one per recipient group.
    async fn stamp(
        &mut self,
        tx: &Transaction,
        data: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<Share>), SmtpError> {
        let stamper = self.shared.stamper.clone();
        let (from, rcpts) = (tx.mail_from.clone(), tx.rcpts.clone());
        let job = pipeline::run(
            data.len(),
            &self.shared.metrics.stamp_cpu_seconds,
            move || {
                let env = Envelope {
                    mail_from: Some(&from),
                    rcpt_to: &rcpts,
                };
                let parts = stamper.process_split(&data, &env);
                (data, parts)
            },
        );
        match job.await {
            Ok(done) => Ok(done),
            Err(e) => {
                tracing::error!(error = %e, "stamping task failed");
                self.abort_transaction().await;
                Err(replies::LOCAL_ERROR.into())
            }
        }
    }

    /// The bytes to send for one verdict: the stamped message, or the original (marked
    /// when `mark_unchanged` asks for it).
    fn outgoing(&self, verdict: Verdict, data: Vec<u8>) -> Vec<u8> {
        match verdict {
            Verdict::Stamped { message, .. } => message,
            Verdict::Unchanged(reason) => {
                tracing::debug!(%reason, "message passed on unchanged");
                let already = matches!(reason, Unchanged::Skip(Skip::AlreadyStamped));
                if self.shared.cfg.mark_unchanged && !already {
                    mark_unchanged(data, reason.label())
                } else {
                    data
                }
            }
        }
    }

    /// DATA on the transaction MAIL and RCPT opened; the next hop's reply is the client's.
    async fn send_whole(&mut self, message: &[u8]) -> Result<Reply, SmtpError> {
        let Some(hop) = self.hop.as_mut() else {
            return Err(replies::NEXT_HOP_BROKEN.into());
        };
        let sent = Instant::now();
        match hop.body(message).await.or_else(DeliveryError::into_answer) {
            Ok(reply) => {
                self.shared
                    .metrics
                    .relay_seconds
                    .observe(sent.elapsed().as_secs_f64());
                if reply.is_positive() {
                    Ok(reply)
                } else {
                    Err(reply.into())
                }
            }
            Err(e) => Err(self.hop_failed(e)),
        }
    }
}

/// The directory user a stamped verdict is for (their Sent Items copy gets replaced).
fn stamped_sender(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Stamped { sender, .. } => Some(sender.clone()),
        Verdict::Unchanged(_) => None,
    }
}

/// The message with `X-Sigstamp: unchanged (<label>)` on top; nothing else changes.
fn mark_unchanged(data: Vec<u8>, label: &str) -> Vec<u8> {
    let header = format!("{TRACE_HEADER}: unchanged ({label})\r\n");
    let mut out = Vec::with_capacity(header.len() + data.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// A `.` right after a bare CR or bare LF: harmless to us, but a next hop that ends lines
/// on bare LF could read it as the end of data (SMTP smuggling), so such data is refused.
fn has_smuggled_dot(data: &[u8]) -> bool {
    memchr::memmem::find_iter(data, b"\n.").any(|i| i == 0 || data[i - 1] != b'\r')
        || memchr::memmem::find_iter(data, b"\r.").next().is_some()
}

#[cfg(test)]
mod tests {
    use super::{has_smuggled_dot, mark_unchanged};

    #[test]
    fn marking_prepends_one_header() {
        assert_eq!(
            mark_unchanged(b"Subject: x\r\n\r\nbody\r\n".to_vec(), "signed"),
            b"X-Sigstamp: unchanged (signed)\r\nSubject: x\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn smuggling_patterns() {
        assert!(!has_smuggled_dot(b"a\r\n.b\r\n"));
        assert!(has_smuggled_dot(b"a\n.\r\nMAIL FROM:<x>\r\n"));
        assert!(has_smuggled_dot(b"a\r.\r\n"));
        assert!(!has_smuggled_dot(b"a.b\r\n"));
    }
}
