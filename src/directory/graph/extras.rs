//! What the refresher does after each successful user sync, besides publishing it: user
//! photos ([`super::photos`], in their own task so a long round never delays a sync) and
//! group memberships ([`super::groups`], inline: a few requests per group).

use super::client::GraphClient;
use super::groups::{self, GroupSync};
use super::photos::PhotoStore;
use super::SyncTarget;
use crate::config::GraphConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The refresher's optional duties, handed to [`super::run_with`].
#[derive(Clone, Default)]
pub struct Extras {
    /// The store `sigstamp serve` opened (`[graph] photos = true`); `None`: no photos.
    pub photos: Option<Arc<PhotoStore>>,
    /// Groups the rules name, by display name or object id (`RuleSet::groups()`): their
    /// members get the `memberOf` attribute.
    pub groups: Vec<String>,
}

/// [`Extras`] running alongside one refresher.
pub(super) struct Running {
    groups: GroupSync,
    /// Where the `memberOf` layer is cached (beside the snapshot).
    cache: Option<PathBuf>,
    cache_ok: bool,
    photos: Option<PhotoTask>,
}

struct PhotoTask {
    trigger: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PhotoTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    pub(super) fn start(
        extras: Extras,
        cfg: &GraphConfig,
        client: &GraphClient,
        sink: &SyncTarget,
        shutdown: &CancellationToken,
    ) -> Self {
        let cache = groups::cache_path(sink.snapshot.as_deref());
        let groups = GroupSync::new(extras.groups);
        // `sigstamp serve` seeds it before the edges start; tests and other callers here.
        if let (Some(path), false) = (&cache, groups.is_empty()) {
            if sink.directory.memberships().is_empty() {
                groups::seed_from(path, &sink.directory);
            }
        }
        let photos = extras.photos.map(|store| {
            let trigger = Arc::new(Notify::new());
            let task = tokio::spawn(photo_loop(
                store,
                client.clone(),
                sink.clone(),
                cfg.photo_refresh,
                trigger.clone(),
                shutdown.clone(),
            ));
            PhotoTask { trigger, task }
        });
        Running {
            groups,
            cache,
            cache_ok: true,
            photos,
        }
    }

    /// After a successful sync: start a photo round, refresh the group memberships.
    pub(super) async fn after_sync(&mut self, client: &GraphClient, sink: &SyncTarget) {
        if let Some(p) = &self.photos {
            // A round still running takes this as "run once more when done".
            p.trigger.notify_one();
        }
        self.refresh_groups(client, sink).await;
    }

    async fn refresh_groups(&mut self, client: &GraphClient, sink: &SyncTarget) {
        if self.groups.is_empty() {
            // No rule names a group (any more): no `memberOf` at all.
            if !sink.directory.memberships().is_empty() {
                sink.directory.set_memberships(Default::default());
            }
            if let Some(path) = &self.cache {
                let _ = std::fs::remove_file(path);
            }
            return;
        }
        let (memberships, report) = self.groups.refresh(client, &sink.metrics).await;
        tracing::debug!(?report, "group memberships refreshed");
        let Some(memberships) = memberships else {
            return; // incomplete: keep the layer in place
        };
        if *sink.directory.memberships() == memberships {
            return;
        }
        let Some(path) = self.cache.clone() else {
            sink.directory.set_memberships(memberships);
            return;
        };
        let now = sink.clock.now();
        let written = {
            let m = memberships.clone();
            tokio::task::spawn_blocking(move || groups::write_cache(&path, &m, now))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        sink.directory.set_memberships(memberships);
        match written {
            Ok(()) if !self.cache_ok => {
                self.cache_ok = true;
                tracing::info!("group membership cache written again");
            }
            Err(e) if self.cache_ok => {
                self.cache_ok = false;
                tracing::warn!(error = %e, "cannot write the group membership cache; a restart without Graph would start without memberOf");
            }
            _ => {}
        }
    }
}

/// Photo rounds, one per trigger (a sync), over the directory's current users.
async fn photo_loop(
    store: Arc<PhotoStore>,
    client: GraphClient,
    sink: SyncTarget,
    every: Duration,
    trigger: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = trigger.notified() => {}
        }
        let ids: Vec<String> = sink
            .directory
            .base_users()
            .iter()
            .filter_map(|u| u.id().map(str::to_string))
            .collect();
        let round = store.refresh(&client, &ids, every, &*sink.clock, &sink.metrics);
        let report = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = round => r,
        };
        if report.checked > 0 || report.removed > 0 {
            tracing::info!(
                checked = report.checked,
                downloaded = report.downloaded,
                without = report.without,
                removed = report.removed,
                failed = report.failed,
                aborted = report.aborted.as_deref().unwrap_or("-"),
                photos = store.len(),
                "user photo round done"
            );
        }
    }
}
