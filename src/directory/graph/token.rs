//! Token providers (contract §1, §5): client secret, certificate (signed JWT assertion) and
//! delegated refresh token. Access tokens are cached and refreshed ahead of expiry; the cache
//! mutex makes the refresh single-flight (one token request per provider at a time).

use super::clock::Clock;
use super::error::{parse_retry_after, AuthError, GraphError};
use crate::config::AssertionAlgorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// App-only scope (§1).
pub const APP_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Delegated scope for the refresh-token grant and `sigstamp login` (§1.3).
pub const DELEGATED_SCOPE: &str = "https://graph.microsoft.com/User.Read.All offline_access";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where the client secret comes from. A file is re-read on every token request, so a new
/// secret is picked up without a restart.
#[derive(Debug, Clone)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

/// How the app proves its identity to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// A public client (delegated refresh token only).
    None,
    Secret(Secret),
    /// PEM paths, re-read on every token request (a renewed certificate needs no restart).
    Certificate {
        cert: PathBuf,
        key: PathBuf,
        algorithm: AssertionAlgorithm,
    },
}

#[derive(Debug, Clone)]
pub enum Grant {
    ClientCredentials,
    /// Delegated: the refresh token lives in this file (0600) and is rotated on every use.
    RefreshToken(PathBuf),
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    expires_at: OffsetDateTime,
    stale_at: OffsetDateTime,
}

pub struct TokenProvider {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    auth: ClientAuth,
    grant: Grant,
    clock: Arc<dyn Clock>,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(deserialize_with = "number_or_string")]
    expires_in: u64,
    refresh_token: Option<String>,
}

/// `expires_in` is a number, but some Microsoft endpoints send a string (§1.4).
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u32>,
    suberror: Option<String>,
}

