//! The status page at `/`: the token state up front (a red banner when expired), the
//! directory, and a search box that previews any user's signature. Server-rendered HTML with
//! inline CSS only, so it works without any outside network access.

use super::{token_state_str, StatusDoc};
use crate::app::App;
use crate::directory::User;
use crate::notify::aadsts;
use crate::status::TokenState;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Matches listed when a search is not one exact address.
const MAX_MATCHES: usize = 20;

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// An address (exact preview) or part of a name or address (search).
    #[serde(default)]
    q: String,
}

// Inline styles only; images in previewed signatures may be data: URIs or https links.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; \
                   form-action 'self'; base-uri 'none'";

pub async fn index(State(app): State<Arc<App>>, Query(query): Query<PageQuery>) -> Response {
    let html = render(&app, query.q.trim());
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

/// Minimal HTML escaping for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a query value.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn time_str(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "never".into())
}

fn render(app: &App, q: &str) -> String {
    let doc = StatusDoc::collect(app);
    let mut h = String::with_capacity(8 * 1024);
    h.push_str(HEAD);
    if q.is_empty() {
        // Keeps an open page current, so an expiring token shows without a manual reload.
        h.push_str("<meta http-equiv=\"refresh\" content=\"30\">\n");
    }
    h.push_str("</head>\n<body>\n<h1>sigstamp</h1>\n");
    banner(&mut h, &doc);
    facts(&mut h, &doc);
    search(&mut h, app, q);
    h.push_str("</body>\n</html>\n");
    h
}

