//! The templates editor end to end in headless Chromium, over HTTPS with a test certificate:
//! an editor signs in through the fake Entra ID's login form, changes the default template,
//! sees the live preview change while typing (and a handlebars error with its line and
//! column), saves, and the next message through the relay (real SMTP on loopback) carries the
//! new signature; a rollback from the history restores the previous one; the audit log has
//! both changes with the signed-in UPN and the content before and after.
//!
//! `SIGSTAMP_SCREENSHOTS=DIR` also writes the editor's screenshot there (docs/img).

mod admin_support;
mod cdp_support;
mod fake_graph;
mod smtp_support;
mod templates_support;

use cdp_support::{chromium, spki_pin, Browser};
use std::time::Duration;
use templates_support::{site, EDITORS_GROUP, SENDER};

const EDITOR: &str = "editor@contoso.example";
const MOTTO: &str = "Signed with care by the sigstamp editor";
const WAIT: Duration = Duration::from_secs(20);

/// JS: the `srcdoc` of the HTML preview frame contains `needle`.
fn preview_has(needle: &str) -> String {
    format!(
        "document.getElementById('preview-html').srcdoc.includes({})",
        serde_json::to_string(needle).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_changes_previews_saves_and_rolls_back_in_chromium() {
    let Some(chromium) = chromium() else {
        return;
    };
    let mut site = site().await;
    let before = site.send_message("before the edit").await;
    assert!(before.contains("Ada Lovelace") && !before.contains(MOTTO));

    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_pin(&site.pki.server_cert)
    );
    let mut b = Browser::launch(&chromium, &[pin]).await;

    // Not signed in: the editor sends the browser to the fake Entra ID's login form.
    b.goto(&format!("{}/templates/default?q={SENDER}", site.base))
        .await;
    b.wait_for("document.getElementById('login_upn')", WAIT)
        .await;
    let fill = format!(
        "document.getElementById('login_upn').value = {};\
         document.getElementById('login_groups').value = {};\
         document.getElementById('sign_in').click(); true",
        serde_json::to_string(EDITOR).unwrap(),
        serde_json::to_string(EDITORS_GROUP).unwrap()
    );
    b.eval(&fill).await;
    // Back through the callback to the editor, signed in as the editor.
    b.wait_for(
        "location.pathname === '/templates/default' && document.body.dataset.editor === 'ready'",
        WAIT,
    )
    .await;
    let who = b
        .eval("document.querySelector('nav .who').textContent")
        .await;
    assert_eq!(who.as_str(), Some(&*format!("{EDITOR} (editor)")));
    // The server-rendered preview: Ada's signature as the relay stamps it.
    b.wait_for(&preview_has("Ada Lovelace"), WAIT).await;
    let note = b.eval("document.getElementById('note').textContent").await;
    assert!(
        note.as_str().unwrap().contains("gets template \"default\""),
        "{note}"
    );

    // A handlebars error while typing: shown with line and column, Save disabled.
    b.eval("const t = document.getElementById('text'); t.focus(); t.setSelectionRange(t.value.length, t.value.length); true")
        .await;
    b.insert_text("{{#if mobilePhone}}unclosed").await;
    b.wait_for("document.querySelector('#problems li') !== null", WAIT)
        .await;
    let problem = b
        .eval("document.querySelector('#problems li').textContent")
        .await;
    let problem = problem.as_str().unwrap();
    assert!(
        problem.starts_with("Text part, line ") && problem.contains(", column "),
        "{problem}"
    );
    assert_eq!(
        b.eval("document.getElementById('save').disabled").await,
        true
    );
    // Undo it: the typed text removed, as an edit would.
    b.eval("const u = document.getElementById('text'); u.setRangeText('', u.value.length - 27, u.value.length); u.dispatchEvent(new Event('input')); true")
        .await;
    b.wait_for(
        "document.querySelector('#problems li') === null && !document.getElementById('save').disabled",
        WAIT,
    )
    .await;

    // The change, typed into the HTML part: the live preview shows it before any save.
    b.eval("const h = document.getElementById('html'); h.focus(); h.setSelectionRange(h.value.length, h.value.length); true")
        .await;
    b.insert_text(&format!("\n<p id=\"motto\">{MOTTO}</p>\n"))
        .await;
    b.wait_for(&preview_has(MOTTO), WAIT).await;
    assert!(
        !site.live_html().contains(MOTTO),
        "nothing is saved while typing"
    );
    // The same for a reply to internal recipients (no rules: the same template).
    b.eval("const m = document.getElementById('message'); m.value = 'reply'; m.dispatchEvent(new Event('change')); true")
        .await;
    b.wait_for(
        "document.getElementById('note').textContent.includes('a reply message')",
        WAIT,
    )
    .await;
    assert!(b.eval(&preview_has(MOTTO)).await == true);

    if let Some(dir) = std::env::var_os("SIGSTAMP_SCREENSHOTS") {
        let png = b.screenshot().await;
        std::fs::write(std::path::Path::new(&dir).join("template-editor.png"), png).unwrap();
    }

    // Save: the next message through the relay carries the new signature.
    b.eval("document.getElementById('save').click(); true")
        .await;
    b.wait_for("document.getElementById('flash') !== null", WAIT)
        .await;
    let flash = b.eval("document.getElementById('flash').textContent").await;
    assert!(
        flash.as_str().unwrap().starts_with("Saved as version 2"),
        "{flash}"
    );
    assert!(
        site.live_html().contains(MOTTO),
        "the folder holds the save"
    );
    let after = site.send_message("after the save").await;
    assert!(
        after.contains(MOTTO),
        "stamped with the saved template:\n{after}"
    );

    // Rollback from the history: version 1 (the folder before the first save) comes back.
    b.goto(&format!("{}/templates/default/history", site.base))
        .await;
    b.wait_for("document.getElementById('restore-1') !== null", WAIT)
        .await;
    b.eval("document.getElementById('restore-1').click(); true")
        .await;
    b.wait_for(
        "location.pathname === '/templates/default' && document.getElementById('flash') !== null",
        WAIT,
    )
    .await;
    assert!(!site.live_html().contains(MOTTO));
    let rolled = site.send_message("after the rollback").await;
    assert!(
        rolled.contains("Ada Lovelace") && !rolled.contains(MOTTO),
        "stamped with the restored template:\n{rolled}"
    );
    b.close().await;

    // The audit log: the sign-in, the save and the rollback, each with before and after.
    let entries = site.audit_entries();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["sign_in", "template_save", "template_rollback"]);
    let (save, rollback) = (&entries[1], &entries[2]);
    for e in [save, rollback] {
        assert_eq!((e.who.as_str(), e.target.as_str()), (EDITOR, "default"));
    }
    assert_eq!(save.before["version"], 1);
    assert_eq!(save.after["version"], 2);
    assert!(!save.before["html"].as_str().unwrap().contains(MOTTO));
    assert!(save.after["html"].as_str().unwrap().contains(MOTTO));
    assert_eq!(rollback.before["version"], 2);
    assert_eq!(rollback.after["version"], 3);
    assert_eq!(rollback.after["html"], save.before["html"]);
}
