//! Reload without restart: on SIGHUP, and when the config file, a template, an image or a
//! certificate changes (watched, debounced), the configuration is checked with
//! [`crate::check`] and, only when it has no error, its templates, rules and STARTTLS
//! certificate replace the running ones. Sessions in flight keep what they started with;
//! new messages and new handshakes get the new material. A refused reload leaves everything
//! as it was and shows its errors in the log, `/status` `config` and the status page.
//!
//! Keys that are not reloaded (listen addresses and the rest, see docs/configuration.md)
//! are named in a warning when they change: they apply at the next restart.

use crate::check::{self, Material};
use crate::directory::photo::PhotoSource;
use crate::pipeline::Stamper;
use crate::render::Templates;
use crate::status::{ConfigStatus, Status};
use arc_swap::ArcSwapOption;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// File events closer together than this are one reload (editors write in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Keys a reload applies; a change to any other key is applied at the next restart.
pub const RELOADED: &[&str] = &[
    "templates.dir",
    "templates.default",
    "templates.images",
    "templates.image_url",
    "templates.image_mode",
    "rules",
    "recipients",
    "smtp.tls_cert",
    "smtp.tls_key",
    "smtp.client_ca",
];

/// What a reload replaces.
pub struct Handles {
    pub stamper: Arc<Stamper>,
    /// The relay's STARTTLS configuration (`None` in it: no STARTTLS offered).
    pub tls: Arc<ArcSwapOption<rustls::ServerConfig>>,
    pub photos: Arc<dyn PhotoSource>,
    pub status: Arc<Status>,
}

pub struct Reloader {
    path: PathBuf,
    handles: Handles,
    /// The text of the configuration running now, to name restart-only keys that changed.
    running: Mutex<toml::Table>,
}

impl Reloader {
    /// `running`: the configuration text `serve` started with.
    pub fn new(path: PathBuf, running: &str, handles: Handles) -> Self {
        Reloader {
            path,
            handles,
            running: Mutex::new(toml::from_str(running).unwrap_or_default()),
        }
    }

    /// Check the file and apply it when it has no error. `why`: what triggered it, for the log.
    pub fn reload(&self, why: &str) -> Result<(), String> {
        let report = check::check_file(&self.path);
        for f in report.findings.iter().filter(|f| !f.is_error()) {
            tracing::warn!(finding = %f, "config reload: {f}");
        }
        let material = match (report.error_text(), report.material) {
            (None, Some(m)) => m,
            (error, _) => {
                let error = error.unwrap_or_else(|| "the configuration did not build".into());
                tracing::error!(trigger = why, error = %error, "config reload refused; the running configuration stays");
                let loaded_at = self.handles.status.config.load().loaded_at;
                self.handles.status.config.store(Arc::new(ConfigStatus {
                    loaded_at,
                    error: Some(error.clone()),
                }));
                return Err(error);
            }
        };
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let table: toml::Table = toml::from_str(&text).unwrap_or_default();
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let pending = restart_only_changes(&running, &table);
            if !pending.is_empty() {
                tracing::warn!(keys = %pending.join(", "), "config reload: these keys change only at a restart");
            }
            // Keep the started values of restart-only keys, so the warning repeats until then.
            *running = merge_reloaded(&running, &table);
        }
        self.apply(material);
        self.handles.status.config.store(Arc::new(ConfigStatus {
            loaded_at: OffsetDateTime::now_utc(),
            error: None,
        }));
        tracing::info!(trigger = why, "configuration reloaded");
        Ok(())
    }

    fn apply(&self, m: Material) {
        let h = &self.handles;
        let templates = m.templates.unwrap_or_else(Templates::embedded);
        h.stamper
            .templates
            .store(Arc::new(templates.with_photos(h.photos.clone())));
        h.stamper
            .set_policy(m.rules, m.config.templates.default.clone());
        h.tls.store(m.tls);
    }

    /// Files whose change triggers a reload: the config file, templates and images folders,
    /// the relay's certificate, key and client CA.
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.path.clone()];
        let Some(cfg) = check::check_file(&self.path).material.map(|m| m.config) else {
            return paths;
        };
        paths.extend(cfg.templates.dir.clone());
        paths.extend(cfg.templates.images.clone());
        if let Some(s) = &cfg.smtp {
            paths.extend(
                [&s.tls_cert, &s.tls_key, &s.client_ca]
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        paths
    }

    /// Reload on every message of `triggers` (SIGHUP) and on changes of the watched files,
    /// until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        mut triggers: mpsc::Receiver<&'static str>,
        cancel: CancellationToken,
    ) {
        let (files_tx, mut files) = mpsc::channel::<()>(64);
        let _watcher = match watch(&self.watched(), files_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the configuration's files; reload with SIGHUP");
                None
            }
        };
        loop {
            let why = tokio::select! {
                _ = cancel.cancelled() => return,
                t = triggers.recv() => match t {
                    Some(t) => t,
                    None => return,
                },
                Some(()) = files.recv() => {
                    // Debounce: wait until the files have been quiet for DEBOUNCE.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, files.recv()).await {}
                    "file change"
                }
            };
            let me = self.clone();
            // Reading and compiling templates is blocking work.
            let _ = tokio::task::spawn_blocking(move || me.reload(why)).await;
        }
    }
}

