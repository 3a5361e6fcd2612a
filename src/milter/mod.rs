//! The milter endpoint for Postfix (`smtpd_milters`, `non_smtpd_milters`) and Sendmail
//! (`INPUT_MAIL_FILTER`).
//!
//! Per message the MTA hands over the envelope sender, the recipients, the headers and the
//! body; at end of message we rebuild the raw message, run the same pipeline as the relay,
//! and answer with the trace header, changed top-level headers and the replaced body, or
//! with no modification. Internal failures answer per `on_error`; the connection code never
//! lets a problem stop the mail (the MTA's `milter_default_action` covers a dead milter).
//!
//! The connection loop is our own, on miltr-common's wire types, rather than
//! miltr-server's `Server`: that one answers every event (so the no-reply flags, which
//! spare Postfix a round trip per header, cannot be negotiated), has no read timeouts, ends
//! a connection without any answer when a callback fails, and hands header values over
//! only through a lossy UTF-8 conversion.
//!
//! - [`message`]: rebuild the raw message, compute the edits (pure).
//! - [`wire`]: packets (miltr-common types, exact header bytes).
//! - [`session`]: one connection's state machine.

pub mod message;
pub mod session;
pub mod wire;

pub use crate::config::{Listen, MilterConfig, OnError};
use crate::metrics::Metrics;
use crate::pipeline::Stamper;
use crate::status::Status;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// What a connection needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub on_error: OnError,
    pub data_timeout: Duration,
    pub command_timeout: Duration,
    pub max_message_size: u64,
}

impl From<&MilterConfig> for Settings {
    fn from(c: &MilterConfig) -> Self {
        Settings {
            on_error: c.on_error,
            data_timeout: c.data_timeout,
            command_timeout: c.command_timeout,
            max_message_size: c.max_message_size,
        }
    }
}

/// A bound listener, so callers (and tests) learn the address before serving.
pub enum MilterListener {
    Inet(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl MilterListener {
    /// The TCP address (for `127.0.0.1:0` the port chosen), or `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            MilterListener::Inet(l) => l.local_addr().ok(),
            MilterListener::Unix(..) => None,
        }
    }
}

/// Bind the configured address. A unix socket's parent directory is created and a stale
/// socket file removed (not one another process still answers on).
pub async fn bind(cfg: &MilterConfig) -> anyhow::Result<MilterListener> {
    match cfg.listen()? {
        Listen::Inet(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("milter: cannot listen on {addr}"))?;
            Ok(MilterListener::Inet(l))
        }
        Listen::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("milter: cannot create {}", dir.display()))?;
            }
            remove_stale_socket(&path).await?;
            let l = UnixListener::bind(&path)
                .with_context(|| format!("milter: cannot listen on {}", path.display()))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(cfg.socket_mode()?))
                .with_context(|| format!("milter: cannot chmod {}", path.display()))?;
            Ok(MilterListener::Unix(l, path))
        }
    }
}

async fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "milter: {} exists and is not a socket; not removing it",
            path.display()
        );
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        anyhow::bail!("milter: another process is listening on {}", path.display());
    }
    std::fs::remove_file(path)
        .with_context(|| format!("milter: cannot remove stale socket {}", path.display()))
}

/// What the milter uses besides its section.
#[derive(Clone)]
pub struct MilterHandles {
    pub stamper: Arc<Stamper>,
    pub metrics: Arc<Metrics>,
    /// `milter_listening` is set once the listener accepts.
    pub status: Arc<Status>,
    /// Stop accepting, let messages in progress finish.
    pub shutdown: CancellationToken,
}

/// Run the milter until `handles.shutdown` fires, then let messages in progress finish.
pub async fn run(cfg: MilterConfig, handles: MilterHandles) -> anyhow::Result<()> {
    let listener = bind(&cfg).await?;
    serve(handles, &cfg, listener).await
}

/// Accept connections on `listener` until shutdown.
pub async fn serve(
    handles: MilterHandles,
    cfg: &MilterConfig,
    listener: MilterListener,
) -> anyhow::Result<()> {
    let settings = Arc::new(Settings::from(cfg));
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(cfg.max_sessions));
    let shutdown = handles.shutdown.clone();
    info!(listen = %cfg.listen, "milter listening");
    handles
        .status
        .milter_listening
        .store(true, Ordering::Relaxed);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => p.context("milter: connection limit closed")?,
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok((conn, peer)) => {
                let (handles, settings) = (handles.clone(), settings.clone());
                tracker.spawn(async move {
                    match conn {
                        Conn::Tcp(s) => session::serve(QuickAck(s), peer, handles, settings).await,
                        Conn::Unix(s) => session::serve(s, peer, handles, settings).await,
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "milter: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Stop accepting at once: the MTA then gets "connection refused" and applies its
    // milter_default_action, instead of waiting on a listen backlog nobody serves.
    match listener {
        MilterListener::Inet(l) => drop(l),
        MilterListener::Unix(l, path) => {
            drop(l);
            let _ = std::fs::remove_file(path);
        }
    }
    tracker.close();
    if tokio::time::timeout(cfg.drain_time, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            connections = tracker.len(),
            "milter: drain time over, closing connections in progress"
        );
    }
    info!("milter stopped");
    Ok(())
}

/// A milter connection that acknowledges what it reads at once.
///
/// With the NR_* flags the MTA sends most packets without waiting for an answer. Postfix
/// writes each packet with its own write and Nagle on, so a packet waits until the previous
/// one is acknowledged; Linux delays that ACK up to 40 ms when the reader has nothing to send
/// back, which it has not until the end of the message. A quick ACK after every read lets
/// the next packet go at once. (The option is not sticky, hence after every read.)
struct QuickAck(tokio::net::TcpStream);

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            #[cfg(target_os = "linux")]
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        r
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &MilterListener) -> std::io::Result<(Conn, String)> {
    match l {
        MilterListener::Inet(l) => {
            let (s, peer) = l.accept().await?;
            // Replies are small and awaited one by one: never let Nagle hold them back.
            s.set_nodelay(true)?;
            Ok((Conn::Tcp(s), peer.to_string()))
        }
        MilterListener::Unix(l, path) => {
            let (s, _) = l.accept().await?;
            Ok((Conn::Unix(s), path.display().to_string()))
        }
    }
}
