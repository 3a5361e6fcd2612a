//! The Microsoft Graph source (issue 4, `shared/graph-contract.md`): token providers, delta
//! sync of `/users/delta`, the on-disk snapshot and the token state shown by `/status`.
//!
//! [`run`] is the background refresher of `sigstamp serve`: it seeds the directory from the
//! snapshot before any Graph call, then syncs every `sync_interval`, backing off while the
//! token endpoint or Graph fail, and keeps the last-known users the whole time.

pub mod client;
pub mod clock;
pub mod error;
pub mod extras;
pub mod groups;
pub mod photos;
pub mod state;
pub mod sync;
pub mod token;

pub use crate::config::{AssertionAlgorithm, GraphConfig};
use crate::directory::{snapshot, Directory, Source};
use crate::metrics::Metrics;
use crate::status::Status;
use client::{GraphClient, RetryPolicy};
use clock::Clock;
use error::GraphError;
use state::TokenTracker;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use sync::{Progress, SyncReport, Syncer};
use token::{ClientAuth, Grant, Secret, TokenProvider};
use tokio_util::sync::CancellationToken;

impl GraphConfig {
    /// The token provider's client authentication, from the configured credential.
    pub fn client_auth(&self) -> ClientAuth {
        if let Some(s) = &self.client_secret {
            ClientAuth::Secret(Secret::Inline(s.clone()))
        } else if let Some(p) = &self.client_secret_file {
            ClientAuth::Secret(Secret::File(p.clone()))
        } else if let (Some(cert), Some(key)) = (&self.client_certificate, &self.client_key) {
            ClientAuth::Certificate {
                cert: cert.clone(),
                key: key.clone(),
                algorithm: self.assertion_algorithm,
            }
        } else {
            ClientAuth::None
        }
    }

    /// Delegated when a refresh-token file is configured, app-only otherwise.
    pub fn grant(&self) -> Grant {
        match &self.refresh_token_file {
            Some(p) => Grant::RefreshToken(p.clone()),
            None => Grant::ClientCredentials,
        }
    }

    pub fn http_client(&self) -> Result<reqwest::Client, GraphError> {
        reqwest::Client::builder()
            .timeout(self.request_timeout)
            .user_agent(concat!("sigstamp/", env!("CARGO_PKG_VERSION")))
            // Only loopback may be plain http (validate()); never follow a redirect off-host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| GraphError::Transport {
                what: "the HTTP client",
                source,
            })
    }

    pub fn token_provider(&self, http: reqwest::Client, clock: Arc<dyn Clock>) -> TokenProvider {
        TokenProvider::new(
            http,
            &self.authority,
            &self.tenant_id,
            &self.client_id,
            self.client_auth(),
            self.grant(),
            clock,
        )
    }

    /// The Graph client with its token provider.
    pub fn client(
        &self,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Result<GraphClient, GraphError> {
        let http = self.http_client()?;
        let tokens = self.token_provider(http.clone(), clock.clone());
        Ok(GraphClient::new(http, &self.endpoint, tokens, clock, retry))
    }
}

/// Where a sync's results go: the shared cache, the snapshot, `/status` and metrics.
#[derive(Clone)]
pub struct SyncTarget {
    pub directory: Arc<Directory>,
    pub status: Arc<Status>,
    pub metrics: Arc<Metrics>,
    pub snapshot: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
}

impl SyncTarget {
    /// Seed the syncer (and the directory, unless `sigstamp serve` already did at start) from
    /// the snapshot, so a restart continues incrementally. The file is read once: what start-up
    /// loaded is taken from the directory, and a snapshot start-up found unusable is not read
    /// again.
    pub fn seed(&self, syncer: &mut Syncer) {
        let Some(path) = &self.snapshot else { return };
        let opened = self.status.snapshot.load().is_some();
        if !opened && self.directory.source() == Source::Empty {
            if let Some(l) = snapshot::open_at_start(path, &self.directory, &self.status) {
                self.loaded(l.users, l.written_at);
            }
        }
        if let Some(l) = self.directory.from_snapshot() {
            let base = self.directory.base_users();
            syncer.seed_from(&base, l.delta_link.clone(), l.delta_at);
        }
    }

