//! The templates editor over HTTPS with Entra ID sign-in (the fake's OpenID Connect
//! endpoints), without a browser: who may edit, drafts with errors (line and column) refused
//! before anything is written, a save that the relay uses for the next message and that a
//! restart keeps, a stale draft refused, hand edits kept as versions, diffs and rollback,
//! preview images as `data:` URIs, rules named in the preview, names that are not paths, and
//! a save a crash interrupted finished at start-up.

mod admin_support;
mod fake_graph;
mod smtp_support;
mod support;
mod templates_support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sigstamp::admin::templates::TemplateStore;
use sigstamp::render::Templates;
use std::sync::Arc;
use templates_support::{signed_in, site, site_with, Site, ADMINS_ROLE, EDITORS_GROUP, SENDER};

const EDITOR: &str = "editor@contoso.example";
const MOTTO: &str = "<p>Signed with care</p>";

async fn editor(s: &Site) -> (reqwest::Client, String) {
    signed_in(s, EDITOR, EDITORS_GROUP, "").await
}

fn live(s: &Site) -> (String, String) {
    let read =
        |ext: &str| std::fs::read_to_string(s.templates.join(format!("default{ext}"))).unwrap();
    (read(".html.hbs"), read(".txt.hbs"))
}

/// The `base` fingerprint the editor page carries.
async fn base_of(b: &reqwest::Client, s: &Site) -> String {
    editor_base(b, &s.base).await
}

