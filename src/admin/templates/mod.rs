//! The templates editor (editors and admins): `/templates` lists the folder's templates,
//! `/templates/{name}` edits the HTML and text parts with a live preview (the script posts the
//! draft to `/templates/{name}/preview` while the user types), a save puts the draft live for
//! the next message, `/templates/{name}/history` lists the versions with their diffs and
//! restores one in a click. Every save and rollback goes to the audit log with the content
//! before and after. The folder stays the source of truth: see [`store`].

pub mod diff;
mod page;
pub mod store;

pub use store::{Pair, Problem, StoreError, TemplateStore, Version};

use super::auth::{Auth, EditorUser};
use super::page::PageQuery;
use super::AdminState;
use crate::pipeline::{Preview, Stamper};
use crate::rules::MessageKind;
use crate::stamp::Signature;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// Where the editor's script is served (same origin: the CSP allows `script-src 'self'`).
pub const SCRIPT_PATH: &str = "/assets/template-editor.js";
const SCRIPT: &str = include_str!("editor.js");

/// The editor's routes, for a router whose state gives the admin state and the sign-in.
pub fn routes<S>() -> Router<S>
where
    Arc<Auth>: FromRef<S>,
    Arc<AdminState>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/templates", get(list))
        .route("/templates/{name}", get(edit).post(save))
        .route("/templates/{name}/preview", post(preview))
        .route("/templates/{name}/history", get(history))
        .route("/templates/{name}/diff", get(diff))
        .route("/templates/{name}/rollback", post(rollback))
        .route(SCRIPT_PATH, get(script))
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// A store error as a page (or the editor again, for a draft that cannot be saved).
fn failure(e: &StoreError) -> Response {
    let status = match e {
        StoreError::NoTemplate(_) | StoreError::NoVersion(..) => StatusCode::NOT_FOUND,
        StoreError::ReadOnly => StatusCode::CONFLICT,
        StoreError::Conflict { .. } => StatusCode::CONFLICT,
        StoreError::Invalid(_) | StoreError::Unchanged => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "template editor");
    }
    page::message(status, "Templates", &e.to_string())
}

async fn list(State(state): State<Arc<AdminState>>, EditorUser(who): EditorUser) -> Response {
    let store = &state.templates;
    if !store.editable() {
        return failure(&StoreError::ReadOnly);
    }
    let names = match store.names() {
        Ok(n) => n,
        Err(e) => return failure(&e),
    };
    let rows: Vec<(String, Option<Version>)> = names
        .into_iter()
        .map(|n| {
            let last = store.history(&n).ok().and_then(|h| h.last().cloned());
            (n, last)
        })
        .collect();
    page::list(&who, &rows)
}

#[derive(Debug, Default, Deserialize)]
struct EditQuery {
    /// The version a save just put live.
    saved: Option<u32>,
    #[serde(flatten)]
    view: PageQuery,
}

async fn edit(
    State(state): State<Arc<AdminState>>,
    EditorUser(who): EditorUser,
    Path(name): Path<String>,
    Query(q): Query<EditQuery>,
) -> Response {
    let store = state.templates.clone();
    let live = match store.live(&name) {
        Ok(p) => p,
        Err(e) => return failure(&e),
    };
    let flash = q
        .saved
        .map(|n| format!("Saved as version {n}: the relay uses it from the next message."));
    let user = default_user(&state, &who.upn, q.view.q.trim());
    let view = q.view.audience_and_kind();
    let editor = page::Editor {
        who: &who,
        name: &name,
        base: live.fingerprint(),
        draft: &live,
        flash: flash.as_deref(),
        error: None,
        preview: run_preview(store, name.clone(), live.clone(), user.clone(), q.view).await,
        users: some_users(&state),
        user: &user,
        view,
    };
    page::editor(StatusCode::OK, &editor)
}

/// The previewed user: the one asked for, else the signed-in user if the directory has them,
/// else the directory's first user.
fn default_user(state: &AdminState, upn: &str, asked: &str) -> String {
    if !asked.is_empty() {
        return asked.to_string();
    }
    if state.directory.lookup(upn).is_some() {
        return upn.to_string();
    }
    some_users(state).into_iter().next().unwrap_or_default()
}

/// Addresses offered in the preview's user box (the first few of the directory).
fn some_users(state: &AdminState) -> Vec<String> {
    let snap = state.directory.snapshot();
    snap.users()
        .iter()
        .filter_map(|u| u.str("mail").map(str::to_string))
        .take(50)
        .collect()
}

#[derive(Debug, Deserialize)]
struct SaveForm {
    html: String,
    text: String,
    /// The fingerprint of the live pair the draft started from.
    base: String,
    #[serde(flatten)]
    view: PageQuery,
}

