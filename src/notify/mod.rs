//! Admin notifications by email: the Graph token turned `expired` or the directory snapshot
//! cannot be written (each repeated every `notify_interval`, then one "recovered" message),
//! and the client certificate's notAfter approaching (14, 7 and 1 days before, and once
//! expired).
//!
//! A background task polls [`crate::status::Status::token`] once a second. Messages go through
//! the next hop and carry `X-Sigstamp: notification`, so the relay never stamps them. A failed
//! delivery is logged and retried with backoff; nothing here is ever fatal to the process.

pub mod aadsts;
pub mod alerts;
pub mod cert;
pub mod mail;

use crate::config::ConfigError;
pub use crate::config::NotifyConfig;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::status::Status;
use alerts::{Alert, Context, Tracker};
use cert::CertWatch;
use mail::Mailer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid address {0}")]
    Address(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the message: {0}")]
    Build(lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(lettre::transport::smtp::Error),
}

/// The same injectable clock as the Graph refresher, so one test clock can drive both.
pub use crate::directory::graph::clock::{Clock, ManualClock, SystemClock};

const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);

/// What one [`Notifier::tick`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    pub sent: Vec<&'static str>,
    pub failed: Vec<&'static str>,
    /// Skipped: waiting for the retry time after a failure.
    pub backing_off: bool,
}

/// The sections the notifier reads: its own, and the keys of others it depends on.
#[derive(Debug, Clone)]
pub struct NotifySetup {
    pub notify: NotifyConfig,
    /// `[smtp] next_hop`: where alerts go without `[notify] smtp`.
    pub next_hop: Option<String>,
    /// `[graph] client_certificate`: watched for expiry.
    pub client_certificate: Option<PathBuf>,
    /// `[directory] snapshot`: the state file's default folder.
    pub snapshot: Option<PathBuf>,
}

/// What the notifier watches and counts into.
#[derive(Clone)]
pub struct NotifyHandles {
    /// Users and source, quoted in the alerts.
    pub directory: Arc<Directory>,
    /// The token state it watches.
    pub status: Arc<Status>,
    pub metrics: Arc<Metrics>,
}

pub struct Notifier {
    handles: NotifyHandles,
    clock: Arc<dyn Clock>,
    mailer: Mailer,
    interval: Duration,
    tracker: Tracker,
    cert: Option<CertWatch>,
    failures: u32,
    retry_at: Option<OffsetDateTime>,
    state_path: Option<PathBuf>,
}

impl Notifier {
    pub fn new(
        setup: NotifySetup,
        handles: NotifyHandles,
        clock: Arc<dyn Clock>,
    ) -> Result<Notifier, NotifyError> {
        let cfg = setup.notify;
        let hop = cfg.hop(setup.next_hop.as_deref())?;
        let mailer = Mailer::new(&cfg.from, &cfg.admin, hop)?;
        let cert = setup.client_certificate.map(CertWatch::new);
        let state_path = cfg.state_path(setup.snapshot.as_deref());
        let mut tracker = Tracker::new(cfg.notify_interval);
        if let Some(saved) = state_path.as_deref().and_then(load_state) {
            tracker.restore(saved);
        }
        Ok(Notifier {
            handles,
            clock,
            mailer,
            interval: cfg.notify_interval,
            tracker,
            cert,
            failures: 0,
            retry_at: None,
            state_path,
        })
    }

    /// Look at the token and the certificate once and send what is due.
    pub async fn tick(&mut self) -> Tick {
        let now = self.clock.now();
        let mut tick = Tick::default();
        if self.retry_at.is_some_and(|t| now < t) {
            tick.backing_off = true;
            return tick;
        }
        let token = self.handles.status.token.load_full();
        let cert = self
            .cert
            .as_mut()
            .and_then(|w| w.get().cloned().map(|c| (w.path().to_path_buf(), c)));
        let mut due = self.tracker.due(now, &token, cert);
        let snapshot = self.handles.status.snapshot.load_full();
        due.extend(self.tracker.snapshot_due(now, snapshot.as_ref().as_ref()));
        if due.is_empty() {
            return tick;
        }
        let ctx = self.context(now);
        for alert in due {
            match self.mailer.send(&alert.mail(&ctx)).await {
                Ok(()) => {
                    self.tracker.sent(&alert, now);
                    self.persist();
                    self.failures = 0;
                    self.retry_at = None;
                    self.count(&alert, "sent");
                    tracing::info!(kind = alert.kind(), to = %self.mailer.to(), "notification sent");
                    tick.sent.push(alert.kind());
                }
                Err(e) => {
                    self.failures += 1;
                    let wait = backoff(self.failures);
                    self.retry_at = Some(now + wait);
                    self.count(&alert, "failed");
                    tracing::warn!(
                        kind = alert.kind(),
                        hop = %self.mailer.hop(),
                        error = %e,
                        retry_in = %humantime::format_duration(wait),
                        "notification not delivered; will retry"
                    );
                    tick.failed.push(alert.kind());
                    // The hop is down: the rest would fail too; they stay due.
                    break;
                }
            }
        }
        tick
    }

