//! `sigstamp serve --config FILE`: the TOML configuration. Each section's type lives with the
//! module that uses it; this file composes them and names the failing key on error.

use serde::Deserialize;
use std::path::{Path, PathBuf};

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
    pub smtp: Option<crate::smtp::SmtpConfig>,
    pub milter: Option<crate::milter::MilterConfig>,
    #[serde(default)]
    pub directory: DirectoryConfig,
    #[serde(default)]
    pub templates: TemplatesConfig,
    pub graph: Option<crate::directory::graph::GraphConfig>,
    #[serde(default)]
    pub admin: crate::admin::AdminConfig,
    pub notify: Option<crate::notify::NotifyConfig>,
    /// `[[rules]]`: which template each message gets (see `rules`).
    #[serde(default)]
    pub rules: Vec<crate::rules::RuleConfig>,
    /// `[recipients] internal_domains`, for rules by recipient.
    #[serde(default)]
    pub recipients: crate::rules::RecipientsConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// `[log]`: how `sigstamp serve` writes its log (to stderr: journald or the container log).
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    pub dir: Option<PathBuf>,
    #[serde(default = "default_template")]
    pub default: String,
    /// The folder `{{image "…"}}` reads from; default `images/` inside `dir`.
    pub images: Option<PathBuf>,
    /// Where the images folder is published, for templates whose `image_mode` is `url`.
    pub image_url: Option<String>,
    /// Template name → `cid` (inline parts, the default) or `url` (links under `image_url`).
    #[serde(default)]
    pub image_mode: std::collections::BTreeMap<String, crate::render::ImageMode>,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        TemplatesConfig {
            dir: None,
            default: default_template(),
            images: None,
            image_url: None,
            image_mode: Default::default(),
        }
    }
}

impl TemplatesConfig {
    /// What `Templates::load_with` needs.
    pub fn image_options(&self) -> crate::render::ImageOptions {
        crate::render::ImageOptions {
            dir: self.images.clone(),
            base_url: self.image_url.clone(),
            modes: self.image_mode.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.image_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err(ConfigError::invalid(
                    "templates.image_url",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let url_mode = self
            .image_mode
            .iter()
            .find(|(_, m)| **m == crate::render::ImageMode::Url);
        if let (Some((name, _)), None) = (url_mode, &self.image_url) {
            return Err(ConfigError::invalid(
                "templates.image_url",
                format!("required: templates.image_mode.{name} is \"url\""),
            ));
        }
        Ok(())
    }
}

fn default_template() -> String {
    "default".into()
}

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
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
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
        self.admin.validate()?;
        self.templates.validate()?;
        crate::rules::RuleSet::compile(&self.rules, &self.recipients)?;
        if let Some(n) = &self.notify {
            n.validate(self.smtp.as_ref().map(|s| s.next_hop.as_str()))?;
        }
        Ok(())
    }
}

/// Serde helper for durations written like "2s", "5m", "1h".
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}
