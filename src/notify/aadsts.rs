//! What a token error code means and what the admin should do about it, for notifications
//! and the status page. AADSTS codes come from the Graph client's table
//! ([`code_info`], graph-contract.md §1.6); this adds Graph API codes and the no-code case.

use crate::directory::graph::error::code_info;

/// Plain-language help for one code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The code as `AADSTS<n>`, or the input unchanged when it is not an AADSTS code.
    pub code: String,
    /// A sentence: capitalised, with a final period.
    pub meaning: String,
    pub action: String,
}

const CONSENT: &str = "An administrator grants admin consent for the sigstamp app's Graph \
permission (User.Read.All) in the Entra admin center (App registrations > API permissions).";

const GENERIC: &str = "Read the details, look the code up at \
https://login.microsoftonline.com/error, and fix the app registration or the [graph] \
configuration; sigstamp keeps retrying and recovers by itself.";

/// Explain a token error code: `AADSTS7000222` or `7000222`, a Graph error code such as
/// `Authorization_RequestDenied`, or none at all.
pub fn explain(code: Option<&str>) -> Explanation {
    let make = |code: String, meaning: &str, action: &str| Explanation {
        code,
        meaning: sentence(meaning),
        action: sentence(action),
    };
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
        return make(
            "no error code".into(),
            "Microsoft Entra ID or Graph refused sigstamp's credentials",
            GENERIC,
        );
    };
    // The LDAP source's codes (`invalidCredentials/775`, `tlsCertificate`, …).
    if let Some((meaning, action)) = crate::directory::ldap::error::explain(code) {
        return make(code.into(), &meaning, &action);
    }
    let digits = code.strip_prefix("AADSTS").unwrap_or(code);
    let Ok(n) = digits.parse::<u32>() else {
        return match code {
            "Authorization_RequestDenied" => make(
                code.into(),
                "Microsoft Graph refused to list users: the app lacks permission",
                CONSENT,
            ),
            _ => make(
                code.into(),
                "Microsoft Entra ID or Graph refused the request",
                GENERIC,
            ),
        };
    };
    match code_info(n) {
        Some(info) => make(format!("AADSTS{n}"), info.meaning, info.action),
        None => make(
            format!("AADSTS{n}"),
            "Microsoft Entra ID refused the token request with a code sigstamp does not know",
            GENERIC,
        ),
    }
}

/// The table's phrases as sentences: capital first letter, final period.
fn sentence(s: &str) -> String {
    let mut chars = s.trim().chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_with_or_without_prefix() {
        let a = explain(Some("AADSTS7000222"));
        assert_eq!(a.code, "AADSTS7000222");
        assert!(a.meaning.contains("expired"));
        assert!(a.action.contains("client_secret"));
        assert_eq!(explain(Some("7000222")), a);
        assert!(explain(Some("AADSTS50173"))
            .action
            .contains("sigstamp login"));
        let g = explain(Some("Authorization_RequestDenied"));
        assert!(g.action.contains("admin consent"));
    }

    #[test]
    fn unknown_codes_get_generic_help() {
        let e = explain(Some("AADSTS1234567"));
        assert_eq!(e.code, "AADSTS1234567");
        assert_eq!(e.action, GENERIC);
        assert_eq!(sentence("the secret expired"), "The secret expired.");
        assert_eq!(explain(Some("invalid_client")).code, "invalid_client");
        assert_eq!(explain(None).action, GENERIC);
        assert!(explain(Some("AADSTS7000222")).meaning.starts_with("The "));
    }
}
