//! The Microsoft Graph source: token providers, delta sync, snapshot, token state. (TODO)

use crate::config::ConfigError;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GraphConfig {
    pub tenant_id: String,
    pub client_id: String,
}

impl GraphConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
