//! DATA and BDAT: take the message whole, stamp it, send it, answer with the next hop's
//! final reply. 250 reaches the client only after the next hop said 250.

use super::{Session, State, INLINE_STAMP_LIMIT};
use crate::pipeline::{Envelope, Unchanged, Verdict};
use crate::smtp::replies::{self, Reply, SmtpError};
use crate::stamp::{Skip, TRACE_HEADER};
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, DummyDataReceiver};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn on_data(&mut self) -> Result<Option<Reply>, SmtpError> {
        self.ready_for_data()?;
        if self.tx.as_ref().is_some_and(|t| t.bdat) {
            return Err(replies::BDAT_AFTER_DATA.into());
        }
        self.state = State::Data(DataReceiver::new());
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
            self.state = State::Discard(DummyDataReceiver::new_bdat(size), err.reply);
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

    /// The message is complete: stamp, send, relay the final reply.
    pub(super) async fn deliver(&mut self) -> Result<Reply, SmtpError> {
        let Some(mut tx) = self.tx.take() else {
            return Err(replies::NEED_MAIL.into());
        };
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
        let (data, verdict) = if data.len() <= INLINE_STAMP_LIMIT {
            let v = self.shared.stamper.process(
                &data,
                &Envelope {
                    mail_from: Some(&tx.mail_from),
                    rcpt_to: &tx.rcpts,
                },
            );
            (data, v)
        } else {
            let stamper = self.shared.stamper.clone();
            let (from, rcpts) = (tx.mail_from.clone(), tx.rcpts.clone());
            let job = tokio::task::spawn_blocking(move || {
                let env = Envelope {
                    mail_from: Some(&from),
                    rcpt_to: &rcpts,
                };
                let v = stamper.process(&data, &env);
                (data, v)
            });
            match job.await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "stamping task failed");
                    self.abort_transaction().await;
                    return Err(replies::LOCAL_ERROR.into());
                }
            }
        };
        let metrics = &self.shared.metrics;
        metrics
            .stamp_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.count_message("relay", verdict.label());
        let message = match verdict {
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
        };
        let Some(hop) = self.hop.as_mut() else {
            return Err(replies::NEXT_HOP_BROKEN.into());
        };
        let sent = Instant::now();
        match hop.send(&message).await {
            Ok(reply) => {
                self.shared
                    .metrics
                    .relay_seconds
                    .observe(sent.elapsed().as_secs_f64());
                tracing::info!(
                    peer = ?self.peer,
                    from = %tx.mail_from,
                    rcpts = tx.rcpts.len(),
                    size = message.len(),
                    reply = %reply,
                    "relayed"
                );
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
