//! The fake's mailboxes (`shared/graph-contract.md` §8.5): per-mailbox sentitems holding
//! messages with `id`, `internetMessageId`, `isDraft`, `sentDateTime`, body, recipients and
//! attachments; `$filter=internetMessageId eq '…'` with the encoding rules of §8.2; JSON
//! create where `isDraft` follows bit 0x08 of `Integer 0x0E07` (absent → draft) and MIME
//! create always a draft; attachments and upload sessions; DELETE; the 4-concurrent and rate
//! limits with 429 + `Retry-After`; 403 `ErrorAccessDenied` outside the configured scope; a
//! delay before a sent copy becomes visible; a fault hook failing the next deletes.

use super::{bearer, header_str, json_response, pairs, uuid, Fault, Inner, Kind, Recorded};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sigstamp::directory::graph::clock::Clock;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

pub const TAG_NAME: &str = "X-Sigstamp-Replaces";
const REQUEST_LIMIT: usize = 4 * 1024 * 1024;
const CHUNK_UNIT: usize = 320 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct MailAttachment {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub is_inline: bool,
    pub content_id: Option<String>,
}

impl MailAttachment {
    pub fn file(name: &str, content_type: &str, bytes: Vec<u8>) -> Self {
        MailAttachment {
            id: uuid(),
            kind: "#microsoft.graph.fileAttachment".into(),
            name: name.into(),
            content_type: content_type.into(),
            bytes,
            is_inline: false,
            content_id: None,
        }
    }

    pub fn inline(name: &str, content_type: &str, bytes: Vec<u8>, cid: &str) -> Self {
        MailAttachment {
            is_inline: true,
            content_id: Some(cid.into()),
            ..Self::file(name, content_type, bytes)
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailMessage {
    pub id: String,
    pub folder: String,
    pub internet_message_id: String,
    pub is_draft: bool,
    pub is_read: bool,
    pub subject: String,
    pub importance: String,
    pub body_type: String,
    pub body: String,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub sent: Option<String>,
    /// singleValueExtendedProperties: (id as sent, value).
    pub props: Vec<(String, String)>,
    pub attachments: Vec<MailAttachment>,
    pub visible_at: OffsetDateTime,
    /// Created through a MIME (text/plain) POST.
    pub mime: bool,
}

impl MailMessage {
    /// A sent copy as Exchange saves it: non-draft, read, in sentitems.
    pub fn sent(internet_message_id: &str, subject: &str, from: &str, to: &[&str]) -> Self {
        MailMessage {
            id: format!("AAMk{}", uuid().replace('-', "")),
            folder: "sentitems".into(),
            internet_message_id: internet_message_id.into(),
            is_draft: false,
            is_read: true,
            subject: subject.into(),
            importance: "normal".into(),
            body_type: "html".into(),
            body: "<p>original</p>".into(),
            from: from.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            cc: vec![],
            bcc: vec![],
            sent: Some("2026-05-01T10:00:00Z".into()),
            props: vec![("Binary 0x0071".into(), "AQHXconv".into())],
            attachments: vec![],
            visible_at: OffsetDateTime::UNIX_EPOCH,
            mime: false,
        }
    }

    /// The tag's value, if this is a replacement.
    pub fn replaces(&self) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| {
                k.to_ascii_lowercase()
                    .ends_with(&TAG_NAME.to_ascii_lowercase())
            })
            .map(|(_, v)| v.as_str())
    }

    pub fn prop(&self, id: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(id))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        let rcpts = |v: &[String]| -> Value {
            v.iter()
                .map(|a| json!({"emailAddress": {"address": a, "name": a}}))
                .collect()
        };
        json!({
            "id": self.id,
            "internetMessageId": self.internet_message_id,
            "isDraft": self.is_draft,
            "isRead": self.is_read,
            "subject": self.subject,
            "importance": self.importance,
            "body": {"contentType": self.body_type, "content": self.body},
            "from": {"emailAddress": {"address": self.from, "name": self.from}},
            "sender": {"emailAddress": {"address": self.from, "name": self.from}},
            "toRecipients": rcpts(&self.to),
            "ccRecipients": rcpts(&self.cc),
            "bccRecipients": rcpts(&self.bcc),
            "replyTo": [],
            "categories": [],
            "sentDateTime": self.sent,
            "hasAttachments": !self.attachments.is_empty(),
            "conversationId": "AAQkconv",
        })
    }
}

