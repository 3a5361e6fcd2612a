//! `/overrides`: editors and admins search a user, set or remove any attribute override,
//! and export or import every override as the CSV `sigstamp attributes list|import` use.
//! Plain users get 403.

use super::auth::{Auth, EditorUser, SignedIn};
use super::edits::{self, attr_text, csrf_field, Store};
use super::html::{escape, url_encode};
use super::AdminState;
use crate::config::admin_self_service::{check_value, MAX_VALUE_CHARS};
use crate::directory::overrides::{self, Overrides};
use crate::directory::User;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// Users listed for a search; overrides listed on the overview.
const MAX_MATCHES: usize = 50;
const MAX_LISTED: usize = 500;

pub fn routes<S>() -> Router<S>
where
    Arc<AdminState>: axum::extract::FromRef<S>,
    Arc<Auth>: axum::extract::FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/overrides", get(overview))
        .route("/overrides/user", get(user_page))
        .route("/overrides/set", post(set))
        .route("/overrides/unset", post(unset))
        .route("/overrides/export.csv", get(export))
        .route("/overrides/import", post(import))
}

#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    imported: Option<String>,
}

fn off_note(store: &Store) -> &'static str {
    if store.enabled() {
        ""
    } else {
        "<p class=\"error\" id=\"no-file\">Editing is off: set <code>[directory] overrides</code> \
         (the file overrides are kept in).</p>\n"
    }
}

async fn overview(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    EditorUser(who): EditorUser,
    Query(q): Query<SearchQuery>,
) -> Response {
    let store = Store::new(&state, &auth.audit);
    let mut h = String::from(off_note(&store));
    if let Some(n) = &q.imported {
        let _ = writeln!(
            h,
            "<p class=\"ok\" id=\"imported\" role=\"status\">Imported: {}.</p>",
            escape(n)
        );
    }
    let query = q.q.trim();
    let _ = writeln!(
        h,
        "<form method=\"get\" action=\"/overrides\" role=\"search\">\
         <label for=\"q\">User</label> <input type=\"search\" id=\"q\" name=\"q\" value=\"{}\" \
         placeholder=\"address or part of a name\"> <button type=\"submit\">Search</button></form>",
        escape(query)
    );
    if !query.is_empty() {
        matches(&mut h, &state, query);
    }
    listing(&mut h, &store.current());
    let _ = write!(
        h,
        "<section id=\"csv\"><h2>CSV</h2>\n<p><a href=\"/overrides/export.csv\" id=\"export\">\
         Export every override</a> (<code>address,attribute,value</code>, as \
         <code>sigstamp attributes list</code> prints).</p>\n\
         <form method=\"post\" action=\"/overrides/import\" id=\"import-form\">{}\
         <label for=\"csv-text\">Import (as <code>sigstamp attributes import</code>: a blank \
         value removes the override; all rows or none)</label>\n\
         <textarea id=\"csv-text\" name=\"csv\" rows=\"8\" \
         placeholder=\"address,attribute,value\"></textarea>\n\
         <p><button type=\"submit\">Import</button></p></form>\n</section>\n",
        csrf_field(&who)
    );
    edits::page(&who, StatusCode::OK, "Attribute overrides", &h)
}

/// Users whose name or address contains `q`, linked to their page.
fn matches(h: &mut String, state: &AdminState, q: &str) {
    let index = state.directory.snapshot();
    let found = super::page::matching_users(&index, q, MAX_MATCHES + 1);
    if found.is_empty() {
        let _ = writeln!(
            h,
            "<p id=\"no-match\">No user matches <strong>{}</strong>.</p>",
            escape(q)
        );
        return;
    }
    h.push_str("<ul id=\"matches\">\n");
    for u in found.iter().take(MAX_MATCHES) {
        let addr = u.addresses().into_iter().next().unwrap_or_default();
        let _ = writeln!(
            h,
            "<li><a href=\"{}\">{}</a> &lt;{}&gt;</li>",
            user_href(&addr),
            escape(u.str("displayName").unwrap_or("")),
            escape(&addr)
        );
    }
    if found.len() > MAX_MATCHES {
        h.push_str("<li>… more; refine the search</li>\n");
    }
    h.push_str("</ul>\n");
}

