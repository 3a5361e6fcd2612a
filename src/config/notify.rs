//! `[notify]`: admin notifications by email.

use crate::config::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The admin address that receives alerts.
    pub admin: String,
    /// Envelope and From address of the alerts.
    #[serde(default = "default_from")]
    pub from: String,
    /// Repeat while the problem lasts.
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub notify_interval: Duration,
    /// `host:port` to send alerts through; defaults to `[smtp] next_hop`. Needed when only the
    /// milter runs (there is no next hop then).
    pub smtp: Option<String>,
    /// Where what was already sent is remembered across restarts. Default: `notify-state.json`
    /// next to `[directory] snapshot`; without either, it is kept in memory only.
    pub state_file: Option<PathBuf>,
}

fn default_from() -> String {
    "sigstamp@localhost".into()
}

fn default_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl NotifyConfig {
    /// Checks the addresses and that some next hop is known (`smtp_next_hop` is
    /// `[smtp] next_hop`, if that section exists).
    pub fn validate(&self, smtp_next_hop: Option<&str>) -> Result<(), ConfigError> {
        for (key, value) in [("notify.admin", &self.admin), ("notify.from", &self.from)] {
            value
                .parse::<lettre::Address>()
                .map_err(|e| ConfigError::invalid(key, format!("{value:?}: {e}")))?;
        }
        if self.notify_interval < Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "notify.notify_interval",
                "must be at least 1m",
            ));
        }
        self.hop(smtp_next_hop).map(|_| ())
    }

    /// `state_file`, or its default next to the directory snapshot.
    pub fn state_path(&self, snapshot: Option<&Path>) -> Option<PathBuf> {
        self.state_file.clone().or_else(|| {
            let dir = snapshot?.parent()?;
            Some(dir.join("notify-state.json"))
        })
    }

    /// Where alerts are sent: `[notify] smtp`, else the relay's next hop.
    pub fn hop(&self, smtp_next_hop: Option<&str>) -> Result<Hop, ConfigError> {
        match (&self.smtp, smtp_next_hop) {
            (Some(s), _) => Hop::parse(s).map_err(|e| ConfigError::invalid("notify.smtp", e)),
            (None, Some(s)) => Hop::parse(s).map_err(|e| ConfigError::invalid("smtp.next_hop", e)),
            (None, None) => Err(ConfigError::invalid(
                "notify.smtp",
                "no [smtp] next_hop to send notifications through; set notify.smtp",
            )),
        }
    }
}

/// Where notifications go: a host and port, written `host`, `host:port` or `[v6]:port`,
/// optionally prefixed with `smtp://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub port: u16,
}

impl Hop {
    pub fn parse(s: &str) -> Result<Hop, String> {
        let s = s.trim();
        let s = s.strip_prefix("smtp://").unwrap_or(s);
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
            match tail.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if tail.is_empty() => (h, None),
                None => return Err(format!("{s:?}: junk after ']'")),
            }
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                // A bare IPv6 address without brackets has no port.
                _ => (s, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{s:?}: bad port {p:?}"))?,
            None => 25,
        };
        Ok(Hop {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
