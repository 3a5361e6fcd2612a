//! Errors of the token endpoint and of Graph, and how each maps to a token state (§1.6, §4).

use std::time::Duration;

/// What to do about a token-endpoint error (contract §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClass {
    /// Stop trusting the credential; an admin must act.
    Admin,
    /// The delegated refresh token is dead: someone must run `sigstamp login` again.
    Reauth,
    /// Transient: back off and retry.
    Retry,
}

/// An error answer of `/oauth2/v2.0/token` (§1.5).
#[derive(Debug, Clone)]
pub struct AuthError {
    pub status: u16,
    pub error: String,
    pub codes: Vec<u32>,
    pub description: String,
    pub suberror: Option<String>,
    pub retry_after: Option<Duration>,
}

impl AuthError {
    /// The first AADSTS code, as `AADSTS7000222`.
    pub fn code(&self) -> Option<String> {
        self.codes.first().map(|c| format!("AADSTS{c}"))
    }

    /// Classify by `error` and `error_codes`, not by 400-vs-401 (§1.5 [ours]).
    pub fn class(&self) -> AuthClass {
        if let Some(known) = self.codes.iter().find_map(|c| code_info(*c)) {
            return known.class;
        }
        match self.error.as_str() {
            "invalid_client"
            | "unauthorized_client"
            | "invalid_tenant"
            | "invalid_resource"
            | "invalid_scope"
            | "consent_required"
            | "unsupported_grant_type"
            | "invalid_request" => AuthClass::Admin,
            "invalid_grant" | "interaction_required" => AuthClass::Reauth,
            _ if self.status == 429 || self.status >= 500 => AuthClass::Retry,
            "temporarily_unavailable" => AuthClass::Retry,
            _ => AuthClass::Admin,
        }
    }

    /// The first line of `error_description` (drops the Trace/Correlation ID lines).
    pub fn summary(&self) -> &str {
        self.description
            .lines()
            .next()
            .unwrap_or(&self.description)
            .trim()
    }
}

pub struct CodeInfo {
    pub class: AuthClass,
    pub meaning: &'static str,
    pub action: &'static str,
}

const fn info(class: AuthClass, meaning: &'static str, action: &'static str) -> CodeInfo {
    CodeInfo {
        class,
        meaning,
        action,
    }
}

const NEW_SECRET: &str = "create a new client secret for the app in Entra ID (App registrations → Certificates & secrets) and put its VALUE in graph.client_secret or graph.client_secret_file";
const LOGIN: &str = "run `sigstamp login --config FILE` to sign in again (the directory keeps its last-known users until then)";

/// What the service knows about one AADSTS code (contract §1.6).
pub fn code_info(code: u32) -> Option<CodeInfo> {
    use AuthClass::*;
    Some(match code {
        7000215 => info(Admin, "the client secret is invalid (a wrong value, or the secret ID was sent instead of its value)", NEW_SECRET),
        7000222 => info(Admin, "the client secret has expired", NEW_SECRET),
        7000218 => info(Admin, "the request carried neither a client secret nor a client assertion", "set graph.client_secret or graph.client_certificate + graph.client_key"),
        700027 => info(Admin, "the client assertion failed signature validation, or the certificate is not registered", "upload graph.client_certificate to the app registration (Certificates & secrets), or check that graph.client_key matches it"),
        700024 => info(Admin, "the client assertion is outside its valid time range", "check this host's clock (NTP)"),
        50012 => info(Admin, "authentication failed (invalid signature or certificate)", "check graph.client_certificate and graph.client_key against the app registration"),
        700016 => info(Admin, "the application was not found in the tenant (not consented, or the wrong tenant)", "check graph.client_id and graph.tenant_id, and grant admin consent in the tenant"),
        7000112 => info(Admin, "the application is disabled", "enable the app's service principal in Entra ID (Enterprise applications)"),
        90002 => info(Admin, "the tenant was not found", "check graph.tenant_id (GUID or a verified domain) and graph.authority"),
        65001 => info(Admin, "admin consent for the app's permissions is missing or was revoked", "grant admin consent for User.Read.All in Entra ID (API permissions)"),
        500011 => info(Admin, "the resource service principal was not found in the tenant", "check graph.endpoint and that Microsoft Graph is available to the tenant"),
        70011 => info(Admin, "the requested scope is invalid", "report this as a sigstamp bug"),
        700082 => info(Reauth, "the refresh token expired after 90 days without use", LOGIN),
        70008 => info(Reauth, "the refresh token has expired or was revoked", LOGIN),
        50173 => info(Reauth, "the grant was revoked (password reset by an admin, or tokens revoked)", LOGIN),
        70043 => info(Reauth, "the refresh token expired because of a Conditional Access sign-in frequency policy", LOGIN),
        50076 => info(Reauth, "multi-factor authentication is now required", LOGIN),
        50078 => info(Reauth, "the presented multi-factor authentication has expired", LOGIN),
        50079 => info(Reauth, "the user must enrol in multi-factor authentication", "enrol the signed-in user in MFA, then run `sigstamp login`"),
        50132 | 50133 => info(Reauth, "the session is invalid because the password expired or was changed", LOGIN),
        50057 => info(Reauth, "the signed-in user account is disabled", "enable the account or run `sigstamp login` as another user"),
        70000 => info(Reauth, "the refresh token is not valid", LOGIN),
        50089 => info(Reauth, "the flow token expired", LOGIN),
        50196 => info(Retry, "loop detected: too many identical token requests", "none; sigstamp backs off"),
        90055 | 50033 | 90006 | 90024 | 90033 | 90090 => info(Retry, "a transient identity-platform error", "none; sigstamp retries"),
        _ => return None,
    })
}

