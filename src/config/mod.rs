//! `sigstamp serve --config FILE`: the TOML configuration, one file per section, and the
//! errors that name the failing key.
//!
//! This module depends on nothing else in the crate: components import their section from
//! here, never the other way round. Checks that need a component's knowledge (the rules'
//! compiler) are functions of that component, run on the parsed sections by
//! `app::check` (which `Config::load` callers use).

pub mod admin;
pub mod admin_auth;
pub mod admin_self_service;
pub mod directory;
pub mod duration;
pub mod graph;
pub mod ldap;
pub mod log;
pub mod milter;
pub mod notify;
pub mod rules;
pub mod sent_items;
pub mod smtp;
pub mod stamp;
pub mod templates;

pub use admin::{AdminConfig, AuthConfig};
pub use directory::DirectoryConfig;
pub use graph::{AssertionAlgorithm, GraphConfig, MIN_PHOTO_REFRESH};
pub use ldap::{Flavor as LdapFlavor, LdapConfig};
pub use log::{LogConfig, LogFormat};
pub use milter::{Listen, MilterConfig, OnError};
pub use notify::{Hop, NotifyConfig};
pub use rules::{OneOrMany, RecipientsConfig, RuleConfig};
pub use sent_items::SentItemsConfig;
pub use smtp::{NextHopTls, SmtpConfig};
pub use stamp::StampConfig;
pub use templates::{ImageMode, TemplatesConfig};

use serde::Deserialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub smtp: Option<SmtpConfig>,
    pub milter: Option<MilterConfig>,
    #[serde(default)]
    pub directory: DirectoryConfig,
    #[serde(default)]
    pub templates: TemplatesConfig,
    #[serde(default)]
    pub stamp: StampConfig,
    pub graph: Option<GraphConfig>,
    /// `[ldap]`: Active Directory / OpenLDAP instead of Graph (one source at a time).
    pub ldap: Option<LdapConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    pub notify: Option<NotifyConfig>,
    /// `[[rules]]`: which template each message gets (see `rules`).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// `[recipients] internal_domains`, for rules by recipient.
    #[serde(default)]
    pub recipients: RecipientsConfig,
    /// `[sent_items]`: replace the sender's sent copy with the stamped one (off by default).
    #[serde(default)]
    pub sent_items: SentItemsConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Renamed keys this file still uses, as (old, new) key paths (`app::load_config` logs a
    /// deprecation warning for each).
    #[serde(skip)]
    pub deprecated: Vec<(String, String)>,
}

/// Sections with renamed keys, and each one's (old, new) names.
const RENAMED: &[(&str, &[(&str, &str)])] = &[("milter", milter::RENAMED)];

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Parse and validate. toml's errors already name the key and line.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        let deprecated = deprecated_keys(&table);
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        cfg.deprecated = deprecated;
        cfg.validate().map_err(|e| cfg.as_written(e))?;
        Ok(cfg)
    }

    /// An error names the key as the file wrote it, old name included.
    fn as_written(&self, e: ConfigError) -> ConfigError {
        match e {
            ConfigError::Invalid { key, message } => {
                let key = match self.deprecated.iter().find(|(_, new)| *new == key) {
                    Some((old, _)) => old.clone(),
                    None => key,
                };
                ConfigError::Invalid { key, message }
            }
            other => other,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.smtp {
            s.validate()?;
        }
        if let Some(m) = &self.milter {
            m.validate()?;
        }
        if let Some(g) = &self.graph {
            g.validate()?;
        }
        if let Some(l) = &self.ldap {
            if self.graph.is_some() {
                return Err(ConfigError::invalid(
                    "ldap",
                    "[graph] and [ldap] are both set: sigstamp reads one directory source at a time; remove one of the sections",
                ));
            }
            l.validate()?;
        }
        self.admin.validate()?;
        self.sent_items.validate(self.graph.as_ref())?;
        self.templates.validate()?;
        if let Some(n) = &self.notify {
            n.validate(self.smtp.as_ref().map(|s| s.next_hop.as_str()))?;
        }
        Ok(())
    }
}

/// The renamed keys `table` uses under their old names.
fn deprecated_keys(table: &toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (section, renamed) in RENAMED {
        let Some(t) = table.get(*section).and_then(toml::Value::as_table) else {
            continue;
        };
        for (old, new) in *renamed {
            if t.contains_key(*old) {
                out.push((format!("{section}.{old}"), format!("{section}.{new}")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_milter_keys_work_under_both_names() {
        let new = Config::parse(
            "[milter]\nlisten = \"127.0.0.1:1\"\ndata_timeout = \"7s\"\ncommand_timeout = \"8s\"\n\
             max_sessions = 3\ndrain_time = \"9s\"\n",
        )
        .unwrap();
        assert!(new.deprecated.is_empty());
        let old = Config::parse(
            "[milter]\nlisten = \"127.0.0.1:1\"\nread_timeout = \"7s\"\nidle_timeout = \"8s\"\n\
             max_connections = 3\ndrain_timeout = \"9s\"\n",
        )
        .unwrap();
        let (n, o) = (new.milter.unwrap(), old.milter.unwrap());
        assert_eq!(
            (
                n.data_timeout,
                n.command_timeout,
                n.max_sessions,
                n.drain_time
            ),
            (
                o.data_timeout,
                o.command_timeout,
                o.max_sessions,
                o.drain_time
            )
        );
        assert_eq!(n.max_sessions, 3);
        assert_eq!(
            old.deprecated,
            [
                ("milter.read_timeout", "milter.data_timeout"),
                ("milter.idle_timeout", "milter.command_timeout"),
                ("milter.max_connections", "milter.max_sessions"),
                ("milter.drain_timeout", "milter.drain_time"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // Both names at once is refused, naming the key.
        let e = Config::parse(
            "[milter]\nlisten = \"127.0.0.1:1\"\nread_timeout = \"7s\"\ndata_timeout = \"7s\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("data_timeout"), "{e}");
        // A bad value under the new name names the new key.
        let e = Config::parse("[milter]\nlisten = \"127.0.0.1:1\"\ndata_timeout = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`milter.data_timeout`"), "{e}");
    }
}
