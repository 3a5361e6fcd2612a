//! `[admin.self_service]`: which attributes a signed-in user may change on their own
//! signature, and how each value is checked.
//!
//! ```toml
//! [admin.self_service]
//! attributes = ["mobilePhone", "pronouns"]
//! max_length = 64                     # every attribute's default (at most 1024)
//!
//! [admin.self_service.field.mobilePhone]
//! pattern = '\+?[0-9 ()./-]{6,25}'    # the whole value must match (empty is always allowed)
//! max_length = 25
//! label = "Mobile phone"
//! hint = "International format, e.g. +49 151 23456789"
//! ```

use crate::config::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The longest value any attribute may be given through the admin web.
pub const MAX_VALUE_CHARS: usize = 1024;

/// `[admin.self_service]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfServiceConfig {
    /// The attributes users may edit, in the order the page shows them.
    pub attributes: Vec<String>,
    /// Characters an attribute's value may have, unless its `field` says otherwise.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Per-attribute checks and labels: `[admin.self_service.field.NAME]`.
    #[serde(default)]
    pub field: BTreeMap<String, FieldConfig>,
}

/// `[admin.self_service.field.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// A regular expression (Rust `regex` syntax) the whole value must match.
    pub pattern: Option<String>,
    pub max_length: Option<usize>,
    /// What the page calls the attribute (default: its name).
    pub label: Option<String>,
    /// Shown under the input and with a value that does not match `pattern`.
    pub hint: Option<String>,
}

fn default_max_length() -> usize {
    256
}

/// One editable attribute, checked and compiled.
#[derive(Debug, Clone)]
pub struct Field {
    pub attribute: String,
    pub label: String,
    pub hint: Option<String>,
    pub max_length: usize,
    /// Anchored: `^(?:pattern)$`.
    pub pattern: Option<regex::Regex>,
}

/// The compiled `[admin.self_service]`.
#[derive(Debug, Clone)]
pub struct SelfService {
    pub fields: Vec<Field>,
}

impl SelfService {
    pub fn field(&self, attribute: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.attribute == attribute)
    }
}

impl SelfServiceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.compile().map(drop)
    }

    /// Check every key and compile the patterns; an error names the key.
    pub fn compile(&self) -> Result<SelfService, ConfigError> {
        let length = |key: &str, n: usize| {
            if (1..=MAX_VALUE_CHARS).contains(&n) {
                Ok(n)
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!("{n} is out of range: 1 to {MAX_VALUE_CHARS} characters"),
                ))
            }
        };
        let max_length = length("admin.self_service.max_length", self.max_length)?;
        if self.attributes.is_empty() {
            return Err(ConfigError::invalid(
                "admin.self_service.attributes",
                "name at least one attribute users may edit (e.g. [\"mobilePhone\"]), or \
                 remove [admin.self_service]",
            ));
        }
        let mut fields: Vec<Field> = Vec::with_capacity(self.attributes.len());
        for a in &self.attributes {
            // Names are checked as override names where the overrides live
            // (`admin::self_service::check_config`, when the whole config is checked).
            if fields.iter().any(|f| f.attribute == *a) {
                return Err(ConfigError::invalid(
                    "admin.self_service.attributes",
                    format!("{a:?} is listed twice"),
                ));
            }
            let cfg = self.field.get(a).cloned().unwrap_or_default();
            let key = |k: &str| format!("admin.self_service.field.{a}.{k}");
            let pattern = match &cfg.pattern {
                None => None,
                Some(p) => Some(
                    regex::RegexBuilder::new(&format!("^(?:{p})$"))
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            ConfigError::invalid(
                                &key("pattern"),
                                format!("{p:?} is not a valid regular expression: {e}"),
                            )
                        })?,
                ),
            };
            fields.push(Field {
                attribute: a.clone(),
                label: cfg.label.clone().unwrap_or_else(|| a.clone()),
                hint: cfg.hint.clone(),
                max_length: match cfg.max_length {
                    Some(n) => length(&key("max_length"), n)?,
                    None => max_length,
                },
                pattern,
            });
        }
        if let Some(extra) = self.field.keys().find(|k| !self.attributes.contains(k)) {
            return Err(ConfigError::invalid(
                &format!("admin.self_service.field.{extra}"),
                format!("{extra:?} is not in admin.self_service.attributes"),
            ));
        }
        Ok(SelfService { fields })
    }
}

/// A value typed into the admin web: at most `max` characters, no control characters
/// (line breaks included: a signature line is one line).
pub fn check_value(value: &str, max: usize) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains a control character (U+{:04X}); use plain text on one line",
            c as u32
        ));
    }
    let n = value.chars().count();
    if n > max {
        return Err(format!("is {n} characters long; at most {max} are allowed"));
    }
    Ok(())
}

impl Field {
    /// Is `value` acceptable for this attribute? (An empty value always is: it leaves the
    /// attribute out of the signature.)
    pub fn check(&self, value: &str) -> Result<(), String> {
        check_value(value, self.max_length)?;
        if value.is_empty() {
            return Ok(());
        }
        match &self.pattern {
            Some(p) if !p.is_match(value) => Err(match &self.hint {
                Some(h) => format!("is not in the expected form: {h}"),
                None => "is not in the expected form".into(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SelfService, ConfigError> {
        toml::from_str::<SelfServiceConfig>(text)
            .map_err(|e| ConfigError::invalid("toml", e.to_string()))?
            .compile()
    }

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases = [
            (
                "attributes = [\"mobilePhone\"]\n[field.mobilePhone]\npattern = \"(+\"",
                "admin.self_service.field.mobilePhone.pattern",
            ),
            (
                "attributes = [\"mobilePhone\"]\n[field.pronouns]\nmax_length = 5",
                "admin.self_service.field.pronouns",
            ),
            (
                "attributes = [\"mobilePhone\"]\n[field.mobilePhone]\nmax_length = 0",
                "admin.self_service.field.mobilePhone.max_length",
            ),
            ("attributes = []", "admin.self_service.attributes"),
            (
                "attributes = [\"x\", \"x\"]",
                "admin.self_service.attributes",
            ),
            (
                "attributes = [\"x\"]\nmax_length = 5000",
                "admin.self_service.max_length",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(key_of(parse(text).unwrap_err()), key, "{text}");
        }
    }

    #[test]
    fn values_are_checked_per_field() {
        let s = parse(
            "attributes = [\"mobilePhone\", \"pronouns\"]\nmax_length = 10\n\
             [field.mobilePhone]\npattern = '\\+?[0-9 ]+'\nmax_length = 20\nhint = \"digits\"",
        )
        .unwrap();
        let phone = s.field("mobilePhone").unwrap();
        let pronouns = s.field("pronouns").unwrap();
        assert_eq!(pronouns.max_length, 10);
        assert_eq!(pronouns.label, "pronouns");
        let cases: &[(&Field, &str, bool)] = &[
            (phone, "+49 151 0000", true),
            (phone, "", true),
            // The pattern is anchored: a matching part is not enough.
            (phone, "+49 151 0000 call me", false),
            (phone, "123456789012345678901", false),
            (pronouns, "she/her", true),
            (pronouns, "they/them/x", false),
            (pronouns, "a\nb", false),
            (pronouns, "a\u{7}", false),
            (pronouns, "<b>x</b>", true),
        ];
        for (f, v, ok) in cases {
            assert_eq!(f.check(v).is_ok(), *ok, "{} {v:?}", f.attribute);
        }
        assert!(phone.check("x").unwrap_err().contains("digits"));
    }
}