/// A Graph error body (§4.1) and its HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub inner_codes: Vec<String>,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub request_id: Option<String>,
}

impl ApiError {
    fn has_code(&self, wanted: &[&str]) -> bool {
        std::iter::once(&self.code)
            .chain(self.inner_codes.iter())
            .any(|c| wanted.iter().any(|w| c.eq_ignore_ascii_case(w)))
    }

    /// The delta state is gone: a full resync is needed (§2.3 [ours]).
    pub fn needs_resync(&self) -> bool {
        self.status == 410
            || ((400..500).contains(&self.status)
                && self.has_code(&["syncStateNotFound", "resyncRequired", "syncStateInvalid"]))
    }

    pub fn is_throttle(&self) -> bool {
        matches!(self.status, 429 | 503 | 504)
    }

    pub fn is_invalid_token(&self) -> bool {
        self.status == 401
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("token endpoint: {} ({})", .0.summary(), .0.error)]
    Auth(AuthError),
    #[error("Microsoft Graph answered {}: {} ({})", .0.status, .0.code, .0.message)]
    Api(ApiError),
    #[error("{}", transport_text(.what, .source))]
    Transport {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected answer from {what}: {message}")]
    Protocol { what: &'static str, message: String },
    #[error("credential: {0}")]
    Credential(String),
    #[error("stopped")]
    Cancelled,
}

impl GraphError {
    pub fn protocol(what: &'static str, message: impl Into<String>) -> Self {
        GraphError::Protocol {
            what,
            message: message.into(),
        }
    }

    /// A short label for the `sync_failures` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            GraphError::Auth(a) => match a.class() {
                AuthClass::Admin => "auth_admin",
                AuthClass::Reauth => "auth_reauth",
                AuthClass::Retry => "auth_transient",
            },
            GraphError::Api(a) if a.is_throttle() => "throttled",
            GraphError::Api(a) if a.status == 403 => "forbidden",
            GraphError::Api(_) => "graph_error",
            GraphError::Transport { source, .. } if source.is_timeout() => "timeout",
            GraphError::Transport { .. } => "network",
            GraphError::Protocol { .. } => "protocol",
            GraphError::Credential(_) => "credential",
            GraphError::Cancelled => "cancelled",
        }
    }
}

/// A transport failure in words that stay the same from one request to the next (no URL:
/// it changes with every page), saying "timeout" when it was one.
fn transport_text(what: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timeout: {what} did not answer within graph.request_timeout");
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    if e.is_connect() {
        format!("cannot connect to {what}: {cause}")
    } else {
        format!("cannot reach {what}: {cause}")
    }
}

/// Parse `Retry-After`: seconds (decimals allowed, §4.2) or an HTTP-date.
pub fn parse_retry_after(v: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    Some(Duration::try_from(when - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(error: &str, codes: &[u32], status: u16) -> AuthError {
        AuthError {
            status,
            error: error.into(),
            codes: codes.to_vec(),
            description: "AADSTS1: x\r\nTrace ID: y".into(),
            suberror: None,
            retry_after: None,
        }
    }

    #[test]
    fn classification_follows_the_contract() {
        assert_eq!(
            auth("invalid_client", &[7000222], 401).class(),
            AuthClass::Admin
        );
        assert_eq!(
            auth("invalid_grant", &[50173], 400).class(),
            AuthClass::Reauth
        );
        assert_eq!(
            auth("invalid_client", &[9999999], 400).class(),
            AuthClass::Admin
        );
        assert_eq!(
            auth("invalid_grant", &[9999999], 400).class(),
            AuthClass::Reauth
        );
        assert_eq!(auth("weird", &[9999999], 503).class(), AuthClass::Retry);
        assert_eq!(
            auth("temporarily_unavailable", &[], 400).class(),
            AuthClass::Retry
        );
        assert_eq!(
            auth("x", &[7000222], 400).code().as_deref(),
            Some("AADSTS7000222")
        );
        assert_eq!(auth("x", &[], 400).summary(), "AADSTS1: x");
    }

    #[test]
    fn retry_after_forms() {
        let now = time::macros::datetime!(2024-01-01 00:00:00 UTC);
        assert_eq!(parse_retry_after("10", now), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 2024 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn resync_codes_case_insensitive() {
        let mut e = ApiError {
            status: 400,
            code: "SyncStateNotFound".into(),
            inner_codes: vec![],
            message: String::new(),
            retry_after: None,
            request_id: None,
        };
        assert!(e.needs_resync());
        e.code = "badRequest".into();
        assert!(!e.needs_resync());
        e.inner_codes = vec!["resyncRequired".into()];
        assert!(e.needs_resync());
        e.status = 410;
        e.inner_codes.clear();
        assert!(e.needs_resync());
    }
}