struct Session {
    mailbox: String,
    message: String,
    att: MailAttachment,
    size: usize,
}

/// Everything the tests script about mailboxes. Reach it through [`super::FakeGraph::with_mail`].
pub struct MailState {
    /// Any spelling (id, address) → canonical mailbox key.
    aliases: HashMap<String, String>,
    messages: HashMap<String, Vec<MailMessage>>,
    /// Mailboxes the app may access (RBAC scope); others answer 403 ErrorAccessDenied.
    in_scope: HashSet<String>,
    sessions: HashMap<String, Session>,
    in_flight: HashMap<String, usize>,
    window: HashMap<String, VecDeque<OffsetDateTime>>,
    /// Requests in flight per mailbox above this: 429 MailboxConcurrency (§8.4).
    pub concurrency_limit: usize,
    /// At most this many requests per mailbox within `rate_window` (§8.4: 10,000 / 10 min).
    pub rate_limit: usize,
    pub rate_window: Duration,
    /// `Retry-After` of concurrency 429s (rate 429s say when the window frees up).
    pub retry_after: String,
    /// How long a sent copy takes to appear in sentitems after `put_sent`.
    pub visible_delay: Duration,
    /// Real time each mailbox request takes (so concurrency is observable).
    pub latency: Duration,
    /// Scripted failures of the next mailbox requests (429 storms).
    pub faults: VecDeque<Fault>,
    /// The next this many DELETEs answer 500.
    pub fail_deletes: usize,
    /// Create every message as a draft whatever its flags (a server ignoring them).
    pub drafts_only: bool,
    /// Most requests one mailbox had in flight at once.
    pub max_in_flight: HashMap<String, usize>,
    /// 429s caused by the concurrency limit / the rate limit.
    pub concurrency_rejections: usize,
    pub rate_rejections: usize,
    pub requests: usize,
}

impl Default for MailState {
    fn default() -> Self {
        MailState {
            aliases: HashMap::new(),
            messages: HashMap::new(),
            in_scope: HashSet::new(),
            sessions: HashMap::new(),
            in_flight: HashMap::new(),
            window: HashMap::new(),
            concurrency_limit: 4,
            rate_limit: 10_000,
            rate_window: Duration::from_secs(600),
            retry_after: "1".into(),
            visible_delay: Duration::ZERO,
            latency: Duration::ZERO,
            faults: VecDeque::new(),
            fail_deletes: 0,
            drafts_only: false,
            max_in_flight: HashMap::new(),
            concurrency_rejections: 0,
            rate_rejections: 0,
            requests: 0,
        }
    }
}

impl MailState {
    /// A mailbox known by its Graph id and its address; `in_scope` false: 403 for it.
    pub fn add_mailbox(&mut self, id: &str, address: &str, in_scope: bool) {
        let key = id.to_ascii_lowercase();
        self.aliases.insert(key.clone(), key.clone());
        self.aliases
            .insert(address.to_ascii_lowercase(), key.clone());
        self.messages.entry(key.clone()).or_default();
        if in_scope {
            self.in_scope.insert(key);
        }
    }

    fn key(&self, mailbox: &str) -> Option<String> {
        self.aliases.get(&mailbox.to_ascii_lowercase()).cloned()
    }

    /// All messages of a mailbox (every folder).
    pub fn messages(&self, mailbox: &str) -> Vec<MailMessage> {
        self.key(mailbox)
            .and_then(|k| self.messages.get(&k).cloned())
            .unwrap_or_default()
    }

