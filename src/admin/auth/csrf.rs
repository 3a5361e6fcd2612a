//! CSRF protection for every state-changing request: the token bound to the session (or, for
//! `local_admin`, to the process) must come back in the `X-CSRF-Token` header, a `csrf` form
//! field (urlencoded bodies), or, for multipart uploads, a `csrf` query parameter. A request
//! whose `Origin` is not this host is refused as well.

use super::roles::{AuthRejection, SignedIn};
use super::Auth;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The largest urlencoded body the guard reads to find the `csrf` field.
pub const MAX_FORM: usize = 2 << 20;
pub const HEADER: &str = "x-csrf-token";

/// A refused state-changing request (403).
#[derive(Debug)]
pub struct CsrfRefused(&'static str);

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        refused(self.0)
    }
}

/// Is `token` this user's CSRF token? (constant time)
pub fn check(who: &SignedIn, token: &str) -> Result<(), CsrfRefused> {
    if !who.csrf.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(who.csrf.as_bytes(), token.as_bytes())
            .is_ok()
    {
        Ok(())
    } else {
        Err(CsrfRefused("missing or wrong CSRF token"))
    }
}

fn refused(why: &str) -> Response {
    (StatusCode::FORBIDDEN, format!("refused: {why}\n")).into_response()
}

/// Middleware for the whole admin router: GET, HEAD and OPTIONS pass; anything else needs a
/// signed-in user and their CSRF token.
pub async fn guard(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return refused("cross-origin request");
    }
    let who = match auth.signed_in(req.headers()) {
        Ok(w) => w,
        Err(AuthRejection::SignIn { .. }) => {
            return AuthRejection::SignIn { next: None }.into_response()
        }
        Err(e) => return e.into_response(),
    };
    if let Some(t) = req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        return match check(&who, t) {
            Ok(()) => next.run(req).await,
            Err(r) => r.into_response(),
        };
    }
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("application/x-www-form-urlencoded") {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response();
        };
        let token = form_field(&bytes, "csrf").unwrap_or_default();
        if let Err(r) = check(&who, &token) {
            return r.into_response();
        }
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    if ctype.starts_with("multipart/form-data") {
        let token = req
            .uri()
            .query()
            .and_then(|q| form_field(q.as_bytes(), "csrf"))
            .unwrap_or_default();
        if let Err(r) = check(&who, &token) {
            return r.into_response();
        }
        return next.run(req).await;
    }
    refused("missing CSRF token")
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    openidconnect::url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// No `Origin`, or one whose host:port is the request's `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_match_host() {
        let h = |origin: Option<&str>, host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, host.parse().unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, o.parse().unwrap());
            }
            same_origin(&m)
        };
        assert!(h(None, "a:1"));
        assert!(h(Some("https://a:1"), "a:1"));
        assert!(!h(Some("https://evil.example"), "a:1"));
        assert!(!h(Some("null"), "a:1"));
    }

    #[test]
    fn csrf_field_in_a_form() {
        assert_eq!(
            form_field(b"a=1&csrf=x%2By&b=2", "csrf").as_deref(),
            Some("x+y")
        );
        assert_eq!(form_field(b"a=1", "csrf"), None);
    }
}