async fn save(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    EditorUser(who): EditorUser,
    Path(name): Path<String>,
    Form(f): Form<SaveForm>,
) -> Response {
    let draft = Pair {
        // Browsers send textarea line breaks as CRLF; the folder keeps LF.
        html: f.html.replace("\r\n", "\n"),
        text: f.text.replace("\r\n", "\n"),
    };
    let store = state.templates.clone();
    match store
        .save(&who.upn, &name, draft.clone(), Some(&f.base), None)
        .await
    {
        Ok(saved) => done(&auth, &who.upn, "template_save", &name, &saved).await,
        Err(e @ (StoreError::Invalid(_) | StoreError::Conflict { .. } | StoreError::Unchanged)) => {
            // The editor again, with the draft kept and the reason on top.
            let user = default_user(&state, &who.upn, f.view.q.trim());
            let view = f.view.audience_and_kind();
            // A conflict keeps the old base: saving again is refused until the editor reloads.
            let base = f.base.clone();
            let status = match &e {
                StoreError::Conflict { .. } => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let editor = page::Editor {
                who: &who,
                name: &name,
                base,
                draft: &draft,
                flash: None,
                error: Some(&e.to_string()),
                preview: run_preview(store, name.clone(), draft.clone(), user.clone(), f.view)
                    .await,
                users: some_users(&state),
                user: &user,
                view,
            };
            page::editor(status, &editor)
        }
        Err(e) => failure(&e),
    }
}

/// A save or rollback is live: audited, then back to the editor. A failure to write the audit
/// entry is the request's failure.
async fn done(auth: &Auth, who: &str, action: &str, name: &str, saved: &store::Saved) -> Response {
    if let Err(r) = audit(auth, who, action, name, saved).await {
        return r;
    }
    let to = format!(
        "/templates/{}?saved={}",
        super::html::url_encode(name),
        saved.after.0
    );
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// The audit entry of a save or rollback; a failure to write it is the request's failure.
async fn audit(
    auth: &Auth,
    who: &str,
    action: &str,
    name: &str,
    saved: &store::Saved,
) -> Result<(), Response> {
    let side = |(n, p): &(u32, Pair)| json!({ "version": n, "html": p.html, "text": p.text });
    auth.audit
        .record(who, action, name, side(&saved.before), side(&saved.after))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, template = name, "audit log write failed after a template change");
            page::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Templates",
                &format!(
                    "Version {} of {name} is live, but the audit log could not be written: {e}",
                    saved.after.0
                ),
            )
        })
}

#[derive(Debug, Deserialize)]
struct RollbackForm {
    version: u32,
}

async fn rollback(
    State(state): State<Arc<AdminState>>,
    State(auth): State<Arc<Auth>>,
    EditorUser(who): EditorUser,
    Path(name): Path<String>,
    Form(f): Form<RollbackForm>,
) -> Response {
    let store = state.templates.clone();
    let old = match store.version(&name, f.version) {
        Ok(p) => p,
        Err(e) => return failure(&e),
    };
    match store
        .save(&who.upn, &name, old, None, Some(f.version))
        .await
    {
        Ok(saved) => done(&auth, &who.upn, "template_rollback", &name, &saved).await,
        Err(e) => failure(&e),
    }
}

async fn history(
    State(state): State<Arc<AdminState>>,
    EditorUser(who): EditorUser,
    Path(name): Path<String>,
) -> Response {
    let store = &state.templates;
    let (versions, live) = match (store.history(&name), store.live(&name)) {
        (Ok(h), Ok(l)) => (h, l),
        (Err(e), _) | (_, Err(e)) => return failure(&e),
    };
    // Which version the live pair is (none: edited on disk since, or never saved).
    let live_version = versions
        .iter()
        .rev()
        .find(|v| store.version(&name, v.version).ok().as_ref() == Some(&live))
        .map(|v| v.version);
    page::history(&who, &name, &versions, live_version)
}

#[derive(Debug, Deserialize)]
struct DiffQuery {
    /// The older side (a version number).
    a: u32,
    /// The newer side; none: the live template.
    b: Option<u32>,
}

