//! `[ldap]`: Active Directory / OpenLDAP as the directory source (`directory::ldap`). Key
//! names are a contract (docs/directory-ldap.md, sigstamp.example.toml).

use crate::config::ConfigError;
use crate::directory::ldap::map::Flavor;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[ldap]`. Key names are a contract (README, sigstamp.example.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `starttls = true`.
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// PEM CA bundle the server's certificate is verified against (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate and name (default true; false only for tests).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// The service account (DN, or on AD also `user@domain`); empty: anonymous.
    #[serde(default)]
    pub bind_dn: String,
    pub bind_password: Option<String>,
    /// The password in a file instead, re-read at every bind (rotate without restart).
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// Default by server: AD `(&(objectCategory=person)(objectClass=user)(mail=*))`,
    /// OpenLDAP `(&(objectClass=inetOrgPerson)(mail=*))`.
    pub filter: Option<String>,
    /// `auto` (from the root DSE), `active_directory` or `openldap`: which defaults apply.
    #[serde(default = "auto")]
    pub flavor: Flavor,
    #[serde(default = "default_sync_interval", with = "crate::config::duration")]
    pub sync_interval: Duration,
    /// How often a full round replaces the set (catching deletions); incremental between.
    #[serde(
        default = "default_full_sync_interval",
        with = "crate::config::duration"
    )]
    pub full_sync_interval: Duration,
    /// Entries a page (RFC 2696 paged results); AD's MaxPageSize is 1000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Connection and per-answer timeout.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// Target (template) name → LDAP attribute, over the defaults; `""` drops a default.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

fn auto() -> Flavor {
    Flavor::Auto
}

fn default_sync_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_full_sync_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_page_size() -> u32 {
    500
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl LdapConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ConfigError::invalid("ldap.url", format!("{:?}: {e}", self.url)))?;
        let host = url.host_str().unwrap_or("");
        if host.is_empty() {
            return Err(ConfigError::invalid("ldap.url", "needs a host name"));
        }
        let loopback = super::graph::is_loopback_host(host);
        match (url.scheme(), self.starttls) {
            ("ldaps", true) => {
                return Err(ConfigError::invalid(
                    "ldap.starttls",
                    "ldaps:// is TLS already; StartTLS is for ldap:// URLs",
                ))
            }
            ("ldap", false) if !loopback => {
                return Err(ConfigError::invalid(
                    "ldap.url",
                    format!("{:?}: ldap:// without StartTLS sends the bind password in clear; use ldaps:// or set ldap.starttls = true", self.url),
                ))
            }
            ("ldap" | "ldaps", _) => {}
            (other, _) => {
                return Err(ConfigError::invalid(
                    "ldap.url",
                    format!("{:?}: unsupported scheme {other} (ldap:// or ldaps://)", self.url),
                ))
            }
        }
        if let Some(ca) = &self.ca_file {
            crate::smtp::tls::roots("ldap.ca_file", Some(ca))
                .map_err(|e| ConfigError::invalid("ldap.ca_file", e.to_string()))?;
        }
        if self.bind_password.is_some() && self.bind_password_file.is_some() {
            return Err(ConfigError::invalid(
                "ldap.bind_password_file",
                "set either bind_password or bind_password_file, not both",
            ));
        }
        let has_password = self.bind_password.as_deref().is_some_and(|p| !p.is_empty())
            || self.bind_password_file.is_some();
        if !self.bind_dn.trim().is_empty() && !has_password {
            return Err(ConfigError::invalid(
                "ldap.bind_password",
                "ldap.bind_dn needs a password: bind_password or bind_password_file",
            ));
        }
        if self.bind_dn.trim().is_empty() && has_password {
            return Err(ConfigError::invalid(
                "ldap.bind_dn",
                "a bind password is set but no bind_dn",
            ));
        }
        if self.base_dn.trim().is_empty() {
            return Err(ConfigError::invalid("ldap.base_dn", "must not be empty"));
        }
        if let Some(f) = &self.filter {
            ldap3::parse_filter(f).map_err(|_| {
                ConfigError::invalid("ldap.filter", format!("{f:?} is not an LDAP filter"))
            })?;
        }
        if self.sync_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "ldap.sync_interval",
                "must be at least 1s",
            ));
        }
        if self.full_sync_interval < self.sync_interval {
            return Err(ConfigError::invalid(
                "ldap.full_sync_interval",
                "must not be shorter than ldap.sync_interval",
            ));
        }
        if !(1..=100_000).contains(&self.page_size) {
            return Err(ConfigError::invalid(
                "ldap.page_size",
                "must be between 1 and 100000",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid("ldap.timeout", "must not be zero"));
        }
        for (target, attr) in &self.attributes {
            let key = format!("ldap.attributes.{target}");
            if target.is_empty() || target == "id" {
                return Err(ConfigError::invalid(
                    &key,
                    "not a target name templates can use (`id` is the directory's own)",
                ));
            }
            let ok = attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(ConfigError::invalid(
                    &key,
                    format!("{attr:?} is not an LDAP attribute name"),
                ));
            }
        }
        if !self.tls_verify {
            tracing::warn!("ldap.tls_verify = false: the LDAP server's certificate is not checked");
        }
        Ok(())
    }
}
