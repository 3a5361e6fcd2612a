//! Admin HTTP (axum): `/healthz`, `/readyz`, `/metrics`, `/status` and the status page at `/`.
//!
//! Loopback by default: the page previews any user's signature, so it shows directory data.

mod html;
mod page;

use crate::app::App;
use crate::config::ConfigError;
use crate::status::{SnapshotStatus, TokenState, TokenStatus};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::net::TcpListener;

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` of the admin HTTP listener.
    #[serde(default = "default_listen")]
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8025".into()
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr().map(|_| ())
    }

    /// The listen address; a name like `localhost:8025` is not accepted, to keep the bound
    /// interface unambiguous.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| {
            ConfigError::invalid(
                "admin.listen",
                format!("{:?} is not an IP:port address: {e}", self.listen),
            )
        })
    }
}

/// The content type of prometheus-client's text encoder (OpenMetrics 1.0).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bind the configured listener and serve until `app.shutdown` fires.
pub async fn run(app: Arc<App>) -> anyhow::Result<()> {
    let addr = app.config.admin.listen_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "admin HTTP listens on a non-loopback address: /status, /metrics and the signature \
             preview are reachable from the network without authentication"
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin.listen {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "admin HTTP listening");
    serve(app, listener).await?;
    Ok(())
}

/// Serve on an already bound listener (tests bind 127.0.0.1:0) until `app.shutdown` fires.
pub async fn serve(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    let shutdown = app.shutdown.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let missing = app
        .status
        .not_ready(app.config.smtp.is_some(), app.config.milter.is_some());
    if missing.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let body = format!("not ready: {}\n", missing.join(", "));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    refresh_gauges(&app);
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        app.metrics.encode(),
    )
        .into_response()
}

/// The gauges that mirror state owned elsewhere are set from that state at scrape time, so
/// they are right even if the writer of that state does not maintain them.
fn refresh_gauges(app: &App) {
    let m = &app.metrics;
    let dir = &app.stamper.directory;
    m.directory_users.set(dir.snapshot().len() as i64);
    if m.directory_loaded_timestamp.get() == 0.0 {
        if let Some(t) = dir.loaded_at() {
            m.directory_loaded_timestamp
                .set(t.unix_timestamp_nanos() as f64 / 1e9);
        }
    }
    crate::metrics::snapshot_gauges(m, &app.status);
    let current = app.status.token.load().state;
    for s in [
        TokenState::Valid,
        TokenState::Expired,
        TokenState::Failing,
        TokenState::Unconfigured,
        TokenState::Starting,
    ] {
        m.token_state
            .get_or_create(&crate::metrics::StateLabels {
                state: token_state_str(s).into(),
            })
            .set(i64::from(s == current));
    }
}

pub fn token_state_str(s: TokenState) -> &'static str {
    match s {
        TokenState::Valid => "valid",
        TokenState::Expired => "expired",
        TokenState::Failing => "failing",
        TokenState::Unconfigured => "unconfigured",
        TokenState::Starting => "starting",
    }
}

/// The `/status` document. Its field names are a contract (README).
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    pub token: TokenDoc,
    pub directory: DirectoryDoc,
    pub config: crate::status::ConfigStatus,
}

#[derive(Debug, Serialize)]
pub struct TokenDoc {
    pub state: TokenState,
    pub error_code: Option<String>,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

#[derive(Debug, Serialize)]
pub struct DirectoryDoc {
    pub users: usize,
    pub source: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync: Option<OffsetDateTime>,
    /// `{"path", "written_at", "error"}`; `null` without `[directory] snapshot`.
    pub snapshot: Option<SnapshotStatus>,
}

impl StatusDoc {
    pub fn collect(app: &App) -> Self {
        let token: Arc<TokenStatus> = app.status.token.load_full();
        let dir = &app.stamper.directory;
        StatusDoc {
            token: TokenDoc {
                state: token.state,
                error_code: token.error_code.clone(),
                description: token.description.clone(),
                since: token.since,
            },
            directory: DirectoryDoc {
                users: dir.snapshot().len(),
                source: dir.source().as_str(),
                last_sync: **app.status.last_sync.load(),
                snapshot: (**app.status.snapshot.load()).clone(),
            },
            config: (**app.status.config.load()).clone(),
        }
    }
}

async fn status(State(app): State<Arc<App>>) -> Json<StatusDoc> {
    Json(StatusDoc::collect(&app))
}
