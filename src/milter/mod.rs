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

use crate::app::App;
use crate::config::ConfigError;
use anyhow::Context as _;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// `[milter]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilterConfig {
    /// `host:port` (an IP address; `inet:` prefix allowed) or `unix:/path/to/socket`.
    pub listen: String,
    /// What to answer when stamping fails internally: `accept` (mail goes on unchanged)
    /// or `tempfail` (the MTA answers 4xx and the client retries).
    #[serde(default)]
    pub on_error: OnError,
    /// Bound on every read inside a message (the MTA sends content without pause) and on
    /// every write.
    #[serde(
        default = "default_read_timeout",
        deserialize_with = "crate::config::duration::deserialize"
    )]
    pub read_timeout: Duration,
    /// Bound on waiting for the next command between messages, which follows the SMTP
    /// client's pace (Postfix's smtpd_timeout is 300s).
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "crate::config::duration::deserialize"
    )]
    pub idle_timeout: Duration,
    /// A whole packet must arrive within this time of its first byte.
    #[serde(
        default = "crate::smtp::config::default_command_deadline",
        deserialize_with = "crate::config::duration::deserialize"
    )]
    pub command_deadline: Duration,
    /// Least rate (bytes/s) the MTA must keep while sending a message's headers and body
    /// (the deadline starts at `read_timeout` and grows by bytes / rate, capped there);
    /// 0: no minimum.
    #[serde(default = "crate::smtp::config::default_min_data_rate")]
    pub min_data_rate: u64,
    /// Largest message (headers + body, bytes) buffered for stamping; larger ones pass
    /// unchanged.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Concurrent MTA connections; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Permissions of a unix socket, octal.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// On shutdown, how long messages in progress may take to finish.
    #[serde(
        default = "default_drain_timeout",
        deserialize_with = "crate::config::duration::deserialize"
    )]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Accept,
    Tempfail,
}

