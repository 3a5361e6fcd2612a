//! What the self-service and overrides pages share: attribute edits through the overrides
//! file (locked, saved atomically, audited, applied to the running directory at once), and
//! the frame of their pages.

use super::auth::{Audit, Role, SignedIn};
use super::html::escape;
use super::AdminState;
use crate::directory::overrides::{self, Overrides};
use crate::directory::{AttrValue, Directory, User};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Why an edit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("attribute edits are off: set [directory] overrides (the file they are kept in)")]
    NoFile,
    /// The change itself was refused (a bad address or attribute name).
    #[error("{0}")]
    Refused(String),
    #[error("the overrides file: {0}")]
    Store(String),
    #[error("the audit log cannot be written ({0}); the change was undone")]
    Audit(std::io::Error),
}

impl EditError {
    pub fn status(&self) -> StatusCode {
        match self {
            EditError::NoFile => StatusCode::CONFLICT,
            EditError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EditError::Store(_) | EditError::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What one audited edit changed: `(before, after)` as the audit log shows them.
pub type Diff = (Value, Value);

/// The overrides file of `[directory] overrides`, edited on behalf of a signed-in user.
pub struct Store {
    path: Option<PathBuf>,
    directory: Arc<Directory>,
    audit: Audit,
}

impl Store {
    pub fn new(state: &AdminState, audit: &Audit) -> Store {
        Store {
            path: state.overrides_file.clone(),
            directory: state.directory.clone(),
            audit: audit.clone(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    /// The overrides in force (as the directory applies them).
    pub fn current(&self) -> Arc<Overrides> {
        self.directory.overrides()
    }

    /// Apply `change` to the file under its edit lock (so `sigstamp attributes` and other
    /// requests are not lost), save it, write the audit entry, and apply the result to the
    /// running directory: the next message carries it. `change` returns what the audit log
    /// records, or `None` when nothing changed (nothing is written then). If the audit entry
    /// cannot be written, the file is put back: no change goes unaudited.
    pub async fn edit<F>(
        &self,
        who: &SignedIn,
        action: &str,
        target: &str,
        change: F,
    ) -> Result<Option<Diff>, EditError>
    where
        F: FnOnce(&mut Overrides) -> Result<Option<Diff>, String> + Send + 'static,
    {
        let path = self.path.clone().ok_or(EditError::NoFile)?;
        let store = |e: overrides::OverridesError| EditError::Store(e.to_string());
        let p = path.clone();
        let (lock, old, new, diff) = blocking(move || {
            let lock = overrides::lock_for_edit(&p).map_err(store)?;
            let old = overrides::load(&p).map_err(store)?;
            let mut new = old.clone();
            let diff = change(&mut new).map_err(EditError::Refused)?;
            if diff.is_some() && new != old {
                overrides::save(&p, &new).map_err(store)?;
            }
            Ok((lock, old, new, diff))
        })
        .await?;
        let Some((before, after)) = diff.filter(|_| new != old) else {
            return Ok(None);
        };
        if let Err(e) = self
            .audit
            .record(&who.upn, action, target, before.clone(), after.clone())
            .await
        {
            tracing::error!(error = %e, action, target, "audit log write failed: edit undone");
            let p = path.clone();
            blocking(move || overrides::save(&p, &old).map_err(store)).await?;
            return Err(EditError::Audit(e));
        }
        // At once, not when the file watcher next looks (it then finds nothing new).
        let dir = self.directory.clone();
        blocking(move || {
            dir.set_overrides(new);
            Ok(())
        })
        .await?;
        drop(lock);
        Ok(Some((before, after)))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EditError> + Send + 'static,
) -> Result<T, EditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EditError::Store(e.to_string()))?
}

/// The override of `attribute` in force for a user found under `addresses` (the first
/// address that has one wins, as [`Overrides::apply`] does), with that address.
pub fn override_of<'a>(
    ov: &'a Overrides,
    addresses: &[String],
    attribute: &str,
) -> Option<(&'a str, &'a Value)> {
    addresses.iter().find_map(|a| {
        let (k, attrs) = ov.by_address.get_key_value(a)?;
        attrs.get(attribute).map(|v| (k.as_str(), v))
    })
}

/// Set `attribute` to `value` for the user under `addresses` (under the first, which
/// wins), dropping the override under its other addresses so the new value is the one in
/// force. Returns the audit diff, or `None` if the value in force is already `value`.
pub fn set_for(
    ov: &mut Overrides,
    addresses: &[String],
    attribute: &str,
    value: &str,
) -> Result<Option<Diff>, String> {
    let before = override_of(ov, addresses, attribute).map(|(_, v)| v.clone());
    for a in addresses.iter().skip(1) {
        ov.unset(a, attribute)?;
    }
    let first = addresses.first().ok_or("the user has no address")?;
    ov.set(first, attribute, value)?;
    let after = override_of(ov, addresses, attribute).map(|(_, v)| v.clone());
    Ok((before != after).then(|| {
        (
            serde_json::json!({ attribute: before }),
            serde_json::json!({ attribute: after }),
        )
    }))
}

/// Remove every override of `attribute` for the user under `addresses`: the directory's
/// value applies again. `None` if there was none.
pub fn unset_for(
    ov: &mut Overrides,
    addresses: &[String],
    attribute: &str,
) -> Result<Option<Diff>, String> {
    let before = override_of(ov, addresses, attribute).map(|(_, v)| v.clone());
    for a in addresses {
        ov.unset(a, attribute)?;
    }
    Ok(before.map(|b| {
        (
            serde_json::json!({ attribute: b }),
            serde_json::json!({ attribute: null }),
        )
    }))
}

/// The user as the directory source gave it (without overrides), by any of its addresses.
pub fn directory_user(dir: &Directory, address: &str) -> Option<Arc<User>> {
    let address = crate::directory::normalize_address(address);
    dir.base_users()
        .iter()
        .find(|u| u.addresses().iter().any(|a| *a == address))
        .cloned()
}

/// An attribute's value as one line of text: strings as they are, a list of strings joined
/// with ", ", anything else as JSON.
pub fn attr_text(v: Option<&AttrValue>) -> String {
    match v {
        None => String::new(),
        Some(v) if v.is_null() => String::new(),
        Some(v) => match (v.as_str(), v.as_array()) {
            (Some(s), _) => s.to_string(),
            (_, Some(items)) if items.iter().all(|i| i.as_str().is_some()) => items
                .iter()
                .filter_map(AttrValue::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            _ => v.to_json().to_string(),
        },
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(who: &SignedIn) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&who.csrf)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:62rem;\
padding:0 1rem;color:#222;line-height:1.4}nav{display:flex;gap:1rem;align-items:center;\
flex-wrap:wrap;border-bottom:1px solid #ddd;padding-bottom:.6rem;margin-bottom:1rem}\
nav form{margin:0 0 0 auto}nav .who{color:#555}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;vertical-align:top;padding:.35rem .6rem;border-bottom:1px solid #ddd}\
thead th{background:#f6f8fa}input[type=text],input[type=search]{padding:.35rem;\
font-size:1rem;width:100%;box-sizing:border-box}textarea{width:100%;font-family:ui-monospace,\
monospace}button{padding:.35rem .9rem;font-size:.95rem}.hint{color:#555;font-size:.9rem}\
.dir{color:#555;font-size:.9rem}.error{color:#b00020}p.error,p.ok{padding:.6rem 1rem;\
border-radius:6px}p.error{background:#fde7ea}p.ok{background:#e6f4ea;color:#0d5223}\
iframe.preview{border:1px solid #ccc;border-radius:6px;background:#fff;width:100%;\
height:9rem}pre.text{background:#f6f8fa;padding:1rem;border-radius:6px;white-space:pre-wrap}\
form.inline{display:inline;margin:0}code{font-family:ui-monospace,monospace}";

/// The admin web's navigation bar for `who`: the pages their role allows, who they are, and
/// sign-out. Every signed-in page uses it, so a page never hides another from its user.
pub fn nav(who: &SignedIn) -> String {
    let mut links = String::from("<a href=\"/self-service\">My signature</a>");
    if who.role >= Role::Editor {
        links.push_str(
            "<a href=\"/templates\">Templates</a><a href=\"/overrides\">Attribute overrides</a>\
             <a href=\"/\">Status</a>",
        );
    }
    if who.role >= Role::Admin {
        links.push_str("<a href=\"/audit\">Audit log</a>");
    }
    format!(
        "<nav>{links}<span class=\"who\" id=\"who\">{upn} ({role})</span>\
         <form method=\"post\" action=\"/auth/logout\">{csrf}\
         <button type=\"submit\">Sign out</button></form></nav>",
        upn = escape(&who.upn),
        role = who.role.as_str(),
        csrf = csrf_field(who),
    )
}

/// A page of the admin web for `who`: the navigation their role allows, then `body`.
pub fn page(who: &SignedIn, status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · sigstamp</title><style>{STYLE}</style></head>\n<body>\n\
         {nav}\n<main>\n<h1>{t}</h1>\n{body}</main>\n</body></html>\n",
        t = escape(title),
        nav = nav(who),
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

/// After a change: back to the page (`303 See Other`, so a reload does not post again).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addrs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_and_unset_act_on_every_address_of_the_user() {
        let user = addrs(&["ada@example.com", "a.l@example.com"]);
        let mut ov = Overrides::default();
        ov.set("a.l@example.com", "pronouns", "she/her").unwrap();
        ov.set("bob@example.com", "pronouns", "he/him").unwrap();
        let (before, after) = set_for(&mut ov, &user, "pronouns", "they/them")
            .unwrap()
            .unwrap();
        assert_eq!(before, json!({"pronouns": "she/her"}));
        assert_eq!(after, json!({"pronouns": "they/them"}));
        // The alias's override is gone, so the new one is the one in force.
        assert_eq!(
            override_of(&ov, &user, "pronouns"),
            Some(("ada@example.com", &json!("they/them")))
        );
        assert!(!ov.by_address.contains_key("a.l@example.com"));
        // The same value again changes nothing.
        assert_eq!(
            set_for(&mut ov, &user, "pronouns", "they/them").unwrap(),
            None
        );
        let (before, after) = unset_for(&mut ov, &user, "pronouns").unwrap().unwrap();
        assert_eq!(before, json!({"pronouns": "they/them"}));
        assert_eq!(after, json!({"pronouns": null}));
        assert_eq!(unset_for(&mut ov, &user, "pronouns").unwrap(), None);
        // Another user's override is untouched.
        assert_eq!(
            ov.by_address["bob@example.com"]["pronouns"],
            json!("he/him")
        );
    }
}
