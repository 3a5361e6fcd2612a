//! The admin HTTP endpoints over real HTTP on loopback.

mod admin_support;

use admin_support::{app, set_token, start_admin};
use serde_json::Value;
use sigstamp::status::TokenState;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

const CONFIG: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n[smtp]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:25\"\n";

async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.expect("admin HTTP answers");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn healthz_is_ok_and_server_stops_on_shutdown() {
    let app = app(CONFIG);
    let (base, task) = start_admin(app.clone()).await;
    let (code, _, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(code, 200);
    assert_eq!(body.trim(), "ok");

    app.shutdown.cancel();
    let res = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stops after shutdown");
    res.unwrap().unwrap();
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

#[tokio::test]
async fn readyz_flips_with_directory_and_smtp() {
    let app = app(CONFIG);
    let (base, _task) = start_admin(app.clone()).await;
    let url = format!("{base}/readyz");

    let (code, _, body) = get(&url).await;
    assert_eq!(code, 503);
    assert!(body.contains("directory not loaded"), "{body}");
    assert!(body.contains("smtp not listening"), "{body}");

    app.status.directory_loaded.store(true, Ordering::Relaxed);
    let (code, _, body) = get(&url).await;
    assert_eq!(code, 503);
    assert!(!body.contains("directory"), "{body}");
    assert!(body.contains("smtp not listening"), "{body}");

    app.status.smtp_listening.store(true, Ordering::Relaxed);
    let (code, _, _) = get(&url).await;
    assert_eq!(code, 200);

    app.status.directory_loaded.store(false, Ordering::Relaxed);
    assert_eq!(get(&url).await.0, 503);
}

#[tokio::test]
async fn metrics_exposes_counters_and_current_gauges() {
    let app = app(CONFIG);
    let (base, _task) = start_admin(app.clone()).await;
    app.metrics.count_message("relay", "stamped");
    app.metrics.count_message("relay", "stamped");
    app.metrics.count_message("milter", "unknown_sender");
    set_token(
        &app,
        TokenState::Expired,
        Some("AADSTS7000222"),
        OffsetDateTime::now_utc(),
    );

    let (code, ctype, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    assert_eq!(ctype, sigstamp::admin::METRICS_CONTENT_TYPE);
    assert!(ctype.starts_with("application/openmetrics-text"));
    for line in [
        "sigstamp_messages_total{edge=\"relay\",outcome=\"stamped\"} 2",
        "sigstamp_messages_total{edge=\"milter\",outcome=\"unknown_sender\"} 1",
        // Nobody set the gauge: the scrape fills it from the directory.
        "sigstamp_directory_users 2",
        "sigstamp_token_state{state=\"expired\"} 1",
        "sigstamp_token_state{state=\"valid\"} 0",
        "# TYPE sigstamp_stamp_seconds histogram",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(body.trim_end().ends_with("# EOF"));
    let loaded = body
        .lines()
        .find_map(|l| l.strip_prefix("sigstamp_directory_loaded_timestamp_seconds "))
        .expect("loaded timestamp");
    assert!(loaded.parse::<f64>().unwrap() > 1.0e9, "{loaded}");

    set_token(&app, TokenState::Valid, None, OffsetDateTime::now_utc());
    let (_, _, body) = get(&format!("{base}/metrics")).await;
    assert!(body.contains("sigstamp_token_state{state=\"valid\"} 1"));
    assert!(body.contains("sigstamp_token_state{state=\"expired\"} 0"));
}

/// The /status document has exactly the contracted fields in every token state.
#[tokio::test]
async fn status_json_shape_in_every_state() {
    let app = app(CONFIG);
    let (base, _task) = start_admin(app.clone()).await;
    let since = datetime!(2026-11-20 08:30:00 UTC);
    let cases = [
        (TokenState::Valid, None, "valid"),
        (TokenState::Expired, Some("AADSTS7000222"), "expired"),
        (TokenState::Failing, None, "failing"),
        (TokenState::Unconfigured, None, "unconfigured"),
        (TokenState::Starting, None, "starting"),
    ];
    for (i, (state, code, name)) in cases.into_iter().enumerate() {
        set_token(&app, state, code, since);
        let last_sync = (i % 2 == 1).then_some(datetime!(2026-11-20 09:00:00 UTC));
        app.status.last_sync.store(Arc::new(last_sync));

        let (status, ctype, body) = get(&format!("{base}/status")).await;
        assert_eq!(status, 200);
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            keys(&v),
            BTreeSet::from(["token", "directory", "sent_items", "config"]),
            "{body}"
        );
        assert_eq!(
            keys(&v["sent_items"]),
            BTreeSet::from([
                "enabled",
                "pending",
                "replaced",
                "not_found",
                "failed",
                "last_error"
            ]),
            "{body}"
        );
        assert_eq!(
            keys(&v["config"]),
            BTreeSet::from(["loaded_at", "error"]),
            "{body}"
        );
        assert!(v["config"]["error"].is_null(), "{body}");
        let t = &v["token"];
        assert_eq!(
            keys(t),
            BTreeSet::from(["state", "error_code", "description", "since"]),
            "{body}"
        );
        assert_eq!(t["state"], name);
        match code {
            Some(c) => assert_eq!(t["error_code"], c),
            None => assert!(t["error_code"].is_null(), "{body}"),
        }
        assert!(t["description"].is_string());
        let s = OffsetDateTime::parse(t["since"].as_str().unwrap(), &Rfc3339).unwrap();
        assert_eq!(s, since);

        let d = &v["directory"];
        assert_eq!(
            keys(d),
            BTreeSet::from(["users", "source", "last_sync", "snapshot"]),
            "{body}"
        );
        assert!(d["snapshot"].is_null(), "no snapshot configured: {body}");
        assert_eq!(d["users"], 2);
        assert_eq!(d["source"], "file");
        match last_sync {
            Some(ls) => {
                let got = OffsetDateTime::parse(d["last_sync"].as_str().unwrap(), &Rfc3339);
                assert_eq!(got.unwrap(), ls);
            }
            None => assert!(d["last_sync"].is_null(), "{body}"),
        }
    }

    // With a snapshot: its path, when it was written, and why it cannot be written now.
    let written = datetime!(2026-11-20 09:00:00 UTC);
    let path = std::path::Path::new("state/directory.json");
    app.status.update_snapshot(path, |s| s.ok(Some(written)));
    let (_, _, body) = get(&format!("{base}/status")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let snap = &v["directory"]["snapshot"];
    assert_eq!(
        keys(snap),
        BTreeSet::from(["path", "written_at", "error"]),
        "{body}"
    );
    assert_eq!(snap["path"], "state/directory.json");
    assert_eq!(snap["written_at"], "2026-11-20T09:00:00Z");
    assert!(snap["error"].is_null(), "{body}");
    app.status
        .update_snapshot(path, |s| s.failed("disk full".into(), written));
    let (_, _, body) = get(&format!("{base}/status")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["directory"]["snapshot"]["error"], "disk full", "{body}");
    assert_eq!(
        v["directory"]["snapshot"]["written_at"],
        "2026-11-20T09:00:00Z"
    );
    let (_, _, metrics) = get(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("sigstamp_snapshot_write_failing 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sigstamp_snapshot_written_timestamp_seconds 1795"),
        "{metrics}"
    );
}

#[test]
fn listen_defaults_to_loopback_and_must_be_an_address() {
    let cfg = sigstamp::config::Config::parse("").unwrap();
    assert_eq!(cfg.admin.listen, "127.0.0.1:8025");
    assert!(cfg.admin.listen_addr().unwrap().ip().is_loopback());
    let err = sigstamp::config::Config::parse("[admin]\nlisten = \"localhost:8025\"\n")
        .expect_err("a host name is refused");
    assert!(err.to_string().contains("admin.listen"), "{err}");
    // Off loopback the admin web needs sign-in and TLS; the refusal names the keys.
    let err = sigstamp::config::Config::parse("[admin]\nlisten = \"0.0.0.0:8025\"\n")
        .expect_err("a non-loopback listener without sign-in and TLS is refused");
    let msg = err.to_string();
    for key in ["admin.listen", "[admin.auth]", "tls_cert", "tls_key"] {
        assert!(msg.contains(key), "{key} in {msg}");
    }
}

#[tokio::test]
async fn run_binds_the_configured_address() {
    // Find a free port, then let `run` bind it from the config.
    let port = sigstamp_testkit::free_port();
    let app = app(&format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"));
    let task = tokio::spawn(sigstamp::admin::run(
        app.config.admin.clone(),
        app.admin_state(),
        app.shutdown.clone(),
    ));
    let url = format!("http://127.0.0.1:{port}/healthz");
    let mut ok = false;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(&url).await {
            ok = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "run serves /healthz on the configured port");
    app.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn readyz_with_only_the_milter_waits_for_the_milter() {
    let app = app("[admin]\nlisten = \"127.0.0.1:0\"\n[milter]\nlisten = \"127.0.0.1:0\"\n");
    let (base, _task) = start_admin(app.clone()).await;
    let url = format!("{base}/readyz");
    app.status.directory_loaded.store(true, Ordering::Relaxed);
    let (code, _, body) = get(&url).await;
    assert_eq!(code, 503);
    assert!(body.contains("milter not listening"), "{body}");
    assert!(!body.contains("smtp"), "no [smtp] section: {body}");
    app.status.milter_listening.store(true, Ordering::Relaxed);
    assert_eq!(get(&url).await.0, 200);
}