fn default_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_message_size() -> u64 {
    50 * 1024 * 1024
}
fn default_max_connections() -> usize {
    512
}
fn default_socket_mode() -> String {
    "0660".into()
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: "127.0.0.1:7357".into(),
            on_error: OnError::default(),
            read_timeout: default_read_timeout(),
            idle_timeout: default_idle_timeout(),
            command_deadline: crate::smtp::config::default_command_deadline(),
            min_data_rate: crate::smtp::config::default_min_data_rate(),
            max_message_size: default_max_message_size(),
            max_connections: default_max_connections(),
            socket_mode: default_socket_mode(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl MilterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen()?;
        self.socket_mode()?;
        for (key, d) in [
            ("milter.read_timeout", self.read_timeout),
            ("milter.idle_timeout", self.idle_timeout),
            ("milter.command_deadline", self.command_deadline),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(key, "must be more than 0s"));
            }
        }
        if self.max_message_size == 0 {
            return Err(ConfigError::invalid(
                "milter.max_message_size",
                "must be more than 0 bytes",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "milter.max_connections",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    pub fn listen(&self) -> Result<Listen, ConfigError> {
        let l = self.listen.trim();
        if let Some(path) = l.strip_prefix("unix:") {
            let path = Path::new(path);
            if !path.is_absolute() || path.file_name().is_none() {
                return Err(ConfigError::invalid(
                    "milter.listen",
                    format!("unix socket path must be absolute, got {l:?}"),
                ));
            }
            return Ok(Listen::Unix(path.to_path_buf()));
        }
        let addr = l.strip_prefix("inet:").unwrap_or(l);
        addr.parse::<SocketAddr>().map(Listen::Inet).map_err(|_| {
            ConfigError::invalid(
                "milter.listen",
                format!(
                    "expected IP:port (e.g. \"127.0.0.1:7357\") or \"unix:/path/to/socket\", \
                     got {l:?}"
                ),
            )
        })
    }

    fn socket_mode(&self) -> Result<u32, ConfigError> {
        let m = self.socket_mode.trim();
        let digits = m.strip_prefix("0o").unwrap_or(m);
        match u32::from_str_radix(digits, 8) {
            Ok(v) if v <= 0o777 => Ok(v),
            _ => Err(ConfigError::invalid(
                "milter.socket_mode",
                format!("expected octal permissions like \"0660\", got {m:?}"),
            )),
        }
    }
}

/// What a connection needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub on_error: OnError,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub command_deadline: Duration,
    pub min_data_rate: u64,
    pub max_message_size: u64,
}

impl From<&MilterConfig> for Settings {
    fn from(c: &MilterConfig) -> Self {
        Settings {
            on_error: c.on_error,
            read_timeout: c.read_timeout,
            idle_timeout: c.idle_timeout,
            command_deadline: c.command_deadline,
            min_data_rate: c.min_data_rate,
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

/// Run the milter until `app.shutdown` fires, then let messages in progress finish.
pub async fn run(app: Arc<App>) -> anyhow::Result<()> {
    let cfg = app
        .config
        .milter
        .clone()
        .context("milter: no [milter] section in the config")?;
    let listener = bind(&cfg).await?;
    serve(app, &cfg, listener).await
}

/// Accept connections on `listener` until shutdown.
pub async fn serve(
    app: Arc<App>,
    cfg: &MilterConfig,
    listener: MilterListener,
) -> anyhow::Result<()> {
    let settings = Arc::new(Settings::from(cfg));
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let shutdown = app.shutdown.clone();
    info!(listen = %cfg.listen, "milter listening");
    app.status.milter_listening.store(true, Ordering::Relaxed);
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
                let (app, settings) = (app.clone(), settings.clone());
                tracker.spawn(async move {
                    match conn {
                        Conn::Tcp(s) => session::serve(QuickAck(s), peer, app, settings).await,
                        Conn::Unix(s) => session::serve(s, peer, app, settings).await,
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
    if tokio::time::timeout(cfg.drain_timeout, tracker.wait())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text)
    }

    #[test]
    fn full_section_parses() {
        let c = parse(
            r#"
            [milter]
            listen = "unix:/run/sigstamp/milter.sock"
            on_error = "tempfail"
            read_timeout = "10s"
            idle_timeout = "5m"
            max_message_size = 1000000
            max_connections = 8
            socket_mode = "0600"
            drain_timeout = "2s"
            "#,
        )
        .unwrap();
        let m = c.milter.unwrap();
        assert_eq!(
            m.listen().unwrap(),
            Listen::Unix("/run/sigstamp/milter.sock".into())
        );
        assert_eq!(m.on_error, OnError::Tempfail);
        assert_eq!(m.read_timeout, Duration::from_secs(10));
        assert_eq!(m.idle_timeout, Duration::from_secs(300));
        assert_eq!(m.socket_mode().unwrap(), 0o600);
    }

    #[test]
    fn example_config_section_is_valid() {
        let text = include_str!("../../sigstamp.example.toml");
        let start = text.find("\n[milter]").expect("[milter] in the example") + 1;
        let section: String = text[start..]
            .lines()
            .take_while(|l| !l.starts_with('[') || l.starts_with("[milter]"))
            .map(|l| format!("{l}\n"))
            .collect();
        let m = parse(&section).unwrap().milter.unwrap();
        let d = MilterConfig::default();
        assert_eq!(
            (
                m.read_timeout,
                m.idle_timeout,
                m.max_message_size,
                m.max_connections
            ),
            (
                d.read_timeout,
                d.idle_timeout,
                d.max_message_size,
                d.max_connections
            ),
            "the example documents the defaults"
        );
    }

    #[test]
    fn defaults() {
        let m = parse("[milter]\nlisten = \"inet:127.0.0.1:7357\"\n")
            .unwrap()
            .milter
            .unwrap();
        assert_eq!(
            m.listen().unwrap(),
            Listen::Inet("127.0.0.1:7357".parse().unwrap())
        );
        assert_eq!(m.on_error, OnError::Accept);
        assert_eq!(m.read_timeout, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("listen = \"localhost\"", "milter.listen"),
            ("listen = \"unix:relative.sock\"", "milter.listen"),
            (
                "listen = \"127.0.0.1:1\"\nread_timeout = \"0s\"",
                "milter.read_timeout",
            ),
            (
                "listen = \"127.0.0.1:1\"\nmax_message_size = 0",
                "milter.max_message_size",
            ),
            (
                "listen = \"127.0.0.1:1\"\nsocket_mode = \"rw\"",
                "milter.socket_mode",
            ),
        ] {
            let err = parse(&format!("[milter]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let err = parse("[milter]\nlisten = \"127.0.0.1:1\"\non_error = \"reject\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("on_error"), "{err}");
        let err = parse("[milter]\nlisten = \"127.0.0.1:1\"\nread_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("read_timeout"), "{err}");
    }
}
