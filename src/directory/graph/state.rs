//! The token state shown by `/status` and the `token_state` metric: changed (and logged)
//! only when the state or the error code changes, never once per retry.

use super::client::Observer;
use super::clock::Clock;
use super::error::{code_info, AuthClass, GraphError};
use crate::metrics::{Metrics, StateLabels};
use crate::status::{Status, TokenState, TokenStatus};
use std::sync::Arc;

pub struct TokenTracker {
    status: Arc<Status>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    source: SourceNames,
}

/// How a directory source's state is named in logs and `/status` (the LDAP source shares
/// the states and this tracker).
#[derive(Debug, Clone, Copy)]
pub struct SourceNames {
    /// The log prefix: `Graph token state`.
    pub state: &'static str,
    /// The `valid` description.
    pub working: &'static str,
}

pub const GRAPH: SourceNames = SourceNames {
    state: "Graph token state",
    working: "Microsoft Graph sync is working",
};

const STATES: [(TokenState, &str); 5] = [
    (TokenState::Valid, "valid"),
    (TokenState::Expired, "expired"),
    (TokenState::Failing, "failing"),
    (TokenState::Unconfigured, "unconfigured"),
    (TokenState::Starting, "starting"),
];

impl TokenTracker {
    pub fn new(status: Arc<Status>, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self::for_source(status, metrics, clock, GRAPH)
    }

    pub fn for_source(
        status: Arc<Status>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        source: SourceNames,
    ) -> Self {
        TokenTracker {
            status,
            metrics,
            clock,
            source,
        }
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub fn valid(&self) {
        self.set(TokenStatus {
            state: TokenState::Valid,
            error_code: None,
            description: self.source.working.into(),
            since: self.clock.now(),
        });
    }

    pub fn failed(&self, e: &GraphError) {
        self.round_failed(e.kind(), describe(e, self.clock.now()));
    }

    /// A round worked: `valid`, and a debug line with its figures.
    pub fn round_ok(&self, report: &super::sync::SyncReport) {
        self.valid();
        tracing::debug!(
            full = report.full,
            pages = report.pages,
            entries = report.entries,
            users = report.users,
            "{}: sync done",
            self.source.state
        );
    }

    /// A round failed: counted by `kind` (`sigstamp_sync_failures_total`), state `status`.
    pub fn round_failed(&self, kind: &str, status: TokenStatus) {
        self.metrics
            .sync_failures
            .get_or_create(&crate::metrics::KindLabels { kind: kind.into() })
            .inc();
        self.set(status);
    }

    /// Store `new`. The same state and code again keeps the first `since` and is not logged
    /// again, but its description follows the current error.
    pub fn set(&self, new: TokenStatus) {
        let old = self.status.token.load_full();
        for (state, label) in STATES {
            self.metrics
                .token_state
                .get_or_create(&StateLabels {
                    state: label.into(),
                })
                .set(i64::from(state == new.state));
        }
        if old.state == new.state && old.error_code == new.error_code {
            if old.description != new.description {
                self.status.token.store(Arc::new(TokenStatus {
                    since: old.since,
                    ..new
                }));
            }
            return;
        }
        let what = self.source.state;
        match new.state {
            TokenState::Valid => tracing::info!(previous = ?old.state, "{what}: valid"),
            TokenState::Unconfigured => tracing::info!("{what}: unconfigured"),
            TokenState::Starting => tracing::info!("{what}: starting"),
            TokenState::Expired => tracing::error!(
                code = new.error_code.as_deref().unwrap_or("-"),
                "{what}: expired: {}; sigstamp keeps stamping with the last-known directory",
                new.description
            ),
            TokenState::Failing => tracing::warn!(
                code = new.error_code.as_deref().unwrap_or("-"),
                "{what}: failing (transient, retrying): {}",
                new.description
            ),
        }
        self.status.token.store(Arc::new(new));
    }
}

impl Observer for TokenTracker {
    /// The first token after start ends `starting`; the sync itself then says how it went.
    fn token_ok(&self) {
        if self.status.token.load().state == TokenState::Starting {
            self.set(TokenStatus {
                state: TokenState::Valid,
                error_code: None,
                description: "signed in to Microsoft Graph; the first sync is running".into(),
                since: self.clock.now(),
            });
        }
    }

    /// A request that keeps failing shows at once, not when its retries give up.
    fn retry_failed(&self, e: &GraphError) {
        self.failed(e);
    }
}

/// The `/status` view of an error: state, code, and a description saying what it means and
/// what to do.
pub fn describe(e: &GraphError, now: time::OffsetDateTime) -> TokenStatus {
    let (state, code, description) = match e {
        GraphError::Auth(a) => {
            let state = match a.class() {
                AuthClass::Admin | AuthClass::Reauth => TokenState::Expired,
                AuthClass::Retry => TokenState::Failing,
            };
            let text = match a.codes.first().and_then(|c| code_info(*c)) {
                Some(i) => format!("{}. What to do: {}. (Entra ID said: {})", capital(i.meaning), i.action, a.summary()),
                None => format!("the token endpoint refused: {} ({})", a.summary(), a.error),
            };
            (state, a.code().or_else(|| Some(a.error.clone())), text)
        }
        GraphError::Api(a) if a.status == 403 => (
            TokenState::Expired,
            Some(a.code.clone()),
            "Microsoft Graph refused to list users: the app lacks permission. What to do: grant admin consent for the User.Read.All application permission in Entra ID (API permissions)".into(),
        ),
        GraphError::Api(a) => (
            TokenState::Failing,
            Some(a.code.clone()).filter(|c| !c.is_empty()),
            format!("Microsoft Graph answered HTTP {}: {}; retrying", a.status, a.message),
        ),
        GraphError::Credential(msg) => (TokenState::Expired, None, msg.clone()),
        GraphError::Transport { source, .. } if source.is_timeout() => (
            TokenState::Failing,
            Some("timeout".into()),
            format!("{e}; retrying"),
        ),
        other => (TokenState::Failing, None, format!("{other}; retrying")),
    };
    TokenStatus {
        state,
        error_code: code,
        description,
        since: now,
    }
}

pub(crate) fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
