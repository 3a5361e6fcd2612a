//! Where a message stands in its conversation: new, a reply, a forward or an auto-reply
//! (a rule's `message`), and whether the quoted thread already carries the sender's signature
//! (a rule's `once_per_thread`).
//!
//! A reply has a reply prefix on its decoded subject, or `In-Reply-To` / `References`; a
//! forward has a forward prefix, or its quote opens with a forward marker the placement code
//! knows (`stamp::place`). The first prefix decides ("Re: Fwd: x" is a reply). An
//! `Auto-Submitted: auto-replied` message is an auto-reply whatever its subject.

use crate::stamp::{place, Signature};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    New,
    Reply,
    Forward,
    AutoReply,
}

impl MessageKind {
    pub const ALL: [MessageKind; 4] = [
        MessageKind::New,
        MessageKind::Reply,
        MessageKind::Forward,
        MessageKind::AutoReply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::New => "new",
            MessageKind::Reply => "reply",
            MessageKind::Forward => "forward",
            MessageKind::AutoReply => "auto-reply",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The kinds of message a rule is for (`message`); `any`, the default, is every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u8);

impl Default for Kinds {
    fn default() -> Self {
        Kinds(0b1111)
    }
}

impl Kinds {
    /// `"new"`, `"reply"`, `"forward"`, `"auto-reply"` or `"any"`, one or a list.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        if values.is_empty() {
            return Ok(Kinds::default());
        }
        let mut bits = 0;
        for v in values {
            match MessageKind::parse(v) {
                Some(k) => bits |= k.bit(),
                None if v.trim().eq_ignore_ascii_case("any") => bits |= Kinds::default().0,
                None => {
                    return Err(format!(
                        "unknown value {v:?}, expected \"new\", \"reply\", \"forward\", \
                         \"auto-reply\" or \"any\""
                    ))
                }
            }
        }
        Ok(Kinds(bits))
    }

    pub fn admits(self, kind: MessageKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_any(self) -> bool {
        self == Kinds::default()
    }

    /// "replies or forwards".
    pub fn describe(self) -> String {
        let names: Vec<&str> = MessageKind::ALL
            .into_iter()
            .filter(|k| self.admits(*k))
            .map(|k| match k {
                MessageKind::New => "new messages",
                MessageKind::Reply => "replies",
                MessageKind::Forward => "forwards",
                MessageKind::AutoReply => "auto-replies",
            })
            .collect();
        names.join(" or ")
    }
}

/// Subject prefixes of replies, lowercased, as mail clients write them in their languages:
/// English/Latin `Re`; German `AW`; Danish, Norwegian, Swedish `SV`; Finnish `VS`, `Vast`;
/// French `Réf`, `Ref`; Italian `R`, `Rif`; Dutch `Antw`; Polish `Odp`; Croatian, Serbian
/// `Odg`; Portuguese `Res`, `Resp`; Turkish `Ynt`; Latvian `Atb`; Hungarian `Vá`; Greek `ΑΠ`,
/// `ΣΧΕΤ`; Russian `Отв`; Chinese `回复`, `回覆`, `答复`, `答覆`; Japanese `返信`; Korean `답장`,
/// `회신`.
pub const REPLY_PREFIXES: &[&str] = &[
    "re", "aw", "sv", "vs", "vast", "réf", "ref", "r", "rif", "antw", "odp", "odg", "res", "resp",
    "ynt", "atb", "vá", "απ", "σχετ", "отв", "回复", "回覆", "答复", "答覆", "返信", "답장", "회신",
];

/// Subject prefixes of forwards, lowercased: English `Fw`, `Fwd`; German `WG`; French `TR`;
/// Spanish `RV`; Swedish `VB`; Dutch `Doorst`; Portuguese `Enc`; Italian `I`, `Inoltro`;
/// Polish `PD`; Finnish `VL`; Hungarian `Tov`; Greek `ΠΡΘ`; Russian `Пересл`; Chinese `转发`,
/// `轉寄`, `转寄`, `轉發`; Japanese `転送`; Korean `전달`.
pub const FORWARD_PREFIXES: &[&str] = &[
    "fw", "fwd", "wg", "tr", "rv", "vb", "doorst", "enc", "i", "inoltro", "pd", "vl", "tov",
    "πρθ", "пересл", "转发", "轉寄", "转寄", "轉發", "転送", "전달",
];

/// How many leading prefixes and list tags are looked at.
const MAX_PREFIXES: usize = 8;

