//! The status page at `/`: the token state up front (a red banner when expired), the
//! directory, the rules, and a search box that previews any user's signature. Server-rendered
//! HTML with inline CSS only and no script, so it works without any outside network access.

use super::html::{escape, url_encode, when, with_code};
use super::AdminState;
use super::{token_state_str, StatusDoc};
use crate::directory::User;
use crate::notify::aadsts;
use crate::pipeline::Preview;
use crate::rules::{Audience, MessageKind};
use crate::stamp::InlineImage;
use crate::status::TokenState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;
use time::OffsetDateTime;

/// Matches listed when a search is not one exact address.
const MAX_MATCHES: usize = 20;

/// Seconds between reloads of the bare page, so an expiring token shows without a click.
const REFRESH_SECS: u32 = 30;

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// An address (exact preview) or part of a name or address (search).
    #[serde(default)]
    pub(super) q: String,
    /// `internal` or `external` (the default): which recipients the preview is for.
    #[serde(default)]
    audience: String,
    /// `new` (the default) or `reply`: which kind of message the preview is for.
    #[serde(default)]
    message: String,
}

/// What a preview is for: recipients and kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    audience: Audience,
    kind: MessageKind,
}

impl PageQuery {
    /// The preview's recipients and kind of message (the templates editor's too).
    pub(super) fn audience_and_kind(&self) -> (Audience, MessageKind) {
        let v = self.view();
        (v.audience, v.kind)
    }

    fn view(&self) -> View {
        View {
            audience: match self.audience.as_str() {
                "internal" => Audience::Internal,
                _ => Audience::External,
            },
            kind: match self.message.as_str() {
                "reply" => MessageKind::Reply,
                _ => MessageKind::New,
            },
        }
    }
}

/// The kinds of message the preview offers.
const PREVIEW_KINDS: [MessageKind; 2] = [MessageKind::New, MessageKind::Reply];

// The admin pages' strict policy: inline styles, images only as data: URIs.
use super::auth::CSP;

