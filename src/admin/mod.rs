//! Admin HTTP (axum): /healthz, /readyz, /metrics, /status. (TODO)

use crate::app::App;
use crate::config::ConfigError;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
pub struct AdminConfig {
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
        Ok(())
    }
}

pub async fn run(app: Arc<App>) -> anyhow::Result<()> {
    let _ = app;
    Ok(())
}