impl TokenProvider {
    pub fn new(
        http: reqwest::Client,
        authority: &str,
        tenant: &str,
        client_id: &str,
        auth: ClientAuth,
        grant: Grant,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TokenProvider {
            http,
            token_url: token_url(authority, tenant),
            client_id: client_id.to_string(),
            auth,
            grant,
            clock,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid access token: the cached one unless it is stale, else a fresh one.
    pub async fn access_token(&self) -> Result<String, GraphError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(c) = cache.as_ref() {
            if now < c.stale_at {
                return Ok(c.token.clone());
            }
        }
        match self.fetch().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *cache = Some(fresh);
                Ok(token)
            }
            // A refresh ahead of expiry failed: the old token still works for a while.
            Err(e) => match cache.as_ref() {
                Some(c) if self.clock.now() < c.expires_at => {
                    tracing::debug!(error = %e, "token refresh failed; using the cached token until it expires");
                    Ok(c.token.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Graph rejected `token` (401): forget it so the next call fetches a new one.
    pub async fn invalidate(&self, token: &str) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| c.token == token) {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, GraphError> {
        // expires_at counts from the send time, which leaves room for latency (§5).
        let sent = self.clock.now();
        let mut form: Vec<(&str, String)> = vec![("client_id", self.client_id.clone())];
        let refresh_file = match &self.grant {
            Grant::ClientCredentials => {
                form.push(("grant_type", "client_credentials".into()));
                form.push(("scope", APP_SCOPE.into()));
                None
            }
            Grant::RefreshToken(path) => {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", read_refresh_token(path)?));
                form.push(("scope", DELEGATED_SCOPE.into()));
                Some(path)
            }
        };
        self.add_client_auth(&mut form)?;
        let resp: TokenResponse = self.post_form(&form).await?;
        if let (Some(path), Some(rt)) = (refresh_file, &resp.refresh_token) {
            // Store the rotated token before the new access token is used (§5). The old one
            // is not revoked, so a failed write only costs the rotation.
            if let Err(e) = write_refresh_token(path, rt) {
                tracing::error!(path = %path.display(), error = %e, "cannot store the rotated refresh token");
            }
        }
        Ok(cached(resp.access_token, resp.expires_in, sent))
    }

    fn add_client_auth(&self, form: &mut Vec<(&str, String)>) -> Result<(), GraphError> {
        match &self.auth {
            ClientAuth::None => {}
            ClientAuth::Secret(s) => form.push(("client_secret", s.read()?)),
            ClientAuth::Certificate {
                cert,
                key,
                algorithm,
            } => {
                let jwt = client_assertion(
                    cert,
                    key,
                    *algorithm,
                    &self.client_id,
                    &self.token_url,
                    self.clock.now(),
                )?;
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                form.push(("client_assertion", jwt));
            }
        }
        Ok(())
    }

    /// POST a form to the token endpoint; parse success or the §1.5 error shape.
    async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        form: &[(&str, String)],
    ) -> Result<T, GraphError> {
        post_token_form(&self.http, &self.token_url, form, self.clock.now()).await
    }

    /// The device-code flow of `sigstamp login`: start it.
    pub async fn device_code_start(
        &self,
        authority: &str,
        tenant: &str,
    ) -> Result<DeviceCode, GraphError> {
        let url = format!(
            "{}/{}/oauth2/v2.0/devicecode",
            authority.trim_end_matches('/'),
            tenant
        );
        let form = vec![
            ("client_id", self.client_id.clone()),
            ("scope", DELEGATED_SCOPE.into()),
        ];
        post_token_form(&self.http, &url, &form, self.clock.now()).await
    }

    /// Poll until the user has signed in; returns the refresh token and stores it.
    pub async fn device_code_finish(
        &self,
        dc: &DeviceCode,
        store: &Path,
    ) -> Result<(), GraphError> {
        let mut interval = Duration::from_secs(dc.interval.max(1));
        let deadline = self.clock.now() + Duration::from_secs(dc.expires_in);
        loop {
            self.clock.sleep(interval).await;
            let mut form: Vec<(&str, String)> = vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:device_code".into(),
                ),
                ("client_id", self.client_id.clone()),
                ("device_code", dc.device_code.clone()),
            ];
            self.add_client_auth(&mut form)?;
            match self.post_form::<TokenResponse>(&form).await {
                Ok(resp) => {
                    let rt = resp.refresh_token.ok_or_else(|| {
                        GraphError::protocol(
                            "token endpoint",
                            "no refresh_token (offline_access not granted?)",
                        )
                    })?;
                    return write_refresh_token(store, &rt).map_err(|e| {
                        GraphError::Credential(format!("cannot write {}: {e}", store.display()))
                    });
                }
                Err(GraphError::Auth(a)) if a.error == "authorization_pending" => {}
                Err(GraphError::Auth(a)) if a.error == "slow_down" => {
                    interval += Duration::from_secs(5)
                }
                Err(e) => return Err(e),
            }
            if self.clock.now() >= deadline {
                return Err(GraphError::protocol(
                    "token endpoint",
                    "the device code expired before sign-in",
                ));
            }
        }
    }
}

/// The answer to `/devicecode`.
#[derive(Debug, Deserialize)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(deserialize_with = "number_or_string")]
    pub expires_in: u64,
    #[serde(default = "five", deserialize_with = "number_or_string")]
    pub interval: u64,
    #[serde(default)]
    pub message: String,
}

fn five() -> u64 {
    5
}

pub fn token_url(authority: &str, tenant: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        authority.trim_end_matches('/'),
        tenant
    )
}

fn cached(token: String, expires_in: u64, sent: OffsetDateTime) -> Cached {
    let life = Duration::from_secs(expires_in);
    // Stale 5 minutes before expiry (§5); short-lived tokens (tests, odd policies) at half-life.
    let margin = Duration::from_secs(300).min(life / 2);
    Cached {
        token,
        expires_at: sent + life,
        stale_at: sent + (life - margin),
    }
}

async fn post_token_form<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, String)],
    now: OffsetDateTime,
) -> Result<T, GraphError> {
    let resp = http
        .post(url)
        .form(form)
        .send()
        .await
        .map_err(|source| GraphError::Transport {
            what: "the token endpoint",
            source,
        })?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    let body = resp.bytes().await.map_err(|source| GraphError::Transport {
        what: "the token endpoint",
        source,
    })?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body)
            .map_err(|e| GraphError::protocol("token endpoint", e.to_string()));
    }
    let err = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => AuthError {
            status,
            error: b.error,
            codes: b.error_codes,
            description: b.error_description,
            suberror: b.suberror,
            retry_after,
        },
        Err(_) => AuthError {
            status,
            error: format!("http_{status}"),
            codes: Vec::new(),
            description: format!("HTTP {status} without an OAuth error body"),
            suberror: None,
            retry_after,
        },
    };
    Err(GraphError::Auth(err))
}

