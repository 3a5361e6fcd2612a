//! A fake Entra ID token endpoint and Microsoft Graph (`shared/graph-contract.md` §6): one
//! real HTTP server on 127.0.0.1:0, on an injectable clock, scriptable per test. The
//! production client talks to it unchanged; only the authority/endpoint URLs differ.
#![allow(dead_code)] // each test binary uses a different part of the fake

mod mailbox;
pub mod oidc;
#[allow(unused_imports)]
pub use mailbox::{MailAttachment, MailMessage, MailState};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sigstamp::directory::graph::clock::{Clock, ManualClock};
use sigstamp::directory::graph::GraphConfig;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
pub const SECRET: &str = "s3cr3t~value+/=&";

/// Properties returned by `/users` when there is no `$select` (§2.1).
const DEFAULT_PROPS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];
const COLLECTIONS: &[&str] = &["businessPhones", "proxyAddresses"];
/// Cannot be selected on the collection (§2.1): 501.
const NOT_ON_COLLECTION: &[&str] = &["aboutMe", "skills", "hireDate", "mailboxSettings"];

/// How an expired or forced delta state is reported (§6.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncShape {
    Gone410,
    SyncStateNotFound,
    ResyncRequired,
}

/// A scripted failure of the next calls (§6.5, §6.11).
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    /// The `Retry-After` header value, verbatim (integer, fractional, or an HTTP-date).
    pub retry_after: Option<String>,
    /// Answer with a proxy's HTML page instead of a Graph error body (no error code).
    pub html: bool,
}

impl Fault {
    pub fn new(status: u16, retry_after: Option<&str>) -> Self {
        Fault {
            status,
            retry_after: retry_after.map(str::to_string),
            html: false,
        }
    }

