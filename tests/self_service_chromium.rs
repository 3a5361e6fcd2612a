//! The self-service page in headless Chromium, over HTTPS with a test certificate: a plain
//! user signs in through the fake Entra ID's login form, sees their signature, is told
//! what is wrong with a bad value, saves good ones, and the next message through the relay
//! carries them. With `SIGSTAMP_SCREENSHOT=FILE` the page is saved as a PNG (the README's
//! screenshot is made that way).

mod admin_site;
mod admin_support;
mod cdp_support;
mod fake_graph;
mod smtp_support;

use admin_site::{site, SELF_SERVICE};
use cdp_support::{chromium, spki_hash, Browser};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        return;
    };
    let mut s = site(SELF_SERVICE).await;
    let spki = spki_hash(&s.pki.server_cert);
    let base = s.base.clone();
    let browser = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(&chromium, &spki, 1000, 900);
        // Sign in: the page sends the browser to the identity provider's form and back.
        b.goto(&format!("{base}/self-service"));
        b.wait_for("document.getElementById('login_upn')", LIMIT);
        b.eval(
            "document.getElementById('login_upn').value = 'ada@example.com';\
             document.getElementById('login_name').value = 'Ada Lovelace';\
             document.getElementById('sign_in').click(); true",
        )
        .unwrap();
        b.wait_for(
            "location.pathname === '/self-service' && document.getElementById('details-form')",
            LIMIT,
        );
        let who = b
            .eval("document.getElementById('who').textContent")
            .unwrap();
        assert_eq!(who, "ada@example.com (user)");
        // The signature as stamped, in its sandboxed frame.
        let frame = b
            .eval("document.getElementById('preview-html').getAttribute('srcdoc')")
            .unwrap();
        assert!(frame.as_str().unwrap().contains("Ada Lovelace"), "{frame}");
        let text = b
            .eval("document.getElementById('preview-text').textContent")
            .unwrap();
        assert!(!text.as_str().unwrap().contains("M +"), "{text}");

        // A bad value: the page says what is wrong and keeps what was typed.
        b.eval(
            "document.getElementById('f-mobilePhone').value = 'call me maybe';\
             document.getElementById('save').click(); true",
        )
        .unwrap();
        let error = b.wait_for(
            "document.getElementById('error-mobilePhone') && \
             document.getElementById('error-mobilePhone').textContent",
            LIMIT,
        );
        assert!(
            error.as_str().unwrap().contains("International format"),
            "{error}"
        );
        assert_eq!(
            b.eval("document.getElementById('f-mobilePhone').value")
                .unwrap(),
            "call me maybe"
        );

        // Good values: saved, and the signature on the page shows them.
        b.eval(
            "document.getElementById('f-mobilePhone').value = '+49 151 2345678';\
             document.getElementById('f-pronouns').value = 'she/her';\
             document.getElementById('save').click(); true",
        )
        .unwrap();
        b.wait_for("document.getElementById('saved')", LIMIT);
        let text = b
            .eval("document.getElementById('preview-text').textContent")
            .unwrap();
        assert!(
            text.as_str().unwrap().contains("M +49 151 2345678"),
            "{text}"
        );
        assert!(b
            .eval("document.getElementById('reset-mobilePhone') !== null")
            .unwrap()
            .as_bool()
            .unwrap());
        if let Some(path) = std::env::var_os("SIGSTAMP_SCREENSHOT") {
            std::fs::write(path, b.screenshot()).unwrap();
        }
        b
    })
    .await
    .unwrap();
    drop(browser);

    let mail = s.send_mail("ada@example.com").await;
    assert!(mail.contains("M +49 151 2345678"), "{mail}");
    let actions: Vec<String> = s
        .audit_entries()
        .into_iter()
        .filter(|e| e.who == "ada@example.com")
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["sign_in", "self_service_set"]);
}
