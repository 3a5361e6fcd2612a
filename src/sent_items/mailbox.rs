//! The mailbox calls of §8 on one user's mailbox, through the directory's Graph client (token
//! handling, 401 refresh, 429/503 `Retry-After`), each within the mailbox's [`Gate`].

use crate::directory::graph::client::{Call, Gate, GraphClient};
use crate::directory::graph::error::GraphError;
use reqwest::Method;
use serde_json::{json, Value};

/// The named property that marks a replacement; its value is the original's id.
pub const TAG: &str = "String {00020386-0000-0000-C000-000000000046} Name X-Sigstamp-Replaces";
/// PidTagConversationIndex and PidTagConversationTopic (threading).
const CONVERSATION_PROPS: [&str; 2] = ["Binary 0x0071", "String 0x0070"];
/// Stable ids across folder moves (§8.2).
const IMMUTABLE: &str = "IdType=\"ImmutableId\"";
/// Upload chunks: a multiple of 320 KiB, under the 4 MB request limit (§8.3).
pub const UPLOAD_CHUNK: usize = 12 * 320 * 1024;
/// Attachment pages are followed at most this far.
const MAX_PAGES: usize = 50;

const GRAPH: &str = "Microsoft Graph";

/// An item of sentitems with this `internetMessageId`.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub is_draft: bool,
    /// The tag's value: this item is a replacement of that original.
    pub replaces: Option<String>,
}

/// An attachment as listed (no content).
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub id: String,
    /// `#microsoft.graph.fileAttachment`, `…itemAttachment` or `…referenceAttachment`.
    pub kind: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub is_inline: bool,
    pub content_id: Option<String>,
}

impl Attachment {
    /// What makes two attachments "the same" when checking a replacement is complete.
    pub fn key(&self) -> (String, String, bool) {
        (
            self.name.clone(),
            self.content_id
                .as_deref()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_ascii_lowercase(),
            self.is_inline,
        )
    }

    pub fn is_file(&self) -> bool {
        self.kind
            .eq_ignore_ascii_case("#microsoft.graph.fileAttachment")
    }

    pub fn is_item(&self) -> bool {
        self.kind
            .eq_ignore_ascii_case("#microsoft.graph.itemAttachment")
    }
}

pub struct Mailbox<'a> {
    pub client: &'a GraphClient,
    pub gate: &'a Gate,
    /// `/users/{…}` segment, percent-encoded.
    user: String,
}

impl<'a> Mailbox<'a> {
    pub fn new(client: &'a GraphClient, gate: &'a Gate, mailbox: &str) -> Self {
        Mailbox {
            client,
            gate,
            user: pct(mailbox),
        }
    }

    fn url(&self, rest: &str) -> String {
        self.client.url(&format!("/users/{}{rest}", self.user))
    }

