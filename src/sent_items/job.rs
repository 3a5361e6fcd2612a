//! One Sent Items job: whose mailbox, which message (`internetMessageId`), and what the
//! replacement needs from the stamped message: its HTML (or text) body and the signature's
//! inline images. Everything else (recipients, attachments, times) is read from the sent copy
//! itself through Graph, so a job file stays small.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The suffix of Content-IDs of signature images (`render::images`).
const SIGNATURE_CID_SUFFIX: &str = "@sigstamp";
/// Longer Message-IDs are not looked up (RFC 5322 lines are at most 998 octets).
const MAX_MESSAGE_ID: usize = 900;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// File name stem in the spool.
    pub id: String,
    /// `/users/{mailbox}`: the Graph object id, or the address.
    pub mailbox: String,
    /// The address the user was found by (for the log).
    pub sender: String,
    /// With its angle brackets, as Graph shows it.
    pub internet_message_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
    pub body: Body,
    pub images: Vec<Image>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// Graph's `contentType`: `HTML` or `Text`.
    pub content_type: String,
    pub content: String,
}

/// An inline image of the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Without angle brackets, as the HTML's `cid:` names it.
    pub content_id: String,
    pub name: String,
    pub content_type: String,
    /// Base64.
    pub bytes: String,
}

impl Job {
    /// The job for a stamped message, or `None` when it has no usable Message-ID (nothing
    /// to find the sent copy by) or no body.
    pub fn from_stamped(
        mailbox: &str,
        sender: &str,
        stamped: &[u8],
    ) -> Result<Option<Job>, String> {
        let Some(msg) = MessageParser::default().parse(stamped) else {
            return Err("the stamped message cannot be parsed".into());
        };
        let Some(mid) = msg.message_id().and_then(internet_message_id) else {
            return Ok(None);
        };
        let body = html_part(&msg)
            .map(|c| Body {
                content_type: "HTML".into(),
                content: c,
            })
            .or_else(|| {
                text_part(&msg).map(|c| Body {
                    content_type: "Text".into(),
                    content: c,
                })
            });
        let Some(body) = body else {
            return Ok(None);
        };
        let images = if body.content_type == "HTML" {
            signature_images(&msg, &body.content)
        } else {
            Vec::new()
        };
        Ok(Some(Job {
            id: crate::directory::graph::token::new_uuid(),
            mailbox: mailbox.to_string(),
            sender: sender.to_string(),
            internet_message_id: mid,
            queued_at: OffsetDateTime::now_utc(),
            body,
            images,
        }))
    }
}

/// `<id>` from a parsed Message-ID, if it is one Graph can be asked about: printable ASCII,
/// no spaces or angle brackets inside, not absurdly long.
pub fn internet_message_id(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    ok.then(|| format!("<{id}>"))
}

fn html_part(msg: &mail_parser::Message<'_>) -> Option<String> {
    msg.html_body
        .iter()
        .filter_map(|&i| msg.part(i))
        .find_map(|p| match &p.body {
            PartType::Html(h) => Some(h.to_string()),
            _ => None,
        })
}

fn text_part(msg: &mail_parser::Message<'_>) -> Option<String> {
    msg.text_body
        .iter()
        .filter_map(|&i| msg.part(i))
        .find_map(|p| match &p.body {
            PartType::Text(t) => Some(t.to_string()),
            _ => None,
        })
}

/// The inline parts the signature added (their Content-IDs end in `@sigstamp`) that the HTML
/// references.
fn signature_images(msg: &mail_parser::Message<'_>, html: &str) -> Vec<Image> {
    let mut out: Vec<Image> = Vec::new();
    for part in &msg.parts {
        let Some(cid) = part.content_id() else {
            continue;
        };
        let cid = cid.trim_matches(['<', '>']);
        if !cid.ends_with(SIGNATURE_CID_SUFFIX)
            || !html.contains(&format!("cid:{cid}"))
            || out.iter().any(|i| i.content_id == cid)
        {
            continue;
        }
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let name = part
            .attachment_name()
            .map(str::to_string)
            .unwrap_or_else(|| cid.split('@').next().unwrap_or("image").to_string());
        out.push(Image {
            content_id: cid.to_string(),
            name,
            content_type,
            bytes: STANDARD.encode(part.contents()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids() {
        let table = [
            ("abc@example.com", Some("<abc@example.com>")),
            ("a'b@x", Some("<a'b@x>")),
            ("", None),
            ("a b@x", None),
            ("a<b@x", None),
            ("ä@x", None),
        ];
        for (input, want) in table {
            assert_eq!(internet_message_id(input).as_deref(), want, "{input:?}");
        }
        assert_eq!(internet_message_id(&"a".repeat(901)), None);
    }

    #[test]
    fn html_body_and_signature_images() {
        let raw = "From: a@x\r\nMessage-ID: <m1@x>\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/related; boundary=\"b\"\r\n\r\n--b\r\n\
            Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hi</p><img src=\"cid:abc@sigstamp\"><img src=\"cid:own@x\">\r\n--b\r\n\
            Content-Type: image/png; name=\"logo.png\"\r\nContent-ID: <abc@sigstamp>\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b\r\n\
            Content-Type: image/png\r\nContent-ID: <own@x>\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";
        let job = Job::from_stamped("u1", "a@x", raw.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(job.internet_message_id, "<m1@x>");
        assert_eq!(job.body.content_type, "HTML");
        assert!(job.body.content.contains("<p>Hi</p>"));
        assert_eq!(job.images.len(), 1, "only the signature's image");
        assert_eq!(job.images[0].content_id, "abc@sigstamp");
        assert_eq!(job.images[0].name, "logo.png");
        assert_eq!(job.images[0].content_type, "image/png");
        assert_eq!(job.images[0].bytes, "aGVsbG8=");
    }

    #[test]
    fn text_only_and_no_message_id() {
        let raw = b"From: a@x\r\nMessage-ID: <m2@x>\r\n\r\nHello\r\n-- \r\nAnn\r\n";
        let job = Job::from_stamped("u1", "a@x", raw).unwrap().unwrap();
        assert_eq!(job.body.content_type, "Text");
        assert!(job.body.content.contains("Ann"));
        assert!(job.images.is_empty());
        let none = Job::from_stamped("u1", "a@x", b"From: a@x\r\n\r\nHello\r\n").unwrap();
        assert_eq!(none, None);
    }
}