    fn loaded(&self, users: usize, at: time::OffsetDateTime) {
        self.metrics.directory_users.set(users as i64);
        self.metrics
            .directory_loaded_timestamp
            .set(at.unix_timestamp() as f64);
        self.status.directory_loaded.store(true, Ordering::Relaxed);
    }

    /// Publish a successful round: cache, snapshot, status, metrics.
    pub async fn publish(
        &self,
        syncer: &Syncer,
        report: &SyncReport,
    ) -> Result<(), snapshot::SnapshotError> {
        // A quiet incremental round changes nothing: skip rebuilding the index.
        let unchanged =
            !report.full && report.entries == 0 && self.directory.source() == Source::Graph;
        // The syncer's users are the directory's: publishing copies no user.
        let users = (!unchanged).then(|| syncer.users());
        let link = syncer.delta_link().map(str::to_string);
        self.publish_users(users, link, syncer.delta_at(), report)
            .await
    }

    /// [`SyncTarget::publish`] from a syncer's parts: `users` (`None`: unchanged) replace the
    /// directory's base users without another copy being kept.
    async fn publish_users(
        &self,
        users: Option<Vec<Arc<crate::directory::User>>>,
        link: Option<String>,
        delta_at: Option<time::OffsetDateTime>,
        report: &SyncReport,
    ) -> Result<(), snapshot::SnapshotError> {
        self.metrics
            .sync_seconds
            .observe(report.duration.as_secs_f64());
        let now = self.clock.now();
        self.status.last_sync.store(Arc::new(Some(now)));
        if let Some(users) = users {
            self.directory.replace_shared_users(users, Source::Graph);
        }
        self.loaded(report.users, now);
        let Some(path) = self.snapshot.clone() else {
            return Ok(());
        };
        // Written from the directory's own base users: no further copy of the tenant.
        let users = self.directory.base_users();
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let snap = snapshot::SnapshotRef {
                written_at: now,
                delta_link: link.as_deref(),
                delta_at,
                users: &users,
            };
            snapshot::write(&target, &snap)
        })
        .await
        .unwrap_or_else(|e| panic!("snapshot writer panicked: {e}"));
        self.snapshot_written(&path, &written, now);
        written
    }

    /// Show a snapshot write's outcome on `/status` and in the metrics.
    fn snapshot_written(
        &self,
        path: &std::path::Path,
        r: &Result<(), snapshot::SnapshotError>,
        now: time::OffsetDateTime,
    ) {
        match r {
            Ok(()) => self.status.update_snapshot(path, |s| s.ok(Some(now))),
            Err(e) => self
                .status
                .update_snapshot(path, |s| s.failed(e.to_string(), now)),
        }
        crate::metrics::snapshot_gauges(&self.metrics, &self.status);
    }
}

/// The background refresher of `sigstamp serve`: syncs `[graph]` into `target` (the clock
/// there drives the schedule; tests pass a [`clock::ManualClock`]) and, after each successful
/// sync, refreshes user photos and group memberships (see [`extras::Extras`]). Without a
/// `[graph]` section it only marks the token `unconfigured`. Returns when `shutdown` fires.
pub async fn run(
    cfg: Option<GraphConfig>,
    target: SyncTarget,
    extras: extras::Extras,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clock = target.clock.clone();
    let tracker = Arc::new(TokenTracker::new(
        target.status.clone(),
        target.metrics.clone(),
        clock.clone(),
    ));
    let Some(cfg) = cfg else {
        tracker.set(crate::status::TokenStatus::unconfigured());
        return Ok(());
    };
    tracker.set(crate::status::TokenStatus::starting(
        "waiting for the first answer of the Entra ID token endpoint",
    ));
    let sink = target;
    let client = cfg.client(clock.clone(), RetryPolicy::background())?;
    let extras = extras::Running::start(extras, &cfg, &client, &sink, &shutdown);
    // The sync's requests report to the token state as they go; photos and groups do not.
    let mut syncer = Syncer::new(client.clone().with_observer(tracker.clone()), clock.clone());
    sink.seed(&mut syncer);
    let mut refresher = Refresher {
        sink,
        tracker,
        client,
        interval: cfg.sync_interval,
        failures: 0,
        snapshot_ok: true,
        extras,
    };
    loop {
        let wait = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            wait = refresher.step(&mut syncer) => wait,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = clock.sleep(wait) => {}
        }
    }
}

