//! The OpenID Connect client (authorization code flow with PKCE) for Entra ID, on the
//! project's reqwest (rustls, aws-lc-rs) through openidconnect's `AsyncHttpClient`.
//!
//! Discovery happens at the first sign-in (and again after a failure), so an unreachable
//! identity provider never stops the relay from starting. The tenant's keys (JWKS) are cached
//! and fetched again when an ID token names a key id not in the cache (key rollover).

use crate::config::AuthConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreProviderMetadata,
};
use openidconnect::{
    http, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use std::collections::HashSet;
use std::time::Duration;

/// The largest identity-provider response read (discovery, JWKS, token).
const MAX_RESPONSE: usize = 1 << 20;
/// How many distinct unknown key ids may each trigger a JWKS fetch; past that, at most one
/// fetch per [`REFETCH_INTERVAL`] (a stream of made-up key ids cannot hammer the provider).
const FREE_REFETCHES: usize = 16;
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider's discovery failed: {0}")]
    Discovery(String),
    #[error("the authorization code exchange failed: {0}")]
    Exchange(String),
    #[error("the token response has no ID token")]
    NoIdToken,
    #[error("the ID token is refused: {0}")]
    IdToken(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// A started sign-in: send the browser to `url`, keep the rest in the sign-in cookie.
pub struct Authorize {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A verified ID token's user.
#[derive(Debug, Clone)]
pub struct Identity {
    pub upn: String,
    pub name: String,
    pub oid: String,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// The token carries `_claim_names`/`hasgroups` instead of `groups` (over 200 groups).
    pub groups_overage: bool,
}

pub struct Oidc {
    issuer: String,
    client_id: String,
    secret: String,
    redirect: RedirectUrl,
    http: Http,
    provider: tokio::sync::Mutex<Option<Provider>>,
}

struct Provider {
    metadata: CoreProviderMetadata,
    fetched: tokio::time::Instant,
    tried_kids: HashSet<String>,
}

impl Oidc {
    pub fn new(cfg: &AuthConfig, secret: String) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("sigstamp/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        Ok(Oidc {
            issuer: cfg.issuer(),
            client_id: cfg.client_id.clone(),
            secret,
            redirect: RedirectUrl::new(cfg.redirect_url.clone()).map_err(|e| e.to_string())?,
            http: Http(http),
            provider: tokio::sync::Mutex::new(None),
        })
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        let mut p = self.provider.lock().await;
        if let Some(p) = &*p {
            return Ok(p.metadata.clone());
        }
        let issuer =
            IssuerUrl::new(self.issuer.clone()).map_err(|e| OidcError::Discovery(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        *p = Some(Provider {
            metadata: metadata.clone(),
            fetched: tokio::time::Instant::now(),
            tried_kids: HashSet::new(),
        });
        Ok(metadata)
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.client_id.clone()),
            Some(ClientSecret::new(self.secret.clone())),
        )
        .set_redirect_uri(self.redirect.clone())
        // Entra ID takes the secret in the body (client_secret_post).
        .set_auth_type(AuthType::RequestBody)
    }

    /// The authorization URL for a new sign-in, with a fresh state, nonce and PKCE pair.
    pub async fn authorize(&self) -> Result<Authorize, OidcError> {
        let client = self.client(self.metadata().await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorize {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchange the code (with the PKCE verifier) and verify the ID token: signature by one
    /// of the tenant's keys, issuer, audience, expiry and `nonce`.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata.clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code.into()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.into()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(nonce.into());
        let verify = |m: &CoreProviderMetadata| {
            let verifier = CoreIdTokenVerifier::new_public_client(
                ClientId::new(self.client_id.clone()),
                m.issuer().clone(),
                m.jwks().clone(),
            );
            id_token.claims(&verifier, &nonce).map(|_| ())
        };
        match verify(&metadata) {
            Ok(()) => {}
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let kid = id_token_kid(&id_token.to_string()).unwrap_or_default();
                let Some(fresh) = self.refetch_keys(&kid).await? else {
                    return Err(OidcError::IdToken(format!(
                        "signed with key id {kid:?}, which the tenant's keys do not have"
                    )));
                };
                verify(&fresh).map_err(|e| OidcError::IdToken(e.to_string()))?;
            }
            Err(e) => return Err(OidcError::IdToken(e.to_string())),
        }
        identity(&id_token.to_string())
    }

    /// Fetch the JWKS again for an unknown `kid`; `None` when rate-limited.
    async fn refetch_keys(&self, kid: &str) -> Result<Option<CoreProviderMetadata>, OidcError> {
        let mut guard = self.provider.lock().await;
        let Some(p) = guard.as_mut() else {
            return Ok(None);
        };
        let fresh_kid = p.tried_kids.len() < FREE_REFETCHES && p.tried_kids.insert(kid.into());
        if !fresh_kid && p.fetched.elapsed() < REFETCH_INTERVAL {
            return Ok(None);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(p.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Discovery(format!("the tenant's keys: {}", error_chain(&e))))?;
        tracing::info!(
            kid,
            keys = jwks.keys().len(),
            "admin sign-in: fetched the tenant's keys again"
        );
        p.metadata = p.metadata.clone().set_jwks(jwks);
        p.fetched = tokio::time::Instant::now();
        Ok(Some(p.metadata.clone()))
    }
}

/// openidconnect's HTTP client over the project's reqwest (no redirects followed, responses
/// bounded in size).
struct Http(reqwest::Client);

type HttpFuture<'c> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>>
            + Send
            + 'c,
    >,
>;

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = HttpFuture<'c>;

    fn call(&'c self, req: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(send(self.0.clone(), req))
    }
}

/// One HTTP exchange.
async fn send(
    http: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let mut resp = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(error_chain(&e)))?;
    let mut out = http::Response::builder().status(resp.status());
    if let Some(h) = out.headers_mut() {
        *h = resp.headers().clone();
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| HttpError(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(HttpError(format!("response over {MAX_RESPONSE} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    out.body(body).map_err(|e| HttpError(e.to_string()))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn jwt_part(jwt: &str, i: usize) -> Option<serde_json::Value> {
    let part = jwt.split('.').nth(i)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fn id_token_kid(jwt: &str) -> Option<String> {
    jwt_part(jwt, 0)?.get("kid")?.as_str().map(str::to_string)
}

/// The user of an ID token whose signature and claims are already verified.
fn identity(jwt: &str) -> Result<Identity, OidcError> {
    let claims = jwt_part(jwt, 1).ok_or_else(|| OidcError::IdToken("unreadable claims".into()))?;
    let s = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let list = |k: &str| -> Vec<String> {
        claims
            .get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let upn = s("preferred_username")
        .or_else(|| s("upn"))
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| OidcError::IdToken("no preferred_username (UPN) claim".into()))?;
    let groups_overage = claims.get("hasgroups").is_some()
        || claims
            .get("_claim_names")
            .and_then(|c| c.get("groups"))
            .is_some();
    Ok(Identity {
        name: s("name").unwrap_or_else(|| upn.clone()),
        oid: s("oid").unwrap_or_default(),
        groups: list("groups"),
        roles: list("roles"),
        groups_overage,
        upn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn identity_from_claims() {
        let t = jwt(
            serde_json::json!({"preferred_username": "ada@example.com", "name": "Ada",
            "oid": "o1", "groups": ["g1"], "roles": ["SignatureAdmins"]}),
        );
        assert_eq!(id_token_kid(&t).as_deref(), Some("k1"));
        let i = identity(&t).unwrap();
        assert_eq!(
            (i.upn.as_str(), i.name.as_str(), i.oid.as_str()),
            ("ada@example.com", "Ada", "o1")
        );
        assert_eq!(
            (i.groups, i.roles),
            (vec!["g1".to_string()], vec!["SignatureAdmins".to_string()])
        );
        assert!(!i.groups_overage);
        let over = identity(&jwt(
            serde_json::json!({"preferred_username": "a@b", "_claim_names": {"groups": "src1"}}),
        ))
        .unwrap();
        assert!(over.groups_overage && over.groups.is_empty());
        assert!(identity(&jwt(serde_json::json!({"name": "no upn"}))).is_err());
    }
}
