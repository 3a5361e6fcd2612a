//! `[log]`: how `sigstamp serve` writes its log (to stderr: journald or the container log).

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (`key=value` fields).
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's json formatter).
    Json,
}
