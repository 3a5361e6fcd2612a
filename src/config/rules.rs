//! The `[[rules]]` and `[recipients]` sections as written in the TOML file. Values are kept
//! as written here; `rules::RuleSet::compile` checks them and names the failing key.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// One `[[rules]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown on the admin page and in logs; "rule N" when absent.
    pub name: Option<String>,
    /// Sender addresses (one or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub sender: Vec<String>,
    /// Sender domains (one or a list); a domain also covers its subdomains.
    #[serde(default, deserialize_with = "one_or_many")]
    pub sender_domain: Vec<String>,
    /// Directory attribute → accepted value(s), e.g. `{ department = "Sales" }`.
    #[serde(default)]
    pub attribute: BTreeMap<String, OneOrMany>,
    /// Entra ID group display names or object ids (the user's `memberOf`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub group: Vec<String>,
    /// `internal`, `external` or `any` (the default).
    pub recipients: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub except_subject: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub except_body: Vec<String>,
    /// `"Name"` (present) or `"Name: value"` (value contains).
    #[serde(default, deserialize_with = "one_or_many")]
    pub except_header: Vec<String>,
    /// RFC 3339 date or date-time, quoted or as a TOML date.
    pub from: Option<toml::Value>,
    pub until: Option<toml::Value>,
    /// A template name, or `"none"` for no signature.
    pub template: Option<String>,
}

/// `[recipients]`: which recipient domains are internal.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientsConfig {
    /// Each domain covers itself and its subdomains.
    #[serde(default)]
    pub internal_domains: Vec<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d) {
            Ok(Raw::One(s)) => Ok(OneOrMany(vec![s])),
            Ok(Raw::Many(v)) => Ok(OneOrMany(v)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a string or a list of strings",
            )),
        }
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    OneOrMany::deserialize(d).map(|v| v.0)
}
