//! Errors of the LDAP source and how each maps to the shared source state (`/status`):
//! a refused bind or a refusal an admin must fix is `expired` (admin needed, like a dead
//! Graph token); an unreachable or failing server is `failing` (retried by itself).

use crate::status::{TokenState, TokenStatus};

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// TCP, TLS or the connection dropped: the server is unreachable for now.
    #[error("cannot reach the LDAP server {url}: {message}")]
    Connect { url: String, message: String },
    /// The server's certificate is not trusted or not for this name (an admin must fix it).
    #[error("the LDAP server's TLS certificate is refused ({url}): {message}")]
    Certificate { url: String, message: String },
    /// The server answered an operation with a non-success result code.
    #[error("LDAP {op} refused: {} ({rc}){}", result_name(*rc), text_suffix(text))]
    Refused {
        op: &'static str,
        rc: u32,
        text: String,
    },
    /// The password file cannot be read (an admin must fix it).
    #[error("{0}")]
    Credential(String),
    /// A malformed answer.
    #[error("LDAP protocol error: {0}")]
    Protocol(String),
}

fn text_suffix(text: &str) -> String {
    let t = text.trim().trim_end_matches('\0');
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

impl LdapError {
    pub fn connect(url: &str, e: impl std::fmt::Display) -> Self {
        let message = e.to_string();
        let url = url.to_string();
        // rustls' verification failures ("invalid peer certificate: UnknownIssuer", …).
        if message.contains("certificate") {
            LdapError::Certificate { url, message }
        } else {
            LdapError::Connect { url, message }
        }
    }

    /// From an error of the ldap3 client during an operation.
    pub fn client(url: &str, e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::LdapResult { result } => LdapError::Refused {
                op: "operation",
                rc: result.rc,
                text: result.text,
            },
            ldap3::LdapError::Timeout { .. } => LdapError::Connect {
                url: url.to_string(),
                message: "no answer within ldap.timeout".into(),
            },
            other => LdapError::connect(url, other),
        }
    }

    /// Needs an admin (wrong, expired or locked credentials, missing rights, a wrong base
    /// DN, plain-text binds refused)? Otherwise it is transient and retried.
    pub fn needs_admin(&self) -> bool {
        match self {
            LdapError::Refused { rc, .. } => matches!(
                rc,
                // strongAuthRequired, confidentialityRequired, inappropriateAuthentication,
                // invalidCredentials, insufficientAccessRights, noSuchObject, invalidDNSyntax,
                // unwillingToPerform (AD: a simple bind without TLS when that is forbidden).
                8 | 13 | 48 | 49 | 50 | 32 | 34 | 53
            ),
            LdapError::Credential(_) | LdapError::Certificate { .. } => true,
            _ => false,
        }
    }

    /// The metrics label (`sigstamp_sync_failures_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            LdapError::Refused { rc: 49, .. } => "ldap_bind",
            LdapError::Refused { .. } if self.needs_admin() => "ldap_admin",
            LdapError::Refused { .. } => "ldap_error",
            LdapError::Connect { .. } => "network",
            LdapError::Certificate { .. } => "tls",
            LdapError::Credential(_) => "credential",
            LdapError::Protocol(_) => "protocol",
        }
    }

    /// The code shown on `/status`: the result's name, with AD's `data` code when there is
    /// one (`invalidCredentials/775`).
    pub fn code(&self) -> Option<String> {
        match self {
            LdapError::Refused { rc, text, .. } => Some(match ad_data_code(text) {
                Some(d) => format!("{}/{d}", result_name(*rc)),
                None => result_name(*rc).to_string(),
            }),
            LdapError::Certificate { .. } => Some("tlsCertificate".into()),
            _ => None,
        }
    }
}

/// RFC 4511 result codes by name (the ones a sync can meet).
pub fn result_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "ldapError",
    }
}

/// AD's sub-code from a diagnostic such as
/// `80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563`.
pub fn ad_data_code(text: &str) -> Option<String> {
    let rest = &text[text.find(", data ")? + ", data ".len()..];
    let code: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    (!code.is_empty() && code.len() <= 8).then(|| code.to_ascii_lowercase())
}

/// What an AD bind data code means and what to do about it.
pub fn ad_data_meaning(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "525" => (
            "the bind account does not exist",
            "check ldap.bind_dn (the service account's full DN or UPN)",
        ),
        "52e" => (
            "the bind password is wrong",
            "put the service account's current password in ldap.bind_password_file",
        ),
        "530" => (
            "the bind account may not log on at this time",
            "remove the logon-hours restriction from the service account",
        ),
        "531" => (
            "the bind account may not log on from this computer",
            "allow the service account to log on from the sigstamp host (Log On To…)",
        ),
        "532" => (
            "the bind account's password has expired",
            "set a new password for the service account (and mark it 'password never expires' or rotate it on schedule), then put it in ldap.bind_password_file",
        ),
        "533" => (
            "the bind account is disabled",
            "enable the service account in Active Directory Users and Computers",
        ),
        "534" => (
            "the bind account lacks the logon right needed",
            "grant the service account network logon rights",
        ),
        "701" => (
            "the bind account has expired",
            "extend the service account's expiry date (Account tab) in Active Directory",
        ),
        "773" => (
            "the bind account must change its password",
            "set a new password for the service account without 'must change at next logon', then put it in ldap.bind_password_file",
        ),
        "775" => (
            "the bind account is locked out",
            "unlock the service account (and find what keeps trying an old password)",
        ),
        _ => return None,
    })
}