async fn diff(
    State(state): State<Arc<AdminState>>,
    EditorUser(who): EditorUser,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Response {
    let store = &state.templates;
    let old = store.version(&name, q.a);
    let new = match q.b {
        Some(b) => store.version(&name, b),
        None => store.live(&name),
    };
    match (old, new) {
        (Ok(old), Ok(new)) => page::diff(&who, &name, q.a, q.b, &old, &new),
        (Err(e), _) | (_, Err(e)) => failure(&e),
    }
}

#[derive(Debug, Deserialize)]
struct PreviewRequest {
    html: String,
    text: String,
    #[serde(flatten)]
    view: PageQuery,
}

/// What the editor shows of a draft: its problems, or the signature for the chosen user.
#[derive(Debug, Default, Serialize)]
pub struct PreviewDoc {
    pub problems: Vec<Problem>,
    /// Which template this user and view get, and why (rules).
    pub note: Option<String>,
    /// The HTML signature as a document for the sandboxed frame (images as `data:` URIs).
    pub html: Option<String>,
    pub text: Option<String>,
    pub bottom_html: Option<String>,
    pub bottom_text: Option<String>,
    /// The draft parses but fails for this user (or there is no such user).
    pub error: Option<String>,
}

async fn preview(
    State(state): State<Arc<AdminState>>,
    EditorUser(_who): EditorUser,
    Path(name): Path<String>,
    Json(req): Json<PreviewRequest>,
) -> Response {
    let draft = Pair {
        html: req.html,
        text: req.text,
    };
    let user = req.view.q.trim().to_string();
    let doc = run_preview(state.templates.clone(), name, draft, user, req.view).await;
    ([(header::CACHE_CONTROL, "no-store")], Json(doc)).into_response()
}

/// [`preview_draft`] off the async workers (it loads the folder and its images).
async fn run_preview(
    store: Arc<TemplateStore>,
    name: String,
    draft: Pair,
    user: String,
    view: PageQuery,
) -> PreviewDoc {
    tokio::task::spawn_blocking(move || preview_draft(&store, &name, &draft, &user, &view))
        .await
        .unwrap_or_else(|e| PreviewDoc {
            error: Some(format!("preview failed: {e}")),
            ..PreviewDoc::default()
        })
}

/// The draft as the relay would stamp it for `user` in the view's message: the folder loaded
/// with the draft in place, the running rules choosing the template.
fn preview_draft(
    store: &TemplateStore,
    name: &str,
    draft: &Pair,
    user: &str,
    view: &PageQuery,
) -> PreviewDoc {
    let templates = match store.check(name, draft) {
        Ok(t) => t,
        Err(StoreError::Invalid(problems)) => {
            return PreviewDoc {
                problems,
                ..PreviewDoc::default()
            }
        }
        Err(e) => {
            return PreviewDoc {
                error: Some(e.to_string()),
                ..PreviewDoc::default()
            }
        }
    };
    let running = store.stamper();
    let Some(found) = running.directory.lookup(user) else {
        return PreviewDoc {
            error: Some(format!(
                "no user with the address {user:?} in the directory"
            )),
            ..PreviewDoc::default()
        };
    };
    let (audience, kind) = view.audience_and_kind();
    let draft_stamper = Stamper::new(running.directory.clone(), templates)
        .with_rules((*running.rules()).clone())
        .with_default(running.default_template());
    // A bottom part is previewed with its template.
    let main = name.strip_suffix(".bottom").unwrap_or(name);
    let Some(p) = draft_stamper.preview_for(user, audience, kind) else {
        return PreviewDoc::default();
    };
    let view_text = format!(
        "a {} message to {} recipients",
        kind_text(kind),
        audience.as_str()
    );
    let rule = p.rule.as_deref().map_or(
        "no rule matched, so the default template applies".to_string(),
        |r| format!("rule {r:?} decides"),
    );
    if p.template.as_deref() == Some(main) {
        let mut doc = from_preview(&p);
        doc.note = Some(format!(
            "{} gets template {main:?} in {view_text} ({rule}).",
            p.sender
        ));
        return doc;
    }
    // The rules give this view another template (or none): show the draft anyway, said so.
    let chosen = match &p.template {
        Some(t) => format!("template {t:?}"),
        None => "no signature".into(),
    };
    let templates = draft_stamper.templates.load();
    let rendered = templates
        .render(main, &found)
        .and_then(|sig| Ok((sig, templates.render_bottom(main, &found)?)));
    let alone = match rendered {
        Ok((sig, bottom)) => Preview {
            template: Some(main.into()),
            signature: Some(sig),
            bottom,
            error: None,
            ..p.clone()
        },
        Err(e) => Preview {
            signature: None,
            bottom: None,
            error: Some(e.to_string()),
            ..p.clone()
        },
    };
    let mut doc = from_preview(&alone);
    doc.note = Some(format!(
        "{} gets {chosen} in {view_text} ({rule}); shown below is {main:?} as it would render for them.",
        p.sender
    ));
    doc
}

fn kind_text(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Reply => "reply",
        MessageKind::Forward => "forwarded",
        MessageKind::AutoReply => "automatic reply",
        MessageKind::New => "new",
    }
}

fn from_preview(p: &Preview) -> PreviewDoc {
    let frame = |s: &Signature| super::page::frame_document(&crate::render::preview_html(s));
    PreviewDoc {
        problems: Vec::new(),
        note: None,
        html: p.signature.as_ref().map(frame),
        text: p.signature.as_ref().map(|s| s.text.clone()),
        bottom_html: p.bottom.as_ref().map(frame),
        bottom_text: p.bottom.as_ref().map(|s| s.text.clone()),
        error: p.error.clone(),
    }
}