pub async fn index(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<PageQuery>,
    who: Option<axum::Extension<super::SignedIn>>,
) -> Response {
    // Signed in (Entra ID mode): the same navigation as the other admin pages.
    let nav = who.map(|axum::Extension(who)| super::edits::nav(&who));
    let html = render(
        &state,
        query.q.trim(),
        query.view(),
        OffsetDateTime::now_utc(),
        nav.as_deref(),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

fn render(
    state: &AdminState,
    q: &str,
    view: View,
    now: OffsetDateTime,
    nav: Option<&str>,
) -> String {
    let doc = StatusDoc::collect(state);
    let mut h = String::with_capacity(8 * 1024);
    h.push_str(HEAD);
    if q.is_empty() {
        // Not while previewing: a reload would throw away what the admin is looking at.
        let _ = writeln!(
            h,
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"
        );
    }
    h.push_str("</head>\n<body>\n");
    if let Some(nav) = nav {
        h.push_str(
            "<style>nav{display:flex;gap:1rem;align-items:center;margin-bottom:.5rem}\
             nav form{margin:0 0 0 auto}</style>",
        );
        h.push_str(nav);
    }
    h.push_str(
        "<header>\n<h1>sigstamp</h1>\n\
         <p class=\"sub\">Status and signature preview (read-only)</p>\n</header>\n<main>\n",
    );
    banner(&mut h, &doc, now);
    config_banner(&mut h, &doc, now);
    snapshot_alert(&mut h, &doc, now);
    facts(&mut h, &doc, now);
    sent_items(&mut h, &doc);
    rules(&mut h, state);
    search(&mut h, state, q, view);
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

const HEAD: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sigstamp status</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 62rem; padding: 0 1rem; color: #222; line-height: 1.4; }
header h1 { margin: 0; }
header .sub { margin: .2rem 0 1.5rem 0; color: #555; }
h2 { font-size: 1.25rem; margin: 1.75rem 0 .6rem 0; }
code { font-family: ui-monospace, monospace; font-size: .95em; }
.banner { padding: 1rem 1.25rem; border-radius: 6px; margin-bottom: 1.5rem; }
.banner h2 { margin: 0 0 .6rem 0; }
.banner p { margin: .5rem 0 0 0; }
.banner details { margin-top: .5rem; }
.banner summary { cursor: pointer; }
.banner dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.25rem; margin: 0; }
.banner dt { font-weight: 600; }
.banner dd { margin: 0; }
.expired { background: #b00020; color: #fff; }
.expired code { background: rgba(255,255,255,.18); padding: 0 .25em; border-radius: 3px; }
.failing { background: #fff3cd; color: #663c00; border: 1px solid #e0b000; }
.valid { background: #e6f4ea; color: #0d5223; border: 1px solid #8cc79b; }
.unconfigured, .starting { background: #f1f3f4; color: #333; border: 1px solid #ccc; }
p.alert { background: #b00020; color: #fff; padding: .75rem 1.25rem; border-radius: 6px; margin: 0 0 1.5rem 0; }
.ago { color: inherit; opacity: .85; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.5rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35rem .6rem; border-bottom: 1px solid #ddd; }
thead th { background: #f6f8fa; }
tbody th { font-weight: 600; }
.why { color: #555; }
caption { text-align: left; color: #555; padding-bottom: .4rem; }
form { margin: 1rem 0; display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
form label[for=q] { font-weight: 600; }
input[type=search] { flex: 1 1 20rem; padding: .4rem; font-size: 1rem; }
fieldset { border: 1px solid #ccc; border-radius: 6px; padding: .2rem .8rem; display: flex; gap: 1rem; }
legend { font-size: .9rem; color: #555; }
button { padding: .4rem 1rem; font-size: 1rem; }
iframe.preview { border: 1px solid #ccc; border-radius: 6px; margin: .5rem 0 1.5rem 0; background: #fff; width: 100%; height: 12rem; }
pre.text { background: #f6f8fa; padding: 1rem; border-radius: 6px; white-space: pre-wrap; }
.error { color: #b00020; }
</style>
"#;

fn banner(h: &mut String, doc: &StatusDoc, now: OffsetDateTime) {
    let t = &doc.token;
    let state = token_state_str(t.state);
    // Expired needs an admin: announce it; the other states are informational.
    let role = if t.state == TokenState::Expired {
        "alert"
    } else {
        "status"
    };
    let _ = writeln!(
        h,
        "<section id=\"token\" class=\"banner {state}\" data-state=\"{state}\" role=\"{role}\" \
         aria-labelledby=\"token-title\">"
    );
    let since = when(Some(t.since), now);
    let (credential, service) = if doc.ldap {
        ("LDAP directory bind", "LDAP directory server")
    } else {
        ("Microsoft Graph token", "Microsoft Graph")
    };
    match t.state {
        TokenState::Expired => {
            let ex = aadsts::explain(t.error_code.as_deref());
            let _ = write!(
                h,
                "<h2 id=\"token-title\">{credential} expired: {code}</h2>\n<dl>\n\
                 <dt>Code</dt><dd id=\"token-code\"><code>{code}</code></dd>\n\
                 <dt>Since</dt><dd id=\"token-since\">{since}</dd>\n\
                 <dt>Meaning</dt><dd>{meaning}</dd>\n\
                 <dt>What to do</dt><dd id=\"token-action\">{action}</dd>\n</dl>\n\
                 <details id=\"token-details\"><summary>Full error</summary>\
                 <p>{desc}</p></details>\n\
                 <p>Mail is still stamped with the last-known directory values; sigstamp \
                 retries and recovers by itself once this is fixed.</p>\n",
                code = escape(&ex.code),
                meaning = escape(&ex.meaning),
                action = with_code(&ex.action),
                desc = escape(&t.description),
            );
        }
        TokenState::Failing => {
            let _ = write!(
                h,
                "<h2 id=\"token-title\">{service} unreachable (retrying)</h2>\n<dl>\n\
                 <dt>Since</dt><dd id=\"token-since\">{since}</dd>\n\
                 <dt>Details</dt><dd>{}</dd>\n</dl>\n\
                 <p>Mail is still stamped with the last-known directory values.</p>\n",
                escape(&t.description)
            );
        }
        TokenState::Valid => {
            let _ = write!(
                h,
                "<h2 id=\"token-title\">{credential} valid</h2>\n<dl>\n\
                 <dt>Since</dt><dd id=\"token-since\">{since}</dd>\n</dl>\n"
            );
        }
        TokenState::Unconfigured => {
            let _ = write!(
                h,
                "<h2 id=\"token-title\">Microsoft Graph not configured</h2>\n<p>{}</p>\n",
                escape(&t.description)
            );
        }
        TokenState::Starting => {
            let _ = write!(
                h,
                "<h2 id=\"token-title\">Directory source starting</h2>\n<dl>\n\
                 <dt>Since</dt><dd id=\"token-since\">{since}</dd>\n</dl>\n<p>{}</p>\n",
                escape(&t.description)
            );
        }
    }
    h.push_str("</section>\n");
}

/// A refused reload: the running configuration stays, and the admin must see why.
fn config_banner(h: &mut String, doc: &StatusDoc, now: OffsetDateTime) {
    let c = &doc.config;
    match &c.error {
        Some(error) => {
            let _ = write!(
                h,
                "<section id=\"config\" class=\"banner expired\" data-state=\"error\" role=\"alert\" \
                 aria-labelledby=\"config-title\">\n\
                 <h2 id=\"config-title\">Configuration reload refused: the running configuration stays</h2>\n\
                 <dl>\n<dt>Running since</dt><dd id=\"config-loaded\">{loaded}</dd>\n\
                 <dt>Errors</dt><dd id=\"config-error\"><pre>{error}</pre></dd>\n</dl>\n</section>\n",
                loaded = when(Some(c.loaded_at), now),
                error = escape(error),
            );
        }
        None => {
            let _ = writeln!(
                h,
                "<p id=\"config\" data-state=\"ok\">Configuration loaded {}.</p>",
                when(Some(c.loaded_at), now)
            );
        }
    }
}

/// A red line while the snapshot cannot be written: what a restart would start with.
fn snapshot_alert(h: &mut String, doc: &StatusDoc, now: OffsetDateTime) {
    let Some(snap) = &doc.directory.snapshot else {
        return;
    };
    let Some(error) = &snap.error else { return };
    let restart = match snap.written_at {
        None => "a restart now would start with no directory".to_string(),
        Some(t) => format!(
            "a restart now would start with the directory as it was on {}",
            when(Some(t), now)
        ),
    };
    let _ = writeln!(
        h,
        "<p id=\"snapshot-error\" class=\"alert\" role=\"alert\">The directory snapshot \
         <code>{path}</code> cannot be written: {error}. Mail is stamped as usual, but \
         {restart}.</p>",
        path = escape(&snap.path.display().to_string()),
        error = escape(error),
    );
}

fn facts(h: &mut String, doc: &StatusDoc, now: OffsetDateTime) {
    let d = &doc.directory;
    let snapshot = match &d.snapshot {
        None => String::new(),
        Some(s) => format!(
            "<dt>Snapshot</dt><dd id=\"snapshot\"><code>{}</code>, written {}</dd>\n",
            escape(&s.path.display().to_string()),
            when(s.written_at, now)
        ),
    };
    let _ = write!(
        h,
        "<section aria-labelledby=\"directory-title\">\n\
         <h2 id=\"directory-title\">Directory</h2>\n<dl class=\"facts\">\n\
         <dt>Token state</dt><dd id=\"token-state\">{state}</dd>\n\
         <dt>Users</dt><dd id=\"users\">{users}</dd>\n\
         <dt>Source</dt><dd id=\"source\">{source}</dd>\n\
         <dt>Last sync</dt><dd id=\"last-sync\">{last}</dd>\n\
         {snapshot}</dl>\n</section>\n",
        state = token_state_str(doc.token.state),
        users = d.users,
        source = escape(d.source),
        last = when(d.last_sync, now),
    );
}

/// Sent Items update: the counters of `/status`, and the last error.
fn sent_items(h: &mut String, doc: &StatusDoc) {
    let s = &doc.sent_items;
    if !s.enabled {
        h.push_str(
            "<section aria-labelledby=\"sent-items-title\">\n\
             <h2 id=\"sent-items-title\">Sent Items update</h2>\n\
             <p id=\"sent-items-enabled\">Off (<code>[sent_items] enabled = false</code>)</p>\n\
             </section>\n",
        );
        return;
    }
    let _ = write!(
        h,
        "<section aria-labelledby=\"sent-items-title\">\n\
         <h2 id=\"sent-items-title\">Sent Items update</h2>\n<dl class=\"facts\">\n\
         <dt>Pending</dt><dd id=\"sent-items-pending\">{}</dd>\n\
         <dt>Replaced</dt><dd id=\"sent-items-replaced\">{}</dd>\n\
         <dt>Not found</dt><dd id=\"sent-items-not-found\">{}</dd>\n\
         <dt>Failed</dt><dd id=\"sent-items-failed\">{}</dd>\n\
         <dt>Last error</dt><dd id=\"sent-items-last-error\">{}</dd>\n\
         </dl>\n</section>\n",
        s.pending,
        s.replaced,
        s.not_found,
        s.failed,
        s.last_error.as_deref().map_or("none".into(), escape),
    );
}

/// The rules in evaluation order, and what applies when none matches.
fn rules(h: &mut String, state: &AdminState) {
    let set = state.stamper.rules();
    let default = escape(&state.stamper.default_template());
    h.push_str("<section id=\"rules\" aria-labelledby=\"rules-title\">\n<h2 id=\"rules-title\">Rules</h2>\n");
    let internal = set.internal_domains().entries();
    if internal.is_empty() {
        h.push_str("<p id=\"internal-domains\">Internal domains: none configured, so every recipient is external.</p>\n");
    } else {
        let list: Vec<String> = internal
            .iter()
            .map(|d| format!("<code>{}</code>", escape(d)))
            .collect();
        let _ = writeln!(
            h,
            "<p id=\"internal-domains\">Internal domains (and their subdomains): {}.</p>",
            list.join(", ")
        );
    }
    if set.is_empty() {
        let _ = writeln!(
            h,
            "<p id=\"no-rules\">No rules: every message gets the template <code>{default}</code>.</p>\n</section>"
        );
        return;
    }
    h.push_str(
        "<table id=\"rules-table\">\n\
         <caption>Checked in this order; the first rule that matches chooses the signature.</caption>\n\
         <thead><tr><th scope=\"col\">#</th><th scope=\"col\">Rule</th>\
         <th scope=\"col\">When → signature</th></tr></thead>\n<tbody>\n",
    );
    for r in set.rules() {
        let _ = writeln!(
            h,
            "<tr id=\"rule-{n}\"><td>{n}</td><th scope=\"row\">{label}</th><td>{what}</td></tr>",
            n = r.position(),
            label = escape(&r.label()),
            what = escape(&r.describe()),
        );
    }
    let _ = writeln!(
        h,
        "<tr id=\"rule-default\"><td></td><th scope=\"row\">default</th>\
         <td>anything no rule matches → template {default}</td></tr>\n</tbody>\n</table>\n</section>"
    );
}

fn search(h: &mut String, state: &AdminState, q: &str, view: View) {
    let _ = write!(
        h,
        "<section id=\"preview\" aria-labelledby=\"preview-title\">\n\
         <h2 id=\"preview-title\">Signature preview</h2>\n\
         <form method=\"get\" action=\"/\" role=\"search\">\n\
         <label for=\"q\">User</label>\n\
         <input type=\"search\" id=\"q\" name=\"q\" value=\"{}\" \
         placeholder=\"address or part of a name\" autofocus>\n\
         <fieldset>\n<legend>Recipients</legend>\n{}{}</fieldset>\n\
         <fieldset>\n<legend>Message</legend>\n{}{}</fieldset>\n\
         <button type=\"submit\">Preview</button>\n</form>\n",
        escape(q),
        radio(
            "audience",
            Audience::External.as_str(),
            view.audience.as_str()
        ),
        radio(
            "audience",
            Audience::Internal.as_str(),
            view.audience.as_str()
        ),
        radio("message", PREVIEW_KINDS[0].as_str(), view.kind.as_str()),
        radio("message", PREVIEW_KINDS[1].as_str(), view.kind.as_str()),
    );
    if !q.is_empty() {
        results(h, state, q, view);
    }
    h.push_str("</section>\n");
}

fn radio(name: &str, v: &str, chosen: &str) -> String {
    let checked = if v == chosen { " checked" } else { "" };
    format!("<label><input type=\"radio\" name=\"{name}\" value=\"{v}\"{checked}> {v}</label>\n")
}

/// One user previewed, a list of matches, or none.
fn results(h: &mut String, state: &AdminState, q: &str, view: View) {
    let dir = &state.directory;
    if let Some(user) = dir.lookup(q) {
        // The address as searched: rules may match that very alias.
        preview(h, state, &user, q, view);
        return;
    }
    let index = dir.snapshot();
    let matches = matching_users(&index, q, MAX_MATCHES + 1);
    match matches.as_slice() {
        [] => {
            let _ = writeln!(
                h,
                "<p id=\"no-match\">No user matches <strong>{}</strong>.</p>",
                escape(q)
            );
        }
        [one] => {
            let addr = one.addresses().into_iter().next().unwrap_or_default();
            preview(h, state, one, &addr, view);
        }
        many => {
            h.push_str("<ul id=\"matches\">\n");
            for u in many.iter().take(MAX_MATCHES) {
                let addr = u.addresses().into_iter().next().unwrap_or_default();
                let _ = writeln!(
                    h,
                    "<li><a href=\"{}\">{}</a> &lt;{}&gt;</li>",
                    preview_href(&addr, view),
                    escape(u.str("displayName").unwrap_or("")),
                    escape(&addr)
                );
            }
            if many.len() > MAX_MATCHES {
                let _ = writeln!(h, "<li>… more; refine the search</li>");
            }
            h.push_str("</ul>\n");
        }
    }
}

/// Users whose display name, mail or UPN contains `q` (case-insensitive), at most `limit`.
pub(super) fn matching_users<'a>(
    index: &'a crate::directory::Index,
    q: &str,
    limit: usize,
) -> Vec<&'a Arc<User>> {
    let needle = q.to_lowercase();
    index
        .users()
        .iter()
        .filter(|u| {
            ["displayName", "mail", "userPrincipalName"]
                .iter()
                .filter_map(|k| u.str(k))
                .any(|v| v.to_lowercase().contains(&needle))
        })
        .take(limit)
        .collect()
}

fn preview_href(address: &str, view: View) -> String {
    format!(
        "/?q={}&amp;audience={}&amp;message={}",
        url_encode(address),
        view.audience.as_str(),
        view.kind.as_str()
    )
}

/// What `address` gets in `view`'s message: the rule, the template, the signature.
fn preview(h: &mut String, state: &AdminState, user: &User, address: &str, view: View) {
    let name = user.str("displayName").unwrap_or("");
    let audience = view.audience;
    let Some(p) = state.stamper.preview_for(address, audience, view.kind) else {
        // The directory changed between the search and the preview.
        let _ = writeln!(
            h,
            "<p id=\"no-match\">No user has the address <strong>{}</strong>.</p>",
            escape(address)
        );
        return;
    };
    let other = match audience {
        Audience::Internal => Audience::External,
        Audience::External => Audience::Internal,
    };
    let other_kind = match view.kind {
        MessageKind::New => MessageKind::Reply,
        _ => MessageKind::New,
    };
    let _ = write!(
        h,
        "<h3 id=\"preview-user\">{name} &lt;{addr}&gt;</h3>\n\
         <p>Writing a <strong id=\"preview-message\">{kind}</strong> message to \
         <strong id=\"preview-audience\">{aud}</strong> recipients. \
         <a id=\"preview-switch\" href=\"{href}\">Show for {other} recipients</a> · \
         <a id=\"preview-switch-message\" href=\"{kind_href}\">Show for a {other_kind} \
         message</a></p>\n\
         <dl class=\"facts\">\n<dt>Rule</dt><dd id=\"preview-rule\">{rule}</dd>\n\
         <dt>Template</dt><dd id=\"preview-template\">{template}</dd>\n</dl>\n\
         <p class=\"why\">For a message sent now that no subject, body or header exception \
         applies to.</p>\n",
        name = escape(name),
        addr = escape(&p.sender),
        aud = audience.as_str(),
        kind = view.kind.as_str(),
        href = preview_href(
            &p.sender,
            View {
                audience: other,
                ..view
            }
        ),
        other = other.as_str(),
        kind_href = preview_href(
            &p.sender,
            View {
                kind: other_kind,
                ..view
            }
        ),
        other_kind = other_kind.as_str(),
        rule = rule_fact(state, p.rule.as_deref()),
        template = match &p.template {
            Some(t) => format!("<code>{}</code>", escape(t)),
            None => "none: no signature".into(),
        },
    );
    signature(h, &p, audience);
}

/// The rule that chose, with what it matches, as the rules table says it.
fn rule_fact(state: &AdminState, label: Option<&str>) -> String {
    let Some(label) = label else {
        return "none matched: the default applies".into();
    };
    let set = state.stamper.rules();
    match set.rules().iter().find(|r| r.label() == label) {
        Some(r) => format!(
            "{} <span class=\"why\">(#{}: {})</span>",
            escape(label),
            r.position(),
            escape(&r.describe())
        ),
        None => escape(label),
    }
}

/// The signature of a preview, or why there is none.
pub(super) fn signature(h: &mut String, p: &Preview, audience: Audience) {
    match (&p.signature, &p.error) {
        (Some(sig), _) => {
            // The signature is HTML from the templates and the directory: shown in a sandboxed
            // frame so it cannot run script or restyle this page.
            let _ = write!(
                h,
                "<h4>HTML</h4>\n<iframe class=\"preview\" id=\"preview-html\" sandbox \
                 title=\"HTML signature\" srcdoc=\"{}\"></iframe>\n\
                 <h4>Text</h4>\n<pre class=\"text\" id=\"preview-text\">{}</pre>\n",
                escape(&frame_document(&crate::render::preview_html(sig))),
                escape(&sig.text)
            );
            if let Some(b) = &p.bottom {
                let _ = write!(
                    h,
                    "<h4>Bottom part (after the quoted thread)</h4>\n<iframe class=\"preview\" \
                     id=\"preview-bottom-html\" sandbox title=\"HTML bottom part\" \
                     srcdoc=\"{}\"></iframe>\n\
                     <pre class=\"text\" id=\"preview-bottom-text\">{}</pre>\n",
                    escape(&frame_document(&crate::render::preview_html(b))),
                    escape(&b.text)
                );
            }
            let mut images = sig.images.clone();
            for img in p.bottom.iter().flat_map(|b| b.images.iter()) {
                if !images.iter().any(|i| i.cid == img.cid) {
                    images.push(img.clone());
                }
            }
            images_list(h, &images);
        }
        (None, Some(e)) => {
            let _ = writeln!(
                h,
                "<p class=\"error\" id=\"preview-error\">The template failed for this user, so \
                 their mail goes out unchanged: {}</p>",
                escape(e)
            );
        }
        (None, None) => {
            let _ = writeln!(
                h,
                "<p id=\"preview-none\">No signature: mail from this sender to {} recipients \
                 goes out unchanged.</p>",
                audience.as_str()
            );
        }
    }
}

/// The inline parts the stamper adds next to the HTML, by file name.
fn images_list(h: &mut String, images: &[InlineImage]) {
    if images.is_empty() {
        return;
    }
    let list: Vec<String> = images
        .iter()
        .map(|i| {
            format!(
                "<code>{}</code> ({}, {} bytes)",
                escape(&i.filename),
                escape(&i.content_type),
                i.bytes.len()
            )
        })
        .collect();
    let _ = writeln!(
        h,
        "<p id=\"preview-images\">Inline images added to the message: {}.</p>",
        list.join(", ")
    );
}

/// The HTML signature as a document of its own for the preview frame: the fragment as the
/// stamper inserts it, in a plain body like a mail client's.
pub(super) fn frame_document(fragment: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"></head>\n\
         <body style=\"margin:12px;font-family:Arial,Helvetica,sans-serif\">\n{fragment}\n</body></html>\n"
    )
}
