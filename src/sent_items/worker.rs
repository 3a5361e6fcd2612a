//! The worker: runs due jobs (the spool's leftovers come first, queued by
//! `SentItems::open`), each mailbox at most 4 requests in flight and a 429 pausing that
//! mailbox; reschedules with backoff until `give_up_after`, and removes a job's file when the
//! job is done or given up.
//!
//! One job, in this order (§8.2–8.3): find the sent copy by `internetMessageId`; create the
//! replacement (non-draft, tagged with the original's id) unless a tagged one exists already
//! (a retried job); add every attachment it is still missing; read it back as non-draft; only
//! then delete the original. A crash at any point leaves the original, or the finished
//! replacement, never neither and never two replacements.

use super::job::Job;
use super::mailbox::{Attachment, Found, Mailbox, UPLOAD_CHUNK};
use super::{JobOutcome, SentItems, SentItemsConfig};
use crate::directory::graph::client::{exponential, jittered, Gate, GraphClient};
use crate::directory::graph::clock::Clock;
use crate::directory::graph::error::GraphError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub type Receiver = tokio::sync::mpsc::UnboundedReceiver<Queued>;

/// Requests in flight per mailbox (§8.4).
pub const MAILBOX_CONCURRENCY: usize = 4;
/// Jobs running at once, all mailboxes together.
const MAX_RUNNING: usize = 64;
/// Attachments below this go in one request; larger ones through an upload session (§8.3).
const SMALL_ATTACHMENT: u64 = 3 * 1024 * 1024;
/// Graph's limit for one attachment (§8.3).
const MAX_ATTACHMENT: u64 = 150 * 1024 * 1024;
/// The largest create request (Graph refuses request bodies over 4 MB, §8.3).
const MAX_CREATE: usize = 4 * 1024 * 1024;
/// The longest wait between two looks for one job.
const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// Waits inside one request: `Retry-After` honoured up to 6 times and 10 minutes; beyond
/// that the job is rescheduled (until `give_up_after`).
pub fn retry_policy() -> crate::directory::graph::client::RetryPolicy {
    crate::directory::graph::client::RetryPolicy {
        max_attempts: 6,
        total_cap: Duration::from_secs(600),
        ..crate::directory::graph::client::RetryPolicy::background()
    }
}

/// A job as the scheduler knows it (the rest stays on disk until it runs).
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: String,
    pub mailbox: String,
    pub queued_at: OffsetDateTime,
}

impl Queued {
    pub fn of(job: &Job) -> Self {
        Queued {
            id: job.id.clone(),
            mailbox: job.mailbox.clone(),
            queued_at: job.queued_at,
        }
    }
}

/// What one run of a job found.
#[derive(Debug)]
enum Step {
    Replaced,
    /// The sent copy is not in sentitems (yet).
    NotVisible,
}

#[derive(Debug)]
struct JobError {
    message: String,
    /// Retrying cannot help (403, a refused create, an attachment kind we cannot copy).
    permanent: bool,
}

impl JobError {
    fn permanent(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            permanent: true,
        }
    }
}

impl From<GraphError> for JobError {
    fn from(e: GraphError) -> Self {
        let permanent = match &e {
            GraphError::Api(a) => {
                (400..500).contains(&a.status) && !matches!(a.status, 401 | 408 | 409 | 429)
            }
            GraphError::Protocol { .. } => true,
            _ => false,
        };
        JobError {
            message: e.to_string(),
            permanent,
        }
    }
}

struct Ctx {
    handle: SentItems,
    client: GraphClient,
    clock: Arc<dyn Clock>,
    cfg: SentItemsConfig,
    gates: Mutex<HashMap<String, Gate>>,
    forbidden_logged: AtomicBool,
}

impl Ctx {
    fn gate(&self, mailbox: &str) -> Gate {
        self.gates
            .lock()
            .unwrap()
            .entry(mailbox.to_ascii_lowercase())
            .or_insert_with(|| Gate::new(MAILBOX_CONCURRENCY))
            .clone()
    }
}