const HEAD: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sigstamp status</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
.banner { padding: 1rem 1.25rem; border-radius: 6px; margin-bottom: 1.5rem; }
.banner h2 { margin: 0 0 .5rem 0; font-size: 1.25rem; }
.banner p { margin: .3rem 0; }
.expired { background: #b00020; color: #fff; }
.failing { background: #fff3cd; color: #663c00; border: 1px solid #e0b000; }
.valid { background: #e6f4ea; color: #0d5223; border: 1px solid #8cc79b; }
.unconfigured { background: #f1f3f4; color: #333; border: 1px solid #ccc; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.5rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
form { margin: 1.5rem 0; display: flex; gap: .5rem; }
input[type=search] { flex: 1; padding: .4rem; font-size: 1rem; }
button { padding: .4rem 1rem; font-size: 1rem; }
.preview { border: 1px solid #ccc; border-radius: 6px; padding: 1rem; margin: .5rem 0 1.5rem 0; background: #fff; }
pre.text { background: #f6f8fa; padding: 1rem; border-radius: 6px; white-space: pre-wrap; }
.error { color: #b00020; }
</style>
"#;

fn banner(h: &mut String, doc: &StatusDoc) {
    let t = &doc.token;
    let state = token_state_str(t.state);
    let since = time_str(Some(t.since));
    let _ = writeln!(
        h,
        "<section id=\"token\" class=\"banner {state}\" data-state=\"{state}\">"
    );
    match t.state {
        TokenState::Expired => {
            let ex = aadsts::explain(t.error_code.as_deref());
            let _ = write!(
                h,
                "<h2>Microsoft Graph token expired: {code}</h2>\n\
                 <p><strong>Since:</strong> {since}</p>\n\
                 <p><strong>Meaning:</strong> {meaning}</p>\n\
                 <p><strong>Details:</strong> {desc}</p>\n\
                 <p><strong>What to do:</strong> {action}</p>\n\
                 <p>Mail is still stamped with the last-known directory values.</p>\n",
                code = escape(&ex.code),
                meaning = escape(&ex.meaning),
                desc = escape(&t.description),
                action = escape(&ex.action),
            );
        }
        TokenState::Failing => {
            let _ = write!(
                h,
                "<h2>Microsoft Graph unreachable (retrying)</h2>\n\
                 <p><strong>Since:</strong> {since}</p>\n<p>{}</p>\n\
                 <p>Mail is still stamped with the last-known directory values.</p>\n",
                escape(&t.description)
            );
        }
        TokenState::Valid => {
            let _ = write!(
                h,
                "<h2>Microsoft Graph token valid</h2>\n<p><strong>Since:</strong> {since}</p>\n"
            );
        }
        TokenState::Unconfigured => {
            let _ = write!(
                h,
                "<h2>Microsoft Graph not configured</h2>\n<p>{}</p>\n",
                escape(&t.description)
            );
        }
    }
    h.push_str("</section>\n");
}

fn facts(h: &mut String, doc: &StatusDoc) {
    let d = &doc.directory;
    let _ = write!(
        h,
        "<dl class=\"facts\">\n\
         <dt>Token state</dt><dd id=\"token-state\">{state}</dd>\n\
         <dt>Users</dt><dd id=\"users\">{users}</dd>\n\
         <dt>Source</dt><dd id=\"source\">{source}</dd>\n\
         <dt>Last sync</dt><dd id=\"last-sync\">{last}</dd>\n\
         </dl>\n",
        state = token_state_str(doc.token.state),
        users = d.users,
        source = escape(d.source),
        last = escape(&time_str(d.last_sync)),
    );
}

fn search(h: &mut String, app: &App, q: &str) {
    let _ = write!(
        h,
        "<h2>Signature preview</h2>\n\
         <form method=\"get\" action=\"/\">\n\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"address or part of a name\" \
         aria-label=\"user\" autofocus>\n\
         <button type=\"submit\">Preview</button>\n</form>\n",
        escape(q)
    );
    if q.is_empty() {
        return;
    }
    let dir = &app.stamper.directory;
    if let Some(user) = dir.lookup(q) {
        preview(h, app, &user);
        return;
    }
    let needle = q.to_lowercase();
    let index = dir.snapshot();
    let matches: Vec<&Arc<User>> = index
        .users()
        .iter()
        .filter(|u| {
            ["displayName", "mail", "userPrincipalName"]
                .iter()
                .filter_map(|k| u.str(k))
                .any(|v| v.to_lowercase().contains(&needle))
        })
        .take(MAX_MATCHES + 1)
        .collect();
    match matches.as_slice() {
        [] => {
            let _ = writeln!(
                h,
                "<p id=\"no-match\">No user matches <strong>{}</strong>.</p>",
                escape(q)
            );
        }
        [one] => preview(h, app, one),
        many => {
            h.push_str("<ul id=\"matches\">\n");
            for u in many.iter().take(MAX_MATCHES) {
                let addr = u.addresses().into_iter().next().unwrap_or_default();
                let _ = writeln!(
                    h,
                    "<li><a href=\"/?q={}\">{}</a> &lt;{}&gt;</li>",
                    url_encode(&addr),
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

fn preview(h: &mut String, app: &App, user: &User) {
    let name = user.str("displayName").unwrap_or("");
    let addr = user.addresses().into_iter().next().unwrap_or_default();
    let template = &app.stamper.template;
    let _ = writeln!(
        h,
        "<h3 id=\"preview-user\">{} &lt;{}&gt;</h3>\n<p>Template: <code>{}</code></p>",
        escape(name),
        escape(&addr),
        escape(template)
    );
    match app.stamper.templates.load().render(template, user) {
        Ok(sig) => {
            // The signature is HTML from the templates and the directory: shown in a sandboxed
            // frame so it cannot run script or restyle this page.
            let _ = write!(
                h,
                "<h4>HTML</h4>\n<iframe class=\"preview\" id=\"preview-html\" sandbox \
                 title=\"HTML signature\" width=\"100%\" height=\"240\" srcdoc=\"{}\"></iframe>\n\
                 <h4>Text</h4>\n<pre class=\"text\" id=\"preview-text\">{}</pre>\n",
                escape(&sig.html),
                escape(&sig.text)
            );
        }
        Err(e) => {
            let _ = writeln!(
                h,
                "<p class=\"error\" id=\"preview-error\">The template failed for this user: {}</p>",
                escape(&e.to_string())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_encode("a b+c@d.e"), "a%20b%2Bc@d.e");
    }
}
