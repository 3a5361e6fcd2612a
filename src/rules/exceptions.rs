//! Exceptions: keywords in the subject or the body, and headers. The message is parsed only
//! when a rule that got that far has an exception needing it, and at most once per message
//! (headers and body separately: the body parse is the expensive one).

use super::conversation::{self, MessageKind, Quoted};
use crate::stamp::Signature;
use mail_parser::{Message, MessageParser, PartType};
use std::cell::OnceCell;

/// The sender's rendered signature for a template name (for `once_per_thread`).
pub type SignatureOf<'a> = &'a dyn Fn(&str) -> Option<Signature>;

/// What the exceptions and the conversation matchers look at, computed on first use.
pub struct MessageFacts<'a> {
    raw: Option<&'a [u8]>,
    headers: OnceCell<Option<Message<'a>>>,
    full: OnceCell<Option<Message<'a>>>,
    subject: OnceCell<String>,
    body: OnceCell<String>,
    kind: OnceCell<MessageKind>,
    quoted: OnceCell<Quoted>,
    signature_of: Option<SignatureOf<'a>>,
}

impl<'a> MessageFacts<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Self::with(Some(raw))
    }

    /// No message (the admin page's preview): no exception applies.
    pub fn none() -> Self {
        Self::with(None)
    }

    fn with(raw: Option<&'a [u8]>) -> Self {
        MessageFacts {
            raw,
            headers: OnceCell::new(),
            full: OnceCell::new(),
            subject: OnceCell::new(),
            body: OnceCell::new(),
            kind: OnceCell::new(),
            quoted: OnceCell::new(),
            signature_of: None,
        }
    }

    /// Facts about no message, as if it were of this kind (the previews: a new message or a
    /// reply).
    pub fn none_of_kind(kind: MessageKind) -> Self {
        let f = Self::none();
        let _ = f.kind.set(kind);
        f
    }

    /// How to render the sender's signature, for `once_per_thread`.
    pub fn with_signatures(mut self, signature_of: SignatureOf<'a>) -> Self {
        self.signature_of = Some(signature_of);
        self
    }

    fn full(&self) -> Option<&Message<'a>> {
        self.full
            .get_or_init(|| self.raw.and_then(|r| MessageParser::new().parse(r)))
            .as_ref()
    }

    /// The decoded HTML and text bodies as written (an HTML body is not turned into text,
    /// nor text into HTML).
    fn bodies(&self) -> (Vec<&str>, Vec<&str>) {
        let Some(m) = self.full() else {
            return (Vec::new(), Vec::new());
        };
        let html = (0..m.html_body_count())
            .filter_map(|i| match &m.html_part(i as u32)?.body {
                PartType::Html(h) => Some(h.as_ref()),
                _ => None,
            })
            .collect();
        let text = (0..m.text_body_count())
            .filter_map(|i| match &m.text_part(i as u32)?.body {
                PartType::Text(t) => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        (html, text)
    }

    /// New, reply, forward or auto-reply (see `conversation`). No message: new.
    pub fn kind(&self) -> MessageKind {
        *self.kind.get_or_init(|| {
            if !self.has_message() {
                return MessageKind::New;
            }
            let auto = self.header_values("auto-submitted").iter().any(|v| {
                let first = v.split([';', ' ', '(']).next().unwrap_or_default();
                first.eq_ignore_ascii_case("auto-replied")
            });
            if auto {
                return MessageKind::AutoReply;
            }
            if let Some(k) = conversation::subject_kind(self.subject()) {
                return k;
            }
            let (html, text) = self.bodies();
            if conversation::body_is_forward(html.first().copied(), text.first().copied()) {
                return MessageKind::Forward;
            }
            let threaded = self
                .headers()
                .is_some_and(|h| !h.in_reply_to().is_empty() || !h.references().is_empty());
            if threaded {
                MessageKind::Reply
            } else {
                MessageKind::New
            }
        })
    }

    /// Whether the quoted part of the message already holds the sender's signature of
    /// `template` (`once_per_thread`). No message, or no way to render: no.
    pub fn thread_holds(&self, template: &str) -> bool {
        let Some(sig) = self.signature_of.and_then(|f| f(template)) else {
            return false;
        };
        let quoted = self.quoted.get_or_init(|| {
            let (html, text) = self.bodies();
            Quoted::new(html.into_iter(), text.into_iter())
        });
        quoted.holds(&sig)
    }

    pub fn has_message(&self) -> bool {
        self.raw.is_some()
    }

    fn headers(&self) -> Option<&Message<'a>> {
        self.headers
            .get_or_init(|| self.raw.and_then(|r| MessageParser::new().parse_headers(r)))
            .as_ref()
    }

    /// The decoded subject, lowercased.
    pub fn subject(&self) -> &str {
        self.subject.get_or_init(|| {
            self.headers()
                .and_then(Message::subject)
                .unwrap_or_default()
                .to_lowercase()
        })
    }

    /// The decoded text of the message's text bodies (HTML-only bodies as text), lowercased.
    pub fn body(&self) -> &str {
        self.body.get_or_init(|| {
            let Some(msg) = self.full() else {
                return String::new();
            };
            let mut out = String::new();
            for i in 0..msg.text_body_count() {
                if let Some(t) = msg.body_text(i) {
                    out.push_str(&t.to_lowercase());
                    out.push('\n');
                }
            }
            out
        })
    }

    /// The values of the headers named `name` (any case): each as written (unfolded,
    /// trimmed) and, when it carries encoded words, decoded too.
    fn header_values(&self, name: &str) -> Vec<String> {
        let Some(m) = self.headers() else {
            return Vec::new();
        };
        let raw = m.raw_message();
        let mut out = Vec::new();
        for h in m.headers() {
            if !h.name.as_str().eq_ignore_ascii_case(name) {
                continue;
            }
            let written = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            out.push(written.replace(['\r', '\n'], "").trim().to_string());
            if let Some(text) = h.value.as_text() {
                out.push(text.trim().to_string());
            }
        }
        out
    }
}