    /// A proxy in front of Graph failing with `status` and an HTML page.
    pub fn proxy(status: u16) -> Self {
        Fault {
            html: true,
            ..Fault::new(status, None)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OpenID Connect sign-in (§9): discovery, authorize, code grant, JWKS.
    Oidc,
    Token,
    DeviceCode,
    Graph,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: OffsetDateTime,
    pub kind: Kind,
    pub method: String,
    pub path_and_query: String,
    pub status: u16,
    /// Form fields of token requests (the client assertion included).
    pub form: Vec<(String, String)>,
    pub headers: HeaderMap,
}

impl Recorded {
    /// A request and the status it got.
    pub fn new(
        at: OffsetDateTime,
        kind: Kind,
        method: &Method,
        uri: &axum::http::Uri,
        resp: &Response,
        form: Vec<(String, String)>,
        headers: HeaderMap,
    ) -> Recorded {
        Recorded {
            at,
            kind,
            method: method.to_string(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            status: resp.status().as_u16(),
            form,
            headers,
        }
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct Secret {
    value: String,
    expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
struct AccessToken {
    expires_at: OffsetDateTime,
}

#[derive(Debug, Default, Clone)]
struct FakeUser {
    props: Map<String, Value>,
    /// Version of the last change of each property (delta rounds compare against it).
    versions: HashMap<String, u64>,
    removed: Option<(String, u64)>,
    manager: Option<String>,
    manager_version: u64,
    photo: Option<FakePhoto>,
}

#[derive(Debug, Clone)]
struct FakePhoto {
    content_type: String,
    bytes: Vec<u8>,
    /// `@odata.mediaEtag`, quoted as Graph sends it; changes when the photo does.
    etag: String,
}

/// A group (`/groups`); members are user or group ids (nested groups count transitively).
#[derive(Debug, Clone)]
struct FakeGroup {
    display_name: String,
    members: Vec<String>,
}

/// Everything the tests can script. Reach it through [`FakeGraph::with`].
pub struct Script {
    pub secrets_expire_at: Option<OffsetDateTime>,
    secrets: Vec<Secret>,
    certs: Vec<Vec<u8>>,
    pub consent_revoked: bool,
    /// Graph answers 403 Authorization_RequestDenied when false.
    pub permission_granted: bool,
    pub assertion_skew: Duration,
    pub reject_jti_replay: bool,
    jtis: HashSet<String>,
    pub token_lifetime: u64,
    /// Graph-side lifetime of access tokens, shorter than `expires_in` says (§6.6).
    pub graph_token_ttl: Option<Duration>,
    access: HashMap<String, AccessToken>,
    /// Refresh tokens: `None` alive, `Some(code)` killed with that AADSTS code.
    refresh: HashMap<String, Option<u32>>,
    pub token_faults: VecDeque<Fault>,
    pub graph_faults: VecDeque<Fault>,
    /// Like `graph_faults`, but only for next pages (requests carrying a `$skiptoken`): a
    /// sync that fails in the middle of a round.
    pub page_faults: VecDeque<Fault>,
    /// The next Graph requests are answered only after this long (real time): a client's
    /// request timeout fires first.
    pub graph_stalls: VecDeque<Duration>,
    /// The same for token requests.
    pub token_stalls: VecDeque<Duration>,
    /// AADSTS50196 when more than this many token requests come within a minute.
    pub loop_limit: Option<usize>,
    /// Approve device codes on their first poll.
    pub auto_approve_device: bool,
    devices: HashMap<String, u32>,
    users: BTreeMap<String, FakeUser>,
    version: u64,
    pub delta_page_size: usize,
    pub delta_max_age: Duration,
    pub resync_shape: ResyncShape,
    pub force_resync: bool,
    /// Repeat the first entry of every delta page (replays, §2.2).
    pub duplicate_entries: bool,
    pub require_consistency_level: bool,
    requests: Vec<Recorded>,
    delta_cache: Option<(RoundKey, Arc<Vec<String>>)>,
    /// `GET /users/{id}/photo/$value` (and `/photos/{size}/$value`) served, by user id.
    pub photo_downloads: HashMap<String, usize>,
    groups: BTreeMap<String, FakeGroup>,
    /// `/groups…` answers 403 (no GroupMember.Read.All) when false; users still work.
    pub group_permission_granted: bool,
    /// transitiveMembers pages hold at most this many, whatever `$top` asks (forces paging).
    pub members_page_cap: usize,
}

/// since, upto, select, directory version: what a delta round's id list depends on.
type RoundKey = (u64, u64, Vec<String>, u64);

struct Inner {
    base: String,
    clock: Arc<ManualClock>,
    key: u64,
    script: Mutex<Script>,
    /// The OpenID Connect sign-in (§9).
    oidc: Mutex<oidc::OidcScript>,
    /// Mailboxes (Sent Items update, §8.5).
    mail: Mutex<MailState>,
}

pub struct FakeGraph {
    pub base: String,
    pub clock: Arc<ManualClock>,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGraph {
    /// A fake on its own auto-advancing clock (retries and backoff run instantly).
    pub async fn start() -> FakeGraph {
        let clock = Arc::new(ManualClock::starting_now());
        clock.set_auto_advance(true);
        Self::start_with_clock(clock).await
    }

    pub async fn start_with_clock(clock: Arc<ManualClock>) -> FakeGraph {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Inner {
            base: base.clone(),
            clock: clock.clone(),
            key: rand::random(),
            oidc: Mutex::new(oidc::OidcScript::default()),
            script: Mutex::new(Script {
                secrets_expire_at: None,
                secrets: vec![Secret {
                    value: SECRET.into(),
                    expires_at: None,
                }],
                certs: Vec::new(),
                consent_revoked: false,
                permission_granted: true,
                assertion_skew: Duration::from_secs(300),
                reject_jti_replay: false,
                jtis: HashSet::new(),
                token_lifetime: 3599,
                graph_token_ttl: None,
                access: HashMap::new(),
                refresh: HashMap::new(),
                token_faults: VecDeque::new(),
                graph_faults: VecDeque::new(),
                page_faults: VecDeque::new(),
                graph_stalls: VecDeque::new(),
                token_stalls: VecDeque::new(),
                loop_limit: None,
                auto_approve_device: true,
                devices: HashMap::new(),
                users: BTreeMap::new(),
                version: 0,
                delta_page_size: 200,
                delta_max_age: Duration::from_secs(7 * 24 * 3600),
                resync_shape: ResyncShape::Gone410,
                force_resync: false,
                duplicate_entries: false,
                require_consistency_level: true,
                requests: Vec::new(),
                delta_cache: None,
                photo_downloads: HashMap::new(),
                groups: BTreeMap::new(),
                group_permission_granted: true,
                members_page_cap: 999,
            }),
            mail: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGraph {
            base,
            clock,
            inner,
            task,
        }
    }

    /// Change the OpenID Connect sign-in's script under its lock.
    pub fn oidc<R>(&self, f: impl FnOnce(&mut oidc::OidcScript) -> R) -> R {
        f(&mut self.inner.oidc.lock().unwrap())
    }

    /// Change the script under its lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut Script) -> R) -> R {
        f(&mut self.inner.script.lock().unwrap())
    }

    /// A `[graph]` section pointing at this fake, with the client secret.
    pub fn config(&self) -> GraphConfig {
        self.config_toml(&format!("client_secret = {:?}", SECRET))
    }

    /// A `[graph]` section pointing at this fake with `credential` lines.
    pub fn config_toml(&self, credential: &str) -> GraphConfig {
        let text = format!(
            "tenant_id = {TENANT:?}\nclient_id = {CLIENT_ID:?}\nauthority = {:?}\nendpoint = {:?}\nsync_interval = \"5m\"\nrequest_timeout = \"10s\"\n{credential}\n",
            self.base, self.base
        );
        let cfg: GraphConfig = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        cfg
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    pub fn requests_of(&self, kind: Kind) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect()
    }

    pub fn clear_requests(&self) {
        self.with(|s| s.requests.clear())
    }

    // ---- credentials -------------------------------------------------------------------

    /// Every secret expires at `t` (AADSTS7000222 from then on).
    pub fn expire_secret_at(&self, t: OffsetDateTime) {
        self.with(|s| s.secrets.iter_mut().for_each(|x| x.expires_at = Some(t)));
    }

    /// Replace the registered secrets (the configured one becomes invalid: 7000215).
    pub fn set_secret(&self, value: &str) {
        self.with(|s| {
            s.secrets = vec![Secret {
                value: value.into(),
                expires_at: None,
            }]
        });
    }

    pub fn register_cert(&self, der: Vec<u8>) {
        self.with(|s| s.certs.push(der));
    }

    /// A refresh token as if issued by an interactive sign-in.
    pub fn issue_refresh_token(&self) -> String {
        let rt = format!("1.rt-{}", random_token());
        self.with(|s| s.refresh.insert(rt.clone(), None));
        rt
    }

    /// Kill every refresh token issued so far with `code` (700082, 50173, 50076, …).
    pub fn revoke_refresh_tokens(&self, code: u32) {
        self.with(|s| s.refresh.values_mut().for_each(|v| *v = Some(code)));
    }

    pub fn refresh_token_alive(&self, rt: &str) -> bool {
        self.with(|s| matches!(s.refresh.get(rt), Some(None)))
    }

    // ---- directory ----------------------------------------------------------------------

    fn bump(s: &mut Script) -> u64 {
        s.version += 1;
        s.version
    }

    /// Add (or restore) a user; `props` must carry `id`.
    pub fn put_user(&self, props: Value) {
        let Value::Object(props) = props else {
            panic!("a user is a JSON object")
        };
        let id = props["id"].as_str().unwrap().to_string();
        self.with(|s| {
            let v = Self::bump(s);
            let u = s.users.entry(id).or_default();
            // A restored user comes back whole in the next delta round (§2.2).
            if u.removed.take().is_some() {
                u.versions.values_mut().for_each(|x| *x = v);
            }
            for (k, val) in props {
                if u.props.get(&k) != Some(&val) {
                    u.versions.insert(k.clone(), v);
                }
                if val.is_null() {
                    u.props.remove(&k);
                } else {
                    u.props.insert(k, val);
                }
            }
        });
    }

    /// Change some properties (a `null` clears one).
    pub fn update_user(&self, id: &str, patch: Value) {
        let mut p = patch.as_object().unwrap().clone();
        p.insert("id".into(), json!(id));
        self.put_user(Value::Object(p));
    }

    /// `reason` is `changed` (soft delete) or `deleted` (hard delete).
    pub fn remove_user(&self, id: &str, reason: &str) {
        self.with(|s| {
            let v = Self::bump(s);
            if let Some(u) = s.users.get_mut(id) {
                u.removed = Some((reason.into(), v));
            }
        });
    }

    pub fn set_manager(&self, id: &str, manager: Option<&str>) {
        self.with(|s| {
            let v = Self::bump(s);
            let u = s.users.get_mut(id).unwrap();
            u.manager = manager.map(str::to_string);
            u.manager_version = v;
        });
    }

    /// Give a user a photo; its ETag follows the content (the same photo keeps its ETag).
    pub fn set_photo(&self, id: &str, content_type: &str, bytes: Vec<u8>) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (content_type, &bytes).hash(&mut h);
        let etag = format!("\"{:08X}\"", h.finish() as u32);
        self.with(|s| {
            s.users.get_mut(id).unwrap().photo = Some(FakePhoto {
                content_type: content_type.into(),
                bytes,
                etag,
            })
        });
    }

    pub fn remove_photo(&self, id: &str) {
        self.with(|s| s.users.get_mut(id).unwrap().photo = None);
    }

    /// `$value` downloads of this user's photo so far.
    pub fn photo_downloads(&self, id: &str) -> usize {
        self.with(|s| s.photo_downloads.get(id).copied().unwrap_or(0))
    }

    /// Add or replace a group; `members` are user ids or ids of nested groups.
    pub fn put_group(&self, id: &str, display_name: &str, members: &[&str]) {
        self.with(|s| {
            s.groups.insert(
                id.into(),
                FakeGroup {
                    display_name: display_name.into(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                },
            )
        });
    }

    pub fn remove_group(&self, id: &str) {
        self.with(|s| s.groups.remove(id));
    }

    /// `n` generated users `u0000000@contoso.test` …, in one version step.
    pub fn add_generated_users(&self, n: usize) {
        self.with(|s| {
            let v = Self::bump(s);
            for i in 0..n {
                let id = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
                let props = generated_user(&id, i);
                let versions = props.keys().map(|k| (k.clone(), v)).collect();
                s.users.insert(
                    id,
                    FakeUser {
                        props,
                        versions,
                        ..Default::default()
                    },
                );
            }
        });
    }
}

pub fn generated_user(id: &str, i: usize) -> Map<String, Value> {
    let mail = format!("u{i:07}@contoso.test");
    json!({
        "id": id,
        "displayName": format!("User {i}"),
        "givenName": "User",
        "surname": format!("{i}"),
        "jobTitle": "Engineer",
        "department": "R&D",
        "companyName": "Contoso",
        "businessPhones": ["+1 555 0100"],
        "mail": mail,
        "userPrincipalName": mail,
        "proxyAddresses": [format!("SMTP:{mail}"), format!("smtp:u{i}@contoso.onmicrosoft.com")],
        "city": "Redmond",
        "country": "US",
        "accountEnabled": true,
        "userType": "Member",
    })
    .as_object()
    .unwrap()
    .clone()
}

fn random_token() -> String {
    let b: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(b)
}

fn uuid() -> String {
    sigstamp::directory::graph::token::new_uuid()
}

// ---- HTTP plumbing ----------------------------------------------------------------------

fn pairs(s: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{s}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    if mailbox::routes(req.uri().path()) {
        return mailbox::handle(inner, req).await;
    }
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let path = uri.path().to_string();
    let query = pairs(uri.query().unwrap_or(""));
    let form = pairs(std::str::from_utf8(&body).unwrap_or(""));
    let stall = {
        let mut s = inner.script.lock().unwrap();
        if path.starts_with("/v1.0/") {
            s.graph_stalls.pop_front()
        } else if path.ends_with("/oauth2/v2.0/token") {
            s.token_stalls.pop_front()
        } else {
            None
        }
    };
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    let now = inner.clock.now();
    let oidc = oidc::handle(
        &mut inner.oidc.lock().unwrap(),
        &inner.base,
        &method,
        &path,
        &query,
        &form,
        &headers,
    );
    let (kind, resp) = if let Some(resp) = oidc {
        (Kind::Oidc, resp)
    } else if path.starts_with("/v1.0/") {
        (
            Kind::Graph,
            inner.graph(&method, &path, &query, &headers, now),
        )
    } else if path.ends_with("/oauth2/v2.0/token") && method == Method::POST {
        (Kind::Token, inner.token(&path, &form, &headers, now))
    } else if path.ends_with("/oauth2/v2.0/devicecode") && method == Method::POST {
        (Kind::DeviceCode, inner.device_code(&form))
    } else {
        (Kind::Graph, StatusCode::NOT_FOUND.into_response())
    };
    inner.script.lock().unwrap().requests.push(Recorded::new(
        now, kind, &method, &uri, &resp, form, headers,
    ));
    resp
}

fn json_response(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

// ---- token endpoint (§6.1–6.5) ----------------------------------------------------------

struct AadError {
    status: u16,
    error: &'static str,
    code: u32,
    message: String,
    suberror: Option<&'static str>,
    retry_after: Option<String>,
}

fn aad(status: u16, error: &'static str, code: u32, message: impl Into<String>) -> AadError {
    AadError {
        status,
        error,
        code,
        message: message.into(),
        suberror: None,
        retry_after: None,
    }
}

/// The error for a killed refresh token (§1.6).
fn refresh_token_error(code: u32) -> AadError {
    let (error, sub, msg) = match code {
        700082 => ("invalid_grant", None, "The refresh token has expired due to inactivity. The token was issued on 2023-01-01 and was inactive for 90.00:00:00."),
        70008 => ("invalid_grant", None, "The provided authorization code or refresh token has expired due to inactivity."),
        50173 => ("invalid_grant", Some("bad_token"), "The provided grant has expired due to it being revoked, a fresh auth token is needed."),
        70043 => ("invalid_grant", Some("bad_token"), "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access."),
        50076 => ("invalid_grant", Some("basic_action"), "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication."),
        50078 => ("invalid_grant", Some("basic_action"), "Presented multi-factor authentication has expired due to policies configured by your administrator."),
        50079 => ("interaction_required", Some("basic_action"), "Due to a configuration change made by your administrator, you must enroll in multi-factor authentication."),
        _ => ("invalid_grant", None, "The refresh token is not valid."),
    };
    AadError {
        suberror: sub,
        ..aad(400, error, code, msg)
    }
}

impl Inner {
    fn aad_response(&self, e: AadError, now: OffsetDateTime) -> Response {
        let ts = now
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .unwrap();
        let (trace, corr) = (uuid(), uuid());
        let mut body = json!({
            "error": e.error,
            "error_description": format!("AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}", e.code, e.message),
            "error_codes": [e.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("{}/error?code={}", self.base, e.code),
        });
        if let Some(s) = e.suberror {
            body["suberror"] = json!(s);
        }
        let mut r = json_response(e.status, body);
        if let Some(ra) = e.retry_after {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_str(&ra).unwrap());
        }
        r
    }

    fn token(
        &self,
        path: &str,
        form: &[(String, String)],
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Response {
        let tenant = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let mut s = self.script.lock().unwrap();
        match self.token_inner(&mut s, tenant, form, headers, now) {
            Ok(body) => json_response(200, body),
            Err(e) => {
                drop(s);
                self.aad_response(e, now)
            }
        }
    }

    fn token_inner(
        &self,
        s: &mut Script,
        tenant: &str,
        form: &[(String, String)],
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Value, AadError> {
        if let Some(f) = s.token_faults.pop_front() {
            let (error, code) = if f.status == 429 {
                ("temporarily_unavailable", 90055)
            } else {
                ("temporarily_unavailable", 90033)
            };
            return Err(AadError {
                retry_after: f.retry_after,
                ..aad(
                    f.status,
                    error,
                    code,
                    "The service is temporarily unavailable.",
                )
            });
        }
        if let Some(limit) = s.loop_limit {
            let recent = s
                .requests
                .iter()
                .filter(|r| r.kind == Kind::Token && now - r.at < time::Duration::minutes(1))
                .count();
            if recent >= limit {
                return Err(aad(400, "invalid_request", 50196, "The server terminated an operation because it encountered a client request loop."));
            }
        }
        if tenant != TENANT && tenant != TENANT_ID {
            return Err(aad(
                400,
                "invalid_tenant",
                90002,
                format!("Tenant '{tenant}' not found."),
            ));
        }
        if get(form, "resource").is_some() {
            return Err(aad(
                400,
                "invalid_request",
                901002,
                "The 'resource' request parameter is not supported.",
            ));
        }
        // Client credentials in the body or in HTTP Basic (RFC 6749 §2.3.1).
        let (basic_id, basic_secret) = basic_auth(headers);
        let client_id = basic_id
            .clone()
            .or_else(|| get(form, "client_id").map(str::to_string))
            .unwrap_or_default();
        if client_id != CLIENT_ID {
            return Err(aad(400, "unauthorized_client", 700016, format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'.")));
        }
        let grant = get(form, "grant_type").unwrap_or("");
        let secret = basic_secret.or_else(|| get(form, "client_secret").map(str::to_string));
        let assertion = get(form, "client_assertion");
        let authenticated = secret.is_some() || assertion.is_some();
        if let Some(secret) = secret {
            self.check_secret(s, &secret, now)?;
        } else if let Some(a) = assertion {
            if get(form, "client_assertion_type")
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                return Err(aad(
                    400,
                    "invalid_request",
                    50027,
                    "Invalid client_assertion_type.",
                ));
            }
            self.check_assertion(s, a, tenant, now)?;
        }
        if grant == "client_credentials" && !authenticated {
            return Err(aad(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."));
        }
        if s.consent_revoked {
            return Err(AadError {
                suberror: Some("consent_required"),
                ..aad(400, "invalid_grant", 65001, format!("The user or administrator has not consented to use the application with ID '{client_id}'."))
            });
        }
        match grant {
            "client_credentials" => {
                check_scope(get(form, "scope"), true)?;
                Ok(self.issue(s, now, None))
            }
            "refresh_token" => {
                let scope = get(form, "scope");
                if scope.is_some() {
                    check_scope(scope, false)?;
                }
                let rt = get(form, "refresh_token").unwrap_or("");
                match s.refresh.get(rt) {
                    Some(None) => {}
                    Some(Some(code)) => return Err(refresh_token_error(*code)),
                    None => return Err(refresh_token_error(70000)),
                }
                // Every use returns a fresh refresh token; the old one stays valid (§1.3).
                let new_rt = format!("1.rt-{}", random_token());
                s.refresh.insert(new_rt.clone(), None);
                Ok(self.issue(s, now, Some(new_rt)))
            }
            "urn:ietf:params:oauth:grant-type:device_code" => {
                let dc = get(form, "device_code").unwrap_or("");
                let auto = s.auto_approve_device;
                match s.devices.get_mut(dc) {
                    None => Err(aad(
                        400,
                        "expired_token",
                        70020,
                        "The provided value for the input parameter 'device_code' is not valid.",
                    )),
                    Some(polls) if *polls == 0 && !auto => Err(aad(
                        400,
                        "authorization_pending",
                        70016,
                        "OAuth 2.0 device flow error. Authorization is pending.",
                    )),
                    Some(polls) if *polls == 0 => {
                        *polls += 1;
                        Err(aad(
                            400,
                            "authorization_pending",
                            70016,
                            "OAuth 2.0 device flow error. Authorization is pending.",
                        ))
                    }
                    Some(_) => {
                        s.devices.remove(dc);
                        let rt = format!("1.rt-{}", random_token());
                        s.refresh.insert(rt.clone(), None);
                        Ok(self.issue(s, now, Some(rt)))
                    }
                }
            }
            "" => Err(aad(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )),
            other => Err(aad(
                400,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            )),
        }
    }

    fn issue(&self, s: &mut Script, now: OffsetDateTime, refresh: Option<String>) -> Value {
        let token = format!("eyJ0eXAiOiJKV1Qi.fake.{}", random_token());
        let ttl = s
            .graph_token_ttl
            .unwrap_or(Duration::from_secs(s.token_lifetime));
        s.access.insert(
            token.clone(),
            AccessToken {
                expires_at: now + ttl,
            },
        );
        let mut body = json!({
            "token_type": "Bearer",
            "expires_in": s.token_lifetime,
            "ext_expires_in": s.token_lifetime,
            "access_token": token,
        });
        if let Some(rt) = refresh {
            body["refresh_token"] = json!(rt);
            body["scope"] = json!("https://graph.microsoft.com/User.Read.All");
        }
        body
    }

    fn check_secret(&self, s: &Script, secret: &str, now: OffsetDateTime) -> Result<(), AadError> {
        let m = s.secrets.iter().find(|x| x.value == secret);
        match m {
            None => Err(aad(401, "invalid_client", 7000215, format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT_ID}'."))),
            Some(x) if x.expires_at.is_some_and(|t| now >= t) => Err(aad(401, "invalid_client", 7000222, format!("The provided client secret keys for app '{CLIENT_ID}' are expired. Visit the Azure portal to create new keys for your app."))),
            Some(_) => Ok(()),
        }
    }

    /// §6.2: thumbprint lookup, signature, aud, iss/sub, time range, jti.
    fn check_assertion(
        &self,
        s: &mut Script,
        jwt: &str,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<(), AadError> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let bad = |m: &str| {
            aad(
                401,
                "invalid_client",
                700027,
                format!("Client assertion failed signature validation. {m}"),
            )
        };
        let header = jsonwebtoken::decode_header(jwt).map_err(|e| bad(&e.to_string()))?;
        let cert = match (header.alg, &header.x5t, &header.x5t_s256) {
            (Algorithm::RS256, Some(t), _) => s.certs.iter().find(|c| thumbs(c).0 == *t),
            (Algorithm::PS256, _, Some(t)) => s.certs.iter().find(|c| thumbs(c).1 == *t),
            _ => return Err(bad("Unsupported algorithm or thumbprint header.")),
        }
        .ok_or_else(|| {
            bad("The certificate with the given thumbprint is not registered on the application.")
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
        let key = DecodingKey::from_rsa_der(&parsed.public_key().subject_public_key.data);
        let mut v = Validation::new(header.alg);
        v.validate_exp = false; // checked below against the fake clock
        v.validate_nbf = false;
        v.required_spec_claims = HashSet::new();
        v.set_audience(&[format!("{}/{tenant}/oauth2/v2.0/token", self.base)]);
        let data = jsonwebtoken::decode::<Value>(jwt, &key, &v).map_err(|e| bad(&e.to_string()))?;
        let c = data.claims;
        let (iss, sub) = (c["iss"].as_str(), c["sub"].as_str());
        if iss != Some(CLIENT_ID) || sub != Some(CLIENT_ID) {
            return Err(bad("iss and sub must be the client id."));
        }
        let skew = s.assertion_skew.as_secs() as i64;
        let t = now.unix_timestamp();
        let (nbf, exp) = (
            c["nbf"].as_i64().unwrap_or(i64::MAX),
            c["exp"].as_i64().unwrap_or(0),
        );
        if nbf > t + skew || t >= exp + skew {
            return Err(aad(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ));
        }
        let jti = c["jti"].as_str().unwrap_or("").to_string();
        if !s.jtis.insert(jti) && s.reject_jti_replay {
            return Err(aad(
                401,
                "invalid_client",
                700027,
                "The assertion jti was already used.",
            ));
        }
        Ok(())
    }

    fn device_code(&self, form: &[(String, String)]) -> Response {
        if get(form, "client_id") != Some(CLIENT_ID) {
            return self.aad_response(
                aad(400, "unauthorized_client", 700016, "Application not found."),
                self.clock.now(),
            );
        }
        let dc = random_token();
        self.script.lock().unwrap().devices.insert(dc.clone(), 0);
        json_response(
            200,
            json!({
                "device_code": dc,
                "user_code": "FAKE-CODE",
                "verification_uri": format!("{}/devicelogin", self.base),
                "expires_in": 900,
                "interval": 5,
                "message": "To sign in, use a web browser to open the page and enter the code FAKE-CODE to authenticate."
            }),
        )
    }
}

fn check_scope(scope: Option<&str>, app_only: bool) -> Result<(), AadError> {
    let Some(scope) = scope else {
        return Err(aad(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    };
    let resources: HashSet<&str> = scope
        .split_whitespace()
        .filter(|s| s.contains("://"))
        .map(|s| s.rsplit_once('/').map(|(r, _)| r).unwrap_or(s))
        .collect();
    if resources.len() > 1 {
        return Err(aad(400, "invalid_scope", 700022, "The provided value for the input parameter scope is not valid because it contains more than one resource."));
    }
    if app_only && !scope.ends_with("/.default") {
        return Err(aad(400, "invalid_scope", 1002012, format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.")));
    }
    if resources.is_empty()
        || resources
            .iter()
            .any(|r| *r != "https://graph.microsoft.com")
    {
        return Err(aad(400, "invalid_scope", 70011, format!("The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.")));
    }
    Ok(())
}

/// A request header's value, when present and text.
fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's bearer token; empty when it has none.
fn bearer(headers: &HeaderMap) -> &str {
    header_str(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

fn basic_auth(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(v) = header_str(headers, "authorization").and_then(|v| v.strip_prefix("Basic "))
    else {
        return (None, None);
    };
    let dec = base64::engine::general_purpose::STANDARD
        .decode(v)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let (id, secret) = dec.split_once(':').unwrap_or((&dec, ""));
    let p = pairs(&format!("i={id}&s={secret}"));
    (
        get(&p, "i").map(str::to_string),
        get(&p, "s").map(str::to_string),
    )
}

/// `x5t` (SHA-1) and `x5t#S256` of a DER certificate, as the fake computes them itself.
pub fn thumbs(der: &[u8]) -> (String, String) {
    use aws_lc_rs::digest;
    (
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der)),
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, der)),
    )
}

// ---- Graph (§6.6–6.12) ------------------------------------------------------------------

struct GraphErr {
    status: u16,
    code: &'static str,
    message: String,
    retry_after: Option<String>,
    headers: Vec<(&'static str, String)>,
}

fn gerr(status: u16, code: &'static str, message: impl Into<String>) -> GraphErr {
    GraphErr {
        status,
        code,
        message: message.into(),
        retry_after: None,
        headers: Vec::new(),
    }
}

/// Opaque state tokens, tamper-evident: base64url(json) "." mac.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct StateToken {
    /// `users` list or `delta` round.
    kind: String,
    select: Vec<String>,
    since: u64,
    upto: u64,
    offset: usize,
    top: usize,
    issued: i64,
}

impl Inner {
    /// One page of users: `@odata.context` and the values, plus an `@odata.nextLink` to
    /// `path` carrying the next offset when more than this page's `n` of `total` remain.
    /// Also says whether more remain.
    fn users_page(
        &self,
        props: &[&str],
        page: Vec<Value>,
        st: &StateToken,
        n: usize,
        total: usize,
        path: &str,
    ) -> (Value, bool) {
        let mut body = json!({
            "@odata.context": format!("{}/v1.0/$metadata#users({})", self.base, props.join(",")),
            "value": page,
        });
        let more = st.offset + n < total;
        if more {
            let next = StateToken {
                offset: st.offset + n,
                ..st.clone()
            };
            body["@odata.nextLink"] = json!(format!(
                "{}/v1.0/{path}?$skiptoken={}",
                self.base,
                self.seal(&next)
            ));
        }
        (body, more)
    }

    fn seal(&self, t: &StateToken) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap());
        format!("{payload}.{:016x}", self.mac(&payload))
    }

    fn open(&self, token: &str) -> Option<StateToken> {
        let (payload, mac) = token.rsplit_once('.')?;
        if format!("{:016x}", self.mac(payload)) != mac {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    fn mac(&self, payload: &str) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.key.hash(&mut h);
        payload.hash(&mut h);
        h.finish()
    }

    fn graph(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Response {
        let client_rid = header_str(headers, "client-request-id")
            .unwrap_or("")
            .to_string();
        let rid = uuid();
        let result = if method != Method::GET {
            Err(gerr(405, "Request_BadRequest", "Only GET is faked."))
        } else {
            let mut s = self.script.lock().unwrap();
            self.graph_inner(&mut s, path, query, headers, now)
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let body = json!({"error": {
                    "code": e.code,
                    "message": e.message,
                    "innerError": {
                        "date": now.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]")).unwrap(),
                        "request-id": rid,
                        "client-request-id": client_rid,
                    }
                }});
                let mut r = json_response(e.status, body);
                if let Some(ra) = e.retry_after {
                    r.headers_mut()
                        .insert("retry-after", HeaderValue::from_str(&ra).unwrap());
                }
                for (k, v) in e.headers {
                    r.headers_mut()
                        .insert(k, HeaderValue::from_str(&v).unwrap());
                }
                r
            }
        };
        resp.headers_mut()
            .insert("request-id", HeaderValue::from_str(&rid).unwrap());
        if let Ok(v) = HeaderValue::from_str(&client_rid) {
            resp.headers_mut().insert("client-request-id", v);
        }
        resp
    }

    fn graph_inner(
        &self,
        s: &mut Script,
        path: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Response, GraphErr> {
        let token = bearer(headers);
        match s.access.get(token) {
            Some(t) if now < t.expires_at => {}
            found => {
                let msg = if found.is_some() {
                    "Lifetime validation failed, the token is expired."
                } else {
                    "CompactToken validation failed with reason code: 80049228."
                };
                let mut e = gerr(401, "InvalidAuthenticationToken", msg);
                e.headers.push(("www-authenticate", "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"".into()));
                return Err(e);
            }
        }
        let next_page = get(query, "$skiptoken").is_some();
        let fault = match s.graph_faults.pop_front() {
            Some(f) => Some(f),
            None if next_page => s.page_faults.pop_front(),
            None => None,
        };
        if let Some(f) = fault.as_ref().filter(|f| f.html) {
            let page = format!("<html><body><h1>{} Error</h1></body></html>", f.status);
            let status = StatusCode::from_u16(f.status).unwrap();
            return Ok((status, [("content-type", "text/html")], page).into_response());
        }
        if let Some(f) = fault {
            let (code, msg) = match f.status {
                429 => ("TooManyRequests", "Please retry again later."),
                500 => ("generalException", "General exception while processing."),
                502 => ("badGateway", "Bad gateway."),
                503 => ("serviceNotAvailable", "Service unavailable."),
                _ => ("gatewayTimeout", "Gateway timeout."),
            };
            return Err(GraphErr {
                retry_after: f.retry_after,
                ..gerr(f.status, code, msg)
            });
        }
        if !s.permission_granted {
            return Err(gerr(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ));
        }
        let minimal = header_str(headers, "prefer").is_some_and(|v| v.contains("return=minimal"));
        let parts: Vec<&str> = path.trim_start_matches("/v1.0/").split('/').collect();
        match parts.as_slice() {
            ["users"] => self.list_users(s, query, headers),
            ["users", "delta"] => self.delta(s, query, minimal, now),
            ["users", id] => self.one_user(s, id, query),
            ["users", id, "manager"] => {
                let u = user(s, id)?;
                let m = u.manager.clone().ok_or_else(|| gerr(404, "Request_ResourceNotFound", "Resource 'manager' does not exist or one of its queried reference-property objects are not present."))?;
                let mu = user(s, &m)?;
                let mut v = project(&mu.props, DEFAULT_PROPS, false);
                v.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                Ok(json_response(200, Value::Object(v)))
            }
            ["users", id, "photo"] => {
                let u = user(s, id)?;
                let p = u.photo.as_ref().ok_or_else(no_photo)?;
                Ok(json_response(
                    200,
                    json!({
                        "@odata.context": format!("{}/v1.0/$metadata#users('{id}')/photo/$entity", self.base),
                        "@odata.mediaContentType": p.content_type,
                        "@odata.mediaEtag": p.etag,
                        "id": "240X240", "width": 240, "height": 240,
                    }),
                ))
            }
            ["users", id, "photo", "$value"] | ["users", id, "photos", _, "$value"] => {
                let p = user(s, id)?.photo.clone().ok_or_else(no_photo)?;
                *s.photo_downloads.entry(id.to_string()).or_default() += 1;
                Ok(([("content-type", p.content_type)], Body::from(p.bytes)).into_response())
            }
            ["groups", ..] if !s.group_permission_granted => Err(gerr(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )),
            ["groups"] => self.list_groups(s, query),
            ["groups", id] => {
                let g = group(s, id)?;
                let sel = select_list(query)?;
                Ok(json_response(200, Value::Object(group_json(id, g, &sel))))
            }
            ["groups", id, "transitiveMembers", "microsoft.graph.user"] => {
                self.transitive_users(s, id, query)
            }
            _ => Err(gerr(
                400,
                "BadRequest",
                format!("Resource not found for the segment '{path}'."),
            )),
        }
    }

    fn list_users(
        &self,
        s: &Script,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<Response, GraphErr> {
        let advanced = get(query, "$count").is_some() || get(query, "$search").is_some();
        if advanced
            && s.require_consistency_level
            && header_str(headers, "consistencylevel") != Some("eventual")
        {
            return Err(gerr(
                400,
                "Request_UnsupportedQuery",
                "Unsupported query: $count and $search need the header ConsistencyLevel: eventual.",
            ));
        }
        let st = match get(query, "$skiptoken") {
            Some(t) => self.open(t).filter(|t| t.kind == "users").ok_or_else(|| {
                gerr(
                    400,
                    "Request_BadRequest",
                    "The specified page token value has expired or is invalid.",
                )
            })?,
            None => {
                let top = match get(query, "$top") {
                    Some(t) => t.parse().ok().filter(|n| (1..=999).contains(n)).ok_or_else(|| gerr(400, "Request_BadRequest", "Invalid page size specified: '$top'. Must be between 1 and 999 inclusive."))?,
                    None => 100,
                };
                StateToken {
                    kind: "users".into(),
                    select: select_list(query)?,
                    since: 0,
                    upto: 0,
                    offset: 0,
                    top,
                    issued: 0,
                }
            }
        };
        let live: Vec<&FakeUser> = s.users.values().filter(|u| u.removed.is_none()).collect();
        let props = props_of(&st.select);
        let page: Vec<Value> = live
            .iter()
            .skip(st.offset)
            .take(st.top)
            .map(|u| Value::Object(project(&u.props, &props, true)))
            .collect();
        let (mut body, _) = self.users_page(&props, page, &st, st.top, live.len(), "users");
        if get(query, "$count") == Some("true") && st.offset == 0 {
            body["@odata.count"] = json!(live.len());
        }
        Ok(json_response(200, body))
    }

    fn one_user(
        &self,
        s: &Script,
        id: &str,
        query: &[(String, String)],
    ) -> Result<Response, GraphErr> {
        let u = user(s, id)?;
        let sel = select_list(query)?;
        let mut v = project(&u.props, &props_of(&sel), true);
        if get(query, "$expand").is_some_and(|e| e.starts_with("manager")) {
            if let Some(m) = u.manager.as_ref().and_then(|m| s.users.get(m)) {
                let mut mv = project(&m.props, &["id", "displayName", "mail"], false);
                mv.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                v.insert("manager".into(), Value::Object(mv));
            }
        }
        Ok(json_response(200, Value::Object(v)))
    }

    /// §6.8–6.9: delta rounds, paging, return=minimal, @removed, expiry and forced resync.
    fn delta(
        &self,
        s: &mut Script,
        query: &[(String, String)],
        minimal: bool,
        now: OffsetDateTime,
    ) -> Result<Response, GraphErr> {
        let st = if let Some(t) = get(query, "$deltatoken") {
            if t == "latest" {
                let st = StateToken {
                    kind: "delta".into(),
                    select: select_list(query)?,
                    since: s.version,
                    upto: s.version,
                    offset: 0,
                    top: 0,
                    issued: now.unix_timestamp(),
                };
                let link = format!(
                    "{}/v1.0/users/delta?$deltatoken={}",
                    self.base,
                    self.seal(&st)
                );
                return Ok(json_response(
                    200,
                    json!({"@odata.context": format!("{}/v1.0/$metadata#users", self.base), "@odata.deltaLink": link, "value": []}),
                ));
            }
            let st = self.open(t).filter(|t| t.kind == "delta");
            let expired = st.as_ref().is_none_or(|st| {
                now.unix_timestamp() - st.issued > s.delta_max_age.as_secs() as i64
            });
            if expired || std::mem::take(&mut s.force_resync) {
                return Err(self.resync_error(s.resync_shape));
            }
            let st = st.unwrap();
            StateToken {
                since: st.since,
                upto: s.version,
                offset: 0,
                ..st
            }
        } else if let Some(t) = get(query, "$skiptoken") {
            self.open(t).filter(|t| t.kind == "delta").ok_or_else(|| {
                gerr(
                    400,
                    "Request_BadRequest",
                    "The specified page token value has expired or is invalid.",
                )
            })?
        } else {
            // `$top` is silently ignored on delta (§2.2).
            StateToken {
                kind: "delta".into(),
                select: select_list(query)?,
                since: 0,
                upto: s.version,
                offset: 0,
                top: 0,
                issued: now.unix_timestamp(),
            }
        };
        let props = props_of(&st.select);
        let with_manager = st.select.iter().any(|p| p == "manager");
        let in_range = |v: u64| v > st.since && v <= st.upto;
        // The ids of one round are computed once and reused for its pages (large tenants).
        let key = (st.since, st.upto, st.select.clone(), s.version);
        let ids = match &s.delta_cache {
            Some((k, ids)) if *k == key => ids.clone(),
            _ => {
                let ids: Arc<Vec<String>> = Arc::new(
                    s.users
                        .iter()
                        .filter(|(_, u)| match &u.removed {
                            Some((_, v)) => in_range(*v),
                            None => {
                                props
                                    .iter()
                                    .any(|p| u.versions.get(*p).is_some_and(|v| in_range(*v)))
                                    || (with_manager && in_range(u.manager_version))
                            }
                        })
                        .map(|(id, _)| id.clone())
                        .collect(),
                );
                s.delta_cache = Some((key, ids.clone()));
                ids
            }
        };
        let n = s.delta_page_size.max(1);
        // Sliced by offset: serving a page costs the page, not the tenant.
        let mut page: Vec<Value> = ids[st.offset.min(ids.len())..]
            .iter()
            .take(n)
            .map(|id| delta_entry(id, &s.users[id], &props, with_manager, minimal, &in_range))
            .collect();
        if s.duplicate_entries {
            if let Some(first) = page.first().cloned() {
                page.push(first);
            }
        }
        let (mut body, more) = self.users_page(&props, page, &st, n, ids.len(), "users/delta");
        if !more {
            let next = StateToken {
                since: st.upto,
                upto: st.upto,
                offset: 0,
                issued: now.unix_timestamp(),
                ..st.clone()
            };
            body["@odata.deltaLink"] = json!(format!(
                "{}/v1.0/users/delta?$deltatoken={}",
                self.base,
                self.seal(&next)
            ));
        }
        Ok(json_response(200, body))
    }

    /// `/groups`, with only the `displayName eq '…'` filter (case-insensitive, as Entra ID
    /// compares strings).
    fn list_groups(&self, s: &Script, query: &[(String, String)]) -> Result<Response, GraphErr> {
        let sel = select_list(query)?;
        let name = match get(query, "$filter") {
            Some(f) => Some(display_name_filter(f).ok_or_else(|| {
                gerr(
                    400,
                    "Request_UnsupportedQuery",
                    format!("Unsupported or invalid query filter clause specified: {f}"),
                )
            })?),
            None => None,
        };
        let value: Vec<Value> = s
            .groups
            .iter()
            .filter(|(_, g)| {
                name.as_ref()
                    .is_none_or(|n| g.display_name.to_lowercase() == n.to_lowercase())
            })
            .map(|(id, g)| Value::Object(group_json(id, g, &sel)))
            .collect();
        Ok(json_response(
            200,
            json!({"@odata.context": format!("{}/v1.0/$metadata#groups(id,displayName)", self.base), "value": value}),
        ))
    }

    /// `/groups/{id}/transitiveMembers/microsoft.graph.user`: the users under the group and
    /// its nested groups, once each, paged by `$top` (≤ 999, default 100, capped by the
    /// script) with an opaque `$skiptoken`.
    fn transitive_users(
        &self,
        s: &Script,
        id: &str,
        query: &[(String, String)],
    ) -> Result<Response, GraphErr> {
        group(s, id)?;
        let kind = format!("members:{id}");
        let st = match get(query, "$skiptoken") {
            Some(t) => self.open(t).filter(|t| t.kind == kind).ok_or_else(|| {
                gerr(
                    400,
                    "Request_BadRequest",
                    "The specified page token value has expired or is invalid.",
                )
            })?,
            None => {
                let top = match get(query, "$top") {
                    Some(t) => t.parse().ok().filter(|n| (1..=999).contains(n)).ok_or_else(|| gerr(400, "Request_BadRequest", "Invalid page size specified: '$top'. Must be between 1 and 999 inclusive."))?,
                    None => 100,
                };
                StateToken {
                    kind,
                    select: select_list(query)?,
                    since: 0,
                    upto: 0,
                    offset: 0,
                    top,
                    issued: 0,
                }
            }
        };
        let mut users: Vec<String> = Vec::new();
        let (mut todo, mut seen) = (vec![id.to_string()], HashSet::new());
        while let Some(g) = todo.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            for m in s
                .groups
                .get(&g)
                .map(|g| g.members.clone())
                .unwrap_or_default()
            {
                if s.groups.contains_key(&m) {
                    todo.push(m);
                } else if s.users.get(&m).is_some_and(|u| u.removed.is_none())
                    && !users.contains(&m)
                {
                    users.push(m);
                }
            }
        }
        users.sort();
        let n = st.top.min(s.members_page_cap.max(1));
        let props = props_of(&st.select);
        let page: Vec<Value> = users
            .iter()
            .skip(st.offset)
            .take(n)
            .map(|uid| {
                let mut v = project(&s.users[uid].props, &props, true);
                v.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                Value::Object(v)
            })
            .collect();
        let path = format!("groups/{id}/transitiveMembers/microsoft.graph.user");
        let (body, _) = self.users_page(&props, page, &st, n, users.len(), &path);
        Ok(json_response(200, body))
    }

    fn resync_error(&self, shape: ResyncShape) -> GraphErr {
        match shape {
            ResyncShape::Gone410 => {
                let mut e = gerr(410, "Gone", "The delta token is no longer valid.");
                e.headers.push((
                    "location",
                    format!("{}/v1.0/users/delta?$deltatoken=", self.base),
                ));
                e
            }
            ResyncShape::SyncStateNotFound => gerr(
                400,
                "syncStateNotFound",
                "The delta token is expired and data must be synchronized again.",
            ),
            ResyncShape::ResyncRequired => gerr(
                400,
                "resyncRequired",
                "The delta token is no longer valid, and the app must reset the sync state.",
            ),
        }
    }
}

fn no_photo() -> GraphErr {
    gerr(404, "ImageNotFound", "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.")
}

fn group<'a>(s: &'a Script, id: &str) -> Result<&'a FakeGroup, GraphErr> {
    s.groups.get(id).ok_or_else(|| gerr(404, "Request_ResourceNotFound", format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present.")))
}

/// A group as Graph lists it: `id` always, the selected properties (id and displayName
/// by default here; the real default set is larger).
fn group_json(id: &str, g: &FakeGroup, select: &[String]) -> Map<String, Value> {
    let mut v = Map::new();
    v.insert("id".into(), json!(id));
    if select.is_empty() || select.iter().any(|p| p == "displayName") {
        v.insert("displayName".into(), json!(g.display_name));
    }
    v
}

/// `displayName eq 'Sales'` (OData quotes doubled); `None` for any other filter.
fn display_name_filter(filter: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix("displayName")?.trim_start();
    let quoted = rest.strip_prefix("eq")?.trim();
    let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

fn user<'a>(s: &'a Script, id: &str) -> Result<&'a FakeUser, GraphErr> {
    s.users
        .get(id)
        .filter(|u| u.removed.is_none())
        .ok_or_else(|| gerr(404, "Request_ResourceNotFound", format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present.")))
}

fn select_list(query: &[(String, String)]) -> Result<Vec<String>, GraphErr> {
    let Some(sel) = get(query, "$select") else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = sel
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(p) = list
        .iter()
        .find(|p| NOT_ON_COLLECTION.contains(&p.as_str()))
    {
        return Err(gerr(
            501,
            "NotImplemented",
            format!("This operation target is not yet supported: {p}."),
        ));
    }
    Ok(list)
}

/// The selected properties (never `manager`), `id` always; the defaults when none.
fn props_of(select: &[String]) -> Vec<&str> {
    if select.is_empty() {
        return DEFAULT_PROPS.to_vec();
    }
    let mut v: Vec<&str> = vec!["id"];
    v.extend(
        select
            .iter()
            .map(String::as_str)
            .filter(|p| *p != "id" && *p != "manager"),
    );
    v
}

/// Selected properties; with `nulls`, unset ones as `null` (collections `[]`).
fn project(props: &Map<String, Value>, sel: &[&str], nulls: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for p in sel {
        match props.get(*p) {
            Some(v) => {
                out.insert((*p).into(), v.clone());
            }
            None if nulls => {
                let empty = if COLLECTIONS.contains(p) {
                    json!([])
                } else {
                    Value::Null
                };
                out.insert((*p).into(), empty);
            }
            None => {}
        }
    }
    out
}

fn delta_entry(
    id: &str,
    u: &FakeUser,
    props: &[&str],
    with_manager: bool,
    minimal: bool,
    in_range: &dyn Fn(u64) -> bool,
) -> Value {
    if let Some((reason, _)) = &u.removed {
        return json!({"id": id, "@removed": {"reason": reason}});
    }
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    for p in props.iter().filter(|p| **p != "id") {
        let changed = u.versions.get(*p).is_some_and(|v| in_range(*v));
        let value = u.props.get(*p);
        // Minimal: changed properties only. Otherwise: every selected property with a value,
        // plus changed ones that were cleared (as null).
        if changed || (!minimal && value.is_some()) {
            out.insert((*p).into(), value.cloned().unwrap_or(Value::Null));
        }
    }
    if with_manager && in_range(u.manager_version) {
        let link = match &u.manager {
            Some(m) => json!([{"@odata.type": "#microsoft.graph.user", "id": m}]),
            None => {
                json!([{"@odata.type": "#microsoft.graph.user", "id": "", "@removed": {"reason": "deleted"}}])
            }
        };
        out.insert("manager@delta".into(), link);
    }
    Value::Object(out)
}

// ---- helpers shared by the graph_* tests -------------------------------------------------

use sigstamp::directory::graph::client::RetryPolicy;
use sigstamp::directory::graph::sync::Syncer;
use sigstamp::directory::graph::SyncTarget;
use sigstamp::directory::Directory;

/// A sink with a fresh directory, status and metrics.
pub fn sink(clock: Arc<ManualClock>, snapshot: Option<std::path::PathBuf>) -> SyncTarget {
    SyncTarget {
        directory: Arc::new(Directory::new()),
        status: Arc::new(sigstamp::status::Status::default()),
        metrics: Arc::new(sigstamp::metrics::Metrics::new()),
        snapshot,
        clock,
    }
}

/// A syncer using the production client against this fake.
pub fn syncer(cfg: &GraphConfig, clock: Arc<ManualClock>) -> Syncer {
    let client = cfg
        .client(clock.clone(), RetryPolicy::background())
        .unwrap();
    Syncer::new(client, clock)
}

/// Users `a`, `b`, `c` with mail, aliases and a few attributes.
pub fn seed_abc(fake: &FakeGraph) {
    for (id, name) in [("a", "Adele Vance"), ("b", "Bob Kelly"), ("c", "Cara Diaz")] {
        let first = name.split(' ').next().unwrap().to_lowercase();
        fake.put_user(json!({
            "id": format!("id-{id}"),
            "displayName": name,
            "jobTitle": "Engineer",
            "mail": format!("{first}@contoso.test"),
            "userPrincipalName": format!("{first}@contoso.onmicrosoft.com"),
            "proxyAddresses": [format!("SMTP:{first}@contoso.test"), format!("smtp:{first}.alias@contoso.test"), "SIP:x@contoso.test"],
            "businessPhones": ["+1 555 0101"],
        }));
    }
}

/// Poll `f` every few milliseconds for up to 5 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
