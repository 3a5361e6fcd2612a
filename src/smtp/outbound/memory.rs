//! An in-memory next hop for session tests: no socket. It answers like the loopback sink
//! ([`crate::smtp::sink`]) and with the same policy type (accept, or a chosen reply at MAIL,
//! each RCPT or end of data), records every command it is sent, hands each accepted message
//! to a channel as a [`Delivered`], and can play a next hop that is unreachable or whose
//! connection breaks at a chosen stage.

use super::delivery::{verdict, Connector, Delivery, Step};
use super::{wire, HopError};
use crate::smtp::replies::Reply;
use crate::smtp::sink::{path_and_params, Delivered, Policy, Stage};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A stage of a transaction, for [`MemoryHopOptions::break_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    Mail,
    Rcpt,
    Data,
}

#[derive(Clone, Default)]
pub struct MemoryHopOptions {
    /// `Some(reply)` overrides acceptance at that stage (as the sink's policy).
    pub policy: Option<Policy>,
    /// Every connection attempt fails (`HopError::Connect`).
    pub unreachable: bool,
    /// The connection breaks when this stage is sent: no reply, `HopError::Network`, and
    /// the connection is unusable afterwards.
    pub break_at: Option<StageKind>,
}

/// The connector: each `connect` opens a new in-memory session.
pub struct MemoryHop {
    opts: MemoryHopOptions,
    out: mpsc::UnboundedSender<Delivered>,
    commands: Arc<Mutex<Vec<String>>>,
    connections: AtomicUsize,
}

impl MemoryHop {
    /// The hop, and the channel its accepted messages arrive on.
    pub fn new(opts: MemoryHopOptions) -> (Arc<MemoryHop>, mpsc::UnboundedReceiver<Delivered>) {
        let (out, rx) = mpsc::unbounded_channel();
        let hop = MemoryHop {
            opts,
            out,
            commands: Arc::default(),
            connections: AtomicUsize::new(0),
        };
        (Arc::new(hop), rx)
    }

    /// Every command received so far, across connections, without CRLF (`DATA` stands for
    /// the whole message).
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Connections opened so far (attempts to an unreachable hop included).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Connector for MemoryHop {
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Delivery>, HopError>> {
        Box::pin(async move {
            self.connections.fetch_add(1, Ordering::SeqCst);
            if self.opts.unreachable {
                return Err(HopError::Connect(
                    "connection refused (in-memory hop)".into(),
                ));
            }
            Ok(Box::new(MemorySession {
                opts: self.opts.clone(),
                out: self.out.clone(),
                commands: self.commands.clone(),
                cur: None,
                broken: false,
            }) as Box<dyn Delivery>)
        })
    }
}

struct MemorySession {
    opts: MemoryHopOptions,
    out: mpsc::UnboundedSender<Delivered>,
    commands: Arc<Mutex<Vec<String>>>,
    /// The open transaction.
    cur: Option<Delivered>,
    broken: bool,
}

impl MemorySession {
    /// Record `line`; fail as a broken connection would.
    fn send(&mut self, line: &str, stage: Option<StageKind>) -> Result<(), HopError> {
        if self.broken {
            return Err(HopError::Network("connection already failed".into()));
        }
        if let Ok(mut c) = self.commands.lock() {
            c.push(line.trim_end().to_string());
        }
        if stage.is_some() && stage == self.opts.break_at {
            self.broken = true;
            return Err(HopError::Network(
                "connection closed (in-memory hop)".into(),
            ));
        }
        Ok(())
    }

    fn ask(&self, stage: Stage<'_>) -> Option<Reply> {
        self.opts.policy.as_ref().and_then(|p| p(stage))
    }
}

impl Delivery for MemorySession {
    fn mail<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        Box::pin(async move {
            self.abort().await?;
            self.send(line, Some(StageKind::Mail))?;
            let line = line.trim_end();
            let Some((from, params)) = path_and_params(line) else {
                return verdict(Reply::new(501, "5.5.4 Syntax"));
            };
            if let Some(reply) = self.ask(Stage::Mail(line)) {
                return verdict(reply);
            }
            self.cur = Some(Delivered {
                mail_from: from,
                mail_params: params,
                ..Delivered::default()
            });
            verdict(Reply::new(250, "2.1.0 Ok"))
        })
    }

    fn add_rcpt<'a>(&'a mut self, line: &'a str) -> Step<'a> {
        Box::pin(async move {
            self.send(line, Some(StageKind::Rcpt))?;
            let line = line.trim_end();
            let Some(rcpt) = path_and_params(line) else {
                return verdict(Reply::new(501, "5.5.4 Syntax"));
            };
            if let Some(reply) = self.ask(Stage::Rcpt(line)) {
                return verdict(reply);
            }
            let Some(cur) = self.cur.as_mut() else {
                return verdict(Reply::new(503, "5.5.1 MAIL first"));
            };
            cur.rcpts.push(rcpt);
            verdict(Reply::new(250, "2.1.5 Ok"))
        })
    }

    fn body<'a>(&'a mut self, message: &'a [u8]) -> Step<'a> {
        Box::pin(async move {
            self.send("DATA", Some(StageKind::Data))?;
            let Some(mut d) = self.cur.take().filter(|d| !d.rcpts.is_empty()) else {
                return verdict(Reply::new(554, "5.5.1 No valid recipients"));
            };
            // What the sink reads from the production client: CRLF line breaks, one final
            // CRLF (dot-stuffing is undone by the reader).
            d.message = wire::to_crlf(wire::without_final_break(message));
            d.message.extend_from_slice(b"\r\n");
            if let Some(reply) = self.ask(Stage::Data(&d)) {
                return verdict(reply);
            }
            let _ = self.out.send(d);
            verdict(Reply::new(250, "2.0.0 Ok: queued"))
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), HopError>> {
        Box::pin(async move {
            if self.cur.is_some() {
                self.send("RSET", None)?;
                self.cur = None;
            }
            Ok(())
        })
    }

    fn is_usable(&self) -> bool {
        !self.broken
    }

    fn quit(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.send("QUIT", None);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::outbound::delivery::DeliveryError;

    #[tokio::test]
    async fn records_the_transaction_and_applies_the_policy() {
        let policy: Policy = Arc::new(|stage| match stage {
            Stage::Rcpt(line) if line.contains("no@") => Some(Reply::new(550, "5.1.1 unknown")),
            _ => None,
        });
        let (hop, mut rx) = MemoryHop::new(MemoryHopOptions {
            policy: Some(policy),
            ..Default::default()
        });
        let mut d = hop.connect().await.unwrap();
        d.mail("MAIL FROM:<a@b.example> SIZE=5\r\n").await.unwrap();
        let refused = d.add_rcpt("RCPT TO:<no@x.example>\r\n").await.unwrap_err();
        assert!(matches!(refused, DeliveryError::Rejected(ref r) if r.code == 550));
        d.add_rcpt("RCPT TO:<c@x.example> NOTIFY=NEVER\r\n")
            .await
            .unwrap();
        let reply = d.body(b"Subject: x\n\nhi\n").await.unwrap();
        assert_eq!(reply.code, 250);
        let got = rx.try_recv().unwrap();
        assert_eq!(got.mail_params, "SIZE=5");
        assert_eq!(
            got.rcpts,
            vec![("c@x.example".to_string(), "NOTIFY=NEVER".to_string())]
        );
        assert_eq!(got.message, b"Subject: x\r\n\r\nhi\r\n");
        d.quit().await;
        assert_eq!(
            hop.commands(),
            vec![
                "MAIL FROM:<a@b.example> SIZE=5",
                "RCPT TO:<no@x.example>",
                "RCPT TO:<c@x.example> NOTIFY=NEVER",
                "DATA",
                "QUIT"
            ]
        );
    }

    #[tokio::test]
    async fn broken_connection_fails_every_later_step() {
        let (hop, _rx) = MemoryHop::new(MemoryHopOptions {
            break_at: Some(StageKind::Rcpt),
            ..Default::default()
        });
        let mut d = hop.connect().await.unwrap();
        d.mail("MAIL FROM:<a@b.example>\r\n").await.unwrap();
        let e = d.add_rcpt("RCPT TO:<c@x.example>\r\n").await.unwrap_err();
        assert!(matches!(e, DeliveryError::Hop(HopError::Network(_))));
        assert!(!d.is_usable());
        assert!(d.body(b"x").await.is_err());
    }
}