    pub fn folder(&self, mailbox: &str, folder: &str) -> Vec<MailMessage> {
        self.messages(mailbox)
            .into_iter()
            .filter(|m| m.folder == folder)
            .collect()
    }

    fn find(&mut self, key: &str, id: &str) -> Option<&mut MailMessage> {
        self.messages.get_mut(key)?.iter_mut().find(|m| m.id == id)
    }
}

impl super::FakeGraph {
    pub fn with_mail<R>(&self, f: impl FnOnce(&mut MailState) -> R) -> R {
        f(&mut self.inner.mail.lock().unwrap())
    }

    /// Exchange saving the sent copy: visible after `visible_delay`. Returns its id.
    pub fn put_sent(&self, mailbox: &str, mut msg: MailMessage) -> String {
        let now = self.clock.now();
        self.with_mail(|m| {
            msg.visible_at = now + m.visible_delay;
            let id = msg.id.clone();
            let key = m.key(mailbox).expect("add_mailbox first");
            m.messages.entry(key).or_default().push(msg);
            id
        })
    }
}

/// Does this path belong to the mailbox part of the fake?
pub fn routes(path: &str) -> bool {
    if path.starts_with("/upload/") {
        return true;
    }
    let parts: Vec<&str> = path.trim_start_matches("/v1.0/").split('/').collect();
    path.starts_with("/v1.0/users/")
        && matches!(
            parts.get(2).copied(),
            Some("messages") | Some("mailFolders")
        )
}

struct MailErr {
    status: u16,
    code: &'static str,
    message: String,
    retry_after: Option<String>,
}

fn merr(status: u16, code: &'static str, message: impl Into<String>) -> MailErr {
    MailErr {
        status,
        code,
        message: message.into(),
        retry_after: None,
    }
}

impl MailErr {
    fn response(self) -> Response {
        let mut r = json_response(
            self.status,
            json!({"error": {"code": self.code, "message": self.message,
                "innerError": {"request-id": uuid(), "date": "2026-05-01T10:00:00"}}}),
        );
        if let Some(ra) = self.retry_after {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_str(&ra).unwrap());
        }
        r
    }
}

pub async fn handle(inner: Arc<Inner>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 4 * REQUEST_LIMIT)
        .await
        .unwrap_or_default();
    let now = inner.clock.now();
    let path = uri.path().to_string();
    let raw_query = uri.query().unwrap_or("").to_string();
    let resp = if let Some(token) = path.strip_prefix("/upload/") {
        upload(&inner, token, &headers, &body)
    } else {
        api(&inner, &method, &path, &raw_query, &headers, &body, now).await
    };
    inner.script.lock().unwrap().requests.push(Recorded::new(
        now,
        Kind::Graph,
        &method,
        &uri,
        &resp,
        Vec::new(),
        headers,
    ));
    resp
}

/// Bearer check against the token endpoint's issued tokens (§6.6).
fn authorized(inner: &Inner, headers: &HeaderMap, now: OffsetDateTime) -> bool {
    let token = bearer(headers);
    let s = inner.script.lock().unwrap();
    s.access.get(token).is_some_and(|t| now < t.expires_at)
}

