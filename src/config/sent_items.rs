//! `[sent_items]`: replace the sender's sent copy with the stamped one (see `sent_items`).

use crate::config::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[sent_items]`. Key names are a contract (issue 12).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentItemsConfig {
    #[serde(default)]
    pub enabled: bool,
    /// First look for the sent copy this long after the next hop's 250.
    #[serde(default = "default_delay", with = "crate::config::duration")]
    pub delay: Duration,
    /// Then keep looking (with backoff) until this long after the 250; then count the job as
    /// not found (or failed) and drop it.
    #[serde(default = "default_give_up", with = "crate::config::duration")]
    pub give_up_after: Duration,
    /// Pending jobs on disk, one file each.
    #[serde(default = "default_spool")]
    pub spool: PathBuf,
}

impl Default for SentItemsConfig {
    fn default() -> Self {
        SentItemsConfig {
            enabled: false,
            delay: default_delay(),
            give_up_after: default_give_up(),
            spool: default_spool(),
        }
    }
}

fn default_delay() -> Duration {
    Duration::from_secs(5)
}

fn default_give_up() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_spool() -> PathBuf {
    PathBuf::from("state/sent-items")
}

impl SentItemsConfig {
    pub fn validate(&self, graph: Option<&crate::config::GraphConfig>) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let Some(graph) = graph else {
            return Err(ConfigError::invalid(
                "sent_items.enabled",
                "needs a [graph] section (the app needs the Mail.ReadWrite application permission)",
            ));
        };
        if graph.refresh_token_file.is_some() {
            return Err(ConfigError::invalid(
                "sent_items.enabled",
                "needs app-only credentials in [graph] (client_secret or client_certificate): \
                 Mail.ReadWrite is an application permission, a signed-in user's token cannot \
                 reach other users' mailboxes",
            ));
        }
        if self.give_up_after <= self.delay {
            return Err(ConfigError::invalid(
                "sent_items.give_up_after",
                "must be longer than sent_items.delay",
            ));
        }
        if self.spool.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "sent_items.spool",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
