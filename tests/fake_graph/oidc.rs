//! The fake Entra ID's OpenID Connect sign-in (`shared/graph-contract.md` §9): discovery,
//! authorize (a login form; a test picks the user, groups and roles in the form's fields or
//! straight in the query), the authorization-code grant with PKCE (S256) at the token
//! endpoint, the JWKS, and RS256 ID tokens. Knobs mint a forged, expired, wrong-audience or
//! wrong-nonce token, send an error back, or roll the signing key to a new `kid`.

use super::{get, json_response, CLIENT_ID, SECRET, TENANT, TENANT_ID};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use time::OffsetDateTime;

/// What the next ID token gets wrong (one token, then back to `Good`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Minted {
    #[default]
    Good,
    /// Signed by a key the JWKS does not have, under the current key's `kid`.
    Forged,
    /// Expired an hour ago.
    Expired,
    /// For another application.
    WrongAudience,
    /// A nonce other than the one sent to authorize.
    WrongNonce,
}

/// The user who signs in at the login form.
#[derive(Debug, Clone, Default)]
pub struct LoginUser {
    pub upn: String,
    pub name: String,
    pub oid: String,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

struct SigningKey {
    kid: String,
    pair: KeyPair,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        SigningKey {
            kid: kid.into(),
            pair: KeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
        }
    }

    fn jwk(&self) -> Value {
        let pk = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(pk.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(pk.exponent().big_endian_without_leading_zero()),
        })
    }

    fn sign(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signature");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

struct Grant {
    user: LoginUser,
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

pub struct OidcScript {
    keys: Vec<SigningKey>,
    /// The next ID token's fault.
    pub next_token: Minted,
    /// Answer the next authorize with this `error` and `error_description`.
    pub next_error: Option<(String, String)>,
    /// Registered Web redirect URIs (empty: any).
    pub redirect_uris: Vec<String>,
    codes: HashMap<String, Grant>,
    pub jwks_fetches: usize,
    pub discovery_fetches: usize,
}

impl Default for OidcScript {
    fn default() -> Self {
        OidcScript {
            keys: vec![SigningKey::new("key-1")],
            next_token: Minted::Good,
            next_error: None,
            redirect_uris: Vec::new(),
            codes: HashMap::new(),
            jwks_fetches: 0,
            discovery_fetches: 0,
        }
    }
}

impl OidcScript {
    /// Publish a new key (new `kid`) and sign with it from now on; the old key stays published.
    pub fn roll_signing_key(&mut self) -> String {
        let kid = format!("key-{}", self.keys.len() + 1);
        self.keys.push(SigningKey::new(&kid));
        kid
    }

    pub fn current_kid(&self) -> String {
        self.keys.last().unwrap().kid.clone()
    }
}

pub fn issuer(base: &str) -> String {
    format!("{base}/{TENANT_ID}/v2.0")
}

fn tenant_ok(t: &str) -> bool {
    t == TENANT_ID || t == TENANT
}

/// Answer an OIDC path, or `None` when `path` is not one.
pub(super) fn handle(
    s: &mut OidcScript,
    base: &str,
    method: &axum::http::Method,
    path: &str,
    query: &[(String, String)],
    form: &[(String, String)],
    headers: &HeaderMap,
) -> Option<Response> {
    let mut segs = path.trim_start_matches('/').splitn(2, '/');
    let tenant = segs.next().unwrap_or("");
    let rest = segs.next().unwrap_or("");
    let known = matches!(
        rest,
        "v2.0/.well-known/openid-configuration" | "oauth2/v2.0/authorize" | "discovery/v2.0/keys"
    ) || (rest == "oauth2/v2.0/token"
        && get(form, "grant_type") == Some("authorization_code"));
    if !known {
        return None;
    }
    if !tenant_ok(tenant) {
        return Some(json_response(
            400,
            json!({"error": "invalid_tenant", "error_description": format!("AADSTS90002: Tenant '{tenant}' not found."), "error_codes": [90002]}),
        ));
    }
    Some(match rest {
        "v2.0/.well-known/openid-configuration" => {
            s.discovery_fetches += 1;
            let t = format!("{base}/{tenant}");
            json_response(
                200,
                json!({
                    "issuer": issuer(base),
                    "authorization_endpoint": format!("{t}/oauth2/v2.0/authorize"),
                    "token_endpoint": format!("{t}/oauth2/v2.0/token"),
                    "jwks_uri": format!("{t}/discovery/v2.0/keys"),
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "preferred_username", "oid", "tid"],
                    "tenant_region_scope": "EU",
                }),
            )
        }
        "discovery/v2.0/keys" => {
            s.jwks_fetches += 1;
            json_response(
                200,
                json!({"keys": s.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>()}),
            )
        }
        "oauth2/v2.0/authorize" => authorize(s, method, query, form),
        _ => token(s, base, form, headers),
    })
}

fn page(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "text/html; charset=utf-8")], body).into_response()
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [("location", to)]).into_response()
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse(uri).unwrap();
    for (k, v) in pairs {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

fn authorize(
    s: &mut OidcScript,
    method: &axum::http::Method,
    query: &[(String, String)],
    form: &[(String, String)],
) -> Response {
    // The request's parameters come in the query; the login form posts them back.
    let all: Vec<(String, String)> = query.iter().chain(form.iter()).cloned().collect();
    let p = |k: &str| get(&all, k).unwrap_or("").to_string();
    if p("client_id") != CLIENT_ID {
        return page(
            StatusCode::BAD_REQUEST,
            format!(
                "AADSTS700016: Application with identifier '{}' was not found.",
                p("client_id")
            ),
        );
    }
    let redirect_uri = p("redirect_uri");
    if redirect_uri.is_empty()
        || (!s.redirect_uris.is_empty() && !s.redirect_uris.contains(&redirect_uri))
    {
        return page(StatusCode::BAD_REQUEST, format!("AADSTS50011: The redirect URI '{redirect_uri}' does not match the redirect URIs configured for the application."));
    }
    let state = p("state");
    let err = |e: &str, d: &str| {
        redirect(with_query(
            &redirect_uri,
            &[("error", e), ("error_description", d), ("state", &state)],
        ))
    };
    if let Some((e, d)) = s.next_error.take() {
        return err(&e, &d);
    }
    if p("response_type") != "code" {
        return err(
            "unsupported_response_type",
            "AADSTS700054: response_type 'id_token' is not enabled for the application.",
        );
    }
    if !p("scope").split(' ').any(|x| x == "openid") {
        return err("invalid_request", "AADSTS900144: The request body must contain the following parameter: 'scope' with openid.");
    }
    if p("code_challenge").is_empty() || p("code_challenge_method") != "S256" {
        return err(
            "invalid_request",
            "AADSTS501491: Invalid code_challenge: S256 required.",
        );
    }
    // No user yet: the login form (GET); a test may also pass `login_upn` straight away.
    let upn = if p("login_upn").is_empty() {
        String::new()
    } else {
        p("login_upn")
    };
    if upn.is_empty() {
        if *method == axum::http::Method::POST {
            return page(StatusCode::BAD_REQUEST, "pick a user".into());
        }
        let hidden: String = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    esc(k),
                    esc(v)
                )
            })
            .collect();
        return page(
            StatusCode::OK,
            format!(
                "<!doctype html><html><body><h1>Sign in (fake Entra ID)</h1><form method=\"post\">{hidden}\
                 <label>UPN <input name=\"login_upn\" id=\"login_upn\"></label>\
                 <label>Name <input name=\"login_name\" id=\"login_name\"></label>\
                 <label>Groups <input name=\"login_groups\" id=\"login_groups\"></label>\
                 <label>Roles <input name=\"login_roles\" id=\"login_roles\"></label>\
                 <button id=\"sign_in\" type=\"submit\">Sign in</button></form></body></html>"
            ),
        );
    }
    let list = |k: &str| -> Vec<String> {
        p(k).split([',', ' '])
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let user = LoginUser {
        name: if p("login_name").is_empty() {
            upn.clone()
        } else {
            p("login_name")
        },
        oid: format!("oid-{}", upn.to_ascii_lowercase()),
        groups: list("login_groups"),
        roles: list("login_roles"),
        upn,
    };
    let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
    s.codes.insert(
        code.clone(),
        Grant {
            user,
            nonce: p("nonce"),
            challenge: p("code_challenge"),
            redirect_uri: redirect_uri.clone(),
        },
    );
    redirect(with_query(
        &redirect_uri,
        &[("code", &code), ("state", &state)],
    ))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

fn token_error(status: u16, error: &str, code: u32, text: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": format!("AADSTS{code}: {text}"), "error_codes": [code]}),
    )
}

