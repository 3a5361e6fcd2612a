//! The editor's pages: server-rendered HTML (a save works without script); the script
//! ([`super::SCRIPT_PATH`]) only adds the live preview and error marks while typing.

use super::diff::{self, Line};
use super::{Pair, PreviewDoc, Version, SCRIPT_PATH};
use crate::admin::auth::SignedIn;
use crate::admin::html::{escape, url_encode, when};
use crate::rules::{Audience, MessageKind};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use time::OffsetDateTime;

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 0; color: #222; line-height: 1.4; }
nav { background: #1b1f24; color: #fff; padding: .6rem 1.5rem; display: flex; gap: 1.25rem; align-items: center; }
nav a { color: #fff; text-decoration: none; }
nav .who { margin-left: auto; opacity: .8; font-size: .9rem; }
nav form { margin: 0; }
main { padding: 1rem 1.5rem 2rem; max-width: 96rem; }
h1 { font-size: 1.4rem; margin: .5rem 0 1rem; }
code { font-family: ui-monospace, monospace; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5rem; }
label.part { display: block; font-weight: 600; margin: .6rem 0 .2rem; }
textarea { width: 100%; box-sizing: border-box; font: 13px/1.45 ui-monospace, monospace; padding: .5rem; border: 1px solid #bbb; border-radius: 4px; }
textarea#html { height: 24rem; } textarea#text { height: 9rem; }
.controls { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; margin: .6rem 0; }
.controls input { width: 16rem; padding: .3rem; }
iframe.preview { width: 100%; height: 15rem; border: 1px solid #ccc; border-radius: 6px; background: #fff; }
pre.text { background: #f6f8fa; padding: .75rem; border-radius: 6px; white-space: pre-wrap; margin: 0; }
h2 { font-size: 1.05rem; margin: 1rem 0 .4rem; }
#problems { color: #b00020; margin: .5rem 0; padding-left: 1.2rem; }
#problems:empty { display: none; }
.note { color: #444; background: #eef4ff; border: 1px solid #c8dafc; padding: .4rem .7rem; border-radius: 4px; }
.note:empty { display: none; }
.flash { background: #e6f4ea; border: 1px solid #8cc79b; color: #0d5223; padding: .5rem .8rem; border-radius: 4px; }
.error { background: #fdecee; border: 1px solid #e6a0aa; color: #8a0016; padding: .5rem .8rem; border-radius: 4px; }
#status { color: #666; font-size: .9rem; min-height: 1.2em; }
button { padding: .45rem 1.1rem; font-size: 1rem; cursor: pointer; }
button.primary { background: #1f6feb; color: #fff; border: 0; border-radius: 4px; }
button:disabled { background: #aaa; cursor: not-allowed; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .35rem .7rem; border-bottom: 1px solid #ddd; vertical-align: top; }
td form { margin: 0; }
pre.diff { background: #f6f8fa; padding: .5rem; border-radius: 6px; font-size: 13px; overflow-x: auto; }
pre.diff .add { background: #e6ffec; display: block; } pre.diff .del { background: #ffebe9; display: block; }
pre.diff .same { display: block; color: #555; }
";

fn document(who: &SignedIn, title: &str, body: &str, extra_head: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · sigstamp</title><style>{STYLE}</style>{extra_head}</head>\n<body>\n\
         {nav}\n<main>\n{body}\n</main>\n</body></html>\n",
        t = escape(title),
        nav = crate::admin::edits::nav(who),
    )
}

fn respond(status: StatusCode, html: String) -> Response {
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

/// A short page that says one thing (errors).
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><main><h1>{t}</h1><p class=\"error\" id=\"message\">{m}</p>\
         <p><a href=\"/templates\">Templates</a></p></main></body></html>\n",
        t = escape(title),
        m = escape(text)
    );
    respond(status, html)
}

fn href(name: &str, rest: &str) -> String {
    format!("/templates/{}{rest}", url_encode(name))
}

pub fn list(who: &SignedIn, rows: &[(String, Option<Version>)]) -> Response {
    let now = OffsetDateTime::now_utc();
    let mut b = String::from(
        "<h1>Templates</h1>\n<table id=\"templates\"><thead><tr><th>Template</th><th>Last change</th>\
         <th></th></tr></thead><tbody>\n",
    );
    for (name, last) in rows {
        let change = match last {
            Some(v) => format!(
                "version {} by {} {}",
                v.version,
                escape(&v.who),
                when(Some(v.time), now)
            ),
            None => "never edited here".into(),
        };
        let what = match name.strip_suffix(".bottom") {
            Some(main) => format!(" <small>(bottom part of {})</small>", escape(main)),
            None => String::new(),
        };
        let _ = writeln!(
            b,
            "<tr><td><a href=\"{}\"><code>{}</code></a>{what}</td><td>{change}</td>\
             <td><a href=\"{}\">history</a></td></tr>",
            escape(&href(name, "")),
            escape(name),
            escape(&href(name, "/history")),
        );
    }
    b.push_str("</tbody></table>\n");
    respond(StatusCode::OK, document(who, "Templates", &b, ""))
}

/// What the editor page shows.
pub struct Editor<'a> {
    pub who: &'a SignedIn,
    pub name: &'a str,
    /// The fingerprint of the live pair the draft started from.
    pub base: String,
    pub draft: &'a Pair,
    pub flash: Option<&'a str>,
    pub error: Option<&'a str>,
    pub preview: PreviewDoc,
    pub users: Vec<String>,
    pub user: &'a str,
    /// The previewed recipients and kind of message.
    pub view: (Audience, MessageKind),
}

/// `<option>`s of `choices`, `chosen` selected.
fn options(choices: &[&str], chosen: &str) -> String {
    choices
        .iter()
        .map(|c| {
            let sel = if *c == chosen { " selected" } else { "" };
            format!("<option value=\"{c}\"{sel}>{c}</option>")
        })
        .collect()
}

pub fn editor(status: StatusCode, e: &Editor<'_>) -> Response {
    let name = e.name;
    let mut b = String::with_capacity(16 * 1024);
    let _ = writeln!(
        b,
        "<h1>Template <code>{}</code> <small><a href=\"{}\">history</a></small></h1>",
        escape(name),
        escape(&href(name, "/history"))
    );
    if let Some(f) = e.flash {
        let _ = writeln!(b, "<p class=\"flash\" id=\"flash\">{}</p>", escape(f));
    }
    if let Some(err) = e.error {
        let _ = writeln!(
            b,
            "<p class=\"error\" id=\"save-error\">{}</p>",
            escape(err)
        );
    }
    let p = &e.preview;
    let _ = write!(
        b,
        "<form method=\"post\" action=\"{action}\" id=\"editor\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"base\" value=\"{base}\">\n\
         <div class=\"cols\"><div>\n\
         <label class=\"part\" for=\"html\">HTML part <small>(<code>{n}.html.hbs</code>; every value is escaped)</small></label>\
         <textarea id=\"html\" name=\"html\" spellcheck=\"false\">{html}</textarea>\n\
         <label class=\"part\" for=\"text\">Text part <small>(<code>{n}.txt.hbs</code>)</small></label>\
         <textarea id=\"text\" name=\"text\" spellcheck=\"false\">{text}</textarea>\n\
         <ul id=\"problems\">{problems}</ul>\n\
         <p><button class=\"primary\" type=\"submit\" id=\"save\"{disabled}>Save and put live</button> \
         <span id=\"status\"></span></p>\n\
         </div><div>\n\
         <div class=\"controls\"><label>Preview for <input id=\"user\" name=\"q\" list=\"users\" value=\"{user}\" autocomplete=\"off\"></label>\
         <label>Message <select id=\"message\" name=\"message\">{kinds}</select></label>\
         <label>Recipients <select id=\"audience\" name=\"audience\">{audiences}</select></label></div>\n\
         <p class=\"note\" id=\"note\">{note}</p>\n<p class=\"error\" id=\"preview-error\"{err_hidden}>{err}</p>\n\
         <h2>HTML signature</h2><iframe class=\"preview\" id=\"preview-html\" sandbox title=\"HTML signature preview\" srcdoc=\"{pv_html}\"></iframe>\n\
         <h2>Text signature</h2><pre class=\"text\" id=\"preview-text\">{pv_text}</pre>\n\
         <div id=\"bottom\"{bottom_hidden}><h2>Bottom part (after the quoted thread)</h2>\
         <iframe class=\"preview\" id=\"preview-bottom-html\" sandbox title=\"Bottom part preview\" srcdoc=\"{pv_bhtml}\"></iframe>\
         <pre class=\"text\" id=\"preview-bottom-text\">{pv_btext}</pre></div>\n\
         </div></div>\n</form>\n<datalist id=\"users\">",
        action = escape(&href(name, "")),
        csrf = escape(&e.who.csrf),
        base = escape(&e.base),
        n = escape(name),
        html = escape(&e.draft.html),
        text = escape(&e.draft.text),
        problems = problems_html(&p.problems),
        disabled = if p.problems.is_empty() { "" } else { " disabled" },
        user = escape(e.user),
        kinds = options(&["new", "reply"], e.view.1.as_str()),
        audiences = options(&["external", "internal"], e.view.0.as_str()),
        note = escape(p.note.as_deref().unwrap_or("")),
        err = escape(p.error.as_deref().unwrap_or("")),
        err_hidden = if p.error.is_some() { "" } else { " hidden" },
        pv_html = escape(p.html.as_deref().unwrap_or("")),
        pv_text = escape(p.text.as_deref().unwrap_or("")),
        bottom_hidden = if p.bottom_html.is_some() { "" } else { " hidden" },
        pv_bhtml = escape(p.bottom_html.as_deref().unwrap_or("")),
        pv_btext = escape(p.bottom_text.as_deref().unwrap_or("")),
    );
    for u in &e.users {
        let _ = write!(b, "<option value=\"{}\">", escape(u));
    }
    b.push_str("</datalist>\n");
    let head = format!(
        "<meta name=\"preview-url\" content=\"{}\"><meta name=\"csrf-token\" content=\"{}\">\
         <script src=\"{SCRIPT_PATH}\" defer></script>",
        escape(&href(name, "/preview")),
        escape(&e.who.csrf)
    );
    let title = format!("Template {name}");
    respond(status, document(e.who, &title, &b, &head))
}

/// The problems as list items (the script builds the same from JSON).
fn problems_html(problems: &[super::Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        let part = match p.part {
            "html" => "HTML part",
            "text" => "Text part",
            _ => "Template folder",
        };
        let at = match (p.line, p.column) {
            (0, _) => String::new(),
            (l, 0) => format!(", line {l}"),
            (l, c) => format!(", line {l}, column {c}"),
        };
        let _ = write!(
            out,
            "<li data-part=\"{}\" data-line=\"{}\" data-column=\"{}\">{part}{at}: {}</li>",
            p.part,
            p.line,
            p.column,
            escape(&p.message)
        );
    }
    out
}

pub fn history(who: &SignedIn, name: &str, versions: &[Version], live: Option<u32>) -> Response {
    let now = OffsetDateTime::now_utc();
    let mut b = format!(
        "<h1>History of <code>{}</code> <small><a href=\"{}\">edit</a></small></h1>\n",
        escape(name),
        escape(&href(name, ""))
    );
    if versions.is_empty() {
        b.push_str("<p>No saved versions yet: the first save records the current files as version 1.</p>\n");
    }
    if !versions.is_empty() && live.is_none() {
        b.push_str(
            "<p class=\"note\">The live files were changed outside the editor since the last \
             save; the next save records them as a version first.</p>\n",
        );
    }
    b.push_str(
        "<table id=\"history\"><thead><tr><th>Version</th><th>When</th><th>Who</th><th>What</th>\
         <th>Changes</th><th></th></tr></thead><tbody>\n",
    );
    for v in versions.iter().rev() {
        let what = match (v.action.as_str(), v.restores) {
            ("rollback", Some(n)) => format!("rollback to version {n}"),
            ("initial", _) => "the files before the first save".into(),
            ("on_disk", _) => "changed outside the editor".into(),
            (a, _) => escape(a),
        };
        let changes = if v.version > 1 {
            format!(
                "<a href=\"{}\">diff with {}</a>",
                escape(&href(
                    name,
                    &format!("/diff?a={}&b={}", v.version - 1, v.version)
                )),
                v.version - 1
            )
        } else {
            String::new()
        };
        let action = if live == Some(v.version) {
            "<strong>live</strong>".to_string()
        } else {
            format!(
                "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"version\" value=\"{}\">\
                 <button type=\"submit\" class=\"restore\" id=\"restore-{}\">Restore</button></form> \
                 <a href=\"{}\">diff with live</a>",
                escape(&href(name, "/rollback")),
                escape(&who.csrf),
                v.version,
                v.version,
                escape(&href(name, &format!("/diff?a={}", v.version)))
            )
        };
        let _ = writeln!(
            b,
            "<tr class=\"version\" data-version=\"{n}\"><td>{n}</td><td>{t}</td><td>{w}</td>\
             <td>{what}</td><td>{changes}</td><td>{action}</td></tr>",
            n = v.version,
            t = when(Some(v.time), now),
            w = escape(&v.who),
        );
    }
    b.push_str("</tbody></table>\n");
    respond(
        StatusCode::OK,
        document(who, &format!("History of {name}"), &b, ""),
    )
}

pub fn diff(
    who: &SignedIn,
    name: &str,
    a: u32,
    b_version: Option<u32>,
    old: &Pair,
    new: &Pair,
) -> Response {
    let right = b_version.map_or("the live template".to_string(), |n| format!("version {n}"));
    let mut b = format!(
        "<h1><code>{}</code>: version {a} → {}</h1>\n<p><a href=\"{}\">history</a></p>\n",
        escape(name),
        escape(&right),
        escape(&href(name, "/history"))
    );
    for (part, o, n) in [
        ("HTML", &old.html, &new.html),
        ("Text", &old.text, &new.text),
    ] {
        let _ = write!(b, "<h2>{part} part</h2><pre class=\"diff\">");
        let lines = diff::lines(o, n);
        if lines.iter().all(|l| matches!(l, Line::Same(_))) {
            b.push_str("<span class=\"same\">(no change)</span>");
        }
        for l in lines {
            let (class, mark, text) = match l {
                Line::Same(t) => ("same", ' ', t),
                Line::Removed(t) => ("del", '-', t),
                Line::Added(t) => ("add", '+', t),
            };
            let _ = write!(b, "<span class=\"{class}\">{mark} {}</span>", escape(text));
        }
        b.push_str("</pre>\n");
    }
    respond(
        StatusCode::OK,
        document(who, &format!("Diff of {name}"), &b, ""),
    )
}
