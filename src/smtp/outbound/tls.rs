//! TLS towards the next hop: `required` verifies the certificate against `next_hop_ca` (or
//! the system roots) and the name; `opportunistic` encrypts without authenticating, as
//! Postfix's `may` level. Either presents `next_hop_cert` when configured.

use crate::config::{NextHopTls, SmtpConfig};
use crate::tls::{load_certs, provider, roots, TlsError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;

/// The client configuration and the name to check, or `None` for `next_hop_tls = "none"`.
pub fn client(
    cfg: &SmtpConfig,
) -> Result<Option<(Arc<ClientConfig>, ServerName<'static>)>, TlsError> {
    if cfg.next_hop_tls == NextHopTls::None {
        return Ok(None);
    }
    let name = cfg
        .next_hop_tls_name
        .clone()
        .unwrap_or_else(|| cfg.next_hop_host());
    let name = ServerName::try_from(name.clone())
        .map_err(|e| TlsError::Rustls(format!("smtp.next_hop_tls_name {name:?}: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match cfg.next_hop_tls {
        NextHopTls::Required => {
            builder.with_root_certificates(roots("smtp.next_hop_ca", cfg.next_hop_ca.as_deref())?)
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider()))),
    };
    let config = match (&cfg.next_hop_cert, &cfg.next_hop_key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("smtp.next_hop_cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
                key: "smtp.next_hop_key",
                path: key.display().to_string(),
                message: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rustls(format!("smtp.next_hop_cert: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some((Arc::new(config), name)))
}

/// Any certificate is accepted (opportunistic TLS protects against a passive listener
/// only); the handshake signatures are still checked, so the session key is the peer's.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
