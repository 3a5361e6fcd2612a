//! The composition root: the configuration checked as a whole, and what `sigstamp serve`
//! builds from it before handing each component its own section and handles.

use crate::admin::AdminState;
use crate::config::{Config, ConfigError};
use crate::directory::graph::clock::Clock;
use crate::directory::graph::SyncTarget;
use crate::directory::photo::PhotoSource;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::milter::MilterHandles;
use crate::notify::{NotifyHandles, NotifySetup};
use crate::pipeline::Stamper;
use crate::status::Status;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything `sigstamp serve` shares. Components never see it: each gets its section and
/// the handles it uses from the methods below.
pub struct App {
    pub config: Config,
    /// The attribute cache the stamper looks senders up in (the same one).
    pub directory: Arc<Directory>,
    pub stamper: Arc<Stamper>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<Status>,
    /// Users' photos for `{{photo}}`: the Graph photo store, or `NoPhotos`.
    pub photos: Arc<dyn PhotoSource>,
    /// Queues Sent Items updates of accepted stamped messages (disabled: does nothing).
    pub sent_items: crate::sent_items::SentItems,
    /// Fired on SIGTERM/SIGINT: listeners stop accepting, sessions drain.
    pub shutdown: CancellationToken,
}

impl App {
    pub fn milter_handles(&self) -> MilterHandles {
        MilterHandles {
            stamper: self.stamper.clone(),
            metrics: self.metrics.clone(),
            status: self.status.clone(),
            shutdown: self.shutdown.clone(),
            sent_items: self.sent_items.clone(),
        }
    }

    pub fn admin_state(&self) -> Arc<AdminState> {
        Arc::new(AdminState {
            directory: self.directory.clone(),
            stamper: self.stamper.clone(),
            metrics: self.metrics.clone(),
            status: self.status.clone(),
            smtp: self.config.smtp.is_some(),
            milter: self.config.milter.is_some(),
            sent_items: self.sent_items.stats().clone(),
            ldap: self.config.ldap.is_some(),
            overrides_file: self.config.directory.overrides.clone(),
            self_service: self
                .config
                .admin
                .self_service
                .as_ref()
                .map(|c| Arc::new(c.compile().expect("checked when the config was loaded"))),
            templates: Arc::new(crate::admin::templates::TemplateStore::new(
                &self.config.templates,
                self.photos.clone(),
                self.stamper.clone(),
            )),
        })
    }

    /// `None` without a `[notify]` section.
    pub fn notify_setup(&self) -> Option<NotifySetup> {
        let c = &self.config;
        Some(NotifySetup {
            notify: c.notify.clone()?,
            next_hop: c.smtp.as_ref().map(|s| s.next_hop.clone()),
            client_certificate: c.graph.as_ref().and_then(|g| g.client_certificate.clone()),
            snapshot: c.directory.snapshot.clone(),
            ldap: c.ldap.is_some(),
        })
    }

    pub fn notify_handles(&self) -> NotifyHandles {
        NotifyHandles {
            directory: self.directory.clone(),
            status: self.status.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Where the Graph refresher publishes, on `clock`.
    pub fn sync_target(&self, clock: Arc<dyn Clock>) -> SyncTarget {
        SyncTarget {
            directory: self.directory.clone(),
            status: self.status.clone(),
            metrics: self.metrics.clone(),
            snapshot: self.config.directory.snapshot.clone(),
            clock,
        }
    }
}

/// Read, parse and check a configuration file: every section's own checks
/// ([`Config::load`]) and the ones that need a component ([`check`]).
pub fn load_config(path: &std::path::Path) -> Result<Config, ConfigError> {
    let cfg = Config::load(path)?;
    check(&cfg)?;
    for (old, new) in &cfg.deprecated {
        // `sigstamp stamp` and `attributes` run without a log: they get it on stderr.
        if tracing::dispatcher::has_been_set() {
            tracing::warn!(
                old = %old,
                new = %new,
                "config key `{old}` is deprecated: rename it to `{new}`"
            );
        } else {
            eprintln!("sigstamp: warning: config key `{old}` is deprecated: rename it to `{new}`");
        }
    }
    Ok(cfg)
}

/// [`load_config`] from text.
pub fn parse_config(text: &str) -> Result<Config, ConfigError> {
    let cfg = Config::parse(text)?;
    check(&cfg)?;
    Ok(cfg)
}

/// The checks `config` cannot make alone: the rules compile (each error names its key).
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    crate::admin::self_service::check_config(cfg)?;
    crate::rules::RuleSet::compile(&cfg.rules, &cfg.recipients).map(|_| ())
}