fn user_href(address: &str) -> String {
    format!("/overrides/user?address={}", url_encode(address))
}

/// Every override in force, by address.
fn listing(h: &mut String, ov: &Overrides) {
    let entries = ov.entries();
    let _ = writeln!(
        h,
        "<section id=\"all\"><h2>Overrides in force ({})</h2>",
        entries.len()
    );
    if entries.is_empty() {
        h.push_str("<p>None: every attribute is the directory's.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<table id=\"overrides\"><thead><tr><th>Address</th><th>Attribute</th><th>Value</th>\
         </tr></thead><tbody>\n",
    );
    for (a, k, v) in entries.iter().take(MAX_LISTED) {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            user_href(a),
            escape(a),
            escape(k),
            shown(v)
        );
    }
    h.push_str("</tbody></table>\n");
    if entries.len() > MAX_LISTED {
        let _ = writeln!(
            h,
            "<p>The first {MAX_LISTED} are shown; export the CSV for all.</p>"
        );
    }
    h.push_str("</section>\n");
}

/// An override's value for the page (`null` hides the directory's value).
fn shown(v: &Value) -> String {
    if v.is_null() {
        "<em>hidden (null)</em>".into()
    } else {
        escape(&overrides::value_text(v))
    }
}

#[derive(Debug, Default, Deserialize)]
struct UserQuery {
    #[serde(default)]
    address: String,
    saved: Option<String>,
}

/// The user found by `address` and the addresses its overrides live under; an address no
/// user has stands for itself (overrides may name any address).
fn resolve(state: &AdminState, address: &str) -> Result<(Option<Arc<User>>, Vec<String>), String> {
    let addr = overrides::check(address, "x")?;
    Ok(match state.directory.lookup(&addr) {
        Some(u) => {
            let a = u.addresses();
            (Some(u), a)
        }
        None => (None, vec![addr]),
    })
}

async fn user_page(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    EditorUser(who): EditorUser,
    Query(q): Query<UserQuery>,
) -> Response {
    let note = if q.saved.is_some() {
        "<p class=\"ok\" id=\"saved\" role=\"status\">Saved; the next message carries it.</p>\n"
    } else {
        ""
    };
    user_view(&state, &auth, &who, &q.address, StatusCode::OK, note, None)
}

