//! Signed cookies: the session (who is signed in, their role, the CSRF token, the expiry)
//! and the short-lived sign-in state (OIDC `state`, `nonce`, PKCE verifier). HMAC-SHA256
//! over a purpose label and the JSON payload; the key is made at start-up or read from a file.

use super::roles::Role;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const SESSION_COOKIE: &str = "__Host-sigstamp-session";
pub const LOGIN_COOKIE: &str = "__Host-sigstamp-login";
/// Cookie values larger than this are not looked at.
const MAX_COOKIE: usize = 3000;

pub struct SessionKey(hmac::Key);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn generate() -> Self {
        SessionKey::from_bytes(&random_bytes::<32>())
    }

    /// A key file holds at least 32 bytes (raw, or any text such as base64 of random bytes).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < 32 {
            return Err(format!(
                "{} holds {} bytes; at least 32 are needed (e.g. `openssl rand -base64 48`)",
                path.display(),
                trimmed.len()
            ));
        }
        Ok(SessionKey::from_bytes(trimmed))
    }

    fn from_bytes(b: &[u8]) -> Self {
        SessionKey(hmac::Key::new(hmac::HMAC_SHA256, b))
    }

    /// `payload.mac`, both base64url; `purpose` keeps one kind of cookie from passing as another.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serialisable"));
        let tag = hmac::sign(&self.0, format!("{purpose}.{payload}").as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    pub fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        if sealed.len() > MAX_COOKIE {
            return None;
        }
        let (payload, tag) = sealed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, format!("{purpose}.{payload}").as_bytes(), &tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).expect("system random");
    b
}

pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The session cookie's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub upn: String,
    pub name: String,
    pub oid: String,
    pub role: Role,
    /// The CSRF token of this session.
    pub csrf: String,
    /// Unix seconds.
    pub exp: i64,
}

/// The sign-in state between `/auth/login` and `/auth/callback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where to land after signing in (a local path).
    pub next: String,
    pub exp: i64,
}

/// `Set-Cookie` for `name=value` (HttpOnly, Secure, SameSite=Lax, Path=/), or a deletion.
pub fn set_cookie(name: &str, value: Option<&str>, max_age: i64) -> String {
    match value {
        Some(v) => format!("{name}={v}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"),
        None => format!("{name}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let k = SessionKey::generate();
        let s = k.seal("session", &("a", 1));
        assert_eq!(
            k.open::<(String, i32)>("session", &s),
            Some(("a".into(), 1))
        );
        assert_eq!(k.open::<(String, i32)>("login", &s), None);
        assert_eq!(
            SessionKey::generate().open::<(String, i32)>("session", &s),
            None
        );
        // A changed payload with the old tag.
        let (_, tag) = s.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(br#"["a",2]"#));
        assert_eq!(k.open::<(String, i32)>("session", &forged), None);
    }
}
