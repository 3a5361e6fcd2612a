//! `[stamp]`: what the stamper does beyond the defaults.

use serde::Deserialize;

/// `[stamp]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampConfig {
    /// Stamp `Auto-Submitted: auto-replied` mail (out-of-office) from directory users, with
    /// the template the rules choose (`message = "auto-reply"`). Bounces and other
    /// auto-generated mail stay unchanged either way.
    #[serde(default)]
    pub auto_replies: bool,
}
