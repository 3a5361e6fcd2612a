//! Prometheus metrics (prometheus-client). One registry per process, shared by every edge.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `relay`, `milter` or `cli`.
    pub edge: String,
    /// `stamped` or the reason it was left unchanged (see `Verdict::label`).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `token_expired`, `token_recovered`, `certificate_expiry`, `snapshot_failing` or
    /// `snapshot_recovered`.
    pub kind: String,
    /// `sent` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub messages: Family<OutcomeLabels, Counter>,
    pub stamp_seconds: Histogram,
    /// CPU time spent stamping (the histogram above is wall time).
    pub stamp_cpu_seconds: Counter<f64, AtomicU64>,
    pub relay_seconds: Histogram,
    pub next_hop_errors: Family<KindLabels, Counter>,
    pub directory_users: Gauge,
    /// Unix time of the last successful directory load or sync.
    pub directory_loaded_timestamp: Gauge<f64, AtomicU64>,
    /// 1 for the current token state, 0 for the others.
    pub token_state: Family<StateLabels, Gauge>,
    pub sync_seconds: Histogram,
    pub sync_failures: Family<KindLabels, Counter>,
    pub notifications: Family<NotificationLabels, Counter>,
    /// Users with a cached photo.
    pub directory_photos: Gauge,
    /// Photo checks that failed or were skipped (`forbidden`, `too_large`, `network`, …).
    pub photo_failures: Family<KindLabels, Counter>,
    /// Group-membership lookups that failed (`forbidden`, `unresolved`, `network`, …).
    pub group_failures: Family<KindLabels, Counter>,
    /// Sent Items jobs waiting in the spool.
    pub sent_items_pending: Gauge,
    /// Sent Items jobs by result (`replaced`, `not_found`, `failed`, `dropped`).
    pub sent_items: Family<KindLabels, Counter>,
    /// 1 while the directory snapshot cannot be written (a restart would lose the directory).
    pub snapshot_write_failing: Gauge,
    /// Unix time the directory snapshot was last written (0: never).
    pub snapshot_written_timestamp: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sigstamp");
        let messages = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages processed, by edge and outcome",
            messages.clone(),
        );
        let stamp_seconds = Histogram::new(exponential_buckets(0.000_005, 2.0, 20));
        registry.register(
            "stamp_seconds",
            "Time to stamp one message",
            stamp_seconds.clone(),
        );
        let stamp_cpu_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "stamp_cpu_seconds",
            "CPU time the stamping threads spent stamping (stamp_seconds is wall time, which \
             also counts waiting for a core)",
            stamp_cpu_seconds.clone(),
        );
        let relay_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 20));
        registry.register(
            "relay_seconds",
            "Time from end of DATA to the next hop's final reply",
            relay_seconds.clone(),
        );
        let next_hop_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "next_hop_errors",
            "Next-hop failures by kind",
            next_hop_errors.clone(),
        );
        let directory_users = Gauge::default();
        registry.register(
            "directory_users",
            "Users in the directory cache",
            directory_users.clone(),
        );
        let directory_loaded_timestamp = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "directory_loaded_timestamp_seconds",
            "Unix time of the last directory load or successful sync",
            directory_loaded_timestamp.clone(),
        );
        let token_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "token_state",
            "Graph token state (1 = current)",
            token_state.clone(),
        );
        let sync_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "sync_seconds",
            "Duration of Graph syncs",
            sync_seconds.clone(),
        );
        let sync_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "sync_failures",
            "Failed Graph syncs by kind",
            sync_failures.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Admin notification emails, by kind and result",
            notifications.clone(),
        );
        let directory_photos = Gauge::default();
        registry.register(
            "directory_photos",
            "Users with a cached Graph photo",
            directory_photos.clone(),
        );
        let photo_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "photo_failures",
            "Graph photo checks that failed or were skipped, by kind (forbidden = missing permission)",
            photo_failures.clone(),
        );
        let group_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "group_failures",
            "Graph group-membership lookups that failed, by kind (forbidden = missing GroupMember.Read.All)",
            group_failures.clone(),
        );
        let sent_items_pending = Gauge::default();
        registry.register(
            "sent_items_pending",
            "Sent Items update jobs waiting in the spool",
            sent_items_pending.clone(),
        );
        let sent_items = Family::<KindLabels, Counter>::default();
        registry.register(
            "sent_items",
            "Sent Items update jobs by result (replaced, not_found, failed, dropped)",
            sent_items.clone(),
        );
        let snapshot_write_failing = Gauge::default();
        registry.register(
            "snapshot_write_failing",
            "1 while the directory snapshot cannot be written: a restart would not start with the current directory",
            snapshot_write_failing.clone(),
        );
        let snapshot_written_timestamp = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "snapshot_written_timestamp_seconds",
            "Unix time the directory snapshot was last written or loaded (0: never)",
            snapshot_written_timestamp.clone(),
        );
        Metrics {
            registry,
            messages,
            stamp_seconds,
            stamp_cpu_seconds,
            relay_seconds,
            next_hop_errors,
            directory_users,
            directory_loaded_timestamp,
            token_state,
            sync_seconds,
            sync_failures,
            notifications,
            directory_photos,
            photo_failures,
            group_failures,
            sent_items_pending,
            sent_items,
            snapshot_write_failing,
            snapshot_written_timestamp,
        }
    }

    pub fn count_message(&self, edge: &str, outcome: &str) {
        self.messages
            .get_or_create(&OutcomeLabels {
                edge: edge.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn count_notification(&self, kind: &str, result: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Set the snapshot gauges from the snapshot's state on `/status`.
pub fn snapshot_gauges(m: &Metrics, status: &crate::status::Status) {
    let snap = status.snapshot.load();
    let s = snap.as_ref().as_ref();
    m.snapshot_write_failing
        .set(i64::from(s.is_some_and(|s| s.error.is_some())));
    m.snapshot_written_timestamp.set(
        s.and_then(|s| s.written_at)
            .map_or(0.0, |t| t.unix_timestamp_nanos() as f64 / 1e9),
    );
}