async fn api(
    inner: &Inner,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Response {
    if !authorized(inner, headers, now) {
        return merr(
            401,
            "InvalidAuthenticationToken",
            "Access token is empty or expired.",
        )
        .response();
    }
    let parts: Vec<String> = path
        .trim_start_matches("/v1.0/")
        .split('/')
        .map(percent_decode)
        .collect();
    let user = parts[1].clone();
    // Admission: scope, scripted faults, the rate and concurrency limits.
    let key = {
        let mut m = inner.mail.lock().unwrap();
        m.requests += 1;
        let Some(key) = m.key(&user) else {
            return merr(
                404,
                "ErrorInvalidUser",
                format!("The requested user '{user}' is invalid."),
            )
            .response();
        };
        if !m.in_scope.contains(&key) {
            return merr(403, "ErrorAccessDenied", "Access to OData is disabled: the application is not in the management scope of this mailbox.").response();
        }
        if let Some(f) = m.faults.pop_front() {
            let code = if f.status == 429 {
                "ApplicationThrottled"
            } else {
                "ErrorServerBusy"
            };
            return MailErr {
                retry_after: f.retry_after,
                ..merr(
                    f.status,
                    code,
                    "Application is over its MailboxConcurrency limit.",
                )
            }
            .response();
        }
        let (limit, window) = (m.rate_limit, m.rate_window);
        let w = m.window.entry(key.clone()).or_default();
        while w.front().is_some_and(|t| *t + window <= now) {
            w.pop_front();
        }
        if w.len() >= limit {
            // Retry-After: until the oldest request leaves the window (whole seconds).
            let free_at = *w.front().unwrap() + window;
            let wait = ((free_at - now).as_seconds_f64().ceil() as u64).max(1);
            m.rate_rejections += 1;
            return MailErr {
                retry_after: Some(wait.to_string()),
                ..merr(
                    429,
                    "ApplicationThrottled",
                    "Application is over its request limit for this mailbox.",
                )
            }
            .response();
        }
        w.push_back(now);
        let n = m.in_flight.entry(key.clone()).or_default();
        *n += 1;
        let n = *n;
        if n > m.concurrency_limit {
            *m.in_flight.get_mut(&key).unwrap() -= 1;
            m.concurrency_rejections += 1;
            return MailErr {
                retry_after: Some(m.retry_after.clone()),
                ..merr(
                    429,
                    "MailboxConcurrency",
                    "Application is over its MailboxConcurrency limit.",
                )
            }
            .response();
        }
        let max = m.max_in_flight.entry(key.clone()).or_default();
        *max = (*max).max(n);
        key
    };
    let latency = inner.mail.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let result = {
        let mut m = inner.mail.lock().unwrap();
        let r = operation(
            inner, &mut m, &key, method, &parts, raw_query, headers, body, now,
        );
        *m.in_flight.get_mut(&key).unwrap() -= 1;
        r
    };
    result.unwrap_or_else(MailErr::response)
}

fn percent_decode(s: &str) -> String {
    pairs(&format!("x={}", s.replace('+', "%2B")))
        .pop()
        .map(|(_, v)| v)
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn operation(
    inner: &Inner,
    m: &mut MailState,
    key: &str,
    method: &Method,
    parts: &[String],
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Response, MailErr> {
    let query = pairs(raw_query);
    let q = |k: &str| query.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let rest: Vec<&str> = parts[2..].iter().map(String::as_str).collect();
    if body.len() > REQUEST_LIMIT {
        return Err(merr(
            413,
            "ErrorRequestEntityTooLarge",
            "The request body exceeds 4 MB.",
        ));
    }
    match (method.clone(), rest.as_slice()) {
        (Method::GET, ["mailFolders", "sentitems", "messages"]) => {
            let filter = q("$filter").unwrap_or_default();
            // §8.2: the value's <, >, @ and spaces must arrive percent-encoded.
            if raw_query.contains(['<', '>', '@', ' ', '\'']) {
                return Err(merr(
                    400,
                    "BadRequest",
                    "Invalid filter clause: unencoded characters.",
                ));
            }
            let wanted = parse_imid_filter(&filter).ok_or_else(|| {
                merr(
                    400,
                    "BadRequest",
                    format!("Invalid filter clause: {filter}"),
                )
            })?;
            let expand = q("$expand").unwrap_or_default();
            let value: Vec<Value> = m
                .messages
                .get(key)
                .into_iter()
                .flatten()
                .filter(|msg| {
                    msg.folder == "sentitems"
                        && msg.visible_at <= now
                        && msg.internet_message_id == wanted
                })
                .map(|msg| with_expanded(msg, &expand))
                .collect();
            Ok(json_response(200, json!({ "value": value })))
        }
        (Method::POST, ["mailFolders", "sentitems", "messages"]) => {
            let ct = header_str(headers, "content-type").unwrap_or("");
            let mut msg = if ct.starts_with("text/plain") {
                mime_create(body)?
            } else {
                json_create(body)?
            };
            msg.is_draft |= m.drafts_only;
            let out = msg.json();
            m.messages.entry(key.to_string()).or_default().push(msg);
            Ok(json_response(201, out))
        }
        (Method::GET, ["messages", id]) => {
            let msg = m.find(key, id).ok_or_else(not_found)?;
            Ok(json_response(
                200,
                with_expanded(msg, &q("$expand").unwrap_or_default()),
            ))
        }
        (Method::PATCH, ["messages", id]) => {
            let msg = m.find(key, id).ok_or_else(not_found)?;
            if !msg.is_draft {
                return Err(merr(
                    400,
                    "ErrorInvalidRequest",
                    "The item cannot be updated: it is not a draft.",
                ));
            }
            Ok(json_response(200, msg.json()))
        }
        (Method::DELETE, ["messages", id]) => {
            if m.fail_deletes > 0 {
                m.fail_deletes -= 1;
                return Err(merr(
                    500,
                    "ErrorInternalServerError",
                    "Scripted delete failure.",
                ));
            }
            let msg = m.find(key, id).ok_or_else(not_found)?;
            if msg.folder == "deleteditems" {
                return Err(not_found());
            }
            msg.folder = "deleteditems".into();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::GET, ["messages", id, "attachments"]) => {
            let msg = m.find(key, id).ok_or_else(not_found)?;
            let full = q("$select").is_none();
            let value: Vec<Value> = msg
                .attachments
                .iter()
                .map(|a| attachment_json(a, full))
                .collect();
            Ok(json_response(200, json!({ "value": value })))
        }
        (Method::GET, ["messages", id, "attachments", aid, "$value"]) => {
            let msg = m.find(key, id).ok_or_else(not_found)?;
            let a = msg
                .attachments
                .iter()
                .find(|a| a.id == *aid)
                .ok_or_else(not_found)?;
            Ok((
                [("content-type", a.content_type.clone())],
                Body::from(a.bytes.clone()),
            )
                .into_response())
        }
        (Method::POST, ["messages", id, "attachments"]) => {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| merr(400, "BadRequest", e.to_string()))?;
            let a = attachment_from(&v)?;
            let msg = m.find(key, id).ok_or_else(not_found)?;
            let out = attachment_json(&a, false);
            msg.attachments.push(a);
            Ok(json_response(201, out))
        }
        (Method::POST, ["messages", id, "attachments", "createUploadSession"]) => {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| merr(400, "BadRequest", e.to_string()))?;
            let item = v
                .get("AttachmentItem")
                .ok_or_else(|| merr(400, "BadRequest", "AttachmentItem missing"))?;
            let size = item
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| merr(400, "BadRequest", "size missing"))?
                as usize;
            if size > 150 * 1024 * 1024 {
                return Err(merr(400, "ErrorAttachmentSizeLimitExceeded", "over 150 MB"));
            }
            m.find(key, id).ok_or_else(not_found)?;
            let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            let token = uuid();
            m.sessions.insert(
                token.clone(),
                Session {
                    mailbox: key.to_string(),
                    message: id.to_string(),
                    size,
                    att: MailAttachment {
                        id: uuid(),
                        kind: "#microsoft.graph.fileAttachment".into(),
                        name: s("name").unwrap_or_default(),
                        content_type: s("contentType")
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        bytes: Vec::with_capacity(size.min(8 << 20)),
                        is_inline: item
                            .get("isInline")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        content_id: s("contentId"),
                    },
                },
            );
            Ok(json_response(
                201,
                json!({"uploadUrl": format!("{}/upload/{token}", inner.base),
                    "expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": ["0-"]}),
            ))
        }
        _ => Err(merr(
            400,
            "BadRequest",
            format!("Resource not found for the segment '{}'.", parts.join("/")),
        )),
    }
}

