//! Shared by the Sent Items tests: the worker started against the fake Graph, polling, and
//! the "replaced exactly once" check.
#![allow(dead_code)]

use crate::fake_graph::{FakeGraph, Kind, MailMessage};
use sigstamp::directory::Directory;
use sigstamp::metrics::Metrics;
use sigstamp::sent_items::{worker, SentItems, SentItemsConfig, StatsDoc};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Worker {
    pub handle: SentItems,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub fn stats(&self) -> StatsDoc {
        self.handle.stats().doc()
    }

    /// Stop (as a crash would: jobs in flight are abandoned); the final counters.
    pub async fn stop(mut self) -> StatsDoc {
        self.shutdown.cancel();
        let _ = (&mut self.task).await;
        self.stats()
    }
}

pub fn config(spool: &Path) -> SentItemsConfig {
    SentItemsConfig {
        enabled: true,
        delay: Duration::from_secs(5),
        give_up_after: Duration::from_secs(15 * 60),
        spool: spool.to_path_buf(),
    }
}

pub fn start(fake: &FakeGraph, cfg: SentItemsConfig, directory: Arc<Directory>) -> Worker {
    let (handle, rx) = SentItems::open(&cfg, directory, Arc::new(Metrics::new())).unwrap();
    run(fake, cfg, handle, rx)
}

/// The worker of an already opened handle (jobs may have been queued before it starts).
pub fn run(
    fake: &FakeGraph,
    cfg: SentItemsConfig,
    handle: SentItems,
    rx: worker::Receiver,
) -> Worker {
    let client = fake
        .config()
        .client(fake.clock.clone(), worker::retry_policy())
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker::run(
        handle.clone(),
        rx,
        client,
        fake.clock.clone(),
        cfg,
        shutdown.clone(),
    ));
    Worker {
        handle,
        shutdown,
        task,
    }
}

/// Poll for up to `secs` seconds.
pub async fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

pub fn creates(fake: &FakeGraph) -> usize {
    fake.requests_of(Kind::Graph)
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path_and_query
                    .ends_with("/mailFolders/sentitems/messages")
        })
        .count()
}

/// Exactly one item in sentitems with `imid`: a tagged, non-draft replacement of `original`.
pub fn assert_replaced_once(
    fake: &FakeGraph,
    mailbox: &str,
    imid: &str,
    original: &str,
) -> MailMessage {
    let items: Vec<MailMessage> = fake
        .with_mail(|m| m.folder(mailbox, "sentitems"))
        .into_iter()
        .filter(|m| m.internet_message_id == imid)
        .collect();
    assert_eq!(items.len(), 1, "one item in Sent Items: {items:#?}");
    let r = items.into_iter().next().unwrap();
    assert!(!r.is_draft, "the replacement is not a draft");
    assert_eq!(
        r.replaces(),
        Some(original),
        "tagged with the original's id"
    );
    let deleted = fake.with_mail(|m| m.folder(mailbox, "deleteditems"));
    assert!(
        deleted.iter().any(|m| m.id == original),
        "the original went to Deleted Items"
    );
    r
}
