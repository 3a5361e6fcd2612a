//! Active Directory / OpenLDAP as the directory source (`[ldap]`, issue 16), with the same
//! guarantees as Microsoft Graph: the directory is seeded from the snapshot before any LDAP
//! call, each round is swapped in whole and written to the snapshot, and while the server
//! refuses the bind (`expired`: admin needed) or cannot be reached (`failing`) mail keeps
//! being stamped with the last-known values.
//!
//! The Graph source's pieces are reused: the staged id-ordered user set, the [`SyncTarget`] that
//! publishes to the directory, snapshot, status and metrics, and the state tracker.

pub mod client;
pub mod error;
pub mod map;
pub mod photos;
pub mod sync;

pub use crate::config::LdapConfig;
use crate::directory::graph::clock::Clock;
use crate::directory::graph::state::{SourceNames, TokenTracker};
use crate::directory::graph::sync::SyncReport;
use crate::directory::graph::SyncTarget;
use crate::directory::Source;
use error::LdapError;
use photos::LdapPhotos;
use std::sync::Arc;
use std::time::Duration;
use sync::LdapSyncer;

impl LdapConfig {
    /// The bind password: inline, or the file's first line (read at every bind).
    pub fn password(&self) -> Result<String, LdapError> {
        if let Some(p) = &self.bind_password {
            return Ok(p.clone());
        }
        let Some(path) = &self.bind_password_file else {
            return Ok(String::new());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            LdapError::Credential(format!(
                "cannot read ldap.bind_password_file {}: {e}",
                path.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(LdapError::Credential(format!(
                "ldap.bind_password_file {} is empty",
                path.display()
            )));
        }
        Ok(line)
    }
}

/// How the LDAP source's state is named in logs and on `/status`.
pub const NAMES: SourceNames = SourceNames {
    state: "LDAP directory state",
    working: "LDAP directory sync is working",
};

/// The background refresher of `sigstamp serve` for `[ldap]`: syncs into `target` (its clock
/// drives the schedule) and publishes photos to `photos`. Does nothing without `[ldap]`;
/// returns when `shutdown` fires.
pub async fn run(
    cfg: Option<LdapConfig>,
    target: SyncTarget,
    photos: Arc<LdapPhotos>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let Some(cfg) = cfg else {
        return Ok(());
    };
    let clock = target.clock.clone();
    let sink = target;
    let tracker = TokenTracker::for_source(
        sink.status.clone(),
        sink.metrics.clone(),
        clock.clone(),
        NAMES,
    );
    // Until the first round ends, /status says what it waits for (not "no [graph]").
    tracker.set(crate::status::TokenStatus::starting(format!(
        "waiting for the first LDAP sync from {}",
        cfg.url
    )));
    let mut refresher = Refresher {
        syncer: Some(seeded(&cfg, &sink)),
        cfg,
        sink,
        tracker,
        photos,
        failures: 0,
        snapshot_ok: true,
    };
    loop {
        let wait = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            wait = refresher.step() => wait,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = clock.sleep(wait) => {}
        }
    }
}

/// A syncer sharing the directory's users when they came from the snapshot.
fn seeded(cfg: &LdapConfig, sink: &SyncTarget) -> LdapSyncer {
    let mut syncer = LdapSyncer::new(cfg.clone());
    if matches!(sink.directory.source(), Source::Snapshot | Source::Ldap) {
        syncer.seed_from(&sink.directory.base_users());
    }
    syncer
}

struct Refresher {
    cfg: LdapConfig,
    // Taken while a round runs in its own task, so a panic there (hostile bytes deep in a
    // library) costs a round, never the service.
    syncer: Option<LdapSyncer>,
    sink: SyncTarget,
    tracker: TokenTracker,
    photos: Arc<LdapPhotos>,
    failures: u32,
    snapshot_ok: bool,
}

impl Refresher {
    /// One round; returns how long to wait before the next one.
    async fn step(&mut self) -> Duration {
        let mut syncer = self
            .syncer
            .take()
            .unwrap_or_else(|| seeded(&self.cfg, &self.sink));
        let round = tokio::spawn(async move {
            let r = syncer.sync().await;
            (syncer, r)
        })
        .await;
        let result = match round {
            Ok((syncer, r)) => {
                self.syncer = Some(syncer);
                r
            }
            Err(e) => Err(LdapError::Protocol(format!("the LDAP round failed: {e}"))),
        };
        match result {
            Ok(report) => {
                self.failures = 0;
                self.tracker.round_ok(&report);
                let syncer = self.syncer.as_ref().expect("syncer back from its round");
                let written = publish(&self.sink, syncer, &report).await;
                crate::directory::graph::snapshot_result(&mut self.snapshot_ok, written);
                self.photos.publish(syncer.photos());
                self.cfg.sync_interval
            }
            Err(e) => {
                self.failures += 1;
                self.tracker
                    .round_failed(e.kind(), error::describe(&e, self.tracker.now()));
                crate::directory::graph::backoff(self.failures, self.cfg.sync_interval)
            }
        }
    }
}

/// Publish a round: directory, snapshot, status, metrics (the Graph [`SyncTarget`]'s path).
pub async fn publish(
    sink: &SyncTarget,
    syncer: &LdapSyncer,
    report: &SyncReport,
) -> Result<(), crate::directory::snapshot::SnapshotError> {
    let unchanged = !report.full && report.entries == 0 && sink.directory.source() == Source::Ldap;
    let users = (!unchanged).then(|| syncer.users());
    sink.publish_users(users, None, None, report, Source::Ldap)
        .await
}

/// `sigstamp sync --once` with `[ldap]`: one full round, published to `sink`.
pub async fn sync_once(
    cfg: &LdapConfig,
    sink: &SyncTarget,
) -> Result<
    (
        SyncReport,
        Result<(), crate::directory::snapshot::SnapshotError>,
    ),
    LdapError,
> {
    let mut syncer = LdapSyncer::new(cfg.clone());
    let report = syncer.sync().await?;
    let written = publish(sink, &syncer, &report).await;
    Ok((report, written))
}
