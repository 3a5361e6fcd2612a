//! The milter endpoint for Postfix and Sendmail. (TODO)

use crate::app::App;
use crate::config::ConfigError;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MilterConfig {
    pub listen: String,
}

impl MilterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

pub async fn run(app: Arc<App>) -> anyhow::Result<()> {
    let _ = app;
    Ok(())
}
