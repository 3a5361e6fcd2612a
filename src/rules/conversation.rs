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
    "ynt", "atb", "vá", "απ", "σχετ", "отв", "回复", "回覆", "答复", "答覆", "返信", "답장",
    "회신",
];

/// Subject prefixes of forwards, lowercased: English `Fw`, `Fwd`; German `WG`; French `TR`;
/// Spanish `RV`; Swedish `VB`; Dutch `Doorst`; Portuguese `Enc`; Italian `I`, `Inoltro`;
/// Polish `PD`; Finnish `VL`; Hungarian `Tov`; Greek `ΠΡΘ`; Russian `Пересл`; Chinese `转发`,
/// `轉寄`, `转寄`, `轉發`; Japanese `転送`; Korean `전달`.
pub const FORWARD_PREFIXES: &[&str] = &[
    "fw",
    "fwd",
    "wg",
    "tr",
    "rv",
    "vb",
    "doorst",
    "enc",
    "i",
    "inoltro",
    "pd",
    "vl",
    "tov",
    "πρθ",
    "пересл",
    "转发",
    "轉寄",
    "转寄",
    "轉發",
    "転送",
    "전달",
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
            push_words(
                &mut q.words,
                &String::from_utf8_lossy(&place::quoted_text(t.as_bytes())),
            );
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
        // Bytes: a cut at 12 may fall inside a character.
        let end = rest.bytes().take(12).position(|b| b == b';');
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::MessageFacts;
    use MessageKind::*;

    /// Every listed prefix, as clients write it: plain, upper case, with a counter, with a
    /// space or a no-break space before the colon, behind a list tag, after another prefix.
    #[test]
    fn every_subject_prefix() {
        for (list, kind) in [(REPLY_PREFIXES, Reply), (FORWARD_PREFIXES, Forward)] {
            for p in list {
                let upper = p.to_uppercase();
                for subject in [
                    format!("{p}: budget"),
                    format!("{upper}: budget"),
                    format!("{upper}:budget"),
                    format!("{upper} : budget"),
                    format!("{p}[2]: budget"),
                    format!("{p}(3): budget"),
                    format!("{p}^4: budget"),
                    format!("{p}.: budget"),
                    format!("{p}： budget"),
                    format!("[team] {upper}: budget"),
                    format!("  {p}: Re: budget"),
                ] {
                    assert_eq!(subject_kind(&subject), Some(kind), "{subject:?}");
                }
            }
        }
    }

    #[test]
    fn subjects_table() {
        let table: &[(&str, Option<MessageKind>)] = &[
            ("Budget 2027", None),
            ("", None),
            ("Re: Fwd: budget", Some(Reply)),
            ("Fwd: Re: budget", Some(Forward)),
            ("AW: WG: Angebot", Some(Reply)),
            ("WG: AW: Angebot", Some(Forward)),
            ("Réf. : contrat", Some(Reply)),
            ("TR : contrat", Some(Forward)),
            ("RV: propuesta", Some(Forward)),
            ("回复：会议", Some(Reply)),
            ("转发: 会议", Some(Forward)),
            ("返信: 会議", Some(Reply)),
            ("[list][x] re: hello", Some(Reply)),
            // Words that only look like prefixes.
            ("Rental: van", None),
            ("Resume review", None),
            ("Re budget", None),
            ("Regarding: budget", None),
            ("Note: Re: budget", None),
            ("[unclosed re: x", None),
            ("Re[x]: budget", None),
            (":Re: budget", None),
        ];
        for (subject, want) in table {
            assert_eq!(subject_kind(subject), *want, "{subject:?}");
        }
    }

    fn kind_of(raw: &str) -> MessageKind {
        MessageFacts::new(raw.as_bytes()).kind()
    }

    /// Headers, subjects and bodies together, in the order that decides.
    #[test]
    fn message_kinds() {
        let table: &[(&str, MessageKind, &str)] = &[
            ("Subject: Hello\r\n\r\nHi\r\n", New, "nothing"),
            ("Subject: Re: Hello\r\n\r\nHi\r\n", Reply, "prefix only"),
            ("Subject: Hello\r\nIn-Reply-To: <a@b>\r\n\r\nHi\r\n", Reply, "In-Reply-To only"),
            ("Subject: Hello\r\nReferences: <a@b> <c@d>\r\n\r\nHi\r\n", Reply, "References only"),
            ("Subject: Hello\r\nReferences:\r\n <a@b>\r\n\r\nHi\r\n", Reply, "folded References"),
            ("In-Reply-To: <a@b>\r\n\r\nHi\r\n", Reply, "no subject"),
            ("Subject: =?utf-8?b?5Zue5aSN77ya5Lya6K6u?=\r\n\r\nx\r\n", Reply, "encoded 回复：会议"),
            ("Subject: =?iso-8859-1?q?R=E9f=2E_=3A_contrat?=\r\n\r\nx\r\n", Reply, "encoded Réf. :"),
            ("Subject: Fwd: Hello\r\nReferences: <a@b>\r\n\r\nx\r\n", Forward, "Gmail forward"),
            ("Subject: FW: Hello\r\nIn-Reply-To: <a@b>\r\n\r\nx\r\n", Forward, "prefix before headers"),
            (
                "Subject: Hello\r\n\r\nFYI\r\n\r\n---------- Forwarded message ---------\r\nFrom: Bob\r\n",
                Forward,
                "forward separator, no prefix",
            ),
            (
                "Subject: Hello\r\nIn-Reply-To: <a@b>\r\n\r\nSee below\r\n\r\nBegin forwarded message:\r\n\r\nFrom: Bob\r\n",
                Forward,
                "Apple Mail forward line before the headers",
            ),
            (
                "Subject: Hello\r\nContent-Type: text/html\r\n\r\n<p>FYI</p><div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">---------- Forwarded message ---------<br>From: Bob</div></div>\r\n",
                Forward,
                "Gmail HTML forward",
            ),
            (
                "Subject: Hello\r\nContent-Type: text/html\r\n\r\n<p>FYI</p><div class=\"moz-forward-container\"><br>-------- Original --------</div>\r\n",
                Forward,
                "Thunderbird forward container",
            ),
            (
                "Subject: Hello\r\nIn-Reply-To: <a@b>\r\n\r\nYes.\r\n\r\nOn Mon, Bob wrote:\r\n> ---------- Forwarded message ---------\r\n> From: Carol\r\n",
                Reply,
                "a reply quoting a forward",
            ),
            (
                "Subject: Hello\r\n\r\nSee the -- forwarded message -- we talked about\r\n",
                New,
                "the words in a sentence",
            ),
            (
                "Subject: Automatic reply: Hello\r\nAuto-Submitted: auto-replied\r\nIn-Reply-To: <a@b>\r\n\r\nAway\r\n",
                AutoReply,
                "out of office",
            ),
            (
                "Subject: Re: Hello\r\nAuto-Submitted: Auto-Replied; owner-email=\"a@b\"\r\n\r\nAway\r\n",
                AutoReply,
                "parameters and case",
            ),
            (
                "Subject: Hello\r\nAuto-Submitted: auto-generated\r\n\r\nReport\r\n",
                New,
                "auto-generated is not an auto-reply",
            ),
            (
                "Subject: Re: Hello\r\nAuto-Submitted: no\r\n\r\nx\r\n",
                Reply,
                "Auto-Submitted: no",
            ),
        ];
        for (raw, want, what) in table {
            assert_eq!(kind_of(raw), *want, "{what}");
            // The same with LF line endings.
            assert_eq!(kind_of(&raw.replace("\r\n", "\n")), *want, "{what} (LF)");
        }
        assert_eq!(MessageFacts::none().kind(), New);
        assert_eq!(MessageFacts::none_of_kind(Reply).kind(), Reply);
    }

    #[test]
    fn kinds_setting() {
        let k = |v: &[&str]| Kinds::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(k(&[]).unwrap().is_any());
        assert!(k(&["any"]).unwrap().is_any());
        assert!(k(&["new", "reply", "forward", "auto-reply"])
            .unwrap()
            .is_any());
        let replies = k(&[" Reply "]).unwrap();
        assert!(replies.admits(Reply) && !replies.admits(New) && !replies.admits(AutoReply));
        assert_eq!(
            k(&["new", "forward"]).unwrap().describe(),
            "new messages or forwards"
        );
        assert!(k(&["answer"]).unwrap_err().contains("\"answer\""));
        assert!(k(&["autoreply"]).is_err());
    }

    proptest::proptest! {
        /// Any text, any HTML: no panic (a character reference cut inside a character was one).
        #[test]
        fn any_input_is_read_without_panic(s in "\\PC{0,40}", html in "[<>&#;xé0-9a-z ]{0,40}") {
            let _ = subject_kind(&s);
            let _ = html_text(&s);
            let _ = html_text(&html);
            let q = Quoted::new([html.as_str(), s.as_str()].into_iter(), [s.as_str()].into_iter());
            let _ = q.holds(&sig(&html, &s));
            let _ = body_is_forward(Some(&html), Some(&s));
        }
    }

    #[test]
    fn html_text_decodes_references() {
        assert_eq!(
            html_text("<b>Jos&#233;</b>&nbsp;M&#xFC;ller &amp"),
            " José  Müller  amp"
        );
        assert_eq!(html_text("&é;x&#1234567;"), " x ");
    }

    fn sig(html: &str, text: &str) -> Signature {
        Signature::new(html, text)
    }

    /// The sender's signature found in the quote, by its words or its photo's Content-ID;
    /// not in the author's own text, not another person's.
    #[test]
    fn quoted_signature_table() {
        let ana = sig(
            "<div><b>Ana Silva</b> &middot; Sales<br>Jos&#233; Street 1</div>",
            "-- \nAna Silva | Sales\nJosé Street 1\n",
        );
        let table: &[(&[&str], &[&str], bool, &str)] = &[
            (&[], &["Hi\n\nOn Mon, Bob wrote:\n> Hello\n> -- \n> Ana Silva | Sales\n> José Street 1\n"], true, "text quote"),
            (&[], &["Hi\n\nOn Mon, Bob wrote:\n> Hello\n> Bob\n"], false, "not there"),
            (&[], &["Hi\n-- \nAna Silva | Sales\nJosé Street 1\n"], false, "unquoted own text"),
            (&[], &["On Mon, Bob wrote:\n> Ana Silva\n> Sales\n> José Street 1\n\nMy answer\n"], true, "bottom-posted"),
            (&["<p>Hi</p><div class=\"gmail_quote\">On x wrote:<blockquote><div>Ana Silva &middot; Sales</div><div>Jos&#xe9; Street 1</div></blockquote></div>"], &[], true, "HTML quote, references"),
            (&["<p>Hi</p><div class=\"gmail_quote\">On x wrote:<blockquote><div>Bob Stone &middot; Sales</div></blockquote></div>"], &[], false, "someone else's"),
            (&["<p>Ana Silva · Sales José Street 1</p><div class=\"gmail_quote\">On x wrote:<blockquote>q</blockquote></div>"], &[], false, "HTML, own text"),
            (&["<p>Hi</p>"], &["Hi\n"], false, "no quote"),
        ];
        for (html, text, want, what) in table {
            let q = Quoted::new(html.iter().copied(), text.iter().copied());
            assert_eq!(q.holds(&ana), *want, "{what}");
        }
        // The photo's Content-ID is sigstamp's marker of this sender.
        let mut with_photo = sig("<img src=\"cid:ab12@sigstamp\">", "-- \nx\n");
        with_photo.images.push(crate::stamp::InlineImage {
            cid: "ab12@sigstamp".into(),
            content_type: "image/jpeg".into(),
            filename: "photo.jpg".into(),
            bytes: b"x".to_vec().into(),
        });
        let quoted = |html: &str| Quoted::new([html].into_iter(), std::iter::empty());
        assert!(quoted(
            "<p>Hi</p><blockquote type=\"cite\"><img src=\"CID:ab12@sigstamp\"></blockquote>"
        )
        .holds(&with_photo));
        assert!(!quoted("<p>Hi</p><img src=\"cid:ab12@sigstamp\">").holds(&with_photo));
        // A one-word signature is too little to go by.
        assert!(!quoted("<p>Hi</p><blockquote>Ana</blockquote>").holds(&sig("Ana", "Ana")));
    }
}