/// Watch each path's folder (files are often replaced by a rename, which a watch on the
/// file itself would miss) and report events that touch a watched path or anything under
/// a watched folder.
fn watch(paths: &[PathBuf], tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let wanted: Vec<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
    let targets: BTreeSet<PathBuf> = wanted
        .iter()
        .map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent().map_or_else(|| p.clone(), Path::to_path_buf)
            }
        })
        .collect();
    let filter = wanted.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        if ev
            .paths
            .iter()
            .any(|p| filter.iter().any(|w| p.starts_with(w)))
        {
            let _ = tx.try_send(());
        }
    })?;
    for t in &targets {
        let mode = if wanted.contains(t) {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(t, mode)?;
    }
    Ok(watcher)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Dotted keys (`smtp.listen`) whose values differ, except those a reload applies.
pub fn restart_only_changes(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let mut changed = BTreeSet::new();
    diff("", old, new, &mut changed);
    changed
        .into_iter()
        .filter(|k| {
            !RELOADED
                .iter()
                .any(|r| k == r || k.starts_with(&format!("{r}.")))
        })
        .collect()
}

fn diff(prefix: &str, old: &toml::Table, new: &toml::Table, out: &mut BTreeSet<String>) {
    for key in old.keys().chain(new.keys()) {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (old.get(key), new.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => diff(&path, a, b, out),
            (a, b) if a != b => {
                out.insert(path);
            }
            _ => {}
        }
    }
}

/// `running` with the reloadable keys taken from `new`.
fn merge_reloaded(running: &toml::Table, new: &toml::Table) -> toml::Table {
    let mut out = running.clone();
    for key in RELOADED {
        let (section, leaf) = key.split_once('.').unwrap_or(("", key));
        let get = |t: &toml::Table| -> Option<toml::Value> {
            if section.is_empty() {
                t.get(leaf).cloned()
            } else {
                t.get(section)?.as_table()?.get(leaf).cloned()
            }
        };
        let value = get(new);
        if value.is_none() && get(&out).is_none() {
            continue;
        }
        let target = if section.is_empty() {
            Some(&mut out)
        } else {
            let entry = out
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            entry.as_table_mut()
        };
        if let Some(t) = target {
            match value {
                Some(v) => {
                    t.insert(leaf.to_string(), v);
                }
                None => {
                    t.remove(leaf);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn restart_only_keys_are_named() {
        let old = table(
            "[smtp]\nlisten = \"127.0.0.1:25\"\ntls_cert = \"a\"\n[templates]\ndefault = \"a\"\n",
        );
        let new = table("[smtp]\nlisten = \"127.0.0.1:26\"\ntls_cert = \"b\"\n[templates]\ndefault = \"b\"\n[[rules]]\ntemplate = \"x\"\n");
        assert_eq!(restart_only_changes(&old, &new), vec!["smtp.listen"]);
        let merged = merge_reloaded(&old, &new);
        assert_eq!(restart_only_changes(&merged, &new), vec!["smtp.listen"]);
        assert_eq!(merged["templates"]["default"].as_str(), Some("b"));
    }
}