    fn count(&self, alert: &Alert, result: &str) {
        self.handles
            .metrics
            .count_notification(alert.kind(), result);
    }

    fn context(&self, now: OffsetDateTime) -> Context {
        let dir = &self.handles.directory;
        Context {
            now,
            users: dir.snapshot().len(),
            source: dir.source().as_str(),
            last_sync: **self.handles.status.last_sync.load(),
            interval: self.interval,
        }
    }

    fn persist(&self) {
        let Some(path) = &self.state_path else {
            return;
        };
        if let Err(e) = save_state(path, &self.tracker.save()) {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot save the notification state; a restart may repeat an alert");
        }
    }
}

/// A missing file is a first start; a broken one is reported and ignored.
fn load_state(path: &Path) -> Option<alerts::Saved> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the notification state");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "ignoring a corrupt notification state file");
            None
        }
    }
}

/// Write whole or not at all (temp file, fsync, rename), 0600, its folder created if missing.
fn save_state(path: &Path, saved: &alerts::Saved) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    crate::directory::snapshot::write_atomic(path, &json, 0o600)
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (RETRY_FIRST * factor).min(RETRY_MAX)
}

/// The background task of `sigstamp serve`: poll every `poll` (a second in production; tests
/// inject the clock and a shorter period) until `shutdown`. Without a `[notify]` section
/// (`setup` is `None`) it only waits for shutdown.
pub async fn run(
    setup: Option<NotifySetup>,
    handles: NotifyHandles,
    clock: Arc<dyn Clock>,
    poll: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(setup) = setup else {
        tracing::info!("no [notify] section: admin notifications are off");
        shutdown.cancelled().await;
        return Ok(());
    };
    let mut notifier = match Notifier::new(setup, handles, clock) {
        Ok(n) => n,
        Err(e) => {
            // Config validation catches this at start; never take the relay down for it.
            tracing::error!(error = %e, "admin notifications are off");
            shutdown.cancelled().await;
            return Ok(());
        }
    };
    tracing::info!(hop = %notifier.mailer.hop(), "admin notifications on");
    let mut every = tokio::time::interval(poll);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = notifier.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(30), RETRY_MAX);
    }

    fn cfg(extra: &str) -> NotifyConfig {
        toml::from_str(&format!("admin = \"it@example.com\"\n{extra}")).unwrap()
    }

    #[test]
    fn validate_needs_a_hop_and_addresses() {
        assert!(cfg("").validate(Some("127.0.0.1:25")).is_ok());
        assert!(cfg("").validate(None).is_err());
        assert!(cfg("smtp = \"127.0.0.1:2525\"").validate(None).is_ok());
        assert!(cfg("from = \"not an address\"")
            .validate(Some("h:25"))
            .is_err());
        assert!(cfg("notify_interval = \"1s\"")
            .validate(Some("h:25"))
            .is_err());
        let c = cfg("smtp = \"[::1]:26\"");
        assert_eq!(c.hop(Some("x:1")).unwrap().port, 26);
    }

    #[test]
    fn state_file_defaults_next_to_the_snapshot() {
        let snap = Path::new("state/directory.json");
        assert_eq!(
            cfg("").state_path(Some(snap)),
            Some(PathBuf::from("state/notify-state.json"))
        );
        assert_eq!(cfg("").state_path(None), None);
        let own = cfg("state_file = \"/var/lib/x.json\"");
        assert_eq!(
            own.state_path(Some(snap)),
            Some(PathBuf::from("/var/lib/x.json"))
        );
    }
}