/// Run until `shutdown`. Jobs in flight then are abandoned; their files stay for the next
/// start.
pub async fn run(
    handle: SentItems,
    mut rx: Receiver,
    client: GraphClient,
    clock: Arc<dyn Clock>,
    cfg: SentItemsConfig,
    shutdown: CancellationToken,
) {
    if handle.spool().is_none() {
        return;
    }
    let mut queue: BTreeMap<(OffsetDateTime, u64), (Queued, u32)> = BTreeMap::new();
    let mut seq = 0u64;
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        client,
        clock: clock.clone(),
        cfg,
        gates: Mutex::default(),
        forbidden_logged: AtomicBool::new(false),
    });
    let mut running: JoinSet<(Queued, u32, Result<Step, JobError>)> = JoinSet::new();
    let mut open = true;
    loop {
        let now = clock.now();
        while running.len() < MAX_RUNNING {
            let Some(entry) = queue.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let (q, attempt) = entry.remove();
            let ctx = ctx.clone();
            running.spawn(async move {
                let result = run_job(&ctx, &q).await;
                (q, attempt, result)
            });
        }
        let next = (running.len() < MAX_RUNNING)
            .then(|| queue.keys().next().map(|k| k.0))
            .flatten();
        let wake = async {
            match next {
                Some(due) => {
                    clock
                        .sleep(Duration::try_from(due - clock.now()).unwrap_or_default())
                        .await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            q = rx.recv(), if open => match q {
                Some(q) => {
                    let due = q.queued_at.max(clock.now()) + ctx.cfg.delay;
                    queue.insert((due, seq), (q, 0));
                    seq += 1;
                }
                None => open = false,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((q, attempt, result)) = done {
                    if let Some(due) = finish(&ctx, &q, attempt, result) {
                        queue.insert((due, seq), (q, attempt + 1));
                        seq += 1;
                    }
                }
            }
            _ = wake => {}
        }
    }
    running.shutdown().await;
}

/// Count and clean up a finished run; `Some(when)` to run the job again.
fn finish(
    ctx: &Ctx,
    q: &Queued,
    attempt: u32,
    result: Result<Step, JobError>,
) -> Option<OffsetDateTime> {
    let now = ctx.clock.now();
    let expired = now >= q.queued_at + ctx.cfg.give_up_after;
    let (outcome, error) = match result {
        Ok(Step::Replaced) => {
            tracing::info!(job = %q.id, mailbox = %q.mailbox, "sent items: sent copy replaced");
            (JobOutcome::Replaced, None)
        }
        Ok(Step::NotVisible) if !expired => return Some(now + backoff(&ctx.cfg, attempt)),
        Ok(Step::NotVisible) => {
            tracing::info!(job = %q.id, mailbox = %q.mailbox, after = ?ctx.cfg.give_up_after,
                "sent items: the sent copy never appeared in Sent Items; giving up");
            (JobOutcome::NotFound, None)
        }
        Err(e) if !e.permanent && !expired => {
            tracing::debug!(job = %q.id, error = %e.message, "sent items: will retry");
            ctx.handle.stats().set_last_error(e.message);
            return Some(now + backoff(&ctx.cfg, attempt));
        }
        Err(e) => {
            tracing::warn!(job = %q.id, mailbox = %q.mailbox, error = %e.message,
                "sent items: job failed; the original stays in Sent Items");
            (JobOutcome::Failed, Some(e.message))
        }
    };
    if let Some(spool) = ctx.handle.spool() {
        if let Err(e) = spool.remove(&q.id) {
            tracing::warn!(job = %q.id, error = %e, "sent items: cannot remove the job file");
        }
    }
    ctx.handle.stats().release();
    ctx.handle.stats().record(outcome, error);
    None
}

fn backoff(cfg: &SentItemsConfig, attempt: u32) -> Duration {
    let base = cfg.delay.max(Duration::from_secs(1));
    jittered(exponential(base, MAX_BACKOFF, attempt))
}

async fn run_job(ctx: &Ctx, q: &Queued) -> Result<Step, JobError> {
    let Some(spool) = ctx.handle.spool() else {
        return Err(JobError::permanent("sent items disabled"));
    };
    let job = spool
        .read(&q.id)
        .map_err(|e| JobError::permanent(format!("job file {}: {e}", q.id)))?;
    let gate = ctx.gate(&job.mailbox);
    let mb = Mailbox::new(&ctx.client, &gate, &job.mailbox);
    match replace(&mb, &job).await {
        Err(e) if is_forbidden(&e) => {
            if !ctx.forbidden_logged.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    mailbox = %job.mailbox,
                    "sent items: Microsoft Graph refused access to the mailbox (403). Grant the \
                     app the Mail.ReadWrite APPLICATION permission (with admin consent); if it is \
                     scoped with RBAC for Applications, add the mailbox to the management scope \
                     (New-ManagementScope + New-ManagementRoleAssignment -App <client_id> -Role \
                     \"Application Mail.ReadWrite\" -CustomResourceScope <scope>) and check with \
                     Test-ServicePrincipalAuthorization -Identity <client_id> -Resource <mailbox>. \
                     Further refusals are counted as failed without this message."
                );
            }
            Err(JobError::permanent(format!(
                "403 for mailbox {}: the app lacks Mail.ReadWrite on it (see the log; the original is kept)",
                job.mailbox
            )))
        }
        other => other.map_err(JobError::from),
    }
}

