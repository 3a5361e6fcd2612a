//! `[directory]`: where users and the state kept about them are read from.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// A JSON file of users in Graph's user shape.
    pub file: Option<PathBuf>,
    /// Where the last good Graph sync is kept (loaded at start, before any Graph call).
    pub snapshot: Option<PathBuf>,
    /// Local overrides and custom attributes.
    pub overrides: Option<PathBuf>,
}
