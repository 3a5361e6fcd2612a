//! `[milter]`: where the milter listens and its limits.

use crate::config::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[milter]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilterConfig {
    /// `host:port` (an IP address; `inet:` prefix allowed) or `unix:/path/to/socket`.
    pub listen: String,
    /// What to answer when stamping fails internally: `accept` (mail goes on unchanged)
    /// or `tempfail` (the MTA answers 4xx and the client retries).
    #[serde(default)]
    pub on_error: OnError,
    /// Bound on every read inside a message (the MTA sends content without pause) and on
    /// every write. Was `read_timeout`.
    #[serde(
        default = "default_data_timeout",
        alias = "read_timeout",
        deserialize_with = "crate::config::duration::deserialize"
    )]
    pub data_timeout: Duration,
    /// Bound on waiting for the next command between messages, which follows the SMTP
    /// client's pace (Postfix's smtpd_timeout is 300s). Was `idle_timeout`.
    #[serde(
        default = "default_command_timeout",
        alias = "idle_timeout",
        deserialize_with = "crate::config::duration::deserialize"
    )]
    pub command_timeout: Duration,
    /// Largest message (headers + body, bytes) buffered for stamping; larger ones pass
    /// unchanged.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Concurrent MTA connections; more wait in the listen backlog. Was `max_connections`.
    #[serde(default = "default_max_sessions", alias = "max_connections")]
    pub max_sessions: usize,
    /// Permissions of a unix socket, octal.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// On shutdown, how long messages in progress may take to finish. Was `drain_timeout`.
    #[serde(
        default = "default_drain_time",
        alias = "drain_timeout",
        deserialize_with = "crate::config::duration::deserialize"
    )]
    pub drain_time: Duration,
}

/// `[milter]` keys renamed to the `[smtp]` names for the same limit: (old, new). The old
/// names still work; start-up logs a deprecation warning naming both.
pub const RENAMED: &[(&str, &str)] = &[
    ("read_timeout", "data_timeout"),
    ("idle_timeout", "command_timeout"),
    ("max_connections", "max_sessions"),
    ("drain_timeout", "drain_time"),
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Accept,
    Tempfail,
}

fn default_data_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_message_size() -> u64 {
    50 * 1024 * 1024
}
fn default_max_sessions() -> usize {
    512
}
fn default_socket_mode() -> String {
    "0660".into()
}
fn default_drain_time() -> Duration {
    Duration::from_secs(30)
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: "127.0.0.1:7357".into(),
            on_error: OnError::default(),
            data_timeout: default_data_timeout(),
            command_timeout: default_command_timeout(),
            max_message_size: default_max_message_size(),
            max_sessions: default_max_sessions(),
            socket_mode: default_socket_mode(),
            drain_time: default_drain_time(),
        }
    }
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl MilterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen()?;
        self.socket_mode()?;
        for (key, d) in [
            ("milter.data_timeout", self.data_timeout),
            ("milter.command_timeout", self.command_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(key, "must be more than 0s"));
            }
        }
        if self.max_message_size == 0 {
            return Err(ConfigError::invalid(
                "milter.max_message_size",
                "must be more than 0 bytes",
            ));
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::invalid(
                "milter.max_sessions",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    pub fn listen(&self) -> Result<Listen, ConfigError> {
        let l = self.listen.trim();
        if let Some(path) = l.strip_prefix("unix:") {
            let path = Path::new(path);
            if !path.is_absolute() || path.file_name().is_none() {
                return Err(ConfigError::invalid(
                    "milter.listen",
                    format!("unix socket path must be absolute, got {l:?}"),
                ));
            }
            return Ok(Listen::Unix(path.to_path_buf()));
        }
        let addr = l.strip_prefix("inet:").unwrap_or(l);
        addr.parse::<SocketAddr>().map(Listen::Inet).map_err(|_| {
            ConfigError::invalid(
                "milter.listen",
                format!(
                    "expected IP:port (e.g. \"127.0.0.1:7357\") or \"unix:/path/to/socket\", \
                     got {l:?}"
                ),
            )
        })
    }

    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        let m = self.socket_mode.trim();
        let digits = m.strip_prefix("0o").unwrap_or(m);
        match u32::from_str_radix(digits, 8) {
            Ok(v) if v <= 0o777 => Ok(v),
            _ => Err(ConfigError::invalid(
                "milter.socket_mode",
                format!("expected octal permissions like \"0660\", got {m:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text)
    }

    #[test]
    fn full_section_parses() {
        let c = parse(
            r#"
            [milter]
            listen = "unix:/run/sigstamp/milter.sock"
            on_error = "tempfail"
            read_timeout = "10s"
            idle_timeout = "5m"
            max_message_size = 1000000
            max_connections = 8
            socket_mode = "0600"
            drain_timeout = "2s"
            "#,
        )
        .unwrap();
        let m = c.milter.unwrap();
        assert_eq!(
            m.listen().unwrap(),
            Listen::Unix("/run/sigstamp/milter.sock".into())
        );
        assert_eq!(m.on_error, OnError::Tempfail);
        assert_eq!(m.data_timeout, Duration::from_secs(10));
        assert_eq!(m.command_timeout, Duration::from_secs(300));
        assert_eq!(m.socket_mode().unwrap(), 0o600);
    }

    #[test]
    fn example_config_section_is_valid() {
        let text = include_str!("../../sigstamp.example.toml");
        let start = text.find("\n[milter]").expect("[milter] in the example") + 1;
        let section: String = text[start..]
            .lines()
            .take_while(|l| !l.starts_with('[') || l.starts_with("[milter]"))
            .map(|l| format!("{l}\n"))
            .collect();
        let m = parse(&section).unwrap().milter.unwrap();
        let d = MilterConfig::default();
        assert_eq!(
            (
                m.data_timeout,
                m.command_timeout,
                m.max_message_size,
                m.max_sessions
            ),
            (
                d.data_timeout,
                d.command_timeout,
                d.max_message_size,
                d.max_sessions
            ),
            "the example documents the defaults"
        );
    }

    #[test]
    fn defaults() {
        let m = parse("[milter]\nlisten = \"inet:127.0.0.1:7357\"\n")
            .unwrap()
            .milter
            .unwrap();
        assert_eq!(
            m.listen().unwrap(),
            Listen::Inet("127.0.0.1:7357".parse().unwrap())
        );
        assert_eq!(m.on_error, OnError::Accept);
        assert_eq!(m.data_timeout, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("listen = \"localhost\"", "milter.listen"),
            ("listen = \"unix:relative.sock\"", "milter.listen"),
            (
                "listen = \"127.0.0.1:1\"\nread_timeout = \"0s\"",
                "milter.read_timeout",
            ),
            (
                "listen = \"127.0.0.1:1\"\nmax_message_size = 0",
                "milter.max_message_size",
            ),
            (
                "listen = \"127.0.0.1:1\"\nsocket_mode = \"rw\"",
                "milter.socket_mode",
            ),
        ] {
            let err = parse(&format!("[milter]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let err = parse("[milter]\nlisten = \"127.0.0.1:1\"\non_error = \"reject\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("on_error"), "{err}");
        let err = parse("[milter]\nlisten = \"127.0.0.1:1\"\nread_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("read_timeout"), "{err}");
    }
}
