//! Sign-in and safety for the admin web: Entra ID sign-in (OpenID Connect, [`oidc`]), signed
//! session cookies ([`session`]), roles ([`roles`]: the [`SignedIn`], [`AdminUser`] and
//! [`EditorUser`] extractors), CSRF ([`csrf`]), the audit log ([`audit`]), TLS ([`tls`]) and
//! the security headers of every admin response.
//!
//! Handlers of the admin web take `SignedIn` (or `EditorUser`/`AdminUser`) and, for changes,
//! rely on the router-wide [`csrf::guard`] and call [`Audit::record`]. Routes: `/auth/login`,
//! `/auth/callback`, `/auth/logout` (POST), `/auth/me` (JSON) and `/audit` (admins).

pub mod audit;
pub mod csrf;
pub mod oidc;
pub mod roles;
pub mod session;
pub mod tls;

pub use crate::config::AuthConfig;
pub use audit::{Audit, AuditEntry};
pub use roles::{AdminUser, AuthRejection, EditorUser, Role, SignedIn};

use super::html::{escape, when};
use axum::extract::{FromRef, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use session::{Session, SessionKey, LOGIN_COOKIE, SESSION_COOKIE};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The admin pages' Content-Security-Policy: nothing from outside, scripts and styles from
/// this server only (inline styles allowed), images only from here or `data:` URIs (so a
/// previewed signature never makes the browser fetch a remote image).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                       img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// How long a started sign-in may take.
const LOGIN_TTL: i64 = 600;
/// Entries on the audit page.
const AUDIT_PAGE_ENTRIES: usize = 200;

/// What the admin web knows about signing in.
pub struct Auth {
    mode: Mode,
    key: SessionKey,
    pub audit: Audit,
    /// The CSRF token of `local_admin` mode (one per process).
    local_csrf: String,
}

enum Mode {
    /// `[admin.auth]`: Entra ID sign-in.
    Entra {
        oidc: Box<oidc::Oidc>,
        admins: Vec<String>,
        editors: Vec<String>,
        lifetime: Duration,
    },
    /// `[admin] local_admin = true` on loopback without `[admin.auth]`: everyone is admin.
    LocalAdmin,
    /// Neither: the read-only pages only.
    Off,
}

impl Auth {
    /// From `[admin.auth]` (if any), `[admin] local_admin` and `[admin] audit_log`.
    pub fn new(
        auth: Option<&AuthConfig>,
        local_admin: bool,
        audit_log: Option<PathBuf>,
    ) -> Result<Self, String> {
        let mut key = SessionKey::generate();
        let mode = match auth {
            Some(cfg) => {
                if let Some(path) = &cfg.session_key_file {
                    key = SessionKey::from_file(path)
                        .map_err(|e| format!("admin.auth.session_key_file: {e}"))?;
                }
                let secret = cfg.secret().map_err(|e| e.to_string())?;
                Mode::Entra {
                    oidc: Box::new(oidc::Oidc::new(cfg, secret)?),
                    admins: cfg.admins.clone(),
                    editors: cfg.editors.clone(),
                    lifetime: cfg.session_lifetime,
                }
            }
            None if local_admin => Mode::LocalAdmin,
            None => Mode::Off,
        };
        Ok(Auth {
            mode,
            key,
            audit: Audit::new(audit_log),
            local_csrf: session::random_token(),
        })
    }

    /// Is there a way to sign in (Entra ID, or local admin)?
    pub fn enabled(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// The signed-in user of a request, by its session cookie.
    pub fn signed_in(&self, headers: &HeaderMap) -> Result<SignedIn, AuthRejection> {
        match &self.mode {
            Mode::Off => Err(AuthRejection::Disabled),
            Mode::LocalAdmin => Ok(SignedIn {
                upn: "local".into(),
                name: "local admin".into(),
                oid: String::new(),
                role: Role::Admin,
                csrf: self.local_csrf.clone(),
            }),
            Mode::Entra { .. } => {
                let s: Session = session::cookie(headers, SESSION_COOKIE)
                    .and_then(|c| self.key.open("session", c))
                    .ok_or(AuthRejection::SignIn { next: None })?;
                if s.exp <= OffsetDateTime::now_utc().unix_timestamp() {
                    return Err(AuthRejection::SignIn { next: None });
                }
                Ok(SignedIn {
                    upn: s.upn,
                    name: s.name,
                    oid: s.oid,
                    role: s.role,
                    csrf: s.csrf,
                })
            }
        }
    }
}

/// For the read-only pages that show directory data (the status page's previews): open
/// without `[admin.auth]` (loopback only, as before), else for editors and admins.
pub async fn directory_pages(
    State(auth): State<Arc<Auth>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Mode::Entra { .. } = auth.mode {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let who = match auth.signed_in(req.headers()) {
            Ok(w) => w,
            Err(AuthRejection::SignIn { .. }) => {
                return AuthRejection::SignIn { next: Some(path) }.into_response()
            }
            Err(e) => return e.into_response(),
        };
        if let Err(e) = who.require(Role::Editor) {
            return e.into_response();
        }
        // The page shows the signed-in navigation (templates, overrides, sign-out).
        req.extensions_mut().insert(who);
    }
    next.run(req).await
}

/// The sign-in routes and the audit page, for a router whose state gives an `Arc<Auth>`.
pub fn routes<S>() -> Router<S>
where
    Arc<Auth>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/audit", get(audit_page))
}

/// Security headers on every admin response (a handler's own CSP is kept).
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with every form POST, which
    // the CSRF guard's origin check refuses. `same-origin` keeps the Origin (and referrer) for
    // this site's own requests and sends neither anywhere else.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// Percent-encode for a query value.
pub fn percent_encode(s: &str) -> String {
    openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Only a local absolute path (never `//host` or `/\host`, which browsers take as another site).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.chars().any(|c| c.is_control()) =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
         pre{{margin:0;white-space:pre-wrap;max-width:40em}}</style></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login(State(auth): State<Arc<Auth>>, Query(q): Query<LoginQuery>) -> Response {
    let Mode::Entra { oidc, .. } = &auth.mode else {
        return AuthRejection::Disabled.into_response();
    };
    let start = match oidc.authorize().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "admin sign-in cannot start");
            return html_page(
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                &format!("<p>{}</p>", escape(&e.to_string())),
            );
        }
    };
    let state = session::LoginState {
        state: start.state,
        nonce: start.nonce,
        pkce_verifier: start.pkce_verifier,
        next: local_path(q.next.as_deref()),
        exp: OffsetDateTime::now_utc().unix_timestamp() + LOGIN_TTL,
    };
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        Some(&auth.key.seal("login", &state)),
        LOGIN_TTL,
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, start.url),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Mode::Entra {
        oidc,
        admins,
        editors,
        lifetime,
    } = &auth.mode
    else {
        return AuthRejection::Disabled.into_response();
    };
    let login: Option<session::LoginState> = session::cookie(&headers, LOGIN_COOKIE)
        .and_then(|c| auth.key.open("login", c))
        .filter(|l: &session::LoginState| l.exp > OffsetDateTime::now_utc().unix_timestamp());
    let result = async {
        if let Some(err) = &q.error {
            return Err(format!(
                "the identity provider answered {err}: {}",
                q.error_description.as_deref().unwrap_or("")
            ));
        }
        let login = login
            .as_ref()
            .ok_or("no sign-in in progress in this browser (or it took over 10 minutes)")?;
        let state = q.state.as_deref().unwrap_or("");
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            state.as_bytes(),
            login.state.as_bytes(),
        )
        .is_err()
        {
            return Err("the state parameter does not match this browser's sign-in".into());
        }
        let code = q.code.as_deref().ok_or("no authorization code")?;
        oidc.finish(code, &login.pkce_verifier, &login.nonce)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    let clear_login = session::set_cookie(LOGIN_COOKIE, None, 0);
    let id = match result {
        Ok(id) => id,
        Err(why) => {
            tracing::warn!(reason = %why, "admin sign-in refused");
            if let Err(e) = auth
                .audit
                .record(
                    "-",
                    "sign_in_refused",
                    "",
                    json!(null),
                    json!({ "reason": why }),
                )
                .await
            {
                tracing::error!(error = %e, "audit log write failed");
            }
            let mut r = html_page(
                StatusCode::FORBIDDEN,
                "Sign-in refused",
                &format!(
                    "<p>{}</p><p><a href=\"/auth/login\">Try again</a></p>",
                    escape(&why)
                ),
            );
            r.headers_mut()
                .append(header::SET_COOKIE, clear_login.parse().expect("ascii"));
            return r;
        }
    };
    if id.groups_overage {
        tracing::warn!(
            upn = %id.upn,
            "the ID token carries no groups (over 200: `_claim_names`); only app roles count \
             for this user: assign app roles or emit only groups assigned to the application"
        );
    }
    let role = Role::from_claims(&id.groups, &id.roles, admins, editors);
    let s = Session {
        upn: id.upn.clone(),
        name: id.name.clone(),
        oid: id.oid.clone(),
        role,
        csrf: session::random_token(),
        exp: OffsetDateTime::now_utc().unix_timestamp() + lifetime.as_secs() as i64,
    };
    if let Err(e) = auth
        .audit
        .record(
            &id.upn,
            "sign_in",
            &id.upn,
            json!(null),
            json!({ "role": role.as_str(), "name": id.name, "oid": id.oid }),
        )
        .await
    {
        tracing::error!(error = %e, "audit log write failed: sign-in refused");
        return html_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            "<p>The audit log cannot be written; see the service log.</p>",
        );
    }
    let next = login.map(|l| l.next).unwrap_or_else(|| "/".into());
    // A same-site page, not a redirect: it works even if the cookie is made SameSite=Strict,
    // which a browser does not send on a redirect that started at the identity provider.
    let next_html = escape(&next);
    let mut r = html_page(
        StatusCode::OK,
        "Signed in",
        &format!(
            "<meta http-equiv=\"refresh\" content=\"0;url={next_html}\">\
             <p>Signed in as {} ({}). <a href=\"{next_html}\">Continue</a></p>",
            escape(&id.upn),
            role.as_str()
        ),
    );
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(
            SESSION_COOKIE,
            Some(&auth.key.seal("session", &s)),
            lifetime.as_secs() as i64,
        )
        .parse()
        .expect("ascii"),
    );
    h.append(header::SET_COOKIE, clear_login.parse().expect("ascii"));
    r
}