/// A user's attributes and overrides, with the forms to change them; `typed` refills the set
/// form after a refusal.
fn user_view(
    state: &AdminState,
    auth: &Auth,
    who: &SignedIn,
    address: &str,
    status: StatusCode,
    note: &str,
    typed: Option<(&str, &str)>,
) -> Response {
    let (user, addresses) = match resolve(state, address) {
        Ok(r) => r,
        Err(e) => {
            return edits::page(
                who,
                StatusCode::BAD_REQUEST,
                "Attribute overrides",
                &format!("<p class=\"error\">{}</p>", escape(&e)),
            )
        }
    };
    let store = Store::new(state, &auth.audit);
    let ov = store.current();
    let primary = &addresses[0];
    let mut h = format!("{}{note}", off_note(&store));
    let base = edits::directory_user(&state.directory, primary);
    match &user {
        Some(u) => {
            let _ = writeln!(
                h,
                "<h2 id=\"user\">{} &lt;{}&gt;</h2>",
                escape(u.str("displayName").unwrap_or("")),
                escape(primary)
            );
        }
        None => {
            let _ = writeln!(
                h,
                "<h2 id=\"user\">{}</h2><p>No directory user has this address; its overrides \
                 apply if one appears.</p>",
                escape(primary)
            );
        }
    }
    // Every attribute the user has, and every one an override names.
    let mut names: BTreeSet<String> = user
        .iter()
        .flat_map(|u| u.attributes().map(|(k, _)| k.to_string()))
        .collect();
    for a in &addresses {
        names.extend(
            ov.by_address
                .get(a)
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
    }
    h.push_str(
        "<table id=\"attributes\"><thead><tr><th>Attribute</th><th>In force</th>\
         <th>Directory value</th><th>Override</th></tr></thead><tbody>\n",
    );
    for k in &names {
        let now = user
            .as_deref()
            .map(|u| attr_text(u.get(k)))
            .unwrap_or_default();
        let dir = base
            .as_deref()
            .map(|b| attr_text(b.get(k)))
            .unwrap_or_default();
        let over = match edits::override_of(&ov, &addresses, k) {
            None => String::new(),
            Some((_, v)) => format!(
                "{} <form class=\"inline\" method=\"post\" action=\"/overrides/unset\">{}\
                 <input type=\"hidden\" name=\"address\" value=\"{}\">\
                 <input type=\"hidden\" name=\"attribute\" value=\"{}\">\
                 <button type=\"submit\" id=\"unset-{}\">Remove</button></form>",
                shown(v),
                csrf_field(who),
                escape(primary),
                escape(k),
                escape(k)
            ),
        };
        let _ = writeln!(
            h,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"dir\">{}</td><td>{over}</td></tr>",
            escape(k),
            escape(&now),
            escape(&dir)
        );
    }
    h.push_str("</tbody></table>\n");
    let (ta, tv) = typed.unwrap_or_default();
    let options: String = names
        .iter()
        .map(|k| format!("<option value=\"{}\">", escape(k)))
        .collect();
    let _ = write!(
        h,
        "<h2>Set an attribute</h2>\n<form method=\"post\" action=\"/overrides/set\" id=\"set-form\">{}\
         <input type=\"hidden\" name=\"address\" value=\"{}\">\
         <label>Attribute <input type=\"text\" name=\"attribute\" id=\"set-attribute\" \
         list=\"names\" value=\"{}\"></label><datalist id=\"names\">{options}</datalist>\
         <label>Value <input type=\"text\" name=\"value\" id=\"set-value\" value=\"{}\"></label>\
         <p><button type=\"submit\">Set</button></p></form>\n\
         <p><a href=\"/overrides\">All overrides</a></p>\n",
        csrf_field(who),
        escape(primary),
        escape(ta),
        escape(tv)
    );
    edits::page(who, status, "Attribute overrides", &h)
}

#[derive(Debug, Deserialize)]
struct SetForm {
    address: String,
    attribute: String,
    #[serde(default)]
    value: String,
}

async fn set(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    EditorUser(who): EditorUser,
    Form(f): Form<SetForm>,
) -> Response {
    let refuse = |why: String| {
        let note = format!(
            "<p class=\"error\" id=\"invalid\" role=\"alert\">Not saved: {}</p>\n",
            escape(&why)
        );
        user_view(
            &state,
            &auth,
            &who,
            &f.address,
            StatusCode::UNPROCESSABLE_ENTITY,
            &note,
            Some((&f.attribute, &f.value)),
        )
    };
    let checked = check_value(&f.value, MAX_VALUE_CHARS)
        .map_err(|e| format!("the value {e}"))
        .and_then(|()| overrides::check(&f.address, &f.attribute))
        .and_then(|_| resolve(&state, &f.address));
    let addresses = match checked {
        Ok((_, a)) => a,
        Err(e) => return refuse(e),
    };
    let (attribute, value) = (f.attribute.clone(), f.value.clone());
    let target = addresses[0].clone();
    let result = Store::new(&state, &auth.audit)
        .edit(&who, "override_set", &target, move |ov| {
            edits::set_for(ov, &addresses, &attribute, &value)
        })
        .await;
    match result {
        Ok(_) => edits::see_other(&format!("{}&saved=1", user_href(&target))),
        Err(e) => refuse(e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct UnsetForm {
    address: String,
    attribute: String,
}

async fn unset(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    EditorUser(who): EditorUser,
    Form(f): Form<UnsetForm>,
) -> Response {
    let addresses = match overrides::check(&f.address, &f.attribute)
        .and_then(|_| resolve(&state, &f.address))
    {
        Ok((_, a)) => a,
        Err(e) => {
            return edits::page(
                &who,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Attribute overrides",
                &format!("<p class=\"error\">{}</p>", escape(&e)),
            )
        }
    };
    let target = addresses[0].clone();
    let attribute = f.attribute.clone();
    let result = Store::new(&state, &auth.audit)
        .edit(&who, "override_unset", &target, move |ov| {
            edits::unset_for(ov, &addresses, &attribute)
        })
        .await;
    match result {
        Ok(_) => edits::see_other(&format!("{}&saved=1", user_href(&target))),
        Err(e) => edits::page(
            &who,
            e.status(),
            "Attribute overrides",
            &format!("<p class=\"error\">{}</p>", escape(&e.to_string())),
        ),
    }
}

async fn export(State(state): State<Arc<AdminState>>, EditorUser(_who): EditorUser) -> Response {
    let csv = overrides::write_csv(&state.directory.overrides(), None);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"overrides.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        csv,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ImportForm {
    csv: String,
}

async fn import(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    EditorUser(who): EditorUser,
    Form(f): Form<ImportForm>,
) -> Response {
    let refuse = |status: StatusCode, why: String| {
        edits::page(
            &who,
            status,
            "Attribute overrides",
            &format!(
                "<p class=\"error\" id=\"invalid\" role=\"alert\">Nothing was imported: {}</p>\
                 <p><a href=\"/overrides\">Back</a></p>",
                escape(&why)
            ),
        )
    };
    let rows = match overrides::parse_csv(&f.csv) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    // The web's own bounds on top of the CLI format: one line, bounded length.
    for r in &rows {
        if let Some(v) = &r.value {
            if let Err(e) = check_value(v, MAX_VALUE_CHARS) {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("line {}: the value {e}", r.line),
                );
            }
        }
    }
    let n = rows.len();
    let result = Store::new(&state, &auth.audit)
        .edit(&who, "overrides_import", &format!("{n} rows"), move |ov| {
            let old = ov.clone();
            ov.import(&rows).map_err(|e| e.to_string())?;
            Ok(import_diff(&old, ov))
        })
        .await;
    match result {
        Ok(diff) => {
            let changed = diff
                .as_ref()
                .and_then(|(_, a)| a.as_object().map(Map::len))
                .unwrap_or(0);
            edits::see_other(&format!(
                "/overrides?imported={}",
                url_encode(&format!("{n} rows, {changed} values changed"))
            ))
        }
        Err(e) => refuse(e.status(), e.to_string()),
    }
}

/// `{"address attribute": value}` of what an import changed, before and after (`null`:
/// no override).
fn import_diff(old: &Overrides, new: &Overrides) -> Option<(Value, Value)> {
    let cells = |ov: &Overrides| -> Map<String, Value> {
        ov.entries()
            .into_iter()
            .map(|(a, k, v)| (format!("{a} {k}"), v.clone()))
            .collect()
    };
    let (o, n) = (cells(old), cells(new));
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let (mut before, mut after) = (Map::new(), Map::new());
    for k in keys {
        let (b, a) = (o.get(k), n.get(k));
        if b != a {
            before.insert(k.clone(), b.cloned().unwrap_or(Value::Null));
            after.insert(k.clone(), a.cloned().unwrap_or(Value::Null));
        }
    }
    (!after.is_empty()).then(|| (before.into(), after.into()))
}
