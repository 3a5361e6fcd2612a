//! One LDAP session of a sync round: connect (LDAPS, or StartTLS over `ldap://`) with rustls
//! on the project's aws-lc-rs provider, a simple bind, the root DSE, and paged searches
//! (RFC 2696) whose entries are parsed without trusting the server's bytes.

use super::error::LdapError;
use super::map::Entry;
use super::LdapConfig;
use ldap3::asn1::{parse_tag, PL};
use ldap3::controls::{Control, PagedResults, RawControl};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope};
use std::sync::Arc;

const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// What the root DSE tells about the server.
#[derive(Debug, Clone, Default)]
pub struct RootDse {
    /// Active Directory (LDAP_CAP_ACTIVE_DIRECTORY_OID among supportedCapabilities).
    pub active_directory: bool,
    /// AD: the DC's highest committed USN, read before a round (its next watermark).
    pub highest_usn: Option<u64>,
    /// AD: which DC answered (USNs are per DC).
    pub server: Option<String>,
}

pub struct Session {
    ldap: Ldap,
    url: String,
    timeout: std::time::Duration,
}

impl Session {
    /// Connect, secure and bind.
    pub async fn open(cfg: &LdapConfig) -> Result<Session, LdapError> {
        let password = cfg.password()?;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(cfg.timeout)
            .set_starttls(cfg.starttls);
        if cfg.tls_verify {
            settings = settings.set_config(tls_config(cfg)?);
        } else {
            settings = settings.set_no_tls_verify(true);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
            .await
            .map_err(|e| LdapError::connect(&cfg.url, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection closed");
            }
        });
        ldap.with_timeout(cfg.timeout);
        let bound = ldap
            .simple_bind(&cfg.bind_dn, &password)
            .await
            .map_err(|e| LdapError::client(&cfg.url, e))?;
        if bound.rc != 0 {
            return Err(LdapError::Refused {
                op: "bind",
                rc: bound.rc,
                text: bound.text,
            });
        }
        Ok(Session {
            ldap,
            url: cfg.url.clone(),
            timeout: cfg.timeout,
        })
    }

    pub async fn root_dse(&mut self) -> Result<RootDse, LdapError> {
        let mut dse = RootDse::default();
        let attrs = vec![
            "supportedCapabilities",
            "highestCommittedUSN",
            "dsServiceName",
        ];
        self.search("", Scope::Base, "(objectClass=*)", &attrs, 0, &mut |e| {
            dse.active_directory = e
                .values("supportedCapabilities")
                .iter()
                .any(|v| v == b"1.2.840.113556.1.4.800");
            dse.highest_usn = e.text("highestCommittedUSN").and_then(|v| v.parse().ok());
            dse.server = e.text("dsServiceName");
        })
        .await?;
        Ok(dse)
    }

    /// Search `base`, `page_size` entries a page (0: unpaged); each entry goes to `each`.
    /// Returns the number of pages.
    pub async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[impl AsRef<str> + Send + Sync + Clone],
        page_size: u32,
        each: &mut (dyn FnMut(Entry) + Send),
    ) -> Result<usize, LdapError> {
        let attrs: Vec<String> = attrs.iter().map(|a| a.as_ref().to_string()).collect();
        let mut cookie = Vec::new();
        let mut pages = 0;
        loop {
            self.ldap.with_timeout(self.timeout);
            if page_size > 0 {
                let ctrl: RawControl = PagedResults {
                    size: i32::try_from(page_size).unwrap_or(i32::MAX),
                    cookie: std::mem::take(&mut cookie),
                }
                .into();
                self.ldap.with_controls(vec![ctrl]);
            }
            let mut stream = self
                .ldap
                .streaming_search(base, scope, filter, attrs.clone())
                .await
                .map_err(|e| LdapError::client(&self.url, e))?;
            loop {
                match stream.next().await {
                    Ok(Some(re)) if re.is_ref() || re.is_intermediate() => {}
                    Ok(Some(re)) => {
                        if let Some(e) = Entry::parse(re.0) {
                            each(e);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(LdapError::client(&self.url, e)),
                }
            }
            let done = stream.finish().await;
            pages += 1;
            if done.rc != 0 {
                return Err(LdapError::Refused {
                    op: "search",
                    rc: done.rc,
                    text: done.text,
                });
            }
            cookie = done
                .ctrls
                .iter()
                .find_map(|Control(_, raw)| paged_cookie(raw))
                .unwrap_or_default();
            if page_size == 0 || cookie.is_empty() {
                return Ok(pages);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// The cookie of a paged-results response control (`SEQUENCE { size, cookie }`), parsed
/// without panicking on a malformed value.
fn paged_cookie(raw: &RawControl) -> Option<Vec<u8>> {
    if raw.ctype != PAGED_RESULTS_OID {
        return None;
    }
    let (_, tag) = parse_tag(raw.val.as_deref()?).ok()?;
    let PL::C(parts) = tag.payload else {
        return None;
    };
    match parts.into_iter().nth(1)?.payload {
        PL::P(cookie) => Some(cookie),
        PL::C(_) => None,
    }
}

/// rustls on aws-lc-rs, trusting `ca_file` or else the system roots.
fn tls_config(cfg: &LdapConfig) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    let roots = crate::smtp::tls::roots("ldap.ca_file", cfg.ca_file.as_deref())
        .map_err(|e| LdapError::Credential(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(crate::smtp::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Protocol(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
