//! The Microsoft Graph source: token providers, delta sync, snapshot, token state. (TODO)

use crate::config::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[graph]`. Key names are a contract (README, sigstamp.example.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    pub tenant_id: String,
    pub client_id: String,
    /// Client credentials with a secret (§1.1 of the Graph contract).
    pub client_secret: Option<String>,
    /// Client credentials with a certificate: PEM certificate and key paths (§1.2).
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Delegated refresh token written by `sigstamp login` (§1.3), mode 0600.
    pub refresh_token_file: Option<PathBuf>,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_sync_interval", with = "crate::config::duration")]
    pub sync_interval: Duration,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_endpoint() -> String {
    "https://graph.microsoft.com".into()
}

fn default_sync_interval() -> Duration {
    Duration::from_secs(300)
}

impl GraphConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
