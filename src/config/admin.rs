//! `[admin]`: the admin HTTP listener.

use crate::config::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use super::admin_auth::AuthConfig;
pub use super::admin_self_service::SelfServiceConfig;

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` of the admin HTTP listener.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// PEM certificate chain and key: the listener speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// JSON lines of every change and sign-in event.
    pub audit_log: Option<PathBuf>,
    /// Without `[admin.auth]`, on a loopback listener only: the editing pages are open to
    /// whoever reaches the listener, as `local` with the admin role (CSRF still checked).
    #[serde(default)]
    pub local_admin: bool,
    /// `[admin.auth]`: sign-in with Entra ID.
    pub auth: Option<AuthConfig>,
    /// `[admin.self_service]`: what users may change on their own signature.
    pub self_service: Option<SelfServiceConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            audit_log: None,
            local_admin: false,
            auth: None,
            self_service: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8025".into()
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let addr = self.listen_addr()?;
        if let Some(s) = &self.self_service {
            s.validate()?;
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "admin.tls_key",
                    "missing: tls_cert needs it",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "admin.tls_cert",
                    "missing: tls_key needs it",
                ))
            }
        };
        if let Some(auth) = &self.auth {
            auth.validate()?;
            if !tls {
                return Err(ConfigError::invalid(
                    "admin.tls_cert",
                    "[admin.auth] needs [admin] tls_cert and tls_key: the session cookie is \
                     Secure and Entra ID redirects to https only",
                ));
            }
            if self.local_admin {
                return Err(ConfigError::invalid(
                    "admin.local_admin",
                    "cannot be used with [admin.auth]",
                ));
            }
        }
        if !addr.ip().is_loopback() {
            let mut missing = Vec::new();
            if self.auth.is_none() {
                missing.push(
                    "[admin.auth] (tenant_id, client_id, client_secret, redirect_url, admins)",
                );
            }
            if !tls {
                missing.push("[admin] tls_cert and tls_key");
            }
            if !missing.is_empty() {
                return Err(ConfigError::invalid(
                    "admin.listen",
                    format!(
                        "{addr} is not a loopback address: the admin web shows directory data \
                         and changes signatures, so off loopback it needs sign-in and TLS; \
                         missing: {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        if self.local_admin && !addr.ip().is_loopback() {
            return Err(ConfigError::invalid(
                "admin.local_admin",
                "only on a loopback admin.listen",
            ));
        }
        Ok(())
    }

    /// The listen address; a name like `localhost:8025` is not accepted, to keep the bound
    /// interface unambiguous.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| {
            ConfigError::invalid(
                "admin.listen",
                format!("{:?} is not an IP:port address: {e}", self.listen),
            )
        })
    }
}
