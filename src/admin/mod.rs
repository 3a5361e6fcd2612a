//! Admin HTTP (axum): `/healthz`, `/readyz`, `/metrics`, `/status` and the status page at `/`.
//!
//! Loopback by default: the page previews any user's signature, so it shows directory data.
//! Off loopback it needs `[admin.auth]` (Entra ID sign-in) and TLS (`tls_cert`, `tls_key`);
//! see [`auth`] for sign-in, roles, CSRF and the audit log.

pub mod auth;
mod html;
mod page;

pub use auth::{AdminUser, Audit, Auth, AuthConfig, EditorUser, Role, SignedIn};

use crate::app::App;
use crate::config::ConfigError;
use crate::status::{SnapshotStatus, TokenState, TokenStatus};
use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// PEM certificate chain and key: the listener speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// JSON lines of every change and sign-in event.
    pub audit_log: Option<PathBuf>,
    /// Without `[admin.auth]`, on a loopback listener only: the editing pages are open to
    /// whoever reaches the listener, as `local` with the admin role (CSRF still checked).
    #[serde(default)]
    pub local_admin: bool,
    /// `[admin.auth]`: sign-in with Entra ID.
    pub auth: Option<AuthConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            audit_log: None,
            local_admin: false,
            auth: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8025".into()
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let addr = self.listen_addr()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "admin.tls_key",
                    "missing: tls_cert needs it",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "admin.tls_cert",
                    "missing: tls_key needs it",
                ))
            }
        };
        if let Some(auth) = &self.auth {
            auth.validate()?;
            if !tls {
                return Err(ConfigError::invalid(
                    "admin.tls_cert",
                    "[admin.auth] needs [admin] tls_cert and tls_key: the session cookie is \
                     Secure and Entra ID redirects to https only",
                ));
            }
            if self.local_admin {
                return Err(ConfigError::invalid(
                    "admin.local_admin",
                    "cannot be used with [admin.auth]",
                ));
            }
        }
        if !addr.ip().is_loopback() {
            let mut missing = Vec::new();
            if self.auth.is_none() {
                missing.push(
                    "[admin.auth] (tenant_id, client_id, client_secret, redirect_url, admins)",
                );
            }
            if !tls {
                missing.push("[admin] tls_cert and tls_key");
            }
            if !missing.is_empty() {
                return Err(ConfigError::invalid(
                    "admin.listen",
                    format!(
                        "{addr} is not a loopback address: the admin web shows directory data \
                         and changes signatures, so off loopback it needs sign-in and TLS; \
                         missing: {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        if self.local_admin && !addr.ip().is_loopback() {
            return Err(ConfigError::invalid(
                "admin.local_admin",
                "only on a loopback admin.listen",
            ));
        }
        Ok(())
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

/// The admin router's state: the handles the pages use and the sign-in.
#[derive(Clone)]
pub struct AdminCtx {
    pub app: Arc<App>,
    pub auth: Arc<Auth>,
}

impl FromRef<AdminCtx> for Arc<App> {
    fn from_ref(c: &AdminCtx) -> Self {
        c.app.clone()
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

/// Bind the configured listener and serve until `app.shutdown` fires.
pub async fn run(app: Arc<App>) -> anyhow::Result<()> {
    let cfg = &app.config.admin;
    // Also checked when the config is loaded; repeated so no caller can skip it.
    cfg.validate()?;
    let addr = cfg.listen_addr()?;
    let (auth, tls) = setup(cfg)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin.listen {addr}: {e}"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = tls.is_some(),
        sign_in = cfg.auth.is_some(),
        "admin HTTP listening"
    );
    serve(app, auth, listener, tls).await?;
    Ok(())
}

/// Serve on an already bound listener (tests bind 127.0.0.1:0), over TLS when `tls` is
/// given, until `app.shutdown` fires.
pub async fn serve(
    app: Arc<App>,
    auth: Arc<Auth>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let shutdown = app.shutdown.clone();
    let router = router(AdminCtx { app, auth });
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
        }
    }
}

async fn status(State(app): State<Arc<App>>) -> Json<StatusDoc> {
    Json(StatusDoc::collect(&app))
}
