//! The SMTP before-queue relay: `inbound` (the session with the client), `outbound` (the
//! next hop), and the listener. (TODO)

use crate::app::App;
use crate::config::ConfigError;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SmtpConfig {
    pub listen: String,
    pub next_hop: String,
}

impl SmtpConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Run the relay until `app.shutdown` fires, then drain.
pub async fn run(app: Arc<App>) -> anyhow::Result<()> {
    let _ = app;
    Ok(())
}
