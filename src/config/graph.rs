//! `[graph]`: the Microsoft Graph source. Key names are a contract (README,
//! sigstamp.example.toml).

use crate::config::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Photos are not checked for changes more often than this.
pub const MIN_PHOTO_REFRESH: Duration = Duration::from_secs(60);

/// `[graph]`. Key names are a contract (README, sigstamp.example.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    pub tenant_id: String,
    pub client_id: String,
    /// Client credentials with a secret (§1.1 of the Graph contract).
    pub client_secret: Option<String>,
    /// The secret in a file instead, re-read on every token request (rotate without restart).
    pub client_secret_file: Option<PathBuf>,
    /// Client credentials with a certificate: PEM certificate and key paths (§1.2).
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The client-assertion form: `RS256` + `x5t` (SHA-1, default) or `PS256` + `x5t#S256`.
    #[serde(default)]
    pub assertion_algorithm: AssertionAlgorithm,
    /// Delegated refresh token written by `sigstamp login` (§1.3), mode 0600.
    pub refresh_token_file: Option<PathBuf>,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_sync_interval", with = "crate::config::duration")]
    pub sync_interval: Duration,
    /// Timeout of one HTTP request to the token endpoint or Graph.
    #[serde(default = "default_request_timeout", with = "crate::config::duration")]
    pub request_timeout: Duration,
    /// Fetch users' photos for `{{photo}}` (see `directory::graph::photos`).
    #[serde(default)]
    pub photos: bool,
    /// Where photos are cached; default `photos/` beside `[directory] snapshot`.
    pub photo_dir: Option<PathBuf>,
    /// How often each user's photo is checked again (its ETag compared).
    #[serde(default = "default_photo_refresh", with = "crate::config::duration")]
    pub photo_refresh: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AssertionAlgorithm {
    #[default]
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "PS256")]
    Ps256,
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

fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_photo_refresh() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl GraphConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tenant_id.trim().is_empty() {
            return Err(ConfigError::invalid("graph.tenant_id", "must not be empty"));
        }
        let cert_or_secret = self.client_secret.is_some()
            || self.client_secret_file.is_some()
            || self.client_certificate.is_some();
        if cert_or_secret
            && ["common", "organizations", "consumers"].contains(&self.tenant_id.as_str())
        {
            return Err(ConfigError::invalid(
                "graph.tenant_id",
                "client credentials need the tenant itself (GUID or domain), not common/organizations",
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::invalid("graph.client_id", "must not be empty"));
        }
        check_url("graph.authority", &self.authority)?;
        check_url("graph.endpoint", &self.endpoint)?;
        if self.client_secret.as_deref().is_some_and(|s| s.is_empty()) {
            return Err(ConfigError::invalid(
                "graph.client_secret",
                "must not be empty",
            ));
        }
        if self.client_secret.is_some() && self.client_secret_file.is_some() {
            return Err(ConfigError::invalid(
                "graph.client_secret_file",
                "set either client_secret or client_secret_file, not both",
            ));
        }
        match (&self.client_certificate, &self.client_key) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "graph.client_key",
                    "client_certificate needs client_key (the PEM private key)",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "graph.client_certificate",
                    "client_key needs client_certificate (the PEM certificate)",
                ))
            }
            _ => {}
        }
        let has_secret = self.client_secret.is_some() || self.client_secret_file.is_some();
        if has_secret && self.client_certificate.is_some() {
            return Err(ConfigError::invalid(
                "graph.client_certificate",
                "set either a client secret or a certificate, not both",
            ));
        }
        if !has_secret && self.client_certificate.is_none() && self.refresh_token_file.is_none() {
            return Err(ConfigError::invalid(
                "graph.client_secret",
                "a credential is required: client_secret (or client_secret_file), client_certificate + client_key, or refresh_token_file",
            ));
        }
        if self.sync_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "graph.sync_interval",
                "must be at least 1s",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "graph.request_timeout",
                "must not be zero",
            ));
        }
        self.validate_photos()?;
        Ok(())
    }
}

impl GraphConfig {
    /// Checks of the photo keys.
    fn validate_photos(&self) -> Result<(), ConfigError> {
        if self.photo_refresh < MIN_PHOTO_REFRESH {
            return Err(ConfigError::invalid(
                "graph.photo_refresh",
                "must be at least 1m",
            ));
        }
        if self
            .photo_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid("graph.photo_dir", "must not be empty"));
        }
        Ok(())
    }
}

/// https everywhere, plain http only towards loopback (the tests' fake).
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ConfigError::invalid(key, format!("{url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!(
                        "{url:?}: http:// is accepted only for loopback addresses; use https://"
                    ),
                ))
            }
        }
        other => Err(ConfigError::invalid(
            key,
            format!("{url:?}: unsupported scheme {other}"),
        )),
    }
}