struct Refresher {
    sink: SyncTarget,
    tracker: Arc<TokenTracker>,
    /// For photos and groups: the sync's client without its observer.
    client: GraphClient,
    interval: Duration,
    failures: u32,
    snapshot_ok: bool,
    extras: extras::Running,
}

impl Refresher {
    /// One sync; returns how long to wait before the next one.
    async fn step(&mut self, syncer: &mut Syncer) -> Duration {
        match syncer.sync(&mut |_| {}).await {
            Ok(report) => {
                self.failures = 0;
                self.tracker.valid();
                tracing::debug!(
                    full = report.full,
                    pages = report.pages,
                    entries = report.entries,
                    users = report.users,
                    "Graph sync done"
                );
                let written = self.sink.publish(syncer, &report).await;
                self.snapshot_result(written);
                self.extras.after_sync(&self.client, &self.sink).await;
                self.interval
            }
            Err(e) => {
                self.failures += 1;
                self.sink
                    .metrics
                    .sync_failures
                    .get_or_create(&crate::metrics::KindLabels {
                        kind: e.kind().into(),
                    })
                    .inc();
                self.tracker.failed(&e);
                retry_delay(&e, self.failures, self.interval)
            }
        }
    }

    /// Report an unwritable snapshot once per change, not every sync.
    fn snapshot_result(&mut self, r: Result<(), snapshot::SnapshotError>) {
        match r {
            Ok(()) if !self.snapshot_ok => {
                self.snapshot_ok = true;
                tracing::info!("directory snapshot written again");
            }
            Err(e) if self.snapshot_ok => {
                self.snapshot_ok = false;
                tracing::warn!(error = %e, "cannot write the directory snapshot; mail still flows, but a restart without Graph would start empty");
            }
            _ => {}
        }
    }
}

/// Exponential backoff with jitter from 3 s, capped at the sync interval (at least a
/// minute), and never shorter than a server's `Retry-After`. Retries go on while `expired`,
/// so a fixed credential recovers without a restart.
pub fn retry_delay(e: &GraphError, failures: u32, interval: Duration) -> Duration {
    let cap = interval.max(Duration::from_secs(60));
    let base = client::jittered(client::exponential(
        Duration::from_secs(3),
        cap,
        failures.saturating_sub(1),
    ));
    let server = match e {
        GraphError::Auth(a) => a.retry_after,
        GraphError::Api(a) => a.retry_after,
        _ => None,
    };
    base.max(server.unwrap_or_default())
}

/// `sigstamp sync --once`: one full round, published to `sink`.
pub async fn sync_once(
    cfg: &GraphConfig,
    sink: &SyncTarget,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<(SyncReport, Result<(), snapshot::SnapshotError>), GraphError> {
    let client = cfg.client(sink.clock.clone(), RetryPolicy::interactive())?;
    let mut syncer = Syncer::new(client, sink.clock.clone());
    let report = syncer.sync(progress).await?;
    let link = syncer.delta_link().map(str::to_string);
    let delta_at = syncer.delta_at();
    // The directory takes the syncer's users as they are.
    let users = syncer.into_users();
    let written = sink
        .publish_users(Some(users), link, delta_at, &report)
        .await;
    Ok((report, written))
}

#[cfg(test)]
mod tests;
