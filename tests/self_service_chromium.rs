//! The self-service page in headless Chromium, over HTTPS with a test certificate: a plain
//! user signs in through the fake Entra ID's login form, sees their signature, is told
//! what is wrong with a bad value, saves good ones, and the next message through the relay
//! carries them; Chromium connects to loopback only. With `SIGSTAMP_SCREENSHOTS=DIR` the
//! whole page is saved as `DIR/self-service.png` (the README's screenshot, docs/img).

mod admin_site;
mod admin_support;
mod cdp_support;
mod fake_graph;
mod smtp_support;
mod templates_support;

use admin_site::site;
use cdp_support::{chromium, spki_pin, Browser};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn text_of(id: &str) -> String {
    format!("document.getElementById('{id}').textContent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        return;
    };
    let mut s = site().await;
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_pin(&s.pki.server_cert)
    );
    let mut b = Browser::launch(&chromium, &[pin]).await;
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1000, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;

    // Sign in: the page sends the browser to the identity provider's form and back.
    b.goto(&format!("{}/self-service", s.base)).await;
    b.wait_for("document.getElementById('login_upn')", WAIT)
        .await;
    b.eval(
        "document.getElementById('login_upn').value = 'ada@example.com';\
         document.getElementById('login_name').value = 'Ada Lovelace';\
         document.getElementById('sign_in').click(); true",
    )
    .await;
    b.wait_for(
        "location.pathname === '/self-service' && document.getElementById('details-form')",
        WAIT,
    )
    .await;
    assert_eq!(b.eval(&text_of("who")).await, "ada@example.com (user)");
    // The signature as stamped, in its sandboxed frame; no mobile number yet.
    let frame = b
        .eval("document.getElementById('preview-html').getAttribute('srcdoc')")
        .await;
    assert!(frame.as_str().unwrap().contains("Ada Lovelace"), "{frame}");
    let text = b.eval(&text_of("preview-text")).await;
    assert!(!text.as_str().unwrap().contains("\nM "), "{text}");

    // A bad value: the page says what is wrong and keeps what was typed.
    b.eval(
        "document.getElementById('f-mobilePhone').value = 'call me maybe';\
         document.getElementById('save').click(); true",
    )
    .await;
    b.wait_for("document.getElementById('error-mobilePhone')", WAIT)
        .await;
    let error = b.eval(&text_of("error-mobilePhone")).await;
    assert!(
        error.as_str().unwrap().contains("International format"),
        "{error}"
    );
    assert_eq!(
        b.eval("document.getElementById('f-mobilePhone').value")
            .await,
        "call me maybe"
    );

    // Good values: saved, and the signature on the page shows them.
    b.eval(
        "document.getElementById('f-mobilePhone').value = '+49 151 2345678';\
         document.getElementById('f-pronouns').value = 'she/her';\
         document.getElementById('save').click(); true",
    )
    .await;
    b.wait_for("document.getElementById('saved')", WAIT).await;
    let text = b.eval(&text_of("preview-text")).await;
    assert!(
        text.as_str().unwrap().contains("M +49 151 2345678"),
        "{text}"
    );
    assert_eq!(
        b.eval("document.getElementById('reset-mobilePhone') !== null")
            .await,
        true
    );
    if let Some(dir) = std::env::var_os("SIGSTAMP_SCREENSHOTS") {
        // The whole page, not only the window.
        let size = b.call("Page.getLayoutMetrics", json!({})).await["cssContentSize"].clone();
        let shot = b
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true, "clip": {
                    "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1
                }}),
            )
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(std::path::Path::new(&dir).join("self-service.png"), png).unwrap();
    }
    b.close().await;

    let mail = s.send_message("hi").await;
    assert!(mail.contains(">+49 151 2345678</a>"), "{mail}");
    let actions: Vec<String> = s
        .audit_entries()
        .into_iter()
        .filter(|e| e.who == "ada@example.com")
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["sign_in", "self_service_set"]);
}
