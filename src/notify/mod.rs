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

use crate::app::App;
use crate::config::ConfigError;
use alerts::{Alert, Context, Tracker};
use cert::CertWatch;
use mail::{Hop, Mailer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The admin address that receives alerts.
    pub admin: String,
    /// Envelope and From address of the alerts.
    #[serde(default = "default_from")]
    pub from: String,
    /// Repeat while the problem lasts.
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub notify_interval: Duration,
    /// `host:port` to send alerts through; defaults to `[smtp] next_hop`. Needed when only the
    /// milter runs (there is no next hop then).
    pub smtp: Option<String>,
    /// Where what was already sent is remembered across restarts. Default: `notify-state.json`
    /// next to `[directory] snapshot`; without either, it is kept in memory only.
    pub state_file: Option<PathBuf>,
}

fn default_from() -> String {
    "sigstamp@localhost".into()
}

fn default_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl NotifyConfig {
    /// Checks the addresses and that some next hop is known (`smtp_next_hop` is
    /// `[smtp] next_hop`, if that section exists).
    pub fn validate(&self, smtp_next_hop: Option<&str>) -> Result<(), ConfigError> {
        for (key, value) in [("notify.admin", &self.admin), ("notify.from", &self.from)] {
            value
                .parse::<lettre::Address>()
                .map_err(|e| ConfigError::invalid(key, format!("{value:?}: {e}")))?;
        }
        if self.notify_interval < Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "notify.notify_interval",
                "must be at least 1m",
            ));
        }
        self.hop(smtp_next_hop).map(|_| ())
    }

    /// `state_file`, or its default next to the directory snapshot.
    pub fn state_path(&self, snapshot: Option<&Path>) -> Option<PathBuf> {
        self.state_file.clone().or_else(|| {
            let dir = snapshot?.parent()?;
            Some(dir.join("notify-state.json"))
        })
    }

    /// Where alerts are sent: `[notify] smtp`, else the relay's next hop.
    pub fn hop(&self, smtp_next_hop: Option<&str>) -> Result<Hop, ConfigError> {
        match (&self.smtp, smtp_next_hop) {
            (Some(s), _) => Hop::parse(s).map_err(|e| ConfigError::invalid("notify.smtp", e)),
            (None, Some(s)) => Hop::parse(s).map_err(|e| ConfigError::invalid("smtp.next_hop", e)),
            (None, None) => Err(ConfigError::invalid(
                "notify.smtp",
                "no [smtp] next_hop to send notifications through; set notify.smtp",
            )),
        }
    }
}

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

pub struct Notifier {
    app: Arc<App>,
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
    /// `Ok(None)` when there is no `[notify]` section.
    pub fn new(app: Arc<App>, clock: Arc<dyn Clock>) -> Result<Option<Notifier>, NotifyError> {
        let Some(cfg) = app.config.notify.clone() else {
            return Ok(None);
        };
        let hop = cfg.hop(app.config.smtp.as_ref().map(|s| s.next_hop.as_str()))?;
        let mailer = Mailer::new(&cfg.from, &cfg.admin, hop)?;
        let cert = app
            .config
            .graph
            .as_ref()
            .and_then(|g| g.client_certificate.clone())
            .map(CertWatch::new);
        let state_path = cfg.state_path(app.config.directory.snapshot.as_deref());
        let mut tracker = Tracker::new(cfg.notify_interval);
        if let Some(saved) = state_path.as_deref().and_then(load_state) {
            tracker.restore(saved);
        }
        Ok(Some(Notifier {
            app,
            clock,
            mailer,
            interval: cfg.notify_interval,
            tracker,
            cert,
            failures: 0,
            retry_at: None,
            state_path,
        }))
    }

    /// Look at the token and the certificate once and send what is due.
    pub async fn tick(&mut self) -> Tick {
        let now = self.clock.now();
        let mut tick = Tick::default();
        if self.retry_at.is_some_and(|t| now < t) {
            tick.backing_off = true;
            return tick;
        }
        let token = self.app.status.token.load_full();
        let cert = self
            .cert
            .as_mut()
            .and_then(|w| w.get().cloned().map(|c| (w.path().to_path_buf(), c)));
        let mut due = self.tracker.due(now, &token, cert);
        let snapshot = self.app.status.snapshot.load_full();
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
        self.app.metrics.count_notification(alert.kind(), result);
    }

    fn context(&self, now: OffsetDateTime) -> Context {
        let dir = &self.app.stamper.directory;
        Context {
            now,
            users: dir.snapshot().len(),
            source: dir.source().as_str(),
            last_sync: **self.app.status.last_sync.load(),
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

/// The background task of `sigstamp serve`: poll once a second until `app.shutdown`.
pub async fn run(app: Arc<App>) -> anyhow::Result<()> {
    run_with(app, Arc::new(SystemClock), Duration::from_secs(1)).await
}

/// [`run`] with an injected clock and poll period (tests).
pub async fn run_with(app: Arc<App>, clock: Arc<dyn Clock>, poll: Duration) -> anyhow::Result<()> {
    let shutdown = app.shutdown.clone();
    let mut notifier = match Notifier::new(app, clock) {
        Ok(Some(n)) => n,
        Ok(None) => {
            tracing::info!("no [notify] section: admin notifications are off");
            shutdown.cancelled().await;
            return Ok(());
        }
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
