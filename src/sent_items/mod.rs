//! Sent Items update (issue 12, `shared/graph-contract.md` §8): after the next hop accepted
//! a message sigstamp stamped for a directory user, the copy in the sender's *Sent Items*
//! is replaced through Microsoft Graph by one carrying the signature.
//!
//! The edges call [`SentItems::enqueue`] after acceptance. A job is one file in the spool
//! (written atomically before it counts as pending) and is removed when done or given up, so
//! a restart resumes every pending job. The [`worker`] finds the sent copy by
//! `internetMessageId`, creates the non-draft replacement (tagged, so a retried job finds it
//! instead of creating a second one) and deletes the original only once the replacement
//! reads back as non-draft.

pub mod job;
pub mod mailbox;
pub mod spool;
pub mod worker;

use crate::config::ConfigError;
use crate::directory::Directory;
use crate::metrics::{KindLabels, Metrics};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// At most this many jobs are pending; further ones are dropped and counted.
pub const MAX_PENDING: u64 = 10_000;

pub use crate::config::SentItemsConfig;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Replaced,
    NotFound,
    Failed,
    /// Not queued: [`MAX_PENDING`] jobs were already pending.
    Dropped,
}

impl JobOutcome {
    pub fn label(self) -> &'static str {
        match self {
            JobOutcome::Replaced => "replaced",
            JobOutcome::NotFound => "not_found",
            JobOutcome::Failed => "failed",
            JobOutcome::Dropped => "dropped",
        }
    }
}

/// The counters `/status` shows (and metrics mirror).
#[derive(Default)]
pub struct Stats {
    enabled: AtomicBool,
    pending: AtomicU64,
    replaced: AtomicU64,
    not_found: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
    metrics: Option<Arc<Metrics>>,
}

/// `/status` → `sent_items`. Field names are a contract (issue 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsDoc {
    pub enabled: bool,
    pub pending: u64,
    pub replaced: u64,
    pub not_found: u64,
    /// Jobs given up on an error, and jobs dropped because the queue was full.
    pub failed: u64,
    pub last_error: Option<String>,
}

impl Stats {
    fn new(enabled: bool, metrics: Arc<Metrics>) -> Self {
        Stats {
            enabled: AtomicBool::new(enabled),
            metrics: Some(metrics),
            ..Stats::default()
        }
    }

    pub fn doc(&self) -> StatsDoc {
        StatsDoc {
            enabled: self.enabled.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed) + self.dropped.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap().clone(),
        }
    }

    /// Reserve a pending slot; `false` when [`MAX_PENDING`] are taken.
    fn reserve(&self) -> bool {
        self.pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_PENDING).then_some(n + 1)
            })
            .is_ok()
    }

    /// Jobs found in the spool at start.
    pub(crate) fn add_pending(&self, n: u64) {
        self.pending.fetch_add(n, Ordering::Relaxed);
        self.set_pending_gauge();
    }

    pub(crate) fn release(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.set_pending_gauge();
    }

    fn set_pending_gauge(&self) {
        if let Some(m) = &self.metrics {
            m.sent_items_pending
                .set(self.pending.load(Ordering::Relaxed) as i64);
        }
    }

    /// Count a finished (or dropped) job; `error` becomes `last_error`.
    pub fn record(&self, outcome: JobOutcome, error: Option<String>) {
        let counter = match outcome {
            JobOutcome::Replaced => &self.replaced,
            JobOutcome::NotFound => &self.not_found,
            JobOutcome::Failed => &self.failed,
            JobOutcome::Dropped => &self.dropped,
        };
        // The error first: whoever sees the count sees its error.
        if let Some(e) = error {
            *self.last_error.lock().unwrap() = Some(e);
        }
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.sent_items
                .get_or_create(&KindLabels {
                    kind: outcome.label().into(),
                })
                .inc();
        }
    }

    pub fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap() = Some(error);
    }
}

/// What the edges hold: cheap to clone; a disabled handle does nothing.
#[derive(Clone, Default)]
pub struct SentItems {
    inner: Option<Arc<Inner>>,
    stats: Arc<Stats>,
}

