//! Live service state shown by `/status`, `/readyz`, metrics and the admin page.
//! Written by the Graph refresher and the listeners; read by the admin edge.

use arc_swap::ArcSwap;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Valid,
    /// Needs an admin (AADSTS7000222, 7000215, 700082, 50173, 50076, …).
    Expired,
    /// Transient: network, 5xx, throttling.
    Failing,
    Unconfigured,
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

pub struct Status {
    pub token: ArcSwap<TokenStatus>,
    pub config: ArcSwap<ConfigStatus>,
    pub last_sync: ArcSwap<Option<OffsetDateTime>>,
    pub smtp_listening: AtomicBool,
    pub milter_listening: AtomicBool,
    pub directory_loaded: AtomicBool,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            token: ArcSwap::from_pointee(TokenStatus::unconfigured()),
            config: ArcSwap::from_pointee(ConfigStatus {
                loaded_at: OffsetDateTime::now_utc(),
                error: None,
            }),
            last_sync: ArcSwap::from_pointee(None),
            smtp_listening: AtomicBool::new(false),
            milter_listening: AtomicBool::new(false),
            directory_loaded: AtomicBool::new(false),
        }
    }
}

impl Status {
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