/// The `base` field of the editor page of `default` at `site`.
async fn editor_base(b: &reqwest::Client, site: &str) -> String {
    let page = get_text(b, format!("{site}/templates/default")).await;
    let at = page.find("name=\"base\" value=\"").expect("base field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

async fn save(
    b: &reqwest::Client,
    s: &Site,
    csrf: &str,
    base: &str,
    html: &str,
    text: &str,
) -> reqwest::Response {
    b.post(format!("{}/templates/default", s.base))
        .form(&[
            ("csrf", csrf),
            ("base", base),
            ("html", html),
            ("text", text),
        ])
        .send()
        .await
        .unwrap()
}

async fn rollback(b: &reqwest::Client, s: &Site, csrf: &str, version: &str) -> reqwest::Response {
    b.post(format!("{}/templates/default/rollback", s.base))
        .form(&[("csrf", csrf), ("version", version)])
        .send()
        .await
        .unwrap()
}

/// GET `url`: the body.
async fn get_text(b: &reqwest::Client, url: String) -> String {
    b.get(url).send().await.unwrap().text().await.unwrap()
}

async fn preview(b: &reqwest::Client, s: &Site, csrf: &str, body: Value) -> Value {
    let r = b
        .post(format!("{}/templates/default/preview", s.base))
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn only_editors_and_admins_may_edit() {
    let s = site().await;
    let (user, csrf) = signed_in(&s, "grace@example.com", "other-group", "Reader").await;
    for path in [
        "/templates",
        "/templates/default",
        "/templates/default/history",
    ] {
        let r = user.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let r = user
        .post(format!("{}/templates/default/preview", s.base))
        .header("x-csrf-token", &csrf)
        .json(&json!({"html": "x", "text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let before = live(&s);
    let r = save(&user, &s, &csrf, "", "{{displayName}} hacked", "x").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = rollback(&user, &s, &csrf, "1").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(live(&s), before);

    for (upn, groups, roles) in [
        (EDITOR, EDITORS_GROUP, ""),
        ("boss@contoso.example", "", ADMINS_ROLE),
    ] {
        let (b, _) = signed_in(&s, upn, groups, roles).await;
        let r = b.get(format!("{}/templates", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{upn}");
        let page = r.text().await.unwrap();
        assert!(page.contains("href=\"/templates/default\""), "{page}");
    }
    // Without a sign-in at all: sent to sign in; a POST without it: 401.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(&s.pki.ca).unwrap()).unwrap(),
        ])
        .build()
        .unwrap();
    let r = anon
        .get(format!("{}/templates", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(s
        .audit_entries()
        .iter()
        .all(|e| !e.action.starts_with("template_")));
}

#[tokio::test]
async fn a_draft_with_errors_is_refused_with_line_and_column() {
    let s = site().await;
    let (b, csrf) = editor(&s).await;
    let (html, text) = live(&s);
    let broken = "<p>\n  {{#if mobilePhone}} open {{/each}}\n</p>";
    let doc = preview(
        &b,
        &s,
        &csrf,
        json!({"html": broken, "text": text, "q": SENDER}),
    )
    .await;
    let p = &doc["problems"][0];
    assert_eq!(
        (p["part"].as_str(), p["line"].as_u64()),
        (Some("html"), Some(2)),
        "{doc}"
    );
    assert!(p["column"].as_u64().unwrap() > 0, "{doc}");
    assert!(doc["html"].is_null());
    // An unknown helper is found by the trial render, also placed.
    let doc = preview(
        &b,
        &s,
        &csrf,
        json!({"html": html, "text": "a\n{{nosuch displayName}}", "q": SENDER}),
    )
    .await;
    let p = &doc["problems"][0];
    assert_eq!(
        (p["part"].as_str(), p["line"].as_u64()),
        (Some("text"), Some(2)),
        "{doc}"
    );

    let base = base_of(&b, &s).await;
    let r = save(&b, &s, &csrf, &base, broken, &text).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(page.contains("HTML part, line 2, column"), "{page}");
    assert!(page.contains("{{/each}}"), "the draft is kept: {page}");
    // No CSRF token: refused before the handler.
    let r = save(&b, &s, "", &base, "<p>x</p>", &text).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(live(&s), (html, text));
    assert!(!s.templates.join(".history").exists(), "nothing written");
}

#[tokio::test]
async fn a_save_goes_live_for_the_next_message_and_survives_a_restart() {
    let mut s = site().await;
    let (b, csrf) = editor(&s).await;
    let (html, text) = live(&s);
    let base = base_of(&b, &s).await;
    let new_html = format!("{html}\n{MOTTO}\n");
    let r = save(&b, &s, &csrf, &base, &new_html.replace('\n', "\r\n"), &text).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/templates/default?saved=2");
    // The folder holds it, with LF line ends as before; the history has both versions.
    assert_eq!(live(&s).0, new_html);
    let hist = s.templates.join(".history/default");
    for f in [
        "1.html.hbs",
        "1.txt.hbs",
        "1.json",
        "2.html.hbs",
        "2.txt.hbs",
        "2.json",
    ] {
        assert!(hist.join(f).is_file(), "{f}");
    }
    assert!(!hist.join("pending").exists());
    // The running relay: the next message.
    let msg = s.send_message("after save").await;
    assert!(msg.contains("Signed with care"), "{msg}");
    // A restart loads the folder: the same template.
    let reloaded = Templates::load(&s.templates).unwrap();
    let user = s.app.directory.lookup(SENDER).unwrap();
    assert!(reloaded
        .render("default", &user)
        .unwrap()
        .html
        .contains("Signed with care"));

    // A draft made from the old version is refused, not saved over the new one.
    let r = save(&b, &s, &csrf, &base, "<p>{{displayName}}</p>", &text).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("changed since you opened it"));
    assert_eq!(live(&s).0, new_html);

    // A hand edit on the server is kept as a version before the next save.
    std::fs::write(
        s.templates.join("default.html.hbs"),
        format!("{new_html}<p>by hand</p>\n"),
    )
    .unwrap();
    let base = base_of(&b, &s).await;
    let r = save(&b, &s, &csrf, &base, &html, &text).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/templates/default?saved=4");
    let v3: Value = serde_json::from_slice(&std::fs::read(hist.join("3.json")).unwrap()).unwrap();
    assert_eq!(
        (v3["action"].as_str(), v3["who"].as_str()),
        (Some("on_disk"), Some("-"))
    );
    let v4: Value = serde_json::from_slice(&std::fs::read(hist.join("4.json")).unwrap()).unwrap();
    assert_eq!(
        (v4["action"].as_str(), v4["who"].as_str()),
        (Some("save"), Some(EDITOR))
    );

    let saves: Vec<_> = s
        .audit_entries()
        .into_iter()
        .filter(|e| e.action == "template_save")
        .collect();
    assert_eq!(saves.len(), 2);
    assert_eq!(saves[0].who, EDITOR);
    assert_eq!(
        saves[0].before,
        json!({"version": 1, "html": html, "text": text})
    );
    assert_eq!(
        saves[0].after,
        json!({"version": 2, "html": new_html, "text": text})
    );
    assert_eq!(saves[1].before["version"], 3);
}

#[tokio::test]
async fn history_shows_diffs_and_a_rollback_restores_a_version() {
    let mut s = site().await;
    let (b, csrf) = editor(&s).await;
    let (html, text) = live(&s);
    let base = base_of(&b, &s).await;
    let r = save(&b, &s, &csrf, &base, &format!("{html}{MOTTO}\n"), &text).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let page = get_text(&b, format!("{}/templates/default/history", s.base)).await;
    assert!(
        page.contains("id=\"restore-1\"") && !page.contains("id=\"restore-2\""),
        "{page}"
    );
    let diff = get_text(&b, format!("{}/templates/default/diff?a=1&b=2", s.base)).await;
    assert!(
        diff.contains("<span class=\"add\">+ &lt;p&gt;Signed with care&lt;/p&gt;</span>"),
        "{diff}"
    );
    assert!(!diff.contains("class=\"del\""), "{diff}");

    let r = rollback(&b, &s, &csrf, "1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(live(&s), (html.clone(), text));
    let msg = s.send_message("after rollback").await;
    assert!(
        !msg.contains("Signed with care") && msg.contains("Ada Lovelace"),
        "{msg}"
    );
    let page = get_text(&b, format!("{}/templates/default/history", s.base)).await;
    assert!(page.contains("rollback to version 1"), "{page}");
    let r = rollback(&b, &s, &csrf, "99").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let last = s.audit_entries().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.who.as_str()),
        ("template_rollback", EDITOR)
    );
    assert_eq!(last.after["html"], json!(html));
}

#[tokio::test]
async fn previews_use_data_images_and_name_the_rule_that_decides() {
    let rules = "[recipients]\ninternal_domains = [\"example.com\"]\n\
                 [[rules]]\nname = \"colleagues\"\nrecipients = \"internal\"\ntemplate = \"none\"\n";
    let s = site_with(rules).await;
    std::fs::create_dir_all(s.templates.join("images")).unwrap();
    std::fs::write(s.templates.join("images/logo.png"), support::images::PNG).unwrap();
    let (b, csrf) = editor(&s).await;
    let (_, text) = live(&s);
    let html = "<p>{{displayName}}</p><img src=\"{{image \"logo.png\"}}\" alt=\"logo\">";
    let doc = preview(
        &b,
        &s,
        &csrf,
        json!({"html": html, "text": text, "q": SENDER, "audience": "external"}),
    )
    .await;
    let frame = doc["html"].as_str().unwrap();
    assert!(
        frame.contains("src=\"data:image/png;base64,iVBOR"),
        "{frame}"
    );
    assert!(!frame.contains("cid:"), "{frame}");
    assert!(
        doc["note"].as_str().unwrap().contains("no rule matched"),
        "{doc}"
    );
    let doc = preview(&b, &s, &csrf, json!({"html": html, "text": text, "q": SENDER, "audience": "internal", "message": "reply"})).await;
    let note = doc["note"].as_str().unwrap();
    assert!(
        note.contains("no signature") && note.contains("\"colleagues\"") && note.contains("reply"),
        "{note}"
    );
    assert!(
        doc["html"].as_str().unwrap().contains("Ada Lovelace"),
        "the draft is still shown: {doc}"
    );
    let doc = preview(
        &b,
        &s,
        &csrf,
        json!({"html": html, "text": text, "q": "nobody@example.com"}),
    )
    .await;
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("nobody@example.com"),
        "{doc}"
    );
}

#[tokio::test]
async fn template_names_are_never_paths() {
    let s = site().await;
    let (b, _) = editor(&s).await;
    for path in [
        "/templates/..%2F..%2Fetc%2Fpasswd",
        "/templates/nosuch",
        "/templates/%2E%2E/history",
        "/templates/default/diff?a=7",
    ] {
        let r = b.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[test]
fn a_save_a_crash_interrupted_is_finished_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    std::fs::write(t.join("default.html.hbs"), "<p>old {{displayName}}</p>").unwrap();
    std::fs::write(t.join("default.txt.hbs"), "old {{displayName}}").unwrap();
    // Version 2 written and journalled; the crash came before the live files were replaced.
    let h = t.join(".history/default");
    std::fs::create_dir_all(&h).unwrap();
    std::fs::write(h.join("2.html.hbs"), "<p>new {{displayName}}</p>").unwrap();
    std::fs::write(h.join("2.txt.hbs"), "new {{displayName}}").unwrap();
    std::fs::write(
        h.join("2.json"),
        r#"{"version":2,"time":"2026-12-02T07:00:00Z","who":"x","action":"save"}"#,
    )
    .unwrap();
    std::fs::write(h.join("pending"), "2").unwrap();
    let app = admin_support::app(&format!("[templates]\ndir = {t:?}\n"));
    app.stamper
        .templates
        .store(Arc::new(Templates::load(t).unwrap()));
    let _store = TemplateStore::new(
        &app.config.templates,
        app.photos.clone(),
        app.stamper.clone(),
    );
    assert_eq!(
        std::fs::read_to_string(t.join("default.html.hbs")).unwrap(),
        "<p>new {{displayName}}</p>"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("default.txt.hbs")).unwrap(),
        "new {{displayName}}"
    );
    assert!(!h.join("pending").exists());
    let user = app.directory.lookup(SENDER).unwrap();
    let sig = app
        .stamper
        .templates
        .load()
        .render("default", &user)
        .unwrap();
    assert_eq!(
        sig.html, "<p>new Ada Lovelace</p>",
        "the stamper uses the finished save"
    );
}

#[tokio::test]
async fn local_admin_edits_as_local_and_the_built_in_templates_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("templates");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("default.html.hbs"), "<p>{{displayName}}</p>").unwrap();
    std::fs::write(t.join("default.txt.hbs"), "{{displayName}}").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let app = admin_support::app(&format!(
        "[templates]\ndir = {t:?}\n[admin]\nlocal_admin = true\naudit_log = {audit:?}\n"
    ));
    app.stamper
        .templates
        .store(Arc::new(Templates::load(&t).unwrap()));
    let (base, _task) = admin_support::start_admin(app.clone()).await;
    let b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let csrf = templates_support::csrf(&b, &base).await;
    let fp = editor_base(&b, &base).await;
    let r = b
        .post(format!("{base}/templates/default"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("base", fp.as_str()),
            ("html", "<p><b>{{displayName}}</b></p>"),
            ("text", "{{displayName}}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let user = app.directory.lookup(SENDER).unwrap();
    let sig = app
        .stamper
        .templates
        .load()
        .render("default", &user)
        .unwrap();
    assert_eq!(sig.html, "<p><b>Ada Lovelace</b></p>");
    let entry: Value = serde_json::from_str(
        std::fs::read_to_string(&audit)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (entry["who"].as_str(), entry["action"].as_str()),
        (Some("local"), Some("template_save"))
    );
    app.shutdown.cancel();

    // No [templates] dir: the built-in templates, nothing to save into.
    let app = admin_support::app("[admin]\nlocal_admin = true\n");
    let (base, _task) = admin_support::start_admin(app.clone()).await;
    let r = b.get(format!("{base}/templates")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("set [templates] dir"));
    app.shutdown.cancel();
}
