//! The SMTP before-queue relay: `inbound` (the session with the client), `outbound` (the
//! next hop), the listener here, and a `sink` (an accept-all SMTP server for the demo, the
//! tests and the bench).
//!
//! Like Postfix's `smtpd_proxy_filter`: the next hop's session is opened at MAIL FROM, its
//! answers to MAIL and RCPT are the client's answers, and the client hears 250 for a message
//! only after the next hop said 250 for the stamped message. Nothing is queued here.

pub mod inbound;
pub mod io;
pub mod outbound;
pub mod replies;
pub mod sink;
pub mod tls;

pub use crate::config::{NextHopTls, SmtpConfig};

use crate::metrics::Metrics;
use crate::pipeline::Stamper;
use crate::status::Status;
use inbound::{Session, Shared};
use ipnet::IpNet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A bound relay, not yet serving. Tests and `demo` read its address before serving.
pub struct Relay {
    listener: TcpListener,
    shared: Arc<Shared>,
    allowed: Vec<IpNet>,
}

impl Relay {
    pub async fn bind(
        cfg: SmtpConfig,
        stamper: Arc<Stamper>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Relay> {
        cfg.validate()?;
        let allowed = cfg.allowed_nets()?;
        let tls = tls::server_config(&cfg)?;
        let next_hop = outbound::NextHop::from_config(&cfg)?;
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("smtp.listen {}: {e}", cfg.listen))?;
        Ok(Relay {
            listener,
            shared: Arc::new(Shared {
                cfg,
                stamper,
                metrics,
                tls: Arc::new(arc_swap::ArcSwapOption::new(tls)),
                next_hop,
                shutdown,
            }),
            allowed,
        })
    }

    /// Make sessions take their STARTTLS configuration from `handle` (a reload stores a
    /// new one there), starting with the one built at bind.
    pub fn share_tls(mut self, handle: Arc<arc_swap::ArcSwapOption<rustls::ServerConfig>>) -> Self {
        handle.store(self.shared.tls.load_full());
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.tls = handle;
        }
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept until shutdown, then let sessions in flight finish within `drain_time`.
    pub async fn serve(self) -> anyhow::Result<()> {
        let shared = self.shared;
        let limit = Arc::new(Semaphore::new(shared.cfg.max_sessions));
        let mut sessions = JoinSet::new();
        tracing::info!(listen = %self.listener.local_addr()?, next_hop = %shared.cfg.next_hop, "SMTP relay listening");
        loop {
            tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let ip = peer.ip().to_canonical();
                    if !self.allowed.iter().any(|n| n.contains(&ip)) {
                        tracing::warn!(%peer, "client not in allowed_clients, refused");
                        sessions.spawn(refuse(stream, replies::CLIENT_REFUSED));
                        continue;
                    }
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many sessions");
                        sessions.spawn(refuse(stream, replies::TOO_MANY_SESSIONS));
                        continue;
                    };
                    let shared = shared.clone();
                    sessions.spawn(async move {
                        Session::new(stream, shared, Some(peer)).run().await;
                        drop(permit);
                    });
                }
            }
        }
        drop(self.listener);
        let in_flight = sessions.len();
        if in_flight > 0 {
            tracing::info!(in_flight, drain_time = ?shared.cfg.drain_time, "draining SMTP sessions");
        }
        let drained = tokio::time::timeout(shared.cfg.drain_time, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = sessions.len(),
                "drain time over, closing remaining sessions"
            );
            sessions.shutdown().await;
        }
        Ok(())
    }
}

async fn refuse(mut stream: TcpStream, reply: replies::Canned) {
    let mut out = Vec::new();
    replies::Reply::from(reply).write_to(&mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// Run the relay until `shutdown` fires, then drain; `status.smtp_listening` is set while it
/// accepts. `tls`: where reload stores the STARTTLS configuration (the relay's own is put
/// there first).
pub async fn run(
    cfg: SmtpConfig,
    stamper: Arc<Stamper>,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    shutdown: CancellationToken,
    tls: Arc<arc_swap::ArcSwapOption<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let relay = Relay::bind(cfg, stamper, metrics, shutdown)
        .await?
        .share_tls(tls);
    status.smtp_listening.store(true, Ordering::Relaxed);
    let result = relay.serve().await;
    status.smtp_listening.store(false, Ordering::Relaxed);
    result
}