struct Inner {
    spool: spool::Spool,
    directory: Arc<Directory>,
    queued: tokio::sync::mpsc::UnboundedSender<worker::Queued>,
}

impl SentItems {
    /// Off: `enqueue` does nothing, `/status` shows `enabled: false`.
    pub fn disabled() -> Self {
        SentItems::default()
    }

    /// An enabled handle and the receiving end the [`worker`] drains, holding already the
    /// jobs found in the spool. The spool directory is created now, so a bad path stops
    /// start-up naming the key.
    pub fn open(
        cfg: &SentItemsConfig,
        directory: Arc<Directory>,
        metrics: Arc<Metrics>,
    ) -> Result<(SentItems, worker::Receiver), ConfigError> {
        let spool = spool::Spool::open(&cfg.spool).map_err(|e| {
            ConfigError::invalid("sent_items.spool", format!("{}: {e}", cfg.spool.display()))
        })?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stats = Arc::new(Stats::new(true, metrics));
        // The jobs a previous run left, queued here, before any edge can add one: every job
        // reaches the worker exactly once.
        let ids = spool.list().map_err(|e| {
            ConfigError::invalid("sent_items.spool", format!("{}: {e}", cfg.spool.display()))
        })?;
        let mut loaded = 0;
        for id in ids {
            match spool.read(&id) {
                Ok(job) => {
                    let _ = tx.send(worker::Queued::of(&job));
                    loaded += 1;
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "sent items: unreadable job file set aside (.bad)");
                    spool.quarantine(&id);
                    stats.record(
                        JobOutcome::Failed,
                        Some(format!("unreadable job file {id}: {e}")),
                    );
                }
            }
        }
        if loaded > 0 {
            tracing::info!(
                jobs = loaded,
                "sent items: resuming pending jobs from the spool"
            );
        }
        stats.add_pending(loaded);
        let handle = SentItems {
            inner: Some(Arc::new(Inner {
                spool,
                directory,
                queued: tx,
            })),
            stats,
        };
        Ok((handle, rx))
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub(crate) fn spool(&self) -> Option<&spool::Spool> {
        self.inner.as_deref().map(|i| &i.spool)
    }

