//! Admin notifications by email (token expired, certificate about to expire). (TODO)

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NotifyConfig {
    pub admin: String,
}
