//! Server-side TLS for STARTTLS (rustls, aws-lc-rs) and the client-certificate name check
//! used for Exchange Online's connector certificate.

use super::SmtpConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::sync::Arc;

pub use crate::tls::{load_certs, provider, roots, TlsError};

/// The STARTTLS server configuration, when a certificate is configured.
pub fn server_config(cfg: &SmtpConfig) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let chain = load_certs("smtp.tls_cert", cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        key: "smtp.tls_key",
        path: key.display().to_string(),
        message: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if cfg.client_cert_names.is_empty() {
        builder.with_no_client_auth()
    } else {
        // Ask for a certificate but let the handshake finish without one: the policy check
        // at MAIL gives the client a proper SMTP reply instead of a TLS alert.
        let roots = Arc::new(roots("smtp.client_ca", cfg.client_ca.as_deref())?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Some(Arc::new(config)))
}

/// Does the (already chain-verified) end-entity certificate carry one of `names` as its
/// subject CN or a DNS SAN? A configured `*.example.com` matches exactly one extra label.
pub fn cert_matches(der: &[u8], names: &[String]) -> bool {
    let presented = presented_names(der);
    names.iter().any(|want| {
        let want = want.to_ascii_lowercase();
        presented.iter().any(|have| name_matches(&want, have))
    })
}

/// Does the certificate's subject CN or a DNS SAN (a `*.` one covering one label) name
/// `host`? (`sigstamp check --online` on the relay's own certificates.)
pub fn cert_covers(der: &[u8], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    presented_names(der)
        .iter()
        .any(|have| name_matches(have, &host))
}

/// The subject CNs and DNS SANs, lowercased; none when the certificate does not parse.
fn presented_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut presented: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = gn {
                presented.push(d.to_ascii_lowercase());
            }
        }
    }
    presented
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_patterns_match_one_label() {
        assert!(name_matches(
            "mail.protection.outlook.com",
            "mail.protection.outlook.com"
        ));
        assert!(name_matches("*.outlook.com", "protection.outlook.com"));
        assert!(!name_matches(
            "*.outlook.com",
            "mail.protection.outlook.com"
        ));
        assert!(!name_matches("outlook.com", "evil-outlook.com"));
    }
}
