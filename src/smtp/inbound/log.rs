//! The per-message log line, like Postfix's: one line at `info` for every message that
//! reached the end of DATA, whatever became of it, with what an admin greps for.

use super::{Session, Transaction};
use crate::pipeline::{Share, Verdict};
use crate::smtp::replies::{Reply, SmtpError};
use tokio::io::{AsyncRead, AsyncWrite};

/// What the pipeline decided for one message, filled in as it goes.
#[derive(Debug, Default)]
pub(super) struct MessageLog {
    /// Outcome labels of the parts (`stamped`, `unknown_sender`, …).
    stamp: Vec<&'static str>,
    templates: Vec<String>,
    rules: Vec<String>,
}

impl MessageLog {
    pub(super) fn parts(&mut self, parts: &[Share]) {
        for p in parts {
            self.stamp.push(p.verdict.label());
            if let Verdict::Stamped { template, .. } = &p.verdict {
                self.templates.push(template.clone());
            }
            self.rules.extend(p.rule.clone());
        }
    }
}

/// `-` for nothing, else the values joined by commas.
fn list<T: AsRef<str>>(v: &[T]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",")
}

/// `sent`, `deferred` (4xx: the client retries) or `rejected` (5xx).
pub fn outcome(reply: &Reply) -> &'static str {
    match reply.code {
        200..=399 => "sent",
        400..=499 => "deferred",
        _ => "rejected",
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn log_message(
        &self,
        tx: &Transaction,
        size: usize,
        info: &MessageLog,
        result: &Result<Reply, SmtpError>,
    ) {
        let reply = match result {
            Ok(r) => r,
            Err(e) => &e.reply,
        };
        let client = self.peer.map_or_else(|| "-".to_string(), |p| p.to_string());
        tracing::info!(
            session = %self.id,
            client = %client,
            from = %tx.mail_from,
            rcpts = tx.rcpts.len(),
            size,
            outcome = %outcome(reply),
            stamp = %list(&info.stamp),
            template = %list(&info.templates),
            rule = %list(&info.rules),
            time_ms = tx.started.elapsed().as_millis() as u64,
            // Last, so that in text everything after `reply=` is the reply (it has spaces).
            reply = %reply.to_string().trim_end(),
            "message"
        );
    }
}