fn token(
    s: &mut OidcScript,
    base: &str,
    form: &[(String, String)],
    headers: &HeaderMap,
) -> Response {
    // Client authentication: client_secret_post or client_secret_basic.
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (id, secret) = match &basic {
        Some(b) => {
            let (i, s) = b.split_once(':').unwrap_or((b, ""));
            (i.to_string(), s.to_string())
        }
        None => (
            get(form, "client_id").unwrap_or("").to_string(),
            get(form, "client_secret").unwrap_or("").to_string(),
        ),
    };
    if id != CLIENT_ID {
        return token_error(
            400,
            "unauthorized_client",
            700016,
            "Application not found in the directory.",
        );
    }
    if secret != SECRET {
        return token_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    let code = get(form, "code").unwrap_or("");
    // A code is good once.
    let Some(grant) = s.codes.remove(code) else {
        return token_error(
            400,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired or was already used.",
        );
    };
    if get(form, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return token_error(
            400,
            "invalid_grant",
            50148,
            "The redirect_uri does not match the one in the authorization request.",
        );
    }
    let verifier = get(form, "code_verifier").unwrap_or("");
    let derived = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    if verifier.is_empty() || derived != grant.challenge {
        return token_error(400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.");
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let minted = std::mem::take(&mut s.next_token);
    let (iat, exp) = if minted == Minted::Expired {
        (now - 7200, now - 3600)
    } else {
        (now, now + 3600)
    };
    let u = &grant.user;
    let mut claims = json!({
        "aud": if minted == Minted::WrongAudience { "00000003-0000-0000-c000-000000000000" } else { CLIENT_ID },
        "iss": issuer(base),
        "iat": iat, "nbf": iat, "exp": exp,
        "nonce": if minted == Minted::WrongNonce { "not-the-nonce-you-sent" } else { grant.nonce.as_str() },
        "tid": TENANT_ID, "oid": u.oid, "sub": format!("sub-{}", u.oid),
        "preferred_username": u.upn, "name": u.name, "ver": "2.0",
    });
    if !u.groups.is_empty() {
        claims["groups"] = json!(u.groups);
    }
    if !u.roles.is_empty() {
        claims["roles"] = json!(u.roles);
    }
    let current = s.keys.last().unwrap();
    let id_token = if minted == Minted::Forged {
        SigningKey::new("forger").sign(&current.kid, &claims)
    } else {
        current.sign(&current.kid, &claims)
    };
    json_response(
        200,
        json!({
            "token_type": "Bearer", "scope": "openid profile email", "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
            "id_token": id_token,
        }),
    )
}
