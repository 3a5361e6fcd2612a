//! `sigstamp serve --config FILE`: the relay, the milter, the admin HTTP and the directory
//! refresher in one process. SIGTERM or SIGINT stops accepting, lets sessions in flight
//! finish within `[smtp] drain_time`, and exits 0.

use super::CliResult;
use crate::app::App;
use crate::config::Config;
use crate::directory::graph::clock::SystemClock;
use crate::directory::{self, Directory, Source};
use crate::metrics::Metrics;
use crate::pipeline::Stamper;
use crate::render::Templates;
use crate::status::Status;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML configuration file.
    #[arg(long)]
    pub config: PathBuf,
}

/// Extra time, beyond the drain time, that the edges get to return after shutdown.
const EXIT_GRACE: Duration = Duration::from_secs(5);

pub fn run(args: Args) -> CliResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // First of all, so that a SIGHUP arriving during start-up (a `systemctl reload` right
    // after the start) never takes the default action, terminating the process.
    let signals = {
        let _in_runtime = runtime.enter();
        Signals::install()
    };
    let config = crate::app::load_config(&args.config)?;
    super::init_tracing_as(config.log.format);
    if config.smtp.is_none() && config.milter.is_none() {
        return Err(format!(
            "config {}: nothing to serve, add an [smtp] or a [milter] section",
            args.config.display()
        )
        .into());
    }
    // `{:#}` keeps anyhow's context chain ("smtp: smtp.listen …: address in use").
    runtime
        .block_on(serve(config, args.config, signals))
        .map_err(|e| format!("{e:#}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Build the shared state and run every configured edge until shutdown. `path`: the
/// config file, read again on reload; `signals`: installed before anything else.
async fn serve(config: Config, path: PathBuf, signals: Signals) -> anyhow::Result<()> {
    let running_text = std::fs::read_to_string(&path).unwrap_or_default();
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(Status::default());
    let directory = build_directory(&config, &metrics, &status)?;
    // Loaded from the disk cache now, so photos are there before any Graph call.
    let photo_store =
        directory::graph::photos::open(config.graph.as_ref(), config.directory.snapshot.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ldap_photos = Arc::new(directory::ldap::photos::LdapPhotos::default());
    let photos: Arc<dyn directory::photo::PhotoSource> = match &photo_store {
        Some(store) => store.clone(),
        None if config.ldap.is_some() => ldap_photos.clone(),
        None => Arc::new(directory::photo::NoPhotos),
    };
    log_source(&config);
    // Opened before any edge starts, so a bad spool path stops start-up naming the key.
    let (sent_items, sent_items_rx) = if config.sent_items.enabled {
        let (h, rx) = crate::sent_items::SentItems::open(
            &config.sent_items,
            directory.clone(),
            metrics.clone(),
        )?;
        (h, Some(rx))
    } else {
        (crate::sent_items::SentItems::disabled(), None)
    };
    let stamper = build_stamper(&config, directory.clone(), photos.clone())?;
    let drain_time = config
        .smtp
        .as_ref()
        .map_or(Duration::from_secs(30), |s| s.drain_time);
    let shutdown = CancellationToken::new();
    let tls = Arc::new(arc_swap::ArcSwapOption::empty());
    let app = Arc::new(App {
        config,
        directory,
        stamper: Arc::new(stamper),
        metrics,
        status,
        photos,
        sent_items,
        shutdown: shutdown.clone(),
    });

    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(signals.run(shutdown.clone(), reload_tx));
    let reloader = Arc::new(crate::reload::Reloader::new(
        path,
        &running_text,
        crate::reload::Handles {
            stamper: app.stamper.clone(),
            tls: tls.clone(),
            photos: app.photos.clone(),
            status: app.status.clone(),
        },
    ));
    tokio::spawn(reloader.run(reload_rx, shutdown.clone()));
    let mut edges = tokio::task::JoinSet::new();
    if let Some(cfg) = app.config.smtp.clone() {
        let run = crate::smtp::run(
            cfg,
            app.stamper.clone(),
            app.metrics.clone(),
            app.status.clone(),
            shutdown.clone(),
            app.sent_items.clone(),
            tls,
        );
        edges.spawn(named("smtp", run));
    }
    if let Some(cfg) = app.config.milter.clone() {
        edges.spawn(named(
            "milter",
            crate::milter::run(cfg, app.milter_handles()),
        ));
    }
    let admin = crate::admin::run(
        app.config.admin.clone(),
        app.admin_state(),
        shutdown.clone(),
    );
    edges.spawn(named("admin", admin));
    tokio::spawn(super::systemd::ready_then_stopping(
        app.status.clone(),
        app.config.smtp.is_some(),
        app.config.milter.is_some(),
        shutdown.clone(),
    ));
    let notify = crate::notify::run(
        app.notify_setup(),
        app.notify_handles(),
        Arc::new(SystemClock),
        Duration::from_secs(1),
        shutdown.clone(),
    );
    edges.spawn(named("notify", notify));
    // The Graph refresher sets the token state (`unconfigured` without [graph]).
    let extras = directory::graph::extras::Extras {
        photos: photo_store,
        // Groups the rules name (`group = …`): their members get `memberOf`.
        groups: app
            .config
            .rules
            .iter()
            .flat_map(|r| r.group.iter().cloned())
            .collect(),
    };
    if app.config.ldap.is_some() {
        edges.spawn(named(
            "ldap",
            directory::ldap::run(
                app.config.ldap.clone(),
                app.sync_target(Arc::new(SystemClock)),
                ldap_photos,
                shutdown.clone(),
            ),
        ));
    } else {
        edges.spawn(named(
            "graph",
            directory::graph::run(
                app.config.graph.clone(),
                app.sync_target(Arc::new(SystemClock)),
                extras,
                shutdown.clone(),
            ),
        ));
    }
    if let (Some(rx), Some(graph)) = (sent_items_rx, &app.config.graph) {
        let clock: Arc<dyn directory::graph::clock::Clock> =
            Arc::new(directory::graph::clock::SystemClock);
        let client = graph
            .client(clock.clone(), crate::sent_items::worker::retry_policy())
            .map_err(|e| anyhow::anyhow!("sent items: {e}"))?;
        let worker = crate::sent_items::worker::run(
            app.sent_items.clone(),
            rx,
            client,
            clock,
            app.config.sent_items.clone(),
            shutdown.clone(),
        );
        edges.spawn(async move {
            worker.await;
            Ok(())
        });
    }
    if let Some(path) = app.config.directory.overrides.clone() {
        let (dir, cancel) = (app.directory.clone(), shutdown.clone());
        edges.spawn(async move {
            crate::directory::overrides::watch(path, dir, cancel).await;
            Ok(())
        });
    }

    let mut failure = None;
    loop {
        let next = tokio::select! {
            n = edges.join_next() => n,
            _ = shutdown.cancelled() => break,
        };
        match next {
            None => break,
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => {
                failure = Some(e);
                shutdown.cancel();
                break;
            }
            Some(Err(e)) => {
                failure = Some(anyhow::anyhow!("edge task failed: {e}"));
                shutdown.cancel();
                break;
            }
        }
    }
    // Shutting down: every edge drains; none may hold the process past the drain time.
    let drained = tokio::time::timeout(drain_time + EXIT_GRACE, async {
        while let Some(r) = edges.join_next().await {
            if let Ok(Err(e)) = r {
                failure.get_or_insert(e);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("edges did not stop in time; exiting anyway");
    }
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// The stamper of a configuration: its templates, image modes, rules, default template and
/// `[stamp]` options, over `directory`. `sigstamp stamp --config` builds the same one.
pub fn build_stamper(
    config: &Config,
    directory: Arc<Directory>,
    photos: Arc<dyn directory::photo::PhotoSource>,
) -> anyhow::Result<Stamper> {
    let templates = match &config.templates.dir {
        Some(dir) => Templates::load_with(dir, &config.templates.image_options())
            .map_err(|e| anyhow::anyhow!("config key `templates.dir` ({}): {e}", dir.display()))?,
        None => Templates::embedded(),
    }
    .with_photos(photos);
    let rules = crate::rules::RuleSet::compile(&config.rules, &config.recipients)?;
    rules.check_templates(&config.templates.default, |t| templates.has(t))?;
    let mut stamper = Stamper::new(directory, templates)
        .with_rules(rules)
        .with_default(config.templates.default.clone());
    stamper.options = config.stamp.options();
    Ok(stamper)
}

async fn named(
    name: &'static str,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    fut.await.map_err(|e| e.context(name))
}

/// SIGTERM or SIGINT → shutdown; SIGHUP → reload (never the default action, which would
/// end the process).
struct Signals {
    #[cfg(unix)]
    handlers: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let handlers = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(t), Ok(i), Ok(h)) => Some([t, i, h]),
                // Said by `run`, once logging is set up.
                _ => None,
            };
            Signals { handlers }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn run(
        self,
        shutdown: CancellationToken,
        reload: tokio::sync::mpsc::Sender<&'static str>,
    ) {
        #[cfg(unix)]
        {
            let Some([mut term, mut int, mut hup]) = self.handlers else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: draining"); break }
                    _ = int.recv() => { tracing::info!("SIGINT: draining"); break }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        // A reload already queued covers this one too.
                        let _ = reload.try_send("SIGHUP");
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = reload;
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    }
}

/// The directory every edge looks senders up in, loaded before any edge starts:
/// local overrides first, then the file source, then the last good Graph snapshot (so a
/// restart with dead tokens still stamps with last-known values). Graph syncs replace it later.
pub fn build_directory(
    config: &Config,
    metrics: &Metrics,
    status: &Status,
) -> anyhow::Result<Arc<Directory>> {
    let dir = Arc::new(Directory::new());
    if let Some(path) = &config.directory.overrides {
        let ov = directory::overrides::load(path)
            .map_err(|e| anyhow::anyhow!("config key `directory.overrides`: {e}"))?;
        dir.set_overrides(ov);
    }
    if let Some(path) = &config.directory.file {
        let users = directory::file::load(path)
            .map_err(|e| anyhow::anyhow!("config key `directory.file`: {e}"))?;
        dir.replace_users(users, Source::File);
        loaded(&dir, metrics, status, time::OffsetDateTime::now_utc());
    }
    create_state_folders(config);
    let synced = config.graph.is_some() || config.ldap.is_some();
    if let (Some(path), true) = (&config.directory.snapshot, synced) {
        // Read once, here; a bad snapshot or folder shows on /status, never fatal.
        if let Some(snap) = directory::snapshot::open_at_start(path, &dir, status) {
            loaded(&dir, metrics, status, snap.written_at);
        }
    }
    // The last-known `memberOf` layer (group rules), kept beside the snapshot.
    directory::graph::groups::seed(
        config.graph.as_ref(),
        config.directory.snapshot.as_deref(),
        &dir,
    );
    Ok(dir)
}

/// Start-up says which directory source is in use (one at a time; config validation
/// refuses [graph] and [ldap] together).
fn log_source(config: &Config) {
    if let Some(l) = &config.ldap {
        tracing::info!(url = %l.url, base_dn = %l.base_dn, "directory source: LDAP");
    } else if let Some(g) = &config.graph {
        tracing::info!(tenant = %g.tenant_id, "directory source: Microsoft Graph");
    } else if let Some(f) = &config.directory.file {
        tracing::info!(file = %f.display(), "directory source: JSON file");
    } else {
        tracing::info!("directory source: none (overrides only)");
    }
}

/// Create the folders of every state file sigstamp writes (0700) before anything is loaded,
/// so the first write does not fail on a missing `state/`. A folder that cannot be created is
/// logged naming the key; the snapshot's also shows on /status (see `snapshot::open_at_start`).
fn create_state_folders(config: &Config) {
    let d = &config.directory;
    let mut files: Vec<(&str, PathBuf)> = Vec::new();
    // The snapshot's folder (made by `open_at_start`) also holds the group cache; the photo
    // store makes its own folder (0700) when it opens.
    files.extend(d.overrides.clone().map(|p| ("directory.overrides", p)));
    let graph = config.graph.as_ref();
    files.extend(
        graph
            .and_then(|g| g.refresh_token_file.clone())
            .map(|p| ("graph.refresh_token_file", p)),
    );
    if let Some(n) = &config.notify {
        let state = n.state_path(d.snapshot.as_deref());
        files.extend(state.map(|p| ("notify.state_file", p)));
    }
    for (key, path) in files {
        if let Err(e) = directory::snapshot::create_parent(&path) {
            let folder = directory::snapshot::parent_dir(&path).display().to_string();
            tracing::error!(key, folder, error = %e, "cannot create the folder of a state file");
        }
    }
}

fn loaded(dir: &Directory, metrics: &Metrics, status: &Status, at: time::OffsetDateTime) {
    status.directory_loaded.store(true, Ordering::Relaxed);
    metrics.directory_users.set(dir.snapshot().len() as i64);
    metrics
        .directory_loaded_timestamp
        .set(at.unix_timestamp() as f64);
}
