//! Live service state shown by `/status`, `/readyz`, metrics and the admin page.
//! Written by the Graph refresher and the listeners; read by the admin edge.

use arc_swap::ArcSwap;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Valid,
    /// Needs an admin (AADSTS7000222, 7000215, 700082, 50173, 50076, …).
    Expired,
    /// Transient: network, 5xx, throttling, timeouts.
    Failing,
    /// No directory source configured (no `[graph]` section).
    Unconfigured,
    /// Configured, but the source has not answered yet (right after start).
    Starting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenStatus {
    pub state: TokenState,
    pub error_code: Option<String>,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

impl TokenStatus {
    /// Before the directory source's first answer.
    pub fn starting(description: impl Into<String>) -> Self {
        TokenStatus {
            state: TokenState::Starting,
            error_code: None,
            description: description.into(),
            since: OffsetDateTime::now_utc(),
        }
    }

    pub fn unconfigured() -> Self {
        TokenStatus {
            state: TokenState::Unconfigured,
            error_code: None,
            description: "no [graph] section configured".into(),
            since: OffsetDateTime::now_utc(),
        }
    }
}

/// `/status` `config`: when the running configuration was loaded, and why the last reload
/// was refused (`None` once a reload succeeds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigStatus {
    #[serde(with = "time::serde::rfc3339")]
    pub loaded_at: OffsetDateTime,
    pub error: Option<String>,
}

/// The on-disk snapshot of the directory (`/status` `directory.snapshot`; the JSON names are a
/// contract): where it is, when it was last written, and why it cannot be written (or read)
/// now. While `error` is set, a restart would not start with the current directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotStatus {
    pub path: PathBuf,
    #[serde(with = "time::serde::rfc3339::option")]
    pub written_at: Option<OffsetDateTime>,
    pub error: Option<String>,
    /// Since when `error` has been set (for the admin notification), not in the JSON.
    #[serde(skip)]
    pub error_since: Option<OffsetDateTime>,
}

impl SnapshotStatus {
    pub fn new(path: PathBuf) -> Self {
        SnapshotStatus {
            path,
            written_at: None,
            error: None,
            error_since: None,
        }
    }

    /// A write (or the start-up check) succeeded at `at` (`None`: nothing written yet).
    pub fn ok(&self, at: Option<OffsetDateTime>) -> Self {
        SnapshotStatus {
            written_at: at.or(self.written_at),
            error: None,
            error_since: None,
            ..self.clone()
        }
    }

    /// A write failed at `now` with `error`; the last good `written_at` stays.
    pub fn failed(&self, error: String, now: OffsetDateTime) -> Self {
        SnapshotStatus {
            error: Some(error),
            error_since: self.error_since.or(Some(now)),
            ..self.clone()
        }
    }
}

pub struct Status {
    pub token: ArcSwap<TokenStatus>,
    pub config: ArcSwap<ConfigStatus>,
    pub last_sync: ArcSwap<Option<OffsetDateTime>>,
    /// `None` when no snapshot is configured, or it has not been looked at yet.
    pub snapshot: ArcSwap<Option<SnapshotStatus>>,
    pub smtp_listening: AtomicBool,
    pub milter_listening: AtomicBool,
    pub directory_loaded: AtomicBool,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            token: ArcSwap::from_pointee(TokenStatus::starting(
                "waiting for the directory source's first answer",
            )),
            config: ArcSwap::from_pointee(ConfigStatus {
                loaded_at: OffsetDateTime::now_utc(),
                error: None,
            }),
            last_sync: ArcSwap::from_pointee(None),
            snapshot: ArcSwap::from_pointee(None),
            smtp_listening: AtomicBool::new(false),
            milter_listening: AtomicBool::new(false),
            directory_loaded: AtomicBool::new(false),
        }
    }
}

impl Status {
    /// Change the snapshot state with `f` (from the current one, or a fresh one for `path`).
    pub fn update_snapshot(
        &self,
        path: &std::path::Path,
        f: impl FnOnce(&SnapshotStatus) -> SnapshotStatus,
    ) {
        // One writer at a time in practice (start-up, then the refresher).
        let cur = self.snapshot.load();
        let next = match &**cur {
            Some(s) if s.path == path => f(s),
            _ => f(&SnapshotStatus::new(path.to_path_buf())),
        };
        self.snapshot.store(Arc::new(Some(next)));
    }

    /// What keeps the service from being ready: the directory, and each configured listener.
    pub fn not_ready(&self, smtp: bool, milter: bool) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.directory_loaded.load(Ordering::Relaxed) {
            missing.push("directory not loaded");
        }
        if smtp && !self.smtp_listening.load(Ordering::Relaxed) {
            missing.push("smtp not listening");
        }
        if milter && !self.milter_listening.load(Ordering::Relaxed) {
            missing.push("milter not listening");
        }
        missing
    }
}