async fn logout(State(auth): State<Arc<Auth>>, who: SignedIn) -> Response {
    if let Err(e) = auth
        .audit
        .record(&who.upn, "sign_out", &who.upn, json!(null), json!(null))
        .await
    {
        tracing::error!(error = %e, "audit log write failed");
    }
    let mut r = html_page(
        StatusCode::OK,
        "Signed out",
        "<p><a href=\"/auth/login\">Sign in again</a></p>",
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, None, 0)
            .parse()
            .expect("ascii"),
    );
    r
}

/// Who is signed in, for scripts: 401 (not a redirect) when nobody is.
async fn me(who: Result<SignedIn, AuthRejection>) -> Response {
    match who {
        Ok(w) => Json(w).into_response(),
        Err(AuthRejection::SignIn { .. }) => AuthRejection::SignIn { next: None }.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn audit_page(State(auth): State<Arc<Auth>>, AdminUser(_who): AdminUser) -> Response {
    let entries = match auth.audit.latest(AUDIT_PAGE_ENTRIES).await {
        Ok(e) => e,
        Err(e) => {
            return html_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Audit log",
                &format!(
                    "<p>cannot read the audit log: {}</p>",
                    escape(&e.to_string())
                ),
            )
        }
    };
    let now = OffsetDateTime::now_utc();
    let mut body = String::new();
    match auth.audit.path() {
        None => body.push_str(
            "<p>No audit log file: set <code>[admin] audit_log</code>. Changes are only in \
             the service log.</p>",
        ),
        Some(p) => {
            let _ = write!(
                body,
                "<p>The latest {} entries of <code>{}</code>, newest first.</p>",
                entries.len(),
                escape(&p.display().to_string())
            );
        }
    }
    body.push_str(
        "<table><tr><th>When</th><th>Who</th><th>Action</th><th>Target</th><th>Before</th>\
         <th>After</th></tr>",
    );
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => escape(s),
        v => escape(&serde_json::to_string_pretty(v).unwrap_or_default()),
    };
    for e in &entries {
        let _ = write!(
            body,
            "<tr class=\"entry\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td>\
             <td><pre>{}</pre></td></tr>",
            when(Some(e.time), now),
            escape(&e.who),
            escape(&e.action),
            escape(&e.target),
            show(&e.before),
            show(&e.after),
        );
    }
    body.push_str("</table>");
    html_page(StatusCode::OK, "Audit log", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_local_path() {
        let cases = [
            (None, "/"),
            (Some("/templates?x=1"), "/templates?x=1"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("/a\r\nSet-Cookie: x"), "/"),
        ];
        for (input, want) in cases {
            assert_eq!(local_path(input), want, "{input:?}");
        }
    }
}
