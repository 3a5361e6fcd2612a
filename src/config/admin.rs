//! `[admin]`: the admin HTTP listener.

use crate::config::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` of the admin HTTP listener.
    #[serde(default = "default_listen")]
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8025".into()
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr().map(|_| ())
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
