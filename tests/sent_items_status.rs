//! `/status` → `sent_items` {enabled, pending, replaced, not_found, failed, last_error}, the
//! same counters in `/metrics`, and the status page's "Sent Items update" section.

mod admin_support;
mod serve_support;

use admin_support::start_admin;
use serve_support::get_text;
use sigstamp::app::App;
use sigstamp::directory::Directory;
use sigstamp::metrics::Metrics;
use sigstamp::pipeline::Stamper;
use sigstamp::render::Templates;
use sigstamp::sent_items::{JobOutcome, SentItems, SentItemsConfig};
use sigstamp::status::Status;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn app(sent_items: impl FnOnce(Arc<Metrics>) -> SentItems) -> Arc<App> {
    let metrics = Arc::new(Metrics::new());
    let directory = Arc::new(Directory::new());
    Arc::new(App {
        config: Default::default(),
        directory: directory.clone(),
        stamper: Arc::new(Stamper::new(directory, Templates::embedded())),
        sent_items: sent_items(metrics.clone()),
        metrics,
        status: Arc::new(Status::default()),
        photos: Arc::new(sigstamp::directory::photo::NoPhotos),
        shutdown: CancellationToken::new(),
    })
}

#[tokio::test]
async fn disabled_shows_enabled_false_and_zeros() {
    let app = app(|_| SentItems::disabled());
    let (base, _task) = start_admin(app.clone()).await;
    let v = serve_support::get_json(&format!("{base}/status")).await;
    assert_eq!(
        v["sent_items"],
        serde_json::json!({"enabled": false, "pending": 0, "replaced": 0, "not_found": 0, "failed": 0, "last_error": null})
    );
    let page = get_text(&format!("{base}/")).await;
    assert!(page.contains("id=\"sent-items-enabled\">Off"), "{page}");
    app.shutdown.cancel();
}

#[tokio::test]
async fn counters_show_in_status_metrics_and_page() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SentItemsConfig {
        enabled: true,
        spool: tmp.path().join("spool"),
        ..Default::default()
    };
    let app = app(|m| {
        SentItems::open(&cfg, Arc::new(Directory::new()), m)
            .unwrap()
            .0
    });
    let stats = app.sent_items.stats();
    stats.record(JobOutcome::Replaced, None);
    stats.record(JobOutcome::Replaced, None);
    stats.record(JobOutcome::NotFound, None);
    stats.record(
        JobOutcome::Failed,
        Some("403 for mailbox <u1>: the app lacks Mail.ReadWrite".into()),
    );
    let (base, _task) = start_admin(app.clone()).await;
    let v = serve_support::get_json(&format!("{base}/status")).await;
    assert_eq!(
        v["sent_items"],
        serde_json::json!({"enabled": true, "pending": 0, "replaced": 2, "not_found": 1, "failed": 1,
            "last_error": "403 for mailbox <u1>: the app lacks Mail.ReadWrite"})
    );
    let metrics = get_text(&format!("{base}/metrics")).await;
    for line in [
        "sigstamp_sent_items_total{kind=\"replaced\"} 2",
        "sigstamp_sent_items_total{kind=\"not_found\"} 1",
        "sigstamp_sent_items_total{kind=\"failed\"} 1",
        "sigstamp_sent_items_pending 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let page = get_text(&format!("{base}/")).await;
    for want in [
        "id=\"sent-items-replaced\">2<",
        "id=\"sent-items-not-found\">1<",
        "id=\"sent-items-failed\">1<",
        "id=\"sent-items-pending\">0<",
        "403 for mailbox &lt;u1&gt;",
    ] {
        assert!(page.contains(want), "{want} in the page");
    }
    assert!(!page.contains("<u1>"), "the error is escaped");
    app.shutdown.cancel();
}
