//! The Graph HTTP client: bearer tokens, one refresh-and-retry on 401 (§4.3), and the retry
//! policy for 429/503/504 (§4.2): honour `Retry-After`, else exponential backoff with jitter.

use super::clock::Clock;
use super::error::{parse_retry_after, ApiError, GraphError};
use super::token::{new_uuid, TokenProvider};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The Graph SDK's defaults with a total cap (§4.2 [ours]).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
    /// Give up once the waits of one request would exceed this.
    pub total_cap: Duration,
}

impl RetryPolicy {
    /// Background sync: up to 10 attempts, 30 minutes in all.
    pub fn background() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(3),
            max_delay: Duration::from_secs(180),
            max_attempts: 10,
            total_cap: Duration::from_secs(30 * 60),
        }
    }

    /// Interactive paths (`sigstamp sync --once`, `login`): 5 attempts.
    pub fn interactive() -> Self {
        RetryPolicy {
            max_attempts: 5,
            ..Self::background()
        }
    }

    /// Delay before retry number `attempt` (0-based) when no `Retry-After` was given.
    pub fn backoff(&self, attempt: u32) -> Duration {
        jittered(exponential(self.initial, self.max_delay, attempt))
    }
}

pub fn exponential(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial
        .checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

/// ±20 %, so many instances restarted together do not retry in lockstep.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}

/// Told about requests as they happen, so the state on `/status` need not wait for the end of
/// a sync (whose retries may last many minutes).
pub trait Observer: Send + Sync {
    /// An access token was at hand for a request.
    fn token_ok(&self);
    /// A retry failed as well; more retries may follow.
    fn retry_failed(&self, e: &GraphError);
}

/// Cheap to clone: clones share the HTTP connection pool and the token cache (the photo and
/// group fetchers use the sync's client, so a delegated refresh token is never rotated twice).
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    endpoint: String,
    tokens: Arc<TokenProvider>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    /// After a 429/503/504, no request of this client or its clones leaves before this
    /// instant: requests sent while throttled still count against the limits (§4.2).
    paused_until: Arc<std::sync::Mutex<Option<time::OffsetDateTime>>>,
    observer: Option<Arc<dyn Observer>>,
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        tokens: TokenProvider,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Self {
        GraphClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            tokens: Arc::new(tokens),
            clock,
            retry,
            paused_until: Arc::default(),
            observer: None,
        }
    }

    /// This client (sharing pool, tokens and pauses) reporting to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// `https://graph.microsoft.com/v1.0` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1.0{}", self.endpoint, path)
    }

    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    /// GET a JSON document. `minimal` sends `Prefer: return=minimal` (delta requests, §2.2).
    pub async fn get_json(&self, url: &str, minimal: bool) -> Result<Value, GraphError> {
        self.get_parsed(url, minimal).await
    }

    /// [`GraphClient::get_json`] parsed straight into `T` (delta pages into compact users,
    /// with no `serde_json::Value` of the page in between).
    pub async fn get_parsed<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        minimal: bool,
    ) -> Result<T, GraphError> {
        let resp = self.get(url, minimal).await?;
        let body = resp.bytes().await.map_err(|source| GraphError::Transport {
            what: "Microsoft Graph",
            source,
        })?;
        serde_json::from_slice(&body)
            .map_err(|e| GraphError::protocol("Microsoft Graph", e.to_string()))
    }

    /// GET `url` with the token, 401 and throttling handling; returns a 2xx response with its
    /// body unread (photo bytes are read with a size limit by the caller).
    pub async fn get(&self, url: &str, minimal: bool) -> Result<reqwest::Response, GraphError> {
        let mut attempt = 0u32;
        let mut waited = Duration::ZERO;
        let mut refreshed = false;
        loop {
            self.wait_while_paused().await;
            let token = self.tokens.access_token().await?;
            if let Some(o) = &self.observer {
                o.token_ok();
            }
            let rid = new_uuid();
            let mut req = self
                .http
                .get(url)
                .bearer_auth(&token)
                .header("client-request-id", &rid);
            if minimal {
                req = req.header("Prefer", "return=minimal");
            }
            if attempt > 0 {
                req = req.header("retry-attempt", attempt.to_string());
            }
            let resp = req.send().await.map_err(|source| GraphError::Transport {
                what: "Microsoft Graph",
                source,
            })?;
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let err = self.api_error(resp, rid).await;
            tracing::debug!(status, code = %err.code, request_id = ?err.request_id, "Graph error");
            if let (Some(o), true) = (&self.observer, attempt > 0) {
                o.retry_failed(&GraphError::Api(err.clone()));
            }
            if err.is_invalid_token() && !refreshed {
                // One refresh and one retry; a second 401 is a hard error (§4.3).
                refreshed = true;
                self.tokens.invalidate(&token).await;
                continue;
            }
            if err.is_throttle() && attempt + 1 < self.retry.max_attempts {
                let delay = err
                    .retry_after
                    .unwrap_or_else(|| self.retry.backoff(attempt));
                if waited + delay <= self.retry.total_cap {
                    tracing::debug!(status, ?delay, attempt, "Graph throttled; waiting");
                    self.pause(delay);
                    self.clock.sleep(delay).await;
                    waited += delay;
                    attempt += 1;
                    continue;
                }
            }
            return Err(GraphError::Api(err));
        }
    }

    fn pause(&self, delay: Duration) {
        let until = self.clock.now() + delay;
        let mut p = self.paused_until.lock().unwrap();
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// Sleep until a pause another request set (throttling) is over.
    async fn wait_while_paused(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap();
            let Some(left) = until
                .map(|t| t - self.clock.now())
                .filter(|d| d.is_positive())
            else {
                return;
            };
            self.clock
                .sleep(Duration::try_from(left).unwrap_or_default())
                .await;
        }
    }

    async fn api_error(&self, resp: reqwest::Response, client_rid: String) -> ApiError {
        let status = resp.status().as_u16();
        let h = resp.headers();
        let retry_after = h
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let request_id = h
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or(Some(client_rid));
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let e = body.get("error");
        let code = e
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let message = e
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        ApiError {
            status,
            code,
            inner_codes: e.map(inner_codes).unwrap_or_default(),
            message,
            retry_after,
            request_id,
        }
    }
}

/// Codes of nested `innerError`/`innererror` objects (both spellings, §4.1).
fn inner_codes(e: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = e;
    while let Some(inner) = cur.get("innerError").or_else(|| cur.get("innererror")) {
        if let Some(c) = inner.get("code").and_then(Value::as_str) {
            out.push(c.to_string());
        }
        cur = inner;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::background();
        assert_eq!(
            exponential(p.initial, p.max_delay, 0),
            Duration::from_secs(3)
        );
        assert_eq!(
            exponential(p.initial, p.max_delay, 2),
            Duration::from_secs(12)
        );
        assert_eq!(
            exponential(p.initial, p.max_delay, 40),
            Duration::from_secs(180)
        );
        let j = p.backoff(1);
        assert!(j >= Duration::from_millis(4800) && j <= Duration::from_millis(7200));
    }

    #[test]
    fn nested_inner_codes() {
        let v: Value =
            serde_json::json!({"code":"a","innerError":{"code":"b","innererror":{"code":"c"}}});
        assert_eq!(inner_codes(&v), vec!["b", "c"]);
    }
}
