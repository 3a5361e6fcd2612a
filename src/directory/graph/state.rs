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
}

const STATES: [(TokenState, &str); 5] = [
    (TokenState::Valid, "valid"),
    (TokenState::Expired, "expired"),
    (TokenState::Failing, "failing"),
    (TokenState::Unconfigured, "unconfigured"),
    (TokenState::Starting, "starting"),
];

impl TokenTracker {
    pub fn new(status: Arc<Status>, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        TokenTracker {
            status,
            metrics,
            clock,
        }
    }

    pub fn valid(&self) {
        self.set(TokenStatus {
            state: TokenState::Valid,
            error_code: None,
            description: "Microsoft Graph sync is working".into(),
            since: self.clock.now(),
        });
    }

    pub fn failed(&self, e: &GraphError) {
        self.set(describe(e, self.clock.now()));
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
        match new.state {
            TokenState::Valid => tracing::info!(previous = ?old.state, "Graph token state: valid"),
            TokenState::Unconfigured => tracing::info!("Graph token state: unconfigured"),
            TokenState::Starting => tracing::info!("Graph token state: starting"),
            TokenState::Expired => tracing::error!(
                code = new.error_code.as_deref().unwrap_or("-"),
                "Graph token state: expired: {}; sigstamp keeps stamping with the last-known directory",
                new.description
            ),
            TokenState::Failing => tracing::warn!(
                code = new.error_code.as_deref().unwrap_or("-"),
                "Graph token state: failing (transient, retrying): {}",
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

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
