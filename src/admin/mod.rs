//! Admin HTTP (axum): `/healthz`, `/readyz`, `/metrics`, `/status` and the status page at `/`.
//!
//! Loopback by default: the page previews any user's signature, so it shows directory data.
//! Off loopback it needs `[admin.auth]` (Entra ID sign-in) and TLS (`tls_cert`, `tls_key`);
//! see [`auth`] for sign-in, roles, CSRF and the audit log, and [`templates`] for the
//! templates editor.

pub mod auth;
mod edits;
mod html;
mod overrides;
mod page;
pub mod self_service;
pub mod templates;

pub use auth::{AdminUser, Audit, Auth, EditorUser, Role, SignedIn};

pub use crate::config::AdminConfig;
use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::pipeline::Stamper;
use crate::status::{SnapshotStatus, Status, TokenState, TokenStatus};
use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type of prometheus-client's text encoder (OpenMetrics 1.0).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin HTTP reports on and previews with.
pub struct AdminState {
    pub directory: Arc<Directory>,
    /// Previews and the rules table.
    pub stamper: Arc<Stamper>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<Status>,
    /// Which edges this process runs (`/readyz` waits for them).
    pub smtp: bool,
    pub milter: bool,
    /// The Sent Items update's counters (`/status` → `sent_items`).
    pub sent_items: Arc<crate::sent_items::Stats>,
    /// The directory source is `[ldap]` (the page names the LDAP bind).
    pub ldap: bool,
    /// `[directory] overrides`: where attribute edits of the admin web go.
    pub overrides_file: Option<std::path::PathBuf>,
    /// `[admin.self_service]`, compiled.
    pub self_service: Option<Arc<crate::config::admin_self_service::SelfService>>,
    /// The templates editor's folder and versions (it saves into `stamper`).
    pub templates: Arc<templates::TemplateStore>,
}

/// The admin router's state: the handles the pages use and the sign-in.
#[derive(Clone)]
pub struct AdminCtx {
    pub state: Arc<AdminState>,
    pub auth: Arc<Auth>,
}

impl FromRef<AdminCtx> for Arc<AdminState> {
    fn from_ref(c: &AdminCtx) -> Self {
        c.state.clone()
    }
}

impl FromRef<AdminCtx> for Arc<Auth> {
    fn from_ref(c: &AdminCtx) -> Self {
        c.auth.clone()
    }
}

/// What `[admin]` asks for beyond the listener: the sign-in (with the audit log) and TLS.
pub fn setup(cfg: &AdminConfig) -> anyhow::Result<(Arc<Auth>, Option<Arc<rustls::ServerConfig>>)> {
    let auth = Auth::new(cfg.auth.as_ref(), cfg.local_admin, cfg.audit_log.clone())
        .map_err(|e| anyhow::anyhow!(e))?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(auth::tls::server_config(cert, key)?),
        _ => None,
    };
    Ok((Arc::new(auth), tls))
}

/// Bind the configured listener and serve until `shutdown` fires.
pub async fn run(
    cfg: AdminConfig,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Also checked when the config is loaded; repeated so no caller can skip it.
    cfg.validate()?;
    let addr = cfg.listen_addr()?;
    let (auth, tls) = setup(&cfg)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin.listen {addr}: {e}"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = tls.is_some(),
        sign_in = cfg.auth.is_some(),
        "admin HTTP listening"
    );
    serve(AdminCtx { state, auth }, listener, tls, shutdown).await?;
    Ok(())
}

/// Serve on an already bound listener (tests bind 127.0.0.1:0), over TLS when `tls` is
/// given, until `shutdown` fires.
pub async fn serve(
    ctx: AdminCtx,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router(ctx);
    match tls {
        Some(tls) => {
            axum::serve(auth::tls::TlsListener::new(listener, tls)?, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}

/// Every admin route, behind the CSRF guard (every non-GET request) and the security headers.
/// The admin web's handlers are added here.
pub fn router(ctx: AdminCtx) -> Router {
    Router::new()
        .route(
            "/",
            get(page::index).route_layer(axum::middleware::from_fn_with_state(
                ctx.auth.clone(),
                auth::directory_pages,
            )),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .merge(auth::routes())
        .merge(self_service::routes())
        .merge(overrides::routes())
        .merge(templates::routes())
        .layer(axum::middleware::from_fn_with_state(
            ctx.auth.clone(),
            auth::csrf::guard,
        ))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .with_state(ctx)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let missing = state.status.not_ready(state.smtp, state.milter);
    if missing.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let body = format!("not ready: {}\n", missing.join(", "));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    refresh_gauges(&state);
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// The gauges that mirror state owned elsewhere are set from that state at scrape time, so
/// they are right even if the writer of that state does not maintain them.
fn refresh_gauges(state: &AdminState) {
    let m = &state.metrics;
    let dir = &state.directory;
    m.directory_users.set(dir.snapshot().len() as i64);
    if m.directory_loaded_timestamp.get() == 0.0 {
        if let Some(t) = dir.loaded_at() {
            m.directory_loaded_timestamp
                .set(t.unix_timestamp_nanos() as f64 / 1e9);
        }
    }
    crate::metrics::snapshot_gauges(m, &state.status);
    let current = state.status.token.load().state;
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
    pub sent_items: crate::sent_items::StatsDoc,
    /// The source is `[ldap]`: the page names the LDAP bind, not a Graph token.
    #[serde(skip)]
    pub ldap: bool,
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
    pub fn collect(state: &AdminState) -> Self {
        let token: Arc<TokenStatus> = state.status.token.load_full();
        let dir = &state.directory;
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
                last_sync: **state.status.last_sync.load(),
                snapshot: (**state.status.snapshot.load()).clone(),
            },
            sent_items: state.sent_items.doc(),
            ldap: state.ldap,
            config: (**state.status.config.load()).clone(),
        }
    }
}

async fn status(State(state): State<Arc<AdminState>>) -> Json<StatusDoc> {
    Json(StatusDoc::collect(&state))
}