impl Secret {
    fn read(&self) -> Result<String, GraphError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| GraphError::Credential(format!("cannot read {}: {e}", p.display()))),
        }
    }
}

pub fn read_refresh_token(path: &Path) -> Result<String, GraphError> {
    let s = std::fs::read_to_string(path).map_err(|e| {
        GraphError::Credential(format!(
            "cannot read the refresh token {} ({e}); run `sigstamp login`",
            path.display()
        ))
    })?;
    let s = s.trim();
    if s.is_empty() {
        return Err(GraphError::Credential(format!(
            "{} is empty; run `sigstamp login`",
            path.display()
        )));
    }
    Ok(s.to_string())
}

/// Write the refresh token atomically with mode 0600 (temp file, fsync, rename).
pub fn write_refresh_token(path: &Path, token: &str) -> std::io::Result<()> {
    crate::directory::snapshot::write_atomic(path, format!("{token}\n").as_bytes(), 0o600)
}

/// The SHA-1 (`x5t`) and SHA-256 (`x5t#S256`) thumbprints of a DER certificate, base64url of
/// the raw digest bytes (not of the hex text, §1.2).
pub fn thumbprints(der: &[u8]) -> (String, String) {
    use aws_lc_rs::digest;
    let s1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let s256 = digest::digest(&digest::SHA256, der);
    (URL_SAFE_NO_PAD.encode(s1), URL_SAFE_NO_PAD.encode(s256))
}

pub fn read_certificate_der(path: &Path) -> Result<Vec<u8>, GraphError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| {
            GraphError::Credential(format!("cannot read certificate {}: {e}", path.display()))
        })
}

#[derive(serde::Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// A fresh signed client assertion (§1.2). Built for every token request.
pub fn client_assertion(
    cert: &Path,
    key: &Path,
    algorithm: AssertionAlgorithm,
    client_id: &str,
    token_url: &str,
    now: OffsetDateTime,
) -> Result<String, GraphError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let der = read_certificate_der(cert)?;
    let (x5t, x5t_s256) = thumbprints(&der);
    let pem = std::fs::read(key)
        .map_err(|e| GraphError::Credential(format!("cannot read key {}: {e}", key.display())))?;
    let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| {
        GraphError::Credential(format!("{} is not an RSA private key: {e}", key.display()))
    })?;
    let mut header = match algorithm {
        AssertionAlgorithm::Rs256 => {
            let mut h = Header::new(Algorithm::RS256);
            h.x5t = Some(x5t);
            h
        }
        AssertionAlgorithm::Ps256 => {
            let mut h = Header::new(Algorithm::PS256);
            h.x5t_s256 = Some(x5t_s256);
            h
        }
    };
    header.typ = Some("JWT".into());
    let nbf = now.unix_timestamp();
    let claims = AssertionClaims {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti: new_uuid(),
        nbf,
        iat: nbf,
        exp: nbf + 600,
    };
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| GraphError::Credential(format!("cannot sign the client assertion: {e}")))
}

/// A random (v4) UUID, for `jti` and `client-request-id`.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_number_or_string() {
        let a: TokenResponse = serde_json::from_str(r#"{"access_token":"x","expires_in":3599,"ext_expires_in":3599,"token_type":"Bearer","refresh_in":1}"#).unwrap();
        assert_eq!(a.expires_in, 3599);
        let b: TokenResponse =
            serde_json::from_str(r#"{"access_token":"x","expires_in":"60"}"#).unwrap();
        assert_eq!(b.expires_in, 60);
    }

    #[test]
    fn stale_before_expiry() {
        let t = time::macros::datetime!(2024-01-01 00:00:00 UTC);
        let c = cached("x".into(), 3599, t);
        assert_eq!(c.expires_at - t, time::Duration::seconds(3599));
        assert_eq!(c.expires_at - c.stale_at, time::Duration::seconds(300));
        let short = cached("x".into(), 2, t);
        assert_eq!(short.stale_at - t, time::Duration::seconds(1));
    }

    #[test]
    fn uuid_shape() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
