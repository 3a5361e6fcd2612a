//! `[admin.auth]`: sign-in with Entra ID (OpenID Connect) for the admin web.

use crate::config::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[admin.auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The directory (tenant) ID, a GUID: the issuer is `{authority}/{tenant_id}/v2.0`.
    pub tenant_id: String,
    /// The app registration's application (client) ID: the ID token's audience.
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Where Entra ID sends the browser back: `https://HOST:PORT/auth/callback`, registered
    /// as a Web redirect URI.
    pub redirect_url: String,
    /// The identity provider's base URL (tests point it at a fake).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Entra group object ids or app-role names whose members are admins.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Entra group object ids or app-role names whose members are editors.
    #[serde(default)]
    pub editors: Vec<String>,
    /// How long a sign-in lasts.
    #[serde(default = "default_session_lifetime", with = "super::duration")]
    pub session_lifetime: Duration,
    /// The cookie-signing key (at least 32 bytes); without it a key is made at start-up and
    /// a restart signs everyone out.
    pub session_key_file: Option<PathBuf>,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_session_lifetime() -> Duration {
    Duration::from_secs(8 * 3600)
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("admin.auth.tenant_id", &self.tenant_id),
            ("admin.auth.client_id", &self.client_id),
        ] {
            if v.trim().is_empty() {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
        }
        match (&self.client_secret, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "admin.auth.client_secret",
                    "set client_secret or client_secret_file, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::invalid(
                    "admin.auth.client_secret",
                    "missing: set client_secret or client_secret_file",
                ))
            }
            _ => {}
        }
        let redirect = url_of("admin.auth.redirect_url", &self.redirect_url)?;
        if redirect.scheme() != "https" {
            return Err(ConfigError::invalid(
                "admin.auth.redirect_url",
                "must be https:// (Entra ID only allows http for localhost, and the session \
                 cookie is Secure)",
            ));
        }
        let authority = url_of("admin.auth.authority", &self.authority)?;
        let loopback = authority.host_str().is_some_and(|h| {
            h == "localhost"
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if authority.scheme() != "https" && !loopback {
            return Err(ConfigError::invalid(
                "admin.auth.authority",
                "must be https:// (plain http only on loopback)",
            ));
        }
        if self.admins.is_empty() {
            return Err(ConfigError::invalid(
                "admin.auth.admins",
                "name at least one Entra group id or app role whose members are admins",
            ));
        }
        if self.session_lifetime < Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "admin.auth.session_lifetime",
                "must be at least 1m",
            ));
        }
        Ok(())
    }

    /// The client secret, from the config or its file (trimmed).
    pub fn secret(&self) -> Result<String, ConfigError> {
        if let Some(s) = &self.client_secret {
            return Ok(s.clone());
        }
        let path = self.client_secret_file.as_ref().expect("validated");
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                ConfigError::invalid(
                    "admin.auth.client_secret_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })
    }

    /// `{authority}/{tenant_id}/v2.0`.
    pub fn issuer(&self) -> String {
        format!(
            "{}/{}/v2.0",
            self.authority.trim_end_matches('/'),
            self.tenant_id
        )
    }
}

fn url_of(key: &str, s: &str) -> Result<openidconnect::url::Url, ConfigError> {
    openidconnect::url::Url::parse(s)
        .map_err(|e| ConfigError::invalid(key, format!("{s:?} is not a URL: {e}")))
}