fn not_found() -> MailErr {
    merr(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// `internetMessageId eq '<…>'` with `''` for a quote (§8.2).
fn parse_imid_filter(filter: &str) -> Option<String> {
    let v = filter
        .trim()
        .strip_prefix("internetMessageId eq '")?
        .strip_suffix('\'')?;
    // A lone quote would end the literal.
    if v.replace("''", "").contains('\'') {
        return None;
    }
    Some(v.replace("''", "'"))
}

/// The message JSON with `singleValueExtendedProperties` when `$expand` asks for them with
/// `$filter=id eq '…' or id eq '…'`.
fn with_expanded(msg: &MailMessage, expand: &str) -> Value {
    let mut v = msg.json();
    if let Some(filter) = expand
        .strip_prefix("singleValueExtendedProperties($filter=")
        .and_then(|f| f.strip_suffix(')'))
    {
        let ids: Vec<&str> = filter
            .split(" or ")
            .filter_map(|c| c.trim().strip_prefix("id eq '")?.strip_suffix('\''))
            .collect();
        let props: Vec<Value> = msg
            .props
            .iter()
            .filter(|(k, _)| ids.iter().any(|i| i.eq_ignore_ascii_case(k)))
            .map(|(k, val)| json!({"id": k, "value": val}))
            .collect();
        if !props.is_empty() {
            v["singleValueExtendedProperties"] = Value::Array(props);
        }
    }
    v
}

fn attachment_json(a: &MailAttachment, with_bytes: bool) -> Value {
    let mut v = json!({
        "@odata.type": a.kind, "id": a.id, "name": a.name, "contentType": a.content_type,
        "size": a.bytes.len() + 200, "isInline": a.is_inline, "contentId": a.content_id,
    });
    if with_bytes {
        v["contentBytes"] = json!(STANDARD.encode(&a.bytes));
    }
    v
}

fn attachment_from(v: &Value) -> Result<MailAttachment, MailErr> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if s("@odata.type").as_deref() != Some("#microsoft.graph.fileAttachment") {
        return Err(merr(400, "BadRequest", "only fileAttachment is faked"));
    }
    let bytes = STANDARD
        .decode(s("contentBytes").unwrap_or_default())
        .map_err(|e| merr(400, "BadRequest", e.to_string()))?;
    if bytes.len() > 3 * 1024 * 1024 {
        return Err(merr(
            400,
            "ErrorAttachmentSizeLimitExceeded",
            "use an upload session over 3 MB",
        ));
    }
    Ok(MailAttachment {
        id: uuid(),
        kind: "#microsoft.graph.fileAttachment".into(),
        name: s("name").unwrap_or_default(),
        content_type: s("contentType").unwrap_or_else(|| "application/octet-stream".into()),
        bytes,
        is_inline: v.get("isInline").and_then(Value::as_bool).unwrap_or(false),
        content_id: s("contentId"),
    })
}

/// JSON create: `isDraft` follows bit 0x08 of `Integer 0x0E07`; absent → draft (§8.3).
fn json_create(body: &[u8]) -> Result<MailMessage, MailErr> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| merr(400, "BadRequest", e.to_string()))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let addrs = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                r.pointer("/emailAddress/address")?
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    let mut props = Vec::new();
    for p in v
        .get("singleValueExtendedProperties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(val)) = (
            p.get("id").and_then(Value::as_str),
            p.get("value").and_then(Value::as_str),
        ) else {
            return Err(merr(
                400,
                "BadRequest",
                "extended property needs id and value",
            ));
        };
        props.push((id.to_string(), val.to_string()));
    }
    let flags = props
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Integer 0x0E07"))
        .map(|(_, v)| v.parse::<u32>())
        .transpose()
        .map_err(|_| merr(400, "BadRequest", "Integer 0x0E07 is not a number"))?;
    let is_draft = flags.is_none_or(|f| f & 0x08 != 0);
    let sent = props
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("SystemTime 0x0039"))
        .map(|(_, v)| v.clone());
    let mut attachments = Vec::new();
    for a in v
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        attachments.push(attachment_from(a)?);
    }
    let body_type = v
        .pointer("/body/contentType")
        .and_then(Value::as_str)
        .unwrap_or("Text")
        .to_ascii_lowercase();
    Ok(MailMessage {
        id: format!("AAMk{}", uuid().replace('-', "")),
        folder: "sentitems".into(),
        internet_message_id: s("internetMessageId").unwrap_or_else(|| format!("<{}@fake>", uuid())),
        is_draft,
        is_read: v.get("isRead").and_then(Value::as_bool).unwrap_or(false),
        subject: s("subject").unwrap_or_default(),
        importance: s("importance").unwrap_or_else(|| "normal".into()),
        body_type,
        body: v
            .pointer("/body/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        from: v
            .pointer("/from/emailAddress/address")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        to: addrs("toRecipients"),
        cc: addrs("ccRecipients"),
        bcc: addrs("bccRecipients"),
        sent: if is_draft { None } else { sent },
        props,
        attachments,
        visible_at: OffsetDateTime::UNIX_EPOCH,
        mime: false,
    })
}

