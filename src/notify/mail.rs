//! Sending one notification through the next hop with lettre's async SMTP client.

use super::NotifyError;
pub use crate::config::Hop;
use crate::stamp::TRACE_HEADER;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::net::IpAddr;
use std::time::Duration;

/// A notification ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

impl Hop {
    fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Mailbox,
    hop: Hop,
}

impl Mailer {
    pub fn new(from: &str, to: &str, hop: Hop) -> Result<Mailer, NotifyError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| NotifyError::Address(format!("notify.from {from:?}: {e}")))?;
        let to: Mailbox = to
            .parse()
            .map_err(|e| NotifyError::Address(format!("notify.admin {to:?}: {e}")))?;
        // The next hop on loopback is the local MTA: plain. Elsewhere, STARTTLS when offered,
        // unverified as between MTAs (RFC 7435): an internal relay's self-signed certificate
        // must not silence the alert, whose content is not secret.
        let tls = if hop.is_loopback() {
            Tls::None
        } else {
            let params = TlsParameters::builder(hop.host.clone())
                .dangerous_accept_invalid_certs(true)
                .build()
                .map_err(NotifyError::Smtp)?;
            Tls::Opportunistic(params)
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(hop.host.clone())
            .port(hop.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(15)))
            .build();
        Ok(Mailer {
            transport,
            from,
            to,
            hop,
        })
    }

    pub fn hop(&self) -> &Hop {
        &self.hop
    }

    pub fn to(&self) -> &Mailbox {
        &self.to
    }

    pub fn build(&self, mail: &Mail) -> Result<Message, NotifyError> {
        Message::builder()
            .from(self.from.clone())
            .to(self.to.clone())
            .subject(mail.subject.clone())
            // The relay must never stamp its own alerts; RFC 3834 marks them as automatic.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(TRACE_HEADER),
                "notification".into(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(NotifyError::Build)
    }

    pub async fn send(&self, mail: &Mail) -> Result<(), NotifyError> {
        let msg = self.build(mail)?;
        self.transport.send(msg).await.map_err(NotifyError::Smtp)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_forms() {
        let h = |s| Hop::parse(s).unwrap();
        assert_eq!(
            h("127.0.0.1:2525"),
            Hop {
                host: "127.0.0.1".into(),
                port: 2525
            }
        );
        assert_eq!(
            h("mx.example.com"),
            Hop {
                host: "mx.example.com".into(),
                port: 25
            }
        );
        assert_eq!(
            h("smtp://[::1]:26"),
            Hop {
                host: "::1".into(),
                port: 26
            }
        );
        assert_eq!(
            h("::1"),
            Hop {
                host: "::1".into(),
                port: 25
            }
        );
        assert!(Hop::parse("host:port").is_err());
        assert!(Hop::parse(":25").is_err());
        assert!(h("[::1]:26").is_loopback());
        assert!(!h("10.0.0.1").is_loopback());
        // Builds the TLS parameters (no network use).
        Mailer::new("a@example.com", "b@example.com", h("10.0.0.1:25")).unwrap();
        assert_eq!(h("[::1]:26").to_string(), "[::1]:26");
    }

    #[test]
    fn message_carries_trace_header() {
        let m = Mailer::new(
            "sigstamp@example.com",
            "admin@example.com",
            Hop::parse("127.0.0.1:1").unwrap(),
        )
        .unwrap();
        let msg = m
            .build(&Mail {
                subject: "s".into(),
                body: "b".into(),
            })
            .unwrap();
        let text = String::from_utf8(msg.formatted()).unwrap();
        assert!(text.contains("X-Sigstamp: notification\r\n"), "{text}");
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
    }
}
