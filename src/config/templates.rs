//! `[templates]`: the template folder, the default template and how images reach recipients.

use crate::config::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

/// How a template's `{{image}}` references reach the recipient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageMode {
    /// Inline parts in a multipart/related beside the HTML (shown without "load pictures").
    #[default]
    Cid,
    /// Links under the configured base URL (nothing added to the message).
    Url,
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
    pub image_mode: std::collections::BTreeMap<String, ImageMode>,
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
        let url_mode = self.image_mode.iter().find(|(_, m)| **m == ImageMode::Url);
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