    async fn json(&self, call: Call<'_>) -> Result<Value, GraphError> {
        let (resp, _slot) = self.client.send(call, Some(self.gate)).await?;
        let body = resp.bytes().await.map_err(|source| GraphError::Transport {
            what: GRAPH,
            source,
        })?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| GraphError::protocol(GRAPH, e.to_string()))
    }

    /// The items of sentitems with `internet_message_id` (§8.2), with our tag if present.
    pub async fn find(&self, internet_message_id: &str) -> Result<Vec<Found>, GraphError> {
        let filter = format!(
            "internetMessageId eq '{}'",
            internet_message_id.replace('\'', "''")
        );
        let expand = format!("singleValueExtendedProperties($filter=id eq '{TAG}')");
        let url = format!(
            "{}?$filter={}&$select=id,isDraft,internetMessageId&$expand={}",
            self.url("/mailFolders/sentitems/messages"),
            pct(&filter),
            pct(&expand)
        );
        let v = self.json(Call::get(&url).prefer(Some(IMMUTABLE))).await?;
        let items = v
            .get("value")
            .and_then(Value::as_array)
            .ok_or_else(|| GraphError::protocol(GRAPH, "sentitems answer without value"))?;
        Ok(items
            .iter()
            .filter_map(|m| {
                // Only exact matches: never act on an item the filter matched loosely.
                if m.get("internetMessageId").and_then(Value::as_str) != Some(internet_message_id) {
                    return None;
                }
                Some(Found {
                    id: m.get("id")?.as_str()?.to_string(),
                    is_draft: m.get("isDraft").and_then(Value::as_bool).unwrap_or(true),
                    replaces: tag_value(m),
                })
            })
            .collect())
    }

    /// The original's properties the replacement copies.
    pub async fn message(&self, id: &str) -> Result<Value, GraphError> {
        let expand = format!(
            "singleValueExtendedProperties($filter={})",
            CONVERSATION_PROPS
                .iter()
                .map(|p| format!("id eq '{p}'"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
        let url = format!(
            "{}?$select=id,isDraft,subject,importance,from,sender,toRecipients,ccRecipients,\
             bccRecipients,replyTo,sentDateTime,internetMessageId,categories&$expand={}",
            self.url(&format!("/messages/{}", pct(id))),
            pct(&expand)
        );
        self.json(Call::get(&url).prefer(Some(IMMUTABLE))).await
    }

    /// Does the item read back as a non-draft?
    pub async fn is_draft(&self, id: &str) -> Result<bool, GraphError> {
        let url = format!(
            "{}?$select=id,isDraft",
            self.url(&format!("/messages/{}", pct(id)))
        );
        let v = self.json(Call::get(&url).prefer(Some(IMMUTABLE))).await?;
        Ok(v.get("isDraft").and_then(Value::as_bool).unwrap_or(true))
    }

    pub async fn attachments(&self, id: &str) -> Result<Vec<Attachment>, GraphError> {
        let mut url = format!(
            "{}?$select=id,name,contentType,size,isInline",
            self.url(&format!("/messages/{}/attachments", pct(id)))
        );
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let v = self.json(Call::get(&url).prefer(Some(IMMUTABLE))).await?;
            for a in v
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let s = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
                let Some(aid) = s("id") else { continue };
                out.push(Attachment {
                    id: aid,
                    kind: s("@odata.type").unwrap_or_default(),
                    name: s("name").unwrap_or_else(|| "attachment".into()),
                    content_type: s("contentType")
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    size: a.get("size").and_then(Value::as_u64).unwrap_or(0),
                    is_inline: a.get("isInline").and_then(Value::as_bool).unwrap_or(false),
                    content_id: s("contentId"),
                });
            }
            match v.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => url = next.to_string(),
                None => return Ok(out),
            }
        }
        Err(GraphError::protocol(GRAPH, "too many attachment pages"))
    }

    /// The raw content of a file (or, as MIME, an item) attachment; the body is unread,
    /// the mailbox slot held with it.
    pub async fn attachment_content(
        &self,
        message: &str,
        attachment: &str,
    ) -> Result<(reqwest::Response, Option<tokio::sync::OwnedSemaphorePermit>), GraphError> {
        let url = self.url(&format!(
            "/messages/{}/attachments/{}/$value",
            pct(message),
            pct(attachment)
        ));
        self.client
            .send(Call::get(&url).prefer(Some(IMMUTABLE)), Some(self.gate))
            .await
    }

    /// Create the replacement in sentitems; returns its id and whether it is a draft.
    pub async fn create(&self, message: &Value) -> Result<(String, bool), GraphError> {
        let url = self.url("/mailFolders/sentitems/messages");
        let v = self
            .json(
                Call::new(Method::POST, &url)
                    .json(message)
                    .prefer(Some(IMMUTABLE)),
            )
            .await?;
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| GraphError::protocol(GRAPH, "created message without id"))?;
        Ok((
            id.to_string(),
            v.get("isDraft").and_then(Value::as_bool).unwrap_or(true),
        ))
    }

    /// Add one attachment (under 3 MB) to a message.
    pub async fn add_attachment(&self, message: &str, att: &Value) -> Result<(), GraphError> {
        let url = self.url(&format!("/messages/{}/attachments", pct(message)));
        self.json(Call::new(Method::POST, &url).json(att)).await?;
        Ok(())
    }

    /// `createUploadSession` for one large attachment; returns the upload URL.
    pub async fn upload_session(&self, message: &str, item: &Value) -> Result<String, GraphError> {
        let url = self.url(&format!(
            "/messages/{}/attachments/createUploadSession",
            pct(message)
        ));
        let v = self
            .json(Call::new(Method::POST, &url).json(&json!({ "AttachmentItem": item })))
            .await?;
        let upload = v
            .get("uploadUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| GraphError::protocol(GRAPH, "upload session without uploadUrl"))?;
        // The URL comes from the answer: bytes go only to https, or to plain http where
        // the configured endpoint is plain http itself (loopback tests).
        let scheme_ok = upload.starts_with("https://")
            || (upload.starts_with("http://") && self.client.url("").starts_with("http://"));
        if !scheme_ok {
            return Err(GraphError::protocol(GRAPH, "upload URL is not https"));
        }
        Ok(upload.to_string())
    }

    /// PUT one chunk to an upload URL (no Authorization header: the URL carries its own
    /// credential, §8.3). `total` is the whole attachment's size.
    pub async fn put_chunk(
        &self,
        upload_url: &str,
        offset: u64,
        chunk: bytes::Bytes,
        total: u64,
    ) -> Result<(), GraphError> {
        let end = offset + chunk.len() as u64 - 1;
        let resp = self
            .client
            .http()
            .put(upload_url)
            .header(
                reqwest::header::CONTENT_RANGE,
                format!("bytes {offset}-{end}/{total}"),
            )
            .body(chunk)
            .send()
            .await
            .map_err(|source| GraphError::Transport {
                what: GRAPH,
                source,
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(GraphError::protocol(
                GRAPH,
                format!("upload chunk answered {}", resp.status()),
            ))
        }
    }

    /// Delete a message (to Deleted Items). Already gone counts as deleted.
    pub async fn delete(&self, id: &str) -> Result<(), GraphError> {
        let url = self.url(&format!("/messages/{}", pct(id)));
        match self.json(Call::new(Method::DELETE, &url)).await {
            Ok(_) => Ok(()),
            Err(GraphError::Api(e)) if e.status == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn tag_value(m: &Value) -> Option<String> {
    m.get("singleValueExtendedProperties")
        .and_then(Value::as_array)?
        .iter()
        .find(|p| {
            p.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.eq_ignore_ascii_case(TAG))
        })
        .and_then(|p| p.get("value").and_then(Value::as_str))
        .map(str::to_string)
}

/// Percent-encode everything but RFC 3986 unreserved characters (`<`, `>`, `@`, `'`, spaces
/// and `&` of a Message-ID never leak into the query's structure, §8.2).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding() {
        assert_eq!(pct("<a'b@x y>&$"), "%3Ca%27b%40x%20y%3E%26%24");
        assert_eq!(pct("AAMk-._~"), "AAMk-._~");
    }

    #[test]
    fn tag_is_read_case_insensitively() {
        let m = json!({"singleValueExtendedProperties": [
            {"id": TAG.to_lowercase(), "value": "orig-1"}
        ]});
        assert_eq!(tag_value(&m).as_deref(), Some("orig-1"));
        assert_eq!(tag_value(&json!({})), None);
    }
}
