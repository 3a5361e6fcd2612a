//! Admin notifications by email (token expired, certificate about to expire). (TODO)

use serde::Deserialize;
use std::time::Duration;

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
}

fn default_from() -> String {
    "sigstamp@localhost".into()
}

fn default_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}
