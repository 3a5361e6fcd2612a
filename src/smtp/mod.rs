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
pub mod proxy;
pub mod replies;
pub mod sink;
pub mod tls;
pub mod xforward;

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
    gate: Arc<Gate>,
}

/// Who may open a session: the PROXY protocol's trusted peers, then `allowed_clients`.
struct Gate {
    allowed: Vec<IpNet>,
    /// `Some` when `proxy_protocol` is on.
    proxy_trusted: Option<Vec<IpNet>>,
}

impl Gate {
    /// The client's real address, or `None` (logged) when the connection must be closed
    /// without a word: an untrusted peer, or a missing or bad PROXY header.
    async fn client(&self, stream: &mut TcpStream, peer: SocketAddr) -> Option<SocketAddr> {
        let Some(trusted) = &self.proxy_trusted else {
            return Some(peer);
        };
        if !contains(trusted, peer) {
            tracing::warn!(%peer, "peer not in proxy_trusted, connection closed");
            return None;
        }
        match proxy::read_header(stream, peer, proxy::HEADER_TIMEOUT).await {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "PROXY header, connection closed");
                None
            }
        }
    }

    fn allows(&self, client: SocketAddr) -> bool {
        contains(&self.allowed, client)
    }
}

fn contains(nets: &[IpNet], addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

impl Relay {
    pub async fn bind(
        cfg: SmtpConfig,
        stamper: Arc<Stamper>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Relay> {
        cfg.validate()?;
        let gate = Arc::new(Gate {
            allowed: cfg.allowed_nets()?,
            proxy_trusted: cfg
                .proxy_protocol
                .then(|| cfg.proxy_trusted_nets())
                .transpose()?,
        });
        let tls = tls::server_config(&cfg)?;
        let next_hop = Arc::new(outbound::NextHop::from_config(&cfg)?);
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
                sent_items: Default::default(),
            }),
            gate,
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

    /// Queue a Sent Items update for each stamped message the next hop accepted.
    pub fn with_sent_items(mut self, sent_items: crate::sent_items::SentItems) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.sent_items = sent_items;
        }
        self
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
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many sessions");
                        sessions.spawn(refuse(stream, replies::TOO_MANY_SESSIONS));
                        continue;
                    };
                    let shared = shared.clone();
                    let gate = self.gate.clone();
                    // The PROXY header is read in the session's task: a slow balancer must
                    // not hold up the accept loop.
                    sessions.spawn(async move {
                        let mut stream = stream;
                        let Some(client) = gate.client(&mut stream, peer).await else {
                            return;
                        };
                        if !gate.allows(client) {
                            tracing::warn!(%client, %peer, "client not in allowed_clients, refused");
                            refuse(stream, replies::CLIENT_REFUSED).await;
                            return;
                        }
                        Session::new(stream, shared, Some(client)).run().await;
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
/// accepts. Accepted stamped messages queue their Sent Items update on `sent_items`. `tls`:
/// where reload stores the STARTTLS configuration (the relay's own is put there first).
pub async fn run(
    cfg: SmtpConfig,
    stamper: Arc<Stamper>,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    shutdown: CancellationToken,
    sent_items: crate::sent_items::SentItems,
    tls: Arc<arc_swap::ArcSwapOption<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let relay = Relay::bind(cfg, stamper, metrics, shutdown)
        .await?
        .with_sent_items(sent_items)
        .share_tls(tls);
    status.smtp_listening.store(true, Ordering::Relaxed);
    let result = relay.serve().await;
    status.smtp_listening.store(false, Ordering::Relaxed);
    result
}
