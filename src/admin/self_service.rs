//! `/self-service`: a signed-in user's own signature, and the attributes
//! `[admin.self_service] attributes` lets them change, kept as local overrides (never sent
//! to the directory) that the next message carries.
//!
//! Whose data it is comes only from the session (the UPN it was signed in with), never from
//! the form: a form naming anything but an allowed attribute is refused as a whole.

use super::auth::{Auth, SignedIn};
use super::edits::{self, attr_text, csrf_field, EditError, Store};
use super::html::escape;
use super::AdminState;
use crate::config::admin_self_service::{Field, SelfService};
use crate::config::{Config, ConfigError};
use crate::directory::User;
use crate::rules::{Audience, MessageKind};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

pub const PATH: &str = "/self-service";

/// The routes, for the admin router (its state gives `Arc<AdminState>` and `Arc<Auth>`).
pub fn routes<S>() -> Router<S>
where
    Arc<AdminState>: axum::extract::FromRef<S>,
    Arc<Auth>: axum::extract::FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(PATH, get(show).post(save))
        .route("/self-service/reset", post(reset))
}

/// The checks of `[admin.self_service]` that need the rest of the config: its attributes
/// are valid override names, and there is an overrides file to keep the values in.
pub fn check_config(cfg: &Config) -> Result<(), ConfigError> {
    let Some(ss) = &cfg.admin.self_service else {
        return Ok(());
    };
    for a in &ss.attributes {
        crate::directory::overrides::check("x@x", a)
            .map_err(|e| ConfigError::invalid("admin.self_service.attributes", e))?;
    }
    if cfg.directory.overrides.is_none() {
        return Err(ConfigError::invalid(
            "admin.self_service",
            "needs [directory] overrides: the file users' values are kept in (e.g. \
             overrides = \"/var/lib/sigstamp/overrides.json\")",
        ));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct Flash {
    saved: Option<String>,
    reset: Option<String>,
}

/// What the form shows: the value typed (after a refused save) and why it was refused.
type Typed = BTreeMap<String, (String, String)>;

async fn show(
    State(state): State<Arc<AdminState>>,
    who: SignedIn,
    Query(flash): Query<Flash>,
) -> Response {
    let mut note = String::new();
    if flash.saved.is_some() {
        note.push_str(
            "<p class=\"ok\" id=\"saved\" role=\"status\">Saved. Your next message carries it.</p>\n",
        );
    }
    if let Some(a) = &flash.reset {
        let _ = writeln!(
            note,
            "<p class=\"ok\" id=\"saved\" role=\"status\">{} is back to the directory's value.</p>",
            escape(a)
        );
    }
    render(&state, &who, StatusCode::OK, &note, &Typed::new())
}

fn render(
    state: &AdminState,
    who: &SignedIn,
    status: StatusCode,
    note: &str,
    typed: &Typed,
) -> Response {
    let Some(user) = state.directory.lookup(&who.upn) else {
        return not_in_directory(who);
    };
    let mut h = String::from(note);
    let address = user.addresses().into_iter().next().unwrap_or_default();
    h.push_str(
        "<section id=\"signature\"><h2>Your signature</h2>\n<p class=\"hint\">As it is stamped \
         on a new message to recipients outside the company.</p>\n",
    );
    match state
        .stamper
        .preview_for(&address, Audience::External, MessageKind::New)
    {
        Some(p) => super::page::signature(&mut h, &p, Audience::External),
        None => h.push_str("<p>No preview.</p>\n"),
    }
    h.push_str("</section>\n");
    match &state.self_service {
        None => h.push_str(
            "<p id=\"not-enabled\">Changing your own details is not enabled here \
             (<code>[admin.self_service]</code>). Ask the signature administrators.</p>\n",
        ),
        Some(ss) => form(&mut h, state, who, &user, ss, typed),
    }
    edits::page(who, status, "My signature", &h)
}

fn form(
    h: &mut String,
    state: &AdminState,
    who: &SignedIn,
    user: &User,
    ss: &SelfService,
    typed: &Typed,
) {
    let base = edits::directory_user(&state.directory, &who.upn);
    let ov = state.directory.overrides();
    let addresses = user.addresses();
    let _ = write!(
        h,
        "<section id=\"details\"><h2>Your details</h2>\n<p class=\"hint\">Changes apply to \
         your signature only; the company directory is not changed.</p>\n\
         <form method=\"post\" action=\"{PATH}\" id=\"details-form\">{}\n<table>\n\
         <thead><tr><th>Detail</th><th>In your signature</th><th>Directory value</th>\
         <th></th></tr></thead>\n<tbody>\n",
        csrf_field(who)
    );
    for f in &ss.fields {
        let a = &f.attribute;
        let current = attr_text(user.get(a));
        let dir_value = attr_text(base.as_deref().and_then(|b| b.get(a)));
        let overridden = edits::override_of(&ov, &addresses, a).is_some();
        let (value, error) = match typed.get(a) {
            Some((v, e)) => (v.as_str(), e.as_str()),
            None => (current.as_str(), ""),
        };
        let hint = f
            .hint
            .as_deref()
            .map(|t| format!("<div class=\"hint\">{}</div>", escape(t)))
            .unwrap_or_default();
        let error = if error.is_empty() {
            String::new()
        } else {
            format!(
                "<div class=\"error\" id=\"error-{a}\" role=\"alert\">{} {}</div>",
                escape(&f.label),
                escape(error)
            )
        };
        let reset = if overridden {
            format!(
                "<button type=\"submit\" formaction=\"/self-service/reset\" name=\"reset\" \
                 value=\"{a}\" id=\"reset-{a}\">Reset to directory value</button>"
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            h,
            "<tr><th scope=\"row\"><label for=\"f-{a}\">{label}</label></th>\
             <td><input type=\"text\" id=\"f-{a}\" name=\"{a}\" value=\"{value}\">{hint}{error}</td>\
             <td class=\"dir\" id=\"dir-{a}\">{dir}</td><td>{reset}</td></tr>",
            label = escape(&f.label),
            value = escape(value),
            dir = if dir_value.is_empty() {
                "<em>none</em>".to_string()
            } else {
                escape(&dir_value)
            },
        );
    }
    h.push_str(
        "</tbody>\n</table>\n<p><button type=\"submit\" id=\"save\">Save</button></p>\n\
         </form>\n</section>\n",
    );
}

fn not_in_directory(who: &SignedIn) -> Response {
    edits::page(
        who,
        StatusCode::NOT_FOUND,
        "My signature",
        &format!(
            "<p id=\"not-found\">Your account {} is not in sigstamp's directory, so no \
             signature is stamped for it and there is nothing to change.</p>",
            escape(&who.upn)
        ),
    )
}

fn refused(who: &SignedIn, status: StatusCode, why: &str) -> Response {
    edits::page(
        who,
        status,
        "My signature",
        &format!(
            "<p class=\"error\" id=\"refused\" role=\"alert\">{}</p>\
             <p><a href=\"{PATH}\">Back</a></p>",
            escape(why)
        ),
    )
}

/// `[admin.self_service]`, or the refusal saying it is off.
fn enabled(state: &AdminState, who: &SignedIn) -> Result<Arc<SelfService>, Box<Response>> {
    state.self_service.clone().ok_or_else(|| {
        Box::new(refused(
            who,
            StatusCode::FORBIDDEN,
            "Changing your own details is not enabled here.",
        ))
    })
}

/// The allowed field of a form key, or the refusal naming it.
fn allowed<'a>(ss: &'a SelfService, who: &SignedIn, key: &str) -> Result<&'a Field, Box<Response>> {
    ss.field(key).ok_or_else(|| {
        Box::new(refused(
            who,
            StatusCode::FORBIDDEN,
            &format!("{key:?} is not one of the details you may change; nothing was saved."),
        ))
    })
}

fn edit_failed(who: &SignedIn, e: EditError) -> Response {
    refused(who, e.status(), &format!("Not saved: {e}"))
}

async fn save(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    who: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let ss = match enabled(&state, &who) {
        Ok(ss) => ss,
        Err(r) => return *r,
    };
    let Some(user) = state.directory.lookup(&who.upn) else {
        return not_in_directory(&who);
    };
    let mut wanted: Vec<(&Field, String)> = Vec::new();
    let mut typed = Typed::new();
    let mut bad = false;
    for (k, v) in form.into_iter().filter(|(k, _)| k != "csrf") {
        let f = match allowed(&ss, &who, &k) {
            Ok(f) => f,
            Err(r) => return *r,
        };
        let error = f.check(&v).err().unwrap_or_default();
        bad |= !error.is_empty();
        typed.insert(k, (v.clone(), error));
        wanted.retain(|(w, _)| w.attribute != f.attribute);
        wanted.push((f, v));
    }
    if bad {
        let note = "<p class=\"error\" id=\"invalid\" role=\"alert\">Nothing was saved: \
                    correct the details marked below.</p>\n";
        return render(&state, &who, StatusCode::UNPROCESSABLE_ENTITY, note, &typed);
    }
    let base = edits::directory_user(&state.directory, &who.upn);
    // Only what changes; a value equal to the directory's drops the override, so later
    // directory changes flow through again.
    let changes: Vec<(String, Option<String>)> = wanted
        .into_iter()
        .filter(|(f, v)| attr_text(user.get(&f.attribute)) != *v)
        .map(|(f, v)| {
            let a = &f.attribute;
            let same_as_directory = base
                .as_deref()
                .is_some_and(|b| b.get(a).is_some() && attr_text(b.get(a)) == v);
            (a.clone(), (!same_as_directory).then_some(v))
        })
        .collect();
    if changes.is_empty() {
        return edits::see_other(&format!("{PATH}?saved=1"));
    }
    let addresses = user.addresses();
    let target = addresses.first().cloned().unwrap_or_default();
    let result = Store::new(&state, &auth.audit)
        .edit(&who, "self_service_set", &target, move |ov| {
            let (mut before, mut after) = (serde_json::Map::new(), serde_json::Map::new());
            for (a, v) in &changes {
                let diff = match v {
                    Some(v) => edits::set_for(ov, &addresses, a, v)?,
                    None => edits::unset_for(ov, &addresses, a)?,
                };
                if let Some((b, n)) = diff {
                    before.extend(b.as_object().cloned().unwrap_or_default());
                    after.extend(n.as_object().cloned().unwrap_or_default());
                }
            }
            Ok((!after.is_empty()).then(|| (before.into(), after.into())))
        })
        .await;
    match result {
        Ok(_) => edits::see_other(&format!("{PATH}?saved=1")),
        Err(e) => edit_failed(&who, e),
    }
}

#[derive(Debug, Deserialize)]
struct ResetForm {
    reset: String,
}

async fn reset(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    who: SignedIn,
    Form(form): Form<ResetForm>,
) -> Response {
    let ss = match enabled(&state, &who) {
        Ok(ss) => ss,
        Err(r) => return *r,
    };
    let attribute = match allowed(&ss, &who, &form.reset) {
        Ok(f) => f.attribute.clone(),
        Err(r) => return *r,
    };
    let Some(user) = state.directory.lookup(&who.upn) else {
        return not_in_directory(&who);
    };
    let addresses = user.addresses();
    let target = addresses.first().cloned().unwrap_or_default();
    let a = attribute.clone();
    let result = Store::new(&state, &auth.audit)
        .edit(&who, "self_service_reset", &target, move |ov| {
            edits::unset_for(ov, &addresses, &a)
        })
        .await;
    match result {
        Ok(_) => edits::see_other(&format!(
            "{PATH}?reset={}",
            super::html::url_encode(&attribute)
        )),
        Err(e) => edit_failed(&who, e),
    }
}