/// Keywords, lowercased; any one found is enough.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords(Vec<String>);

impl Keywords {
    pub fn new(words: &[String]) -> Self {
        Keywords(words.iter().map(|w| w.to_lowercase()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn words(&self) -> &[String] {
        &self.0
    }

    pub fn found_in(&self, haystack: &str) -> bool {
        self.0.iter().any(|w| haystack.contains(w.as_str()))
    }
}

/// `"Name"`: the header is present. `"Name: value"`: a header of that name contains
/// `value` (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTest {
    pub name: String,
    /// Lowercased.
    pub value: Option<String>,
}

impl HeaderTest {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, value) = match spec.split_once(':') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_lowercase())),
            None => (spec.trim(), None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!("{spec:?} is not a header name, or \"Name: value\""));
        }
        Ok(HeaderTest {
            name: name.to_string(),
            value: value.filter(|v| !v.is_empty()),
        })
    }

    pub fn applies(&self, facts: &MessageFacts<'_>) -> bool {
        let values = facts.header_values(&self.name);
        match &self.value {
            None => !values.is_empty(),
            Some(want) => values
                .iter()
                .any(|v| v.to_lowercase().contains(want.as_str())),
        }
    }
}

impl std::fmt::Display for HeaderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            None => f.write_str(&self.name),
            Some(v) => write!(f, "{}: {v}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@contoso.example\r\nTo: b@fabrikam.example\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_vom_PROJEKT?=\r\nX-Campaign:\r\n opt-out\r\n\
Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
Q09ORklERU5USUFMOiBkbyBub3QgZm9yd2FyZA==\r\n--b\r\n\
Content-Type: text/html\r\n\r\n<p>html only <b>Secret</b></p>\r\n--b--\r\n";

    #[test]
    fn subject_is_decoded_and_lowercased() {
        let f = MessageFacts::new(MSG);
        assert_eq!(f.subject(), "grüße vom projekt");
        assert!(Keywords::new(&["Projekt".into()]).found_in(f.subject()));
        assert!(Keywords::new(&["GRÜSSE".into(), "grüße".into()]).found_in(f.subject()));
        assert!(!Keywords::new(&["urgent".into()]).found_in(f.subject()));
    }

    #[test]
    fn body_is_the_decoded_text() {
        let f = MessageFacts::new(MSG);
        // base64 decoded; the keyword is not in the raw bytes.
        assert!(Keywords::new(&["confidential".into()]).found_in(f.body()));
        assert!(!Keywords::new(&["Q09ORklE".into()]).found_in(f.body()));
        let html_only =
            b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>SECRET</b> world</p>\r\n";
        let f = MessageFacts::new(html_only);
        assert!(Keywords::new(&["secret".into()]).found_in(f.body()));
        assert!(!Keywords::new(&["<b>".into()]).found_in(f.body()));
    }

    #[test]
    fn header_tests() {
        let f = MessageFacts::new(MSG);
        let table = [
            ("X-Campaign", true),
            ("x-campaign", true),
            ("X-Campaign: OPT-OUT", true),
            ("X-Campaign: opt-in", false),
            ("Auto-Submitted: auto-", true),
            ("Auto-Submitted:", true),
            ("X-Missing", false),
            ("Subject: grüße vom", true),    // decoded
            ("Subject: =?utf-8?q?gr", true), // as written
            ("Subject: hello", false),
        ];
        for (spec, want) in table {
            assert_eq!(HeaderTest::parse(spec).unwrap().applies(&f), want, "{spec}");
        }
        for bad in ["", ": x", "Bad Name: x", "Ümlaut"] {
            assert!(HeaderTest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_message_means_nothing_found() {
        let f = MessageFacts::none();
        assert_eq!(f.subject(), "");
        assert_eq!(f.body(), "");
        assert!(!HeaderTest::parse("X-A").unwrap().applies(&f));
    }
}
