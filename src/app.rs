//! The composition root of `sigstamp serve`: what every edge shares.

use crate::config::Config;
use crate::directory::photo::PhotoSource;
use crate::metrics::Metrics;
use crate::pipeline::Stamper;
use crate::status::Status;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct App {
    pub config: Config,
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
