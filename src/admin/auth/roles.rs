//! Who is signed in and what they may do: the [`SignedIn`] extractor and the role checks the
//! admin web's handlers use.

use super::Auth;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Ordered: a higher role may do everything a lower one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Any other signed-in user of the tenant: their own page only.
    User,
    /// Templates and any user's overrides.
    Editor,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The role an ID token's `groups` and `roles` claims give, by `[admin.auth] admins` /
    /// `editors` (group object ids compared case-insensitively, app-role names exactly).
    pub fn from_claims(
        groups: &[String],
        roles: &[String],
        admins: &[String],
        editors: &[String],
    ) -> Role {
        let member = |names: &[String]| {
            names.iter().any(|n| {
                roles.iter().any(|r| r == n) || groups.iter().any(|g| g.eq_ignore_ascii_case(n))
            })
        };
        if member(admins) {
            Role::Admin
        } else if member(editors) {
            Role::Editor
        } else {
            Role::User
        }
    }
}

/// The signed-in user of this request. Without `[admin.auth]` and with
/// `[admin] local_admin = true` (loopback only), everyone is `local` with the admin role.
#[derive(Debug, Clone, Serialize)]
pub struct SignedIn {
    /// The UPN (`preferred_username`), the key for their own page and the audit log's `who`.
    pub upn: String,
    pub name: String,
    /// The Entra object id (`oid`); empty for `local`.
    pub oid: String,
    pub role: Role,
    /// The CSRF token to put in every form (`<input type="hidden" name="csrf">`) or the
    /// `X-CSRF-Token` header.
    pub csrf: String,
}

impl SignedIn {
    /// 403 unless this user has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), AuthRejection> {
        if self.role >= role {
            Ok(())
        } else {
            Err(AuthRejection::Forbidden)
        }
    }

    /// May this user act on `upn`'s own page (themselves, or an editor/admin)?
    pub fn may_act_for(&self, upn: &str) -> bool {
        self.role >= Role::Editor || self.upn.eq_ignore_ascii_case(upn)
    }
}

/// Why a request is refused.
#[derive(Debug)]
pub enum AuthRejection {
    /// Not signed in: a GET is sent to sign in (and back), anything else gets 401.
    SignIn { next: Option<String> },
    /// Signed in without the role.
    Forbidden,
    /// No `[admin.auth]` and no `[admin] local_admin`: editing is off.
    Disabled,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::SignIn { next: Some(next) } => {
                let loc = format!("/auth/login?next={}", super::percent_encode(&next));
                (StatusCode::SEE_OTHER, [(header::LOCATION, loc)]).into_response()
            }
            AuthRejection::SignIn { next: None } => {
                (StatusCode::UNAUTHORIZED, "sign in first\n").into_response()
            }
            AuthRejection::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden: your role does not allow this page (your own signature and details are at \
                 /self-service)\n",
            )
                .into_response(),
            AuthRejection::Disabled => (
                StatusCode::FORBIDDEN,
                "the admin web's sign-in is off: configure [admin.auth] (with [admin] tls_cert \
                 and tls_key), or set [admin] local_admin = true on a loopback listener\n",
            )
                .into_response(),
        }
    }
}

impl<S> FromRequestParts<S> for SignedIn
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Auth>::from_ref(state);
        auth.signed_in(&parts.headers).map_err(|e| match e {
            AuthRejection::SignIn { .. } if parts.method == Method::GET => AuthRejection::SignIn {
                next: Some(
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_else(|| "/".into()),
                ),
            },
            other => other,
        })
    }
}

/// A signed-in admin (403 for anyone else).
#[derive(Debug, Clone)]
pub struct AdminUser(pub SignedIn);

/// A signed-in editor or admin (403 for anyone else).
#[derive(Debug, Clone)]
pub struct EditorUser(pub SignedIn);

macro_rules! role_extractor {
    ($ty:ident, $role:expr) => {
        impl<S> FromRequestParts<S> for $ty
        where
            Arc<Auth>: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = AuthRejection;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let who = SignedIn::from_request_parts(parts, state).await?;
                who.require($role)?;
                Ok($ty(who))
            }
        }
    };
}
role_extractor!(AdminUser, Role::Admin);
role_extractor!(EditorUser, Role::Editor);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_from_claims() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let admins = s(&["SignatureAdmins", "0b1c2d3e-aaaa-bbbb-cccc-000000000001"]);
        let editors = s(&["SignatureEditors"]);
        let cases: &[(&[&str], &[&str], Role)] = &[
            (&[], &[], Role::User),
            (&[], &["SignatureAdmins"], Role::Admin),
            (&["0B1C2D3E-AAAA-BBBB-CCCC-000000000001"], &[], Role::Admin),
            (&[], &["SignatureEditors"], Role::Editor),
            (&[], &["SignatureEditors", "SignatureAdmins"], Role::Admin),
            // App-role names are exact; a group named like a role is not a role.
            (&[], &["signatureadmins"], Role::User),
            (&["unrelated"], &["Other"], Role::User),
        ];
        for (groups, roles, want) in cases {
            assert_eq!(
                Role::from_claims(&s(groups), &s(roles), &admins, &editors),
                *want,
                "{groups:?} {roles:?}"
            );
        }
    }
}
