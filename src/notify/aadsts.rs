//! What an AADSTS code means and what the admin should do about it
//! (graph-contract.md §1.6). Shown in notifications and on the status page.

/// Plain-language help for one code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The code as `AADSTS<n>`, or the input unchanged when it is not an AADSTS code.
    pub code: String,
    pub meaning: &'static str,
    pub action: &'static str,
}

const NEW_SECRET: &str = "Create a new client secret in the Entra admin center (App registrations \
> the sigstamp app > Certificates & secrets) and put its Value (not its Secret ID) in the \
[graph] configuration (client_secret, or the file client_secret_file names). sigstamp keeps \
retrying and recovers by itself once the new secret is in use.";

const SIGN_IN: &str = "The delegated sign-in is no longer valid. An administrator runs \
`sigstamp login --config FILE` to sign in again; sigstamp picks up the new refresh token \
by itself, without a restart.";

const CERT: &str = "Check that the certificate in [graph] client_certificate is uploaded to the \
app registration (Certificates & secrets), has not expired, and matches [graph] client_key.";

const CONSENT: &str = "An administrator grants admin consent for the sigstamp app's Graph \
permission (User.Read.All) in the Entra admin center (App registrations > API permissions).";

/// The Admin and Reauth codes of §1.6; anything else falls back on the error class.
const TABLE: &[(u32, &str, &str)] = &[
    (7000215, "Invalid client secret provided (a wrong value, or the secret's ID was sent instead of its value).", NEW_SECRET),
    (7000222, "The app's client secret has expired.", NEW_SECRET),
    (7000218, "The token request carried neither a client secret nor a client assertion.", "Set [graph] client_secret, or client_certificate and client_key, in the configuration."),
    (700027, "The client assertion failed signature validation, or its certificate is not registered on the app.", CERT),
    (700024, "The client assertion is not within its valid time range (clock skew).", "Check that this host's clock is synchronised (NTP); sigstamp retries with a fresh assertion."),
    (50012, "Authentication failed (bad signature or certificate).", CERT),
    (700016, "The application was not found in the tenant (not consented, or the wrong tenant).", "Check [graph] tenant_id and client_id, and that the app is consented in this tenant."),
    (7000112, "The application is disabled.", "Re-enable the sigstamp app under Enterprise applications in the Entra admin center."),
    (90002, "The tenant was not found.", "Check [graph] tenant_id (tenant GUID or verified domain)."),
    (65001, "The user or administrator has not consented to the app.", CONSENT),
    (500011, "The resource service principal (Microsoft Graph) was not found in the tenant.", CONSENT),
    (70011, "The requested scope is invalid.", "This is a sigstamp bug or a wrong configuration; report it with the log lines around this error."),
    (700082, "The refresh token expired after 90 days of inactivity.", SIGN_IN),
    (70008, "The refresh token has expired or was revoked.", SIGN_IN),
    (50173, "The grant was revoked (a password reset by an admin, or tokens revoked); a fresh sign-in is needed.", SIGN_IN),
    (70043, "The refresh token expired under a Conditional Access sign-in frequency policy.", SIGN_IN),
    (50076, "Multi-factor authentication is now required (Conditional Access or a new location).", SIGN_IN),
    (50079, "The user must enrol in multi-factor authentication.", SIGN_IN),
    (50078, "The presented multi-factor authentication has expired.", SIGN_IN),
    (50132, "The session is invalid because the password expired or was changed recently.", SIGN_IN),
    (50133, "The session is invalid because the password expired or was changed recently.", SIGN_IN),
    (50057, "The signed-in user account is disabled.", "Re-enable the account, or run `sigstamp login --config FILE` with another administrator account."),
    (70000, "The grant or refresh token is not valid.", SIGN_IN),
    (50089, "The flow token expired.", SIGN_IN),
];

/// Explain a token error code: `AADSTS7000222` or `7000222`, a Graph error code such as
/// `Authorization_RequestDenied`, or none at all.
pub fn explain(code: Option<&str>) -> Explanation {
    let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
        return Explanation {
            code: "no error code".into(),
            meaning: "Microsoft Entra ID or Graph refused sigstamp's credentials.",
            action: GENERIC,
        };
    };
    let digits = code.strip_prefix("AADSTS").unwrap_or(code);
    let Ok(n) = digits.parse::<u32>() else {
        let (meaning, action) = match code {
            "Authorization_RequestDenied" => (
                "Microsoft Graph refused to list users: the app lacks permission.",
                CONSENT,
            ),
            _ => ("Microsoft Entra ID or Graph refused the request.", GENERIC),
        };
        return Explanation {
            code: code.to_string(),
            meaning,
            action,
        };
    };
    let code = format!("AADSTS{n}");
    match TABLE.iter().find(|(c, _, _)| *c == n) {
        Some((_, meaning, action)) => Explanation {
            code,
            meaning,
            action,
        },
        None => Explanation {
            code,
            meaning:
                "Microsoft Entra ID refused the token request with a code sigstamp does not know.",
            action: GENERIC,
        },
    }
}

const GENERIC: &str = "Read the details, look the code up at \
https://login.microsoftonline.com/error, and fix the app registration or the [graph] \
configuration; sigstamp keeps retrying and recovers by itself.";

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
        assert_eq!(explain(Some("invalid_client")).code, "invalid_client");
        assert_eq!(explain(None).action, GENERIC);
    }
}