fn is_forbidden(e: &GraphError) -> bool {
    matches!(e, GraphError::Api(a) if a.status == 403)
}

/// One pass of the replacement (see the module comment for the order).
async fn replace(mb: &Mailbox<'_>, job: &Job) -> Result<Step, GraphError> {
    let found = mb.find(&job.internet_message_id).await?;
    let mut originals: Vec<&Found> = found
        .iter()
        .filter(|f| f.replaces.is_none() && !f.is_draft)
        .collect();
    originals.sort_by(|a, b| a.id.cmp(&b.id));
    let Some(original) = originals.first() else {
        // Only our replacement left: an earlier run finished but for removing the job.
        return Ok(if found.iter().any(|f| f.replaces.is_some()) {
            Step::Replaced
        } else {
            Step::NotVisible
        });
    };
    let attachments = mb.attachments(&original.id).await?;
    if let Some(a) = attachments.iter().find(|a| !a.is_file() && !a.is_item()) {
        return Err(GraphError::protocol(
            "Microsoft Graph",
            format!(
                "the sent copy has a {} attachment ({:?}) that cannot be copied; the original is kept",
                a.kind, a.name
            ),
        ));
    }
    let replacement = match found
        .iter()
        .find(|f| f.replaces.as_deref() == Some(original.id.as_str()))
    {
        Some(r) => r.id.clone(),
        None => {
            let props = mb.message(&original.id).await?;
            let images: Vec<&super::job::Image> = job
                .images
                .iter()
                .filter(|i| {
                    !attachments.iter().any(|a| {
                        a.content_id.as_deref().is_some_and(|c| {
                            c.trim_matches(['<', '>'])
                                .eq_ignore_ascii_case(&i.content_id)
                        })
                    })
                })
                .collect();
            let message = replacement_message(job, &props, &original.id, &images);
            // Graph takes at most 4 MB per request (§8.3): a body that does not fit cannot
            // be replaced; the original stays.
            if message.to_string().len() > MAX_CREATE {
                return Err(GraphError::protocol(
                    "Microsoft Graph",
                    "the stamped body is over Graph's 4 MB request limit; the original is kept",
                ));
            }
            let (id, _) = mb.create(&message).await?;
            id
        }
    };
    complete_attachments(mb, &original.id, &attachments, &replacement).await?;
    if mb.is_draft(&replacement).await? {
        // Graph ignored the flags: our draft goes, the original stays.
        mb.delete(&replacement).await?;
        return Err(GraphError::protocol(
            "Microsoft Graph",
            "the replacement was created as a draft; it was removed and the original kept",
        ));
    }
    mb.delete(&original.id).await?;
    Ok(Step::Replaced)
}

/// The create body (§8.3): flags 1 (read, sent: not a draft) at creation, the original's
/// send time as submit and delivery time, its subject, recipients, importance, threading
/// properties and `internetMessageId`, the stamped body, the signature's inline images, and
/// the tag naming the original.
fn replacement_message(
    job: &Job,
    original: &Value,
    original_id: &str,
    images: &[&super::job::Image],
) -> Value {
    let mut m = serde_json::Map::new();
    for key in [
        "subject",
        "importance",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "categories",
    ] {
        if let Some(v) = original.get(key).filter(|v| !v.is_null()) {
            m.insert(key.into(), v.clone());
        }
    }
    m.insert("isRead".into(), json!(true));
    m.insert("internetMessageId".into(), json!(job.internet_message_id));
    m.insert(
        "body".into(),
        json!({"contentType": job.body.content_type, "content": job.body.content}),
    );
    let sent = original
        .get("sentDateTime")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            job.queued_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        });
    let mut props = vec![
        json!({"id": "Integer 0x0E07", "value": "1"}),
        json!({"id": "SystemTime 0x0039", "value": sent}),
        json!({"id": "SystemTime 0x0E06", "value": sent}),
        json!({"id": super::mailbox::TAG, "value": original_id}),
    ];
    for p in original
        .get("singleValueExtendedProperties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(id), Some(value)) = (p.get("id"), p.get("value")) {
            props.push(json!({"id": id, "value": value}));
        }
    }
    m.insert("singleValueExtendedProperties".into(), Value::Array(props));
    let atts: Vec<Value> = images
        .iter()
        .map(|i| {
            json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": i.name,
                "contentType": i.content_type,
                "contentBytes": i.bytes,
                "contentId": i.content_id,
                "isInline": true,
            })
        })
        .collect();
    if !atts.is_empty() {
        m.insert("attachments".into(), Value::Array(atts));
    }
    Value::Object(m)
}

