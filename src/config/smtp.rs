//! The `[smtp]` section of the configuration. Every key is documented in
//! `sigstamp.example.toml` and `doc/relay.md`.

use crate::config::ConfigError;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Address the relay listens on.
    pub listen: String,
    /// `host:port` of the downstream MTA.
    pub next_hop: String,
    /// CIDRs (or single addresses) that may relay; everyone else gets 554 5.7.1.
    #[serde(default = "default_allowed")]
    pub allowed_clients: Vec<String>,
    /// Name in the greeting, the EHLO reply and our EHLO to the next hop.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Largest message accepted, in bytes (advertised as SIZE).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Concurrent client sessions; more get 421 4.7.0.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Idle time allowed between commands.
    #[serde(default = "default_command_timeout", with = "crate::config::duration")]
    pub command_timeout: Duration,
    /// Idle time allowed while receiving message data; also the most time a message in
    /// progress can bank by sending faster than `min_data_rate`.
    #[serde(default = "default_data_timeout", with = "crate::config::duration")]
    pub data_timeout: Duration,
    /// A whole command line must arrive within this time of its first byte, however
    /// short the pauses (slowloris). Over: 421 4.4.2 and the session closes.
    #[serde(default = "default_command_deadline", with = "crate::config::duration")]
    pub command_deadline: Duration,
    /// Least rate (bytes/s) a client must keep while sending a message (DATA, or BDAT up
    /// to LAST), as Postfix's `smtpd_min_data_rate`; 0: no minimum.
    #[serde(default = "default_min_data_rate")]
    pub min_data_rate: u64,
    /// On SIGTERM: how long sessions in flight may take to finish.
    #[serde(default = "default_drain_time", with = "crate::config::duration")]
    pub drain_time: Duration,
    /// PEM certificate chain and key for STARTTLS (conventionally under `certs/`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse MAIL before STARTTLS (530 5.7.0).
    #[serde(default)]
    pub require_tls: bool,
    /// When set, MAIL requires a verified client certificate whose subject CN or a DNS SAN
    /// matches one of these names (`*.example.com` matches one label).
    #[serde(default)]
    pub client_cert_names: Vec<String>,
    /// CA bundle that client certificates must chain to; default: the system roots.
    pub client_ca: Option<PathBuf>,
    /// TLS to the next hop: `required` (verified), `opportunistic` (when offered,
    /// unverified) or `none`.
    #[serde(default)]
    pub next_hop_tls: NextHopTls,
    /// Name checked in the next hop's certificate; default: the host part of `next_hop`.
    pub next_hop_tls_name: Option<String>,
    /// CA bundle for verifying the next hop; default: the system roots.
    pub next_hop_ca: Option<PathBuf>,
    /// Client certificate (PEM chain and key) presented to the next hop, e.g. the one an
    /// Exchange Online inbound connector identifies sigstamp by.
    pub next_hop_cert: Option<PathBuf>,
    pub next_hop_key: Option<PathBuf>,
    /// Add `X-Sigstamp: unchanged (<reason>)` on top of messages passed on without a
    /// signature, so that every message that went through sigstamp carries the trace header
    /// (an Exchange Online transport rule excepting it then cannot loop them back).
    #[serde(default)]
    pub mark_unchanged: bool,
    /// Connect and per-command timeout towards the next hop.
    #[serde(default = "default_next_hop_timeout", with = "crate::config::duration")]
    pub next_hop_timeout: Duration,
    /// Time allowed for the next hop to answer the end of data.
    #[serde(default = "default_data_timeout", with = "crate::config::duration")]
    pub next_hop_data_timeout: Duration,
    /// Read a PROXY protocol v1/v2 header (HAProxy's `send-proxy-v2`) before the greeting;
    /// `allowed_clients`, logs and XFORWARD then use the client address it carries.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Peers (CIDRs or addresses: the load balancers) whose PROXY header is believed; any
    /// other peer is disconnected when `proxy_protocol` is on.
    #[serde(default)]
    pub proxy_trusted: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NextHopTls {
    Required,
    #[default]
    Opportunistic,
    None,
}

