//! The status page at `/` over real HTTP: token banner, directory facts, search and preview.

mod admin_support;

use admin_support::{app, set_token, start_admin};
use sigstamp::status::TokenState;
use std::sync::Arc;
use time::macros::datetime;

const CONFIG: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// The element that starts at `marker`, up to its end tag (good enough for one `<dd>`).
fn section<'a>(body: &'a str, marker: &str) -> &'a str {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {body}"));
    let rest = &body[start..];
    &rest[..rest.find("</dd>").unwrap_or(rest.len())]
}

async fn page(base: &str, query: &str) -> String {
    let r = reqwest::get(format!("{base}/{query}")).await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let body = r.text().await.unwrap();
    // Works offline: no scripts, stylesheets or fonts from anywhere.
    for bad in ["<script", "<link", "src=\"http", "@import", "url("] {
        assert!(!body.contains(bad), "page must not load {bad}: {body}");
    }
    body
}

#[tokio::test]
async fn banner_follows_the_token_state() {
    let app = app(CONFIG);
    let (base, _task) = start_admin(app.clone()).await;

    // Before the directory source's first answer (no refresher runs here).
    let body = page(&base, "").await;
    assert!(body.contains("data-state=\"starting\""), "{body}");
    assert!(!body.contains("banner expired"));
    assert!(!body.contains("snapshot-error"), "{body}");

    // A snapshot that cannot be written, and never was: the red line.
    let path = std::path::Path::new("state/directory.json");
    app.status.update_snapshot(path, |s| {
        s.failed(
            "cannot create the folder of state/directory.json: Not a directory".into(),
            datetime!(2026-11-25 22:00:00 UTC),
        )
    });
    let body = page(&base, "").await;
    let line = body
        .lines()
        .find(|l| l.contains("id=\"snapshot-error\""))
        .unwrap_or_else(|| panic!("the snapshot line: {body}"));
    assert!(line.contains("class=\"alert\""), "{line}");
    assert!(
        line.contains("a restart now would start with no directory"),
        "{line}"
    );
    assert!(line.contains("Not a directory"), "{line}");
    assert!(body.contains("p.alert { background: #b00020"), "red");
    app.status
        .update_snapshot(path, |s| s.ok(Some(datetime!(2026-11-25 22:05:00 UTC))));
    let body = page(&base, "").await;
    assert!(!body.contains("snapshot-error"), "{body}");
    assert!(
        section(&body, "id=\"snapshot\"").contains("2026-11-25T22:05:00Z"),
        "{body}"
    );

    let since = datetime!(2026-11-25 22:15:00 UTC);
    set_token(&app, TokenState::Expired, Some("AADSTS7000222"), since);
    let body = page(&base, "").await;
    assert!(body.contains("class=\"banner expired\""), "{body}");
    assert!(
        body.contains("Microsoft Graph token expired: AADSTS7000222"),
        "{body}"
    );
    assert!(
        body.contains("<time datetime=\"2026-11-25T22:15:00Z\">2026-11-25 22:15:00 UTC</time>"),
        "{body}"
    );
    // How long ago, from the real clock: the date above is in the past.
    let ago = section(&body, "id=\"token-since\"");
    assert!(ago.contains(" ago)"), "{ago}");
    assert!(body.contains("role=\"alert\""), "{body}");
    let action = section(&body, "id=\"token-action\"");
    assert!(action.contains("new client secret"), "{action}");
    assert!(action.contains("<code>"), "config keys are code: {action}");
    assert!(
        body.contains(".expired { background: #b00020"),
        "the expired banner is red"
    );

    // A delegated login gone dead: the exact command to run.
    set_token(&app, TokenState::Expired, Some("AADSTS50173"), since);
    let body = page(&base, "").await;
    let action = section(&body, "id=\"token-action\"");
    assert!(
        action.contains("<code>sigstamp login --config FILE</code>"),
        "{action}"
    );

    set_token(&app, TokenState::Failing, None, since);
    let body = page(&base, "").await;
    assert!(body.contains("class=\"banner failing\""), "{body}");

    set_token(&app, TokenState::Valid, None, since);
    let body = page(&base, "").await;
    assert!(body.contains("class=\"banner valid\""), "{body}");
    assert!(!body.contains("AADSTS"), "{body}");
}

