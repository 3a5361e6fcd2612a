//! The composition root: the configuration checked as a whole, and what `sigstamp serve`
//! builds from it before handing each component its own section and handles.

use crate::config::{Config, ConfigError};
use crate::directory::photo::PhotoSource;
use crate::metrics::Metrics;
use crate::pipeline::Stamper;
use crate::status::Status;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct App {
    pub config: Config,
    pub stamper: Arc<Stamper>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<Status>,
    /// Users' photos for `{{photo}}`: the Graph photo store, or `NoPhotos`.
    pub photos: Arc<dyn PhotoSource>,
    /// Fired on SIGTERM/SIGINT: listeners stop accepting, sessions drain.
    pub shutdown: CancellationToken,
}

/// Read, parse and check a configuration file: every section's own checks
/// ([`Config::load`]) and the ones that need a component ([`check`]).
pub fn load_config(path: &std::path::Path) -> Result<Config, ConfigError> {
    let cfg = Config::load(path)?;
    check(&cfg)?;
    for (old, new) in &cfg.deprecated {
        tracing::warn!(
            old = %old,
            new = %new,
            "config key `{old}` is deprecated: rename it to `{new}`"
        );
    }
    Ok(cfg)
}

/// [`load_config`] from text.
pub fn parse_config(text: &str) -> Result<Config, ConfigError> {
    let cfg = Config::parse(text)?;
    check(&cfg)?;
    Ok(cfg)
}

/// The checks `config` cannot make alone: the rules compile (each error names its key).
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    crate::rules::RuleSet::compile(&cfg.rules, &cfg.recipients).map(|_| ())
}