/// The meaning and action for a code as [`LdapError::code`] writes it.
pub fn explain(code: &str) -> Option<(String, String)> {
    let (name, data) = match code.split_once('/') {
        Some((n, d)) => (n, Some(d)),
        None => (code, None),
    };
    if let Some((meaning, action)) = data.and_then(ad_data_meaning) {
        return Some((
            format!(
                "the LDAP server refused the bind: {meaning} (AD data {})",
                data.unwrap_or("")
            ),
            action.to_string(),
        ));
    }
    let (meaning, action) = match name {
        "invalidCredentials" => (
            "the LDAP server refused the bind: wrong bind DN or password, or the account is expired, disabled or locked",
            "check ldap.bind_dn and the password in ldap.bind_password(_file); check the service account on the server",
        ),
        "tlsCertificate" => (
            "the LDAP server's TLS certificate is not trusted, or not issued for the name in ldap.url",
            "set ldap.ca_file to the CA that issued the server's certificate (AD: the enterprise root CA), and use a host name the certificate names",
        ),
        "strongAuthRequired" | "confidentialityRequired" => (
            "the LDAP server refuses a simple bind without TLS",
            "use ldaps:// or set ldap.starttls = true",
        ),
        "inappropriateAuthentication" => (
            "the LDAP server refuses this kind of bind for the account",
            "set ldap.bind_dn and a password (anonymous binds are refused)",
        ),
        "insufficientAccessRights" => (
            "the bind account may not read the directory",
            "give the service account read access to the users under ldap.base_dn",
        ),
        "noSuchObject" | "invalidDNSyntax" => (
            "ldap.base_dn does not exist on the server",
            "fix ldap.base_dn",
        ),
        "unwillingToPerform" => (
            "the LDAP server is unwilling to perform the bind or search",
            "check that binds over TLS are allowed and that the account is usable",
        ),
        _ => return None,
    };
    Some((meaning.to_string(), action.to_string()))
}

/// The `/status` view of an error.
pub fn describe(e: &LdapError, now: time::OffsetDateTime) -> TokenStatus {
    let code = e.code();
    let state = if e.needs_admin() {
        TokenState::Expired
    } else {
        TokenState::Failing
    };
    let description = match code.as_deref().and_then(explain) {
        Some((meaning, action)) if state == TokenState::Expired => {
            format!(
                "{}. What to do: {action}. ({e})",
                crate::directory::graph::state::capital(&meaning)
            )
        }
        _ if state == TokenState::Failing => format!("{e}; retrying"),
        _ => e.to_string(),
    };
    TokenStatus {
        state,
        error_code: code,
        description,
        since: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(text: &str) -> LdapError {
        LdapError::Refused {
            op: "bind",
            rc: 49,
            text: text.into(),
        }
    }

    #[test]
    fn ad_data_codes_are_read_and_explained() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        for (data, words) in [
            ("532", "password has expired"),
            ("533", "disabled"),
            ("701", "account has expired"),
            ("775", "locked out"),
            ("52e", "password is wrong"),
        ] {
            let e = bind(&format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {data}, v4563\0"
            ));
            let st = describe(&e, now);
            assert_eq!(st.state, TokenState::Expired, "{data}");
            assert_eq!(
                st.error_code.as_deref(),
                Some(format!("invalidCredentials/{data}").as_str())
            );
            assert!(st.description.contains(words), "{data}: {}", st.description);
            assert!(st.description.contains("What to do"), "{}", st.description);
        }
    }

    #[test]
    fn openldap_and_transient_errors() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let st = describe(&bind(""), now);
        assert_eq!(st.state, TokenState::Expired);
        assert_eq!(st.error_code.as_deref(), Some("invalidCredentials"));
        assert!(st.description.contains("wrong bind DN or password"));
        for e in [
            LdapError::connect("ldap://x", "connection refused"),
            LdapError::Refused {
                op: "search",
                rc: 51,
                text: String::new(),
            },
            LdapError::Refused {
                op: "bind",
                rc: 52,
                text: "unavailable".into(),
            },
        ] {
            assert_eq!(describe(&e, now).state, TokenState::Failing, "{e}");
        }
        assert_eq!(ad_data_code("no data here"), None);
        assert_eq!(ad_data_code("x, data ZZ"), None);
    }
}
