//! The client certificate's notAfter, re-read only when the file changes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub not_after: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read client certificate {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("client certificate {path}: {message}")]
    Parse { path: String, message: String },
}

/// Parse the first CERTIFICATE block of a PEM file (the key may sit in the same file).
pub fn read(path: &Path) -> Result<CertInfo, CertError> {
    let bytes = std::fs::read(path).map_err(|source| CertError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_pem(&bytes).map_err(|message| CertError::Parse {
        path: path.display().to_string(),
        message,
    })
}

pub fn parse_pem(bytes: &[u8]) -> Result<CertInfo, String> {
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|e| format!("not PEM: {e}"))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let ts = cert.validity().not_after.timestamp();
        let not_after = OffsetDateTime::from_unix_timestamp(ts)
            .map_err(|e| format!("notAfter out of range: {e}"))?;
        return Ok(CertInfo {
            subject: cert.subject().to_string(),
            not_after,
        });
    }
    Err("no CERTIFICATE block".into())
}

/// Caches the parsed certificate by (mtime, length) so a poll every second costs one stat.
#[derive(Debug)]
pub struct CertWatch {
    path: PathBuf,
    checked: bool,
    seen: Option<(Option<SystemTime>, u64)>,
    current: Option<CertInfo>,
}

impl CertWatch {
    pub fn new(path: PathBuf) -> Self {
        CertWatch {
            path,
            checked: false,
            seen: None,
            current: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificate as of now. Problems are logged once per change of the file.
    pub fn get(&mut self) -> Option<&CertInfo> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()));
        if self.checked && stamp == self.seen {
            return self.current.as_ref();
        }
        self.checked = true;
        self.seen = stamp;
        self.current = match read(&self.path) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the client certificate's expiry");
                None
            }
        };
        self.current.as_ref()
    }
}