fn default_allowed() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
fn default_hostname() -> String {
    "sigstamp.localhost".into()
}
fn default_max_message_size() -> usize {
    50 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    1000
}
fn default_max_sessions() -> usize {
    256
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_data_timeout() -> Duration {
    Duration::from_secs(600)
}
pub(crate) fn default_command_deadline() -> Duration {
    Duration::from_secs(60)
}
pub(crate) fn default_min_data_rate() -> u64 {
    1024
}
fn default_drain_time() -> Duration {
    Duration::from_secs(30)
}
fn default_next_hop_timeout() -> Duration {
    Duration::from_secs(60)
}

impl SmtpConfig {
    /// A config with every default, for tests and `demo`.
    pub fn new(listen: impl Into<String>, next_hop: impl Into<String>) -> Self {
        SmtpConfig {
            listen: listen.into(),
            next_hop: next_hop.into(),
            allowed_clients: default_allowed(),
            hostname: default_hostname(),
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_sessions: default_max_sessions(),
            command_timeout: default_command_timeout(),
            data_timeout: default_data_timeout(),
            command_deadline: default_command_deadline(),
            min_data_rate: default_min_data_rate(),
            drain_time: default_drain_time(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            client_cert_names: Vec::new(),
            client_ca: None,
            next_hop_tls: NextHopTls::default(),
            next_hop_tls_name: None,
            next_hop_ca: None,
            next_hop_cert: None,
            next_hop_key: None,
            mark_unchanged: false,
            next_hop_timeout: default_next_hop_timeout(),
            next_hop_data_timeout: default_data_timeout(),
            proxy_protocol: false,
            proxy_trusted: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::invalid("smtp.listen", format!("{:?}: {e}", self.listen)))?;
        split_host_port(&self.next_hop).ok_or_else(|| {
            ConfigError::invalid(
                "smtp.next_hop",
                format!("{:?} is not host:port", self.next_hop),
            )
        })?;
        self.allowed_nets()?;
        let trusted = self.proxy_trusted_nets()?;
        if self.proxy_protocol && trusted.is_empty() {
            return Err(ConfigError::invalid(
                "smtp.proxy_trusted",
                "needs the load balancers' addresses when proxy_protocol = true",
            ));
        }
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "smtp.hostname",
                "must be a non-empty name without spaces",
            ));
        }
        for (key, v) in [
            ("smtp.max_message_size", self.max_message_size),
            ("smtp.max_recipients", self.max_recipients),
            ("smtp.max_sessions", self.max_sessions),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        for (key, d) in [
            ("smtp.command_timeout", self.command_timeout),
            ("smtp.data_timeout", self.data_timeout),
            ("smtp.command_deadline", self.command_deadline),
        ] {
            if d.is_zero() {
                return Err(ConfigError::invalid(key, "must be more than 0s"));
            }
        }
        for (cert, key, cert_key, key_key) in [
            (
                &self.tls_cert,
                &self.tls_key,
                "smtp.tls_cert",
                "smtp.tls_key",
            ),
            (
                &self.next_hop_cert,
                &self.next_hop_key,
                "smtp.next_hop_cert",
                "smtp.next_hop_key",
            ),
        ] {
            match (cert, key) {
                (Some(_), None) => return Err(ConfigError::invalid(key_key, "missing")),
                (None, Some(_)) => return Err(ConfigError::invalid(cert_key, "missing")),
                _ => {}
            }
        }
        if self.next_hop_cert.is_some() && self.next_hop_tls == NextHopTls::None {
            return Err(ConfigError::invalid(
                "smtp.next_hop_cert",
                "needs next_hop_tls = \"required\" or \"opportunistic\"",
            ));
        }
        for (key, path) in [
            ("smtp.tls_cert", &self.tls_cert),
            ("smtp.tls_key", &self.tls_key),
            ("smtp.client_ca", &self.client_ca),
            ("smtp.next_hop_ca", &self.next_hop_ca),
            ("smtp.next_hop_cert", &self.next_hop_cert),
            ("smtp.next_hop_key", &self.next_hop_key),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    return Err(ConfigError::invalid(
                        key,
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        if self.tls_cert.is_none() && self.require_tls {
            return Err(ConfigError::invalid(
                "smtp.require_tls",
                "needs smtp.tls_cert and smtp.tls_key",
            ));
        }
        if self.tls_cert.is_none() && !self.client_cert_names.is_empty() {
            return Err(ConfigError::invalid(
                "smtp.client_cert_names",
                "needs smtp.tls_cert and smtp.tls_key",
            ));
        }
        Ok(())
    }

    /// The parsed `allowed_clients`; a bare address means that one host.
    pub fn allowed_nets(&self) -> Result<Vec<IpNet>, ConfigError> {
        parse_nets("smtp.allowed_clients", &self.allowed_clients)
    }

    /// The parsed `proxy_trusted`.
    pub fn proxy_trusted_nets(&self) -> Result<Vec<IpNet>, ConfigError> {
        parse_nets("smtp.proxy_trusted", &self.proxy_trusted)
    }

    /// The host part of `next_hop` (brackets removed), used as the TLS name by default.
    pub fn next_hop_host(&self) -> String {
        split_host_port(&self.next_hop)
            .map(|(h, _)| h.to_string())
            .unwrap_or_default()
    }
}

fn parse_nets(key: &'static str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::invalid(key, format!("{s:?} is not a CIDR or address")))
        })
        .collect()
}

/// `host:port`, `[v6]:port` → (host, port).
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::Config::parse(&format!(
            "[smtp]\nlisten = \"127.0.0.1:2525\"\nnext_hop = \"127.0.0.1:2526\"\n{extra}"
        ))
    }

    #[test]
    fn defaults_are_loopback_only() {
        let cfg = parse("").unwrap().smtp.unwrap();
        let nets = cfg.allowed_nets().unwrap();
        assert!(nets
            .iter()
            .any(|n| n.contains(&"127.0.0.1".parse::<IpAddr>().unwrap())));
        assert!(!nets
            .iter()
            .any(|n| n.contains(&"10.0.0.1".parse::<IpAddr>().unwrap())));
        assert_eq!(cfg.command_timeout, Duration::from_secs(300));
        assert_eq!(cfg.command_deadline, Duration::from_secs(60));
        assert_eq!(cfg.min_data_rate, 1024);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("allowed_clients = [\"nope\"]", "smtp.allowed_clients"),
            ("require_tls = true", "smtp.require_tls"),
            ("tls_cert = \"/nonexistent\"", "smtp.tls_key"),
            ("max_recipients = 0", "smtp.max_recipients"),
            ("proxy_protocol = true", "smtp.proxy_trusted"),
            ("proxy_trusted = [\"10.0.0.0/33\"]", "smtp.proxy_trusted"),
            ("command_deadline = \"0s\"", "smtp.command_deadline"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let err = crate::config::Config::parse("[smtp]\nlisten = \"x\"\nnext_hop = \"h:1\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("smtp.listen"), "{err}");
        let err = parse("next_hop_tls = \"sometimes\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("next_hop_tls"), "{err}");
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("[::1]:25"), Some(("::1", 25)));
        assert_eq!(
            split_host_port("mx.example.com:25"),
            Some(("mx.example.com", 25))
        );
        assert_eq!(split_host_port("mx"), None);
    }
}