    /// The next hop accepted `stamped`, stamped for the directory user `sender`: queue the
    /// replacement of their sent copy. Returns at once; the job is built and written to the
    /// spool in the background and counts as pending once its file is on disk.
    pub fn enqueue(&self, sender: &str, stamped: Vec<u8>) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        if !self.stats.reserve() {
            tracing::warn!(%sender, "sent items: {MAX_PENDING} jobs pending; this one is dropped");
            self.stats.record(
                JobOutcome::Dropped,
                Some(format!(
                    "queue full ({MAX_PENDING} pending): a job was dropped"
                )),
            );
            return;
        }
        self.stats.set_pending_gauge();
        let stats = self.stats.clone();
        let sender = sender.to_string();
        tokio::spawn(async move {
            let work = {
                let inner = inner.clone();
                move || -> Result<Option<worker::Queued>, String> {
                    // The Graph object id when the directory has one; else the address (a
                    // UPN works too).
                    let mailbox = inner
                        .directory
                        .lookup(&sender)
                        .and_then(|u| u.id().map(str::to_string))
                        .unwrap_or_else(|| sender.clone());
                    let Some(job) = job::Job::from_stamped(&mailbox, &sender, &stamped)? else {
                        return Ok(None);
                    };
                    inner.spool.write(&job).map_err(|e| e.to_string())?;
                    Ok(Some(worker::Queued::of(&job)))
                }
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(Some(q))) => {
                    if inner.queued.send(q).is_err() {
                        // The worker has stopped: the file stays for the next start.
                        tracing::debug!("sent items: worker stopped; job left in the spool");
                    }
                }
                Ok(Ok(None)) => stats.release(),
                Ok(Err(e)) => {
                    stats.release();
                    tracing::warn!(error = %e, "sent items: cannot queue the job");
                    stats.record(JobOutcome::Failed, Some(format!("cannot queue a job: {e}")));
                }
                Err(e) => {
                    stats.release();
                    tracing::warn!(error = %e, "sent items: queueing task failed");
                    stats.record(JobOutcome::Failed, Some(format!("cannot queue a job: {e}")));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::PathBuf;
    use std::time::Duration;

    const GRAPH: &str = "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";

    #[test]
    fn off_by_default_with_the_issue_defaults() {
        let cfg = Config::parse("").unwrap();
        assert!(!cfg.sent_items.enabled);
        assert_eq!(cfg.sent_items.delay, Duration::from_secs(5));
        assert_eq!(cfg.sent_items.give_up_after, Duration::from_secs(900));
        assert_eq!(cfg.sent_items.spool, PathBuf::from("state/sent-items"));
    }

    #[test]
    fn the_four_keys_parse() {
        let text = format!(
            "{GRAPH}[sent_items]\nenabled = true\ndelay = \"10s\"\ngive_up_after = \"1h\"\nspool = \"/var/lib/sigstamp/si\"\n"
        );
        let cfg = Config::parse(&text).unwrap();
        let s = cfg.sent_items;
        assert!(s.enabled);
        assert_eq!(s.delay, Duration::from_secs(10));
        assert_eq!(s.give_up_after, Duration::from_secs(3600));
        assert_eq!(s.spool, PathBuf::from("/var/lib/sigstamp/si"));
    }

    #[test]
    fn bad_configs_name_the_key() {
        let table = [
            ("[sent_items]\nenabled = true\n", "sent_items.enabled"),
            (
                "[graph]\ntenant_id = \"t\"\nclient_id = \"c\"\nrefresh_token_file = \"rt\"\n[sent_items]\nenabled = true\n",
                "sent_items.enabled",
            ),
            (
                &format!("{GRAPH}[sent_items]\nenabled = true\ndelay = \"1m\"\ngive_up_after = \"30s\"\n"),
                "sent_items.give_up_after",
            ),
            (&format!("{GRAPH}[sent_items]\nenabled = true\nspool = \"\"\n"), "sent_items.spool"),
            ("[sent_items]\nenable = true\n", "enable"),
            ("[sent_items]\ndelay = \"soon\"\n", "delay"),
        ];
        for (text, key) in table {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
        // Disabled, nothing else is required.
        Config::parse("[sent_items]\nenabled = false\n").unwrap();
    }

    #[test]
    fn the_queue_is_bounded() {
        let stats = Stats::new(true, Arc::new(Metrics::new()));
        stats.pending.store(MAX_PENDING - 1, Ordering::Relaxed);
        assert!(stats.reserve());
        assert!(!stats.reserve(), "the 10,001st is refused");
        stats.release();
        assert!(stats.reserve());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SentItemsConfig {
            enabled: true,
            spool: tmp.path().join("spool"),
            ..SentItemsConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        let (h, _rx) = SentItems::open(&cfg, Arc::new(Directory::new()), metrics.clone()).unwrap();
        h.stats.pending.store(MAX_PENDING, Ordering::Relaxed);
        h.enqueue("a@x", b"Message-ID: <m@x>\r\n\r\nhi\r\n".to_vec());
        let doc = h.stats().doc();
        assert_eq!(doc.pending, MAX_PENDING);
        assert_eq!(doc.failed, 1, "dropped counts as failed");
        assert!(doc.last_error.unwrap().contains("queue full"));
        let text = metrics.encode();
        assert!(
            text.contains("sigstamp_sent_items_total{kind=\"dropped\"} 1"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path().join("spool")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn a_queued_job_is_on_disk_before_it_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SentItemsConfig {
            enabled: true,
            spool: tmp.path().join("spool"),
            ..SentItemsConfig::default()
        };
        let (h, mut rx) =
            SentItems::open(&cfg, Arc::new(Directory::new()), Arc::new(Metrics::new())).unwrap();
        h.enqueue("a@x", b"Message-ID: <m@x>\r\n\r\nhi\r\n".to_vec());
        let q = rx.recv().await.unwrap();
        let job = h.spool().unwrap().read(&q.id).unwrap();
        assert_eq!(job.internet_message_id, "<m@x>");
        assert_eq!(job.mailbox, "a@x", "no directory id: the address");
        assert_eq!(h.stats().doc().pending, 1);
    }
}