/// Copy each of the original's attachments the replacement does not have yet.
async fn complete_attachments(
    mb: &Mailbox<'_>,
    original: &str,
    wanted: &[Attachment],
    replacement: &str,
) -> Result<(), GraphError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let mut present: HashMap<_, usize> = HashMap::new();
    for a in mb.attachments(replacement).await? {
        *present.entry(a.key()).or_default() += 1;
    }
    for a in wanted {
        if let Some(n) = present.get_mut(&a.key()).filter(|n| **n > 0) {
            *n -= 1;
            continue;
        }
        copy_attachment(mb, original, a, replacement).await?;
    }
    Ok(())
}

async fn copy_attachment(
    mb: &Mailbox<'_>,
    original: &str,
    a: &Attachment,
    replacement: &str,
) -> Result<(), GraphError> {
    let (mut resp, _slot) = mb.attachment_content(original, &a.id).await?;
    let length = resp.content_length();
    // An attached item comes as MIME: it is kept as an .eml file (caveat in the docs).
    let (name, content_type) = if a.is_item() {
        (format!("{}.eml", a.name), "message/rfc822".to_string())
    } else {
        (a.name.clone(), a.content_type.clone())
    };
    let transport = |source| GraphError::Transport {
        what: "Microsoft Graph",
        source,
    };
    let too_big = || {
        GraphError::protocol(
            "Microsoft Graph",
            format!("attachment {:?} is over Graph's 150 MB limit", a.name),
        )
    };
    let small = length.unwrap_or(a.size) < SMALL_ATTACHMENT;
    if small {
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_ATTACHMENT {
                return Err(too_big());
            }
        }
        if (bytes.len() as u64) < SMALL_ATTACHMENT {
            let mut att = json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": name,
                "contentType": content_type,
                "contentBytes": STANDARD.encode(&bytes),
                "isInline": a.is_inline,
            });
            if let Some(cid) = &a.content_id {
                att["contentId"] = json!(cid);
            }
            return mb.add_attachment(replacement, &att).await;
        }
        return upload(
            mb,
            a,
            &name,
            &content_type,
            replacement,
            Source::Memory(bytes),
        )
        .await;
    }
    match length {
        Some(n) if n > MAX_ATTACHMENT => Err(too_big()),
        Some(n) => {
            upload(
                mb,
                a,
                &name,
                &content_type,
                replacement,
                Source::Stream(resp, n),
            )
            .await
        }
        None => {
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(transport)? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > MAX_ATTACHMENT {
                    return Err(too_big());
                }
            }
            upload(
                mb,
                a,
                &name,
                &content_type,
                replacement,
                Source::Memory(bytes),
            )
            .await
        }
    }
}

enum Source {
    Memory(Vec<u8>),
    /// The download, read chunk by chunk, and its Content-Length.
    Stream(reqwest::Response, u64),
}