#[tokio::test]
async fn directory_facts() {
    let app = app(CONFIG);
    let (base, _task) = start_admin(app.clone()).await;
    let body = page(&base, "").await;
    assert!(body.contains("<dd id=\"users\">2</dd>"), "{body}");
    assert!(body.contains("<dd id=\"source\">file</dd>"), "{body}");
    assert!(body.contains("<dd id=\"last-sync\">never</dd>"), "{body}");
    assert!(
        body.contains("http-equiv=\"refresh\""),
        "the bare page refreshes itself"
    );

    app.status
        .last_sync
        .store(Arc::new(Some(datetime!(2026-11-26 07:00:00 UTC))));
    let body = page(&base, "").await;
    assert!(
        body.contains(
            "<dd id=\"last-sync\"><time datetime=\"2026-11-26T07:00:00Z\">2026-11-26 07:00:00 UTC</time>"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn search_previews_one_user_or_lists_matches() {
    let app = app(CONFIG);
    let (base, _task) = start_admin(app.clone()).await;

    // An exact address, any case, including a proxy address.
    let body = page(&base, "?q=ADA%40example.com").await;
    assert!(
        body.contains("id=\"preview-user\">Ada Lovelace &lt;ada@example.com&gt;"),
        "{body}"
    );
    assert!(
        !body.contains("http-equiv=\"refresh\""),
        "no refresh while previewing"
    );
    let body = page(&base, "?q=a.turing%40example.com").await;
    // Directory values are escaped.
    assert!(
        body.contains("Alan &lt;b&gt;Turing&lt;/b&gt; &lt;a.turing@example.com&gt;"),
        "{body}"
    );
    assert!(!body.contains("<b>Turing"), "{body}");

    // A unique partial match previews directly.
    let body = page(&base, "?q=lovelace").await;
    assert!(body.contains("id=\"preview-user\""), "{body}");
    // The preview is the rendered signature, or the render error, never nothing.
    assert!(
        body.contains("id=\"preview-html\"") || body.contains("id=\"preview-error\""),
        "{body}"
    );
    if body.contains("id=\"preview-html\"") {
        // The signature sits escaped in the sandboxed frame's srcdoc, with the user's values.
        let srcdoc = body
            .split("srcdoc=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(srcdoc.contains("Ada Lovelace"), "{srcdoc}");
        assert!(!srcdoc.contains('<'), "{srcdoc}");
    }

    // Several matches: a list of links to each.
    let body = page(&base, "?q=example.com").await;
    assert!(body.contains("<ul id=\"matches\">"), "{body}");
    assert!(
        body.contains("href=\"/?q=ada@example.com&amp;audience=external\""),
        "{body}"
    );
    assert!(
        body.contains("href=\"/?q=alan@example.com&amp;audience=external\""),
        "{body}"
    );

    let body = page(&base, "?q=%3Cscript%3Ealert(1)").await;
    assert!(body.contains("id=\"no-match\""), "{body}");
    assert!(body.contains("value=\"&lt;script&gt;alert(1)\""), "{body}");
}

const RULES: &str = r#"
[admin]
listen = "127.0.0.1:0"

[recipients]
internal_domains = ["example.com"]

[[rules]]
name = "No signature inside"
recipients = "internal"
template = "none"

[[rules]]
name = "Mathematicians <3"
attribute = { jobTitle = "Mathematician" }
template = "default"
"#;

/// The content of the element with `id`, up to its end tag.
fn field<'a>(body: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\">");
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("{marker} in {body}"));
    let open = &body[body[..at].rfind('<').unwrap() + 1..];
    let tag = &open[..open.find(' ').unwrap()];
    let rest = &body[at + marker.len()..];
    &rest[..rest.find(&format!("</{tag}>")).unwrap()]
}

#[tokio::test]
async fn rules_table_and_the_rule_that_chose() {
    let app = app(RULES);
    let (base, _task) = start_admin(app.clone()).await;

    let body = page(&base, "").await;
    assert!(body.contains("<table id=\"rules-table\">"), "{body}");
    assert!(
        body.contains("<tr id=\"rule-1\"><td>1</td><th scope=\"row\">No signature inside</th>"),
        "{body}"
    );
    // Names and descriptions are escaped like everything else.
    assert!(body.contains("Mathematicians &lt;3"), "{body}");
    assert!(!body.contains("Mathematicians <3"), "{body}");
    let rule2 = &body[body.find("id=\"rule-2\"").unwrap()..];
    assert!(
        rule2[..rule2.find("</tr>").unwrap()].contains("jobTitle = Mathematician"),
        "{rule2}"
    );
    assert!(body.contains("id=\"rule-default\""), "{body}");
    assert!(
        body.contains("Internal domains (and their subdomains): <code>example.com</code>"),
        "{body}"
    );

    // External recipients (the default): no rule for Ada, the default template.
    let body = page(&base, "?q=ada%40example.com").await;
    assert_eq!(field(&body, "preview-audience"), "external", "{body}");
    assert_eq!(
        field(&body, "preview-rule"),
        "none matched: the default applies"
    );
    assert_eq!(field(&body, "preview-template"), "<code>default</code>");
    assert!(body.contains("id=\"preview-html\""), "{body}");
    assert!(
        body.contains("value=\"external\" checked"),
        "the switch shows the choice: {body}"
    );
    assert!(
        body.contains("href=\"/?q=ada@example.com&amp;audience=internal\""),
        "a link to the other audience: {body}"
    );

    // Internal: the first rule says no signature.
    let body = page(&base, "?q=ada%40example.com&audience=internal").await;
    assert_eq!(field(&body, "preview-audience"), "internal", "{body}");
    assert!(
        field(&body, "preview-rule").starts_with("No signature inside <span class=\"why\">(#1: "),
        "{body}"
    );
    assert_eq!(field(&body, "preview-template"), "none: no signature");
    assert!(body.contains("id=\"preview-none\""), "{body}");
    assert!(!body.contains("id=\"preview-html\""), "{body}");
    assert!(body.contains("value=\"internal\" checked"), "{body}");

    // An attribute rule, found through an alias.
    let body = page(&base, "?q=a.turing%40example.com&audience=external").await;
    assert!(
        field(&body, "preview-rule").starts_with("Mathematicians &lt;3"),
        "{body}"
    );
    assert!(
        body.contains("&lt;a.turing@example.com&gt;"),
        "the sender as searched: {body}"
    );
}

#[tokio::test]
async fn without_rules_the_default_is_said() {
    let app = app(CONFIG);
    let (base, _task) = start_admin(app.clone()).await;
    let body = page(&base, "").await;
    assert!(
        body.contains("<p id=\"no-rules\">No rules: every message gets the template <code>default</code>.</p>"),
        "{body}"
    );
    assert!(body.contains("every recipient is external"), "{body}");
}