/// The kind the subject's first prefix names: `Re: …` a reply, `Fwd: …` a forward. A prefix
/// is a word from the lists, then an optional `.` and counter (`Re[2]`, `Re(2)`, `Re^2`),
/// then `:` or `：`, spaces allowed before the colon (`TR :`). Mailing-list tags (`[list]`)
/// ahead of it are skipped.
pub fn subject_kind(subject: &str) -> Option<MessageKind> {
    let mut s = subject.trim_start();
    for _ in 0..MAX_PREFIXES {
        if let Some(rest) = s.strip_prefix('[') {
            let close = rest.find(']')?;
            s = rest[close + 1..].trim_start();
            continue;
        }
        let word_end = s
            .char_indices()
            .find(|(_, c)| !c.is_alphabetic())
            .map_or(s.len(), |(i, _)| i);
        let word = s[..word_end].to_lowercase();
        let mut rest = s[word_end..].strip_prefix('.').unwrap_or(&s[word_end..]);
        rest = skip_counter(rest).trim_start();
        rest.strip_prefix([':', '：'])?;
        if REPLY_PREFIXES.contains(&word.as_str()) {
            return Some(MessageKind::Reply);
        }
        if FORWARD_PREFIXES.contains(&word.as_str()) {
            return Some(MessageKind::Forward);
        }
        return None;
    }
    None
}

/// `[2]`, `(2)`, `^2` or nothing.
fn skip_counter(s: &str) -> &str {
    let (rest, close) = if let Some(r) = s.strip_prefix('[') {
        (r, Some(']'))
    } else if let Some(r) = s.strip_prefix('(') {
        (r, Some(')'))
    } else if let Some(r) = s.strip_prefix('^') {
        (r, None)
    } else {
        return s;
    };
    let n = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if n == 0 {
        return s;
    }
    match close {
        Some(c) => rest[n..].strip_prefix(c).unwrap_or(s),
        None => &rest[n..],
    }
}

/// Whether a message's first quote is a forwarded message (HTML body first, else text).
pub fn body_is_forward(html: Option<&str>, text: Option<&str>) -> bool {
    match (html, text) {
        (Some(h), _) => place::html_is_forward(h.as_bytes()),
        (None, Some(t)) => place::text_is_forward(t.as_bytes()),
        (None, None) => false,
    }
}

/// The quoted part of a message, as [`Quoted::holds`] needs it.
#[derive(Debug, Default)]
pub struct Quoted {
    /// The quoted text's words (letters and digits), lowercased, each followed by a space,
    /// with a space in front.
    words: String,
    /// The quoted HTML, lowercased (for Content-IDs).
    html: String,
}

impl Quoted {
    /// From the message's HTML and text bodies.
    pub fn new<'s>(
        html: impl Iterator<Item = &'s str>,
        text: impl Iterator<Item = &'s str>,
    ) -> Self {
        let mut q = Quoted {
            words: " ".into(),
            html: String::new(),
        };
        for h in html {
            let quoted = String::from_utf8_lossy(place::quoted_html(h.as_bytes()));
            push_words(&mut q.words, &html_text(&quoted));
            q.html.push_str(&quoted.to_lowercase());
        }
        for t in text {
            push_words(&mut q.words, &String::from_utf8_lossy(&place::quoted_text(t.as_bytes())));
        }
        q
    }

    /// Whether the quote holds `sig`: the Content-ID sigstamp gave the sender's photo, or
    /// the signature's words in order (from its text or its HTML half; at least two words).
    pub fn holds(&self, sig: &Signature) -> bool {
        if self.words.len() <= 1 && self.html.is_empty() {
            return false;
        }
        let photo = sig
            .images
            .iter()
            .filter(|i| i.filename.starts_with("photo."))
            .any(|i| self.html.contains(&format!("cid:{}", i.cid.to_lowercase())));
        photo
            || [sig.text.clone(), html_text(&sig.html)].iter().any(|half| {
                let mut fp = " ".to_string();
                push_words(&mut fp, half);
                fp.split(' ').filter(|w| !w.is_empty()).count() >= 2 && self.words.contains(&fp)
            })
    }
}

/// Append the words of `text` to `out`, each lowercased and followed by a space.
fn push_words(out: &mut String, text: &str) {
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        out.extend(w.chars().flat_map(char::to_lowercase));
        out.push(' ');
    }
}

/// The text of HTML for word matching: tags become spaces, numeric character references are
/// decoded (a 7bit part carries `Jos&#233;`), named ones become spaces.
fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('<') {
            let end = rest.find('>').map_or(rest.len(), |e| e + 1);
            rest = &rest[end..];
            out.push(' ');
            continue;
        }
        let end = rest[..rest.len().min(12)].find(';');
        let decoded = end.and_then(|e| {
            let n = rest[1..e].strip_prefix('#')?;
            let code = match n.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code)
        });
        match (end, decoded) {
            (Some(e), Some(c)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            (Some(e), None) => {
                out.push(' ');
                rest = &rest[e + 1..];
            }
            (None, _) => {
                out.push(' ');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