/// MIME create (base64 of the message, `text/plain`): always a draft (§8.3).
fn mime_create(body: &[u8]) -> Result<MailMessage, MailErr> {
    let raw = STANDARD.decode(body.trim_ascii()).map_err(|_| {
        merr(
            400,
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        )
    })?;
    let text = String::from_utf8_lossy(&raw);
    let header = |name: &str| {
        text.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    Ok(MailMessage {
        is_draft: true,
        mime: true,
        sent: None,
        props: vec![],
        ..MailMessage::sent(
            &header("Message-ID:").unwrap_or_default(),
            &header("Subject:").unwrap_or_default(),
            &header("From:").unwrap_or_default(),
            &[],
        )
    })
}

/// PUT of one upload chunk: `Content-Range` must continue where the last ended, chunks of
/// 320 KiB multiples (but the last) at most 4 MB, and no Authorization header (§8.3).
fn upload(inner: &Inner, token: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut m = inner.mail.lock().unwrap();
    let result = (|| {
        if headers.contains_key("authorization") {
            return Err(merr(
                401,
                "InvalidAuthenticationToken",
                "Upload URLs take no Authorization header.",
            ));
        }
        let range = header_str(headers, "content-range")
            .and_then(parse_range)
            .ok_or_else(|| merr(400, "InvalidContentRange", "bad Content-Range"))?;
        let s = m.sessions.get_mut(token).ok_or_else(not_found)?;
        let (a, b, total) = range;
        let len = body.len();
        let last = b + 1 == total;
        if a != s.att.bytes.len()
            || b + 1 - a != len
            || total != s.size
            || len > REQUEST_LIMIT
            || (!last && !len.is_multiple_of(CHUNK_UNIT))
        {
            return Err(merr(
                416,
                "InvalidRange",
                format!("range {a}-{b}/{total} for {len} bytes"),
            ));
        }
        s.att.bytes.extend_from_slice(body);
        if !last {
            return Ok(json_response(
                200,
                json!({"nextExpectedRanges": [format!("{}-", b + 1)]}),
            ));
        }
        let s = m.sessions.remove(token).unwrap();
        let msg = m.find(&s.mailbox, &s.message).ok_or_else(not_found)?;
        msg.attachments.push(s.att);
        Ok(StatusCode::CREATED.into_response())
    })();
    result.unwrap_or_else(MailErr::response)
}

fn parse_range(v: &str) -> Option<(usize, usize, usize)> {
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}