/// An upload session (§8.3): chunks of [`UPLOAD_CHUNK`] bytes, at most one in memory.
async fn upload(
    mb: &Mailbox<'_>,
    a: &Attachment,
    name: &str,
    content_type: &str,
    replacement: &str,
    source: Source,
) -> Result<(), GraphError> {
    let total = match &source {
        Source::Memory(b) => b.len() as u64,
        Source::Stream(_, n) => *n,
    };
    let mut item = json!({
        "attachmentType": "file",
        "name": name,
        "size": total,
        "isInline": a.is_inline,
        "contentType": content_type,
    });
    if let Some(cid) = &a.content_id {
        item["contentId"] = json!(cid);
    }
    let url = mb.upload_session(replacement, &item).await?;
    let mut offset = 0u64;
    match source {
        Source::Memory(bytes) => {
            let bytes = bytes::Bytes::from(bytes);
            for start in (0..bytes.len()).step_by(UPLOAD_CHUNK) {
                let end = (start + UPLOAD_CHUNK).min(bytes.len());
                mb.put_chunk(&url, offset, bytes.slice(start..end), total)
                    .await?;
                offset += (end - start) as u64;
            }
        }
        Source::Stream(mut resp, _) => {
            let mut buf = bytes::BytesMut::with_capacity(UPLOAD_CHUNK);
            loop {
                let chunk = resp.chunk().await.map_err(|source| GraphError::Transport {
                    what: "Microsoft Graph",
                    source,
                })?;
                let last = chunk.is_none();
                if let Some(c) = chunk {
                    buf.extend_from_slice(&c);
                }
                while buf.len() >= UPLOAD_CHUNK || (last && !buf.is_empty()) {
                    let n = buf.len().min(UPLOAD_CHUNK);
                    if offset + n as u64 > total {
                        return Err(GraphError::protocol(
                            "Microsoft Graph",
                            "attachment longer than its Content-Length",
                        ));
                    }
                    let part = buf.split_to(n).freeze();
                    mb.put_chunk(&url, offset, part, total).await?;
                    offset += n as u64;
                }
                if last {
                    break;
                }
            }
        }
    }
    if offset != total {
        return Err(GraphError::protocol(
            "Microsoft Graph",
            format!(
                "attachment {:?}: uploaded {offset} of {total} bytes",
                a.name
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sent_items::job::{Body, Image};

    #[test]
    fn create_body_is_a_tagged_non_draft() {
        let job = Job {
            id: "j".into(),
            mailbox: "u".into(),
            sender: "a@x".into(),
            internet_message_id: "<m@x>".into(),
            queued_at: OffsetDateTime::UNIX_EPOCH,
            body: Body {
                content_type: "HTML".into(),
                content: "<p>sig</p>".into(),
            },
            images: vec![],
        };
        let img = Image {
            content_id: "c@sigstamp".into(),
            name: "logo.png".into(),
            content_type: "image/png".into(),
            bytes: "aGk=".into(),
        };
        let original = json!({
            "subject": "Hi", "importance": "high", "sentDateTime": "2026-05-01T10:00:00Z",
            "toRecipients": [{"emailAddress": {"address": "b@y"}}], "ccRecipients": [],
            "bccRecipients": null,
            "singleValueExtendedProperties": [{"id": "Binary 0x0071", "value": "AQI="}]
        });
        let m = replacement_message(&job, &original, "orig-1", &[&img]);
        let props = m["singleValueExtendedProperties"].as_array().unwrap();
        let prop = |id: &str| {
            props
                .iter()
                .find(|p| p["id"] == id)
                .map(|p| p["value"].clone())
        };
        assert_eq!(prop("Integer 0x0E07"), Some(json!("1")));
        assert_eq!(
            prop("SystemTime 0x0039"),
            Some(json!("2026-05-01T10:00:00Z"))
        );
        assert_eq!(
            prop("SystemTime 0x0E06"),
            Some(json!("2026-05-01T10:00:00Z"))
        );
        assert_eq!(prop(super::super::mailbox::TAG), Some(json!("orig-1")));
        assert_eq!(prop("Binary 0x0071"), Some(json!("AQI=")));
        assert_eq!(m["subject"], "Hi");
        assert_eq!(m["importance"], "high");
        assert_eq!(m["isRead"], true);
        assert_eq!(m["internetMessageId"], "<m@x>");
        assert!(m.get("bccRecipients").is_none(), "nulls are not copied");
        assert_eq!(m["body"]["content"], "<p>sig</p>");
        assert_eq!(m["attachments"][0]["contentId"], "c@sigstamp");
        assert_eq!(m["attachments"][0]["isInline"], true);
    }

    #[test]
    fn client_errors_are_permanent_throttling_is_not() {
        let api = |status| {
            JobError::from(GraphError::Api(crate::directory::graph::error::ApiError {
                status,
                code: String::new(),
                inner_codes: vec![],
                message: String::new(),
                retry_after: None,
                request_id: None,
            }))
        };
        assert!(api(400).permanent);
        assert!(api(403).permanent);
        assert!(!api(429).permanent);
        assert!(!api(503).permanent);
        assert!(!api(500).permanent);
        assert!(!api(401).permanent);
    }
}
