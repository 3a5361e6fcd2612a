//! The stamping core: a pure function from (raw message, rendered signature) to the stamped
//! message, or the unchanged message with a reason. No I/O, no allocation beyond the output.
//!
//! Guarantee: only the body of the stamped text part(s) may change (and, where needed, that
//! part's Content-Transfer-Encoding and charset parameter), plus one trace header
//! ([`TRACE_HEADER`]) prepended to the message. Every other byte stays identical.

pub mod charset;
mod mime;
mod place;
mod related;
pub mod transfer;

use charset::Charset;
use mime::{Field, Part, Tree};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

pub use related::{ImageBytes, ImagesDropped, InlineImage, CID_DOMAIN};

/// The trace header that marks a message as stamped. A message carrying it is never stamped
/// again, which makes stamping idempotent and loop-safe.
pub const TRACE_HEADER: &str = "X-Sigstamp";

/// A rendered signature, ready to insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// HTML fragment inserted into text/html bodies.
    pub html: String,
    /// Plain text inserted into text/plain bodies.
    pub text: String,
    /// Images the HTML references as `cid:…`: added as inline parts in a multipart/related
    /// with the stamped HTML part. Never added to text/plain. Empty: the output is exactly
    /// what it would be without image support.
    pub images: Vec<InlineImage>,
}

impl Signature {
    /// A signature without images.
    pub fn new(html: impl Into<String>, text: impl Into<String>) -> Self {
        Signature {
            html: html.into(),
            text: text.into(),
            images: Vec::new(),
        }
    }
}

/// Options of one stamping.
#[derive(Debug, Clone)]
pub struct Options {
    /// Value of the trace header, e.g. `stamped`.
    pub trace_value: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trace_value: "stamped".into(),
        }
    }
}

/// A successfully stamped message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub message: Vec<u8>,
    /// Number of text/html parts that received the signature.
    pub html_parts: usize,
    /// Number of text/plain parts that received the signature.
    pub text_parts: usize,
    /// Number of inline image parts added.
    pub images: usize,
    /// The signature has images, but they were left out: why.
    pub images_dropped: Option<ImagesDropped>,
}

/// Why a message was left unchanged, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Already carries [`TRACE_HEADER`].
    AlreadyStamped,
    /// A null reverse-path (`Return-Path: <>` or MAIL FROM:<>): a bounce.
    NullSender,
    /// `Auto-Submitted` other than `no`.
    AutoSubmitted,
    /// multipart/signed, opaque S/MIME signed-data or inline PGP signed.
    Signed,
    /// multipart/encrypted, S/MIME enveloped-data or inline PGP encrypted.
    Encrypted,
    /// multipart/report: DSN, MDN, ARF, TLS-RPT.
    Report,
    /// A text/calendar part: changing the invitation would break it.
    Calendar,
    /// application/ms-tnef only.
    Tnef,
    /// A Content-Type that is not `type/subtype`.
    InvalidContentType,
    /// Structurally broken MIME; the string says what.
    Malformed(String),
    /// No text/plain or text/html body to stamp.
    NoTextBody,
    /// More MIME parts, nesting levels or header fields than sigstamp reads
    /// ([`mime::MAX_PARTS`], [`mime::MAX_DEPTH`], [`mime::MAX_FIELDS`]).
    TooComplex,
}

impl Skip {
    /// A short, stable label (metrics, logs).
    pub fn label(&self) -> &'static str {
        match self {
            Skip::AlreadyStamped => "already_stamped",
            Skip::NullSender => "null_sender",
            Skip::AutoSubmitted => "auto_submitted",
            Skip::Signed => "signed",
            Skip::Encrypted => "encrypted",
            Skip::Report => "report",
            Skip::Calendar => "calendar",
            Skip::Tnef => "tnef",
            Skip::InvalidContentType => "invalid_content_type",
            Skip::Malformed(_) => "malformed",
            Skip::NoTextBody => "no_text_body",
            Skip::TooComplex => "too_complex",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::AlreadyStamped => write!(f, "already stamped ({TRACE_HEADER} present)"),
            Skip::NullSender => f.write_str("null reverse-path (bounce)"),
            Skip::AutoSubmitted => f.write_str("Auto-Submitted message"),
            Skip::Signed => f.write_str("signed message (S/MIME or PGP)"),
            Skip::Encrypted => f.write_str("encrypted message (S/MIME or PGP)"),
            Skip::Report => f.write_str("multipart/report (bounce or receipt)"),
            Skip::Calendar => f.write_str("contains a text/calendar part"),
            Skip::Tnef => f.write_str("TNEF-only message"),
            Skip::InvalidContentType => f.write_str("invalid Content-Type"),
            Skip::Malformed(what) => write!(f, "malformed MIME: {what}"),
            Skip::NoTextBody => f.write_str("no text/plain or text/html body"),
            Skip::TooComplex => write!(
                f,
                "too complex (over {} MIME parts, {} nesting levels or {} header fields in a part)",
                mime::MAX_PARTS,
                mime::MAX_DEPTH,
                mime::MAX_FIELDS
            ),
        }
    }
}

/// Stamp `raw` with `sig`. Returns the stamped message, or why it stays unchanged.
pub fn stamp(raw: &[u8], sig: &Signature, opts: &Options) -> Result<Stamped, Skip> {
    let raw = &*cr_lines(raw);
    let start = bom_len(raw);
    let (fields, body_start) = mime::parse_header(raw, start, raw.len());
    precheck_fields(raw, &fields)?;
    if has_lone_cr(&raw[start..body_start]) {
        // Some lines break at a lone CR, others at LF: reading on would glue header lines.
        return Err(Skip::Malformed("lone CR line breaks in the header".into()));
    }
    let tree = Tree::parse(raw, start)?;
    if tree.parts[0].ctype_invalid {
        return Err(Skip::InvalidContentType);
    }
    refuse_protected(&tree, 0)?;
    let bodies = select(raw, &tree, 0);
    if bodies.text.is_none() && bodies.html.is_none() {
        return Err(Skip::NoTextBody);
    }
    let eol: &[u8] = if line_ending_is_crlf(raw) {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut edits = Edits::default();
    let (mut html_parts, mut text_parts) = (0, 0);
    let mut first_refusal = None;
    for (idx, kind) in [(bodies.text, Kind::Text), (bodies.html, Kind::Html)] {
        let Some(idx) = idx else { continue };
        let part = &tree.parts[idx];
        match stamp_part(raw, part, kind, sig, eol, &mut edits) {
            Ok(()) => match kind {
                Kind::Text => text_parts += 1,
                Kind::Html => html_parts += 1,
            },
            // A signed or encrypted body anywhere means the whole message is left alone.
            Err(s @ (Skip::Signed | Skip::Encrypted)) => return Err(s),
            Err(s) => first_refusal = first_refusal.or(Some(s)),
        }
    }
    if html_parts + text_parts == 0 {
        return Err(first_refusal.unwrap_or(Skip::NoTextBody));
    }
    // Images go with the stamped HTML; any trouble leaves them out, never the signature.
    let mut images_dropped = None;
    let mut plan = related::Plan::Queued(0);
    if let (Some(html), 1, false) = (bodies.html, html_parts, sig.images.is_empty()) {
        match related::plan(raw, &tree, html, &sig.images, eol, &mut edits) {
            Ok(p) => plan = p,
            Err(why) => images_dropped = Some(why),
        }
    }
    let mut trace = Vec::with_capacity(TRACE_HEADER.len() + opts.trace_value.len() + 4);
    trace.extend_from_slice(TRACE_HEADER.as_bytes());
    trace.extend_from_slice(b": ");
    trace.extend_from_slice(opts.trace_value.as_bytes());
    trace.extend_from_slice(eol);
    // First at `start`, ahead of any field added to a header-less message at the same offset.
    edits.insert_first(start, trace);
    let mut message = edits.apply(raw);
    let images = match plan {
        related::Plan::Queued(n) => n,
        related::Plan::WholeMessage => {
            match related::wrap_message(&message, start, &sig.images, eol) {
                Ok(m) => {
                    message = m;
                    sig.images.len()
                }
                Err(why) => {
                    images_dropped = Some(why);
                    0
                }
            }
        }
    };
    Ok(Stamped {
        message,
        html_parts,
        text_parts,
        images,
        images_dropped,
    })
}

/// Cheap checks that need no signature: trace header, null sender, Auto-Submitted.
/// The pipeline runs these before the directory lookup; [`stamp`] runs them too.
pub fn precheck(raw: &[u8]) -> Result<(), Skip> {
    let raw = &*cr_lines(raw);
    let start = bom_len(raw);
    let (fields, _) = mime::parse_header(raw, start, raw.len());
    precheck_fields(raw, &fields)
}

/// The address of the From header (without display name), if any.
pub fn from_address(raw: &[u8]) -> Option<String> {
    let raw = &*cr_lines(raw);
    let start = bom_len(raw);
    let (fields, _) = mime::parse_header(raw, start, raw.len());
    let f = mime::find_field(raw, &fields, "from")?;
    parse_address(&raw[f.value.clone()])
}

/// The Message-ID header's value, trimmed (for logs).
pub fn message_id(raw: &[u8]) -> Option<String> {
    let raw = &*cr_lines(raw);
    let start = bom_len(raw);
    let (fields, _) = mime::parse_header(raw, start, raw.len());
    let f = mime::find_field(raw, &fields, "message-id")?;
    let v = String::from_utf8_lossy(trim_ascii(&raw[f.value.clone()])).into_owned();
    (!v.is_empty()).then_some(v)
}

/// The first address of an address-list header value: `Name <a@b>`, `a@b (Name)`, `a@b`.
fn parse_address(value: &[u8]) -> Option<String> {
    let v = String::from_utf8_lossy(value);
    let mut in_quote = false;
    let mut depth = 0usize;
    let mut plain = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote || depth > 0 => {
                chars.next();
            }
            '"' if depth == 0 => in_quote = !in_quote,
            '(' if !in_quote => depth += 1,
            ')' if !in_quote && depth > 0 => depth -= 1,
            '<' if !in_quote && depth == 0 => {
                let inner: String = chars.by_ref().take_while(|c| *c != '>').collect();
                let addr = inner.trim();
                // Drop an obsolete source route "@a,@b:".
                let addr = addr.rsplit_once(':').map_or(addr, |(_, a)| a).trim();
                return (!addr.is_empty()).then(|| addr.to_string());
            }
            ',' if !in_quote && depth == 0 => break,
            _ if !in_quote && depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let addr = plain.split_whitespace().find(|w| w.contains('@'))?;
    Some(addr.to_string())
}

/// Where the header starts: after a UTF-8 BOM and an mbox "From " line, if any.
fn bom_len(raw: &[u8]) -> usize {
    let mut start = if raw.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    if raw[start..].starts_with(b"From ") {
        if let Some(nl) = memchr::memchr(b'\n', &raw[start..]) {
            start += nl + 1;
        }
    }
    start
}

/// A message whose lines end in a lone CR (old Mac style; over SMTP it still ends in the
/// final CRLF): each CR becomes CRLF, so its lines are read as lines, never glued into one.
/// Any other message is used as it is.
fn cr_lines(raw: &[u8]) -> Cow<'_, [u8]> {
    let inner = raw.strip_suffix(b"\r\n").unwrap_or(raw);
    if memchr::memchr(b'\n', inner).is_some() || memchr::memchr(b'\r', inner).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
    for &b in inner {
        out.push(b);
        if b == b'\r' {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(&raw[inner.len()..]);
    Cow::Owned(out)
}

/// A CR not followed by LF.
fn has_lone_cr(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', bytes).any(|i| bytes.get(i + 1) != Some(&b'\n'))
}

/// `<>` with any whitespace, folding and comments around or inside it.
fn is_null_path(value: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut rest = Vec::with_capacity(2);
    for &b in value {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            _ if depth > 0 || b.is_ascii_whitespace() => {}
            _ => rest.push(b),
        }
        if rest.len() > 2 {
            return false;
        }
    }
    rest == b"<>"
}

fn line_ending_is_crlf(raw: &[u8]) -> bool {
    memchr::memchr(b'\n', raw).is_some_and(|i| i > 0 && raw[i - 1] == b'\r')
}

fn precheck_fields(raw: &[u8], fields: &[Field]) -> Result<(), Skip> {
    let value = |f: &Field| mime::simple_value(raw, f.value.clone());
    for f in fields {
        let name = &raw[f.name.clone()];
        if name.eq_ignore_ascii_case(TRACE_HEADER.as_bytes()) {
            return Err(Skip::AlreadyStamped);
        }
        if name.eq_ignore_ascii_case(b"return-path") && is_null_path(&raw[f.value.clone()]) {
            return Err(Skip::NullSender);
        }
        if name.eq_ignore_ascii_case(b"auto-submitted") && value(f) != "no" {
            return Err(Skip::AutoSubmitted);
        }
    }
    Ok(())
}

/// Refuse messages whose content must not change: signatures, encryption, reports,
/// invitations, TNEF-only. Attached messages (message/*) are not looked into.
fn refuse_protected(tree: &Tree, idx: usize) -> Result<(), Skip> {
    let part = &tree.parts[idx];
    let ct = &part.ctype;
    match (ct.mtype.as_str(), ct.subtype.as_str()) {
        ("multipart", "signed") => return Err(Skip::Signed),
        ("multipart", "encrypted") => return Err(Skip::Encrypted),
        ("multipart", "report") => return Err(Skip::Report),
        ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
            let kind = ct.param("smime-type").map(|p| p.value.to_ascii_lowercase());
            return Err(match kind.as_deref() {
                Some("signed-data" | "certs-only") => Skip::Signed,
                _ => Skip::Encrypted,
            });
        }
        ("application", "pgp-encrypted") => return Err(Skip::Encrypted),
        ("text", "calendar") | ("application", "ics") => return Err(Skip::Calendar),
        ("application", "ms-tnef" | "vnd.ms-tnef") if idx == 0 => return Err(Skip::Tnef),
        _ => {}
    }
    part.children
        .iter()
        .try_for_each(|&c| refuse_protected(tree, c))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Html,
}

#[derive(Debug, Default, Clone, Copy)]
struct Bodies {
    text: Option<usize>,
    html: Option<usize>,
}

/// The main text/plain and text/html bodies under `idx`.
fn select(raw: &[u8], tree: &Tree, idx: usize) -> Bodies {
    let part = &tree.parts[idx];
    if part.attachment {
        return Bodies::default();
    }
    let ct = &part.ctype;
    match (ct.mtype.as_str(), ct.subtype.as_str()) {
        ("text", "plain") => Bodies {
            text: Some(idx),
            html: None,
        },
        ("text", "html") => Bodies {
            text: None,
            html: Some(idx),
        },
        ("multipart", "alternative") => {
            // Alternatives go from least to most preferred: keep the last of each kind.
            part.children.iter().fold(Bodies::default(), |acc, &c| {
                let b = select(raw, tree, c);
                Bodies {
                    text: b.text.or(acc.text),
                    html: b.html.or(acc.html),
                }
            })
        }
        ("multipart", "related") => {
            related_root(raw, tree, idx).map_or_else(Bodies::default, |r| select(raw, tree, r))
        }
        ("multipart", "digest") => Bodies::default(),
        ("multipart", _) => {
            // mixed and unknown multiparts: the body is the first part that is not itself an
            // attached file (some clients put a file or an image ahead of the text); the rest
            // are attached.
            let Some(pos) = part
                .children
                .iter()
                .position(|&c| !is_attached_file(raw, tree, c))
            else {
                return Bodies::default();
            };
            let first = part.children[pos];
            let body = select(raw, tree, first);
            // Apple Mail puts an inline image in the middle of the text as
            // mixed[text, image (inline), text]: the author's text ends in the last text part.
            let Some(kind) = inline_text_kind(raw, tree, first) else {
                return body;
            };
            let tail = part.children[pos + 1..]
                .iter()
                .copied()
                .take_while(|&c| {
                    inline_text_kind(raw, tree, c) == Some(kind) || is_inline(raw, tree, c)
                })
                .filter(|&c| inline_text_kind(raw, tree, c) == Some(kind))
                .last();
            match (tail, kind) {
                (Some(t), Kind::Text) => Bodies {
                    text: Some(t),
                    ..body
                },
                (Some(t), Kind::Html) => Bodies {
                    html: Some(t),
                    ..body
                },
                (None, _) => body,
            }
        }
        _ => Bodies::default(),
    }
}

/// The root of the multipart/related `idx`: named by `start`, else the first part; when that
/// first part is not of the declared root `type`, the first part that is (MHTML-style
/// ordering).
fn related_root(raw: &[u8], tree: &Tree, idx: usize) -> Option<usize> {
    let part = &tree.parts[idx];
    let ct = &part.ctype;
    let start = ct
        .param("start")
        .map(|p| p.value.trim().as_bytes().to_vec());
    let by_type = || {
        let want = ct.param("type")?.value.to_ascii_lowercase();
        let is = |c: &usize| {
            let t = &tree.parts[*c].ctype;
            format!("{}/{}", t.mtype, t.subtype) == want
        };
        let first = part.children.first()?;
        if is(first) {
            return Some(*first);
        }
        part.children.iter().copied().find(is)
    };
    start
        .and_then(|id| {
            part.children
                .iter()
                .copied()
                .find(|&c| content_id(raw, tree, c) == Some(id.as_slice()))
        })
        .or_else(by_type)
        .or_else(|| part.children.first().copied())
}

/// A text/plain or text/html leaf shown in line: no attachment disposition, no file name.
fn inline_text_kind(raw: &[u8], tree: &Tree, idx: usize) -> Option<Kind> {
    let p = &tree.parts[idx];
    let kind = match (p.ctype.mtype.as_str(), p.ctype.subtype.as_str()) {
        ("text", "plain") => Kind::Text,
        ("text", "html") => Kind::Html,
        _ => return None,
    };
    let named = p.ctype.params.iter().any(|x| x.name.starts_with("name"))
        || mime::find_field(raw, &p.fields, "content-disposition")
            .and_then(|f| mime::parse_content_type(raw, f.value.clone(), true))
            .is_some_and(|d| d.params.iter().any(|x| x.name.starts_with("filename")));
    (!p.attachment && !named).then_some(kind)
}

/// A leaf of a multipart/mixed that is a file rather than the message text: marked as an
/// attachment, a named text part (`name=` / `filename=` without a disposition is a file
/// too), or any leaf that is not text/plain or text/html (images, documents, message/*).
fn is_attached_file(raw: &[u8], tree: &Tree, idx: usize) -> bool {
    let p = &tree.parts[idx];
    p.attachment || (p.ctype.mtype != "multipart" && inline_text_kind(raw, tree, idx).is_none())
}

/// A part explicitly marked `Content-Disposition: inline` (an image shown in the text).
fn is_inline(raw: &[u8], tree: &Tree, idx: usize) -> bool {
    let p = &tree.parts[idx];
    p.ctype.mtype != "multipart"
        && mime::find_field(raw, &p.fields, "content-disposition")
            .and_then(|f| mime::parse_content_type(raw, f.value.clone(), true))
            .is_some_and(|d| d.mtype == "inline")
}

fn content_id<'r>(raw: &'r [u8], tree: &Tree, idx: usize) -> Option<&'r [u8]> {
    let f = mime::find_field(raw, &tree.parts[idx].fields, "content-id")?;
    Some(trim_ascii(&raw[f.value.clone()]))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    &b[s..e]
}

/// Byte edits of the raw message, applied in one pass. Edits never overlap: header edits sit
/// in a part's header, body edits in its body.
#[derive(Default)]
struct Edits(Vec<(Range<usize>, Vec<u8>)>);

impl Edits {
    fn insert(&mut self, at: usize, bytes: Vec<u8>) {
        self.0.push((at..at, bytes));
    }

    /// An insertion that goes before every other edit at the same offset.
    fn insert_first(&mut self, at: usize, bytes: Vec<u8>) {
        self.0.insert(0, (at..at, bytes));
    }

    fn replace(&mut self, range: Range<usize>, bytes: Vec<u8>) {
        self.0.push((range, bytes));
    }

    fn apply(mut self, raw: &[u8]) -> Vec<u8> {
        // Stable sort: insertions at the same offset keep their order.
        self.0.sort_by_key(|(r, _)| (r.start, r.end));
        let extra: usize = self.0.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(raw.len() + extra);
        let mut pos = 0;
        for (r, bytes) in &self.0 {
            out.extend_from_slice(&raw[pos..r.start]);
            out.extend_from_slice(bytes);
            pos = r.end;
        }
        out.extend_from_slice(&raw[pos..]);
        out
    }
}

/// What the stamping of one part's decoded content produced.
enum Change {
    /// Insert these bytes (in the part's charset) at this offset of the decoded content.
    Insert { at: usize, bytes: Vec<u8> },
    /// The whole decoded content, re-encoded (stateful charsets, or a switch to UTF-8).
    Replace(Vec<u8>),
}

fn stamp_part(
    raw: &[u8],
    part: &Part,
    kind: Kind,
    sig: &Signature,
    eol: &[u8],
    edits: &mut Edits,
) -> Result<(), Skip> {
    let body_raw = &raw[part.body.clone()];
    let cte = mime::find_field(raw, &part.fields, "content-transfer-encoding")
        .map(|f| mime::simple_value(raw, f.value.clone()))
        .unwrap_or_default();
    let decoded: Cow<[u8]> = match cte.as_str() {
        "" | "7bit" | "8bit" | "binary" => Cow::Borrowed(body_raw),
        "quoted-printable" => Cow::Owned(transfer::qp_decode(body_raw)),
        "base64" => Cow::Owned(
            transfer::base64_decode(body_raw)
                .ok_or_else(|| Skip::Malformed("invalid base64 body".into()))?,
        ),
        other => {
            return Err(Skip::Malformed(format!(
                "unsupported Content-Transfer-Encoding {other}"
            )))
        }
    };
    refuse_inline_pgp(&decoded)?;
    let flowed_sig;
    let sig = if kind == Kind::Text && is_flowed(&part.ctype) {
        flowed_sig = Signature::new("", flowed_text(&sig.text));
        &flowed_sig
    } else {
        sig
    };
    let msg_eol = if eol == b"\r\n" { "\r\n" } else { "\n" };
    let label = part.ctype.param("charset").map(|p| p.value.as_str());
    let charset = Charset::classify(label, &decoded);
    let (change, relabel) = if charset.needs_unicode() {
        change_unicode(&decoded, charset, kind, sig, msg_eol)?
    } else {
        // HTML in a 7bit part takes the signature as ASCII with character references, so the
        // part keeps its encoding and every existing byte.
        let seven_bit = matches!(cte.as_str(), "" | "7bit");
        let charset = if seven_bit && kind == Kind::Html && charset != Charset::Utf7 {
            Charset::Ascii
        } else {
            charset
        };
        change_bytes(&decoded, charset, kind, sig, msg_eol)
    };

    // Body edits are collected apart: in a header-only part they share their offset with
    // header additions, and must come after them and the new empty line.
    let header_edits = edits;
    let edits = &mut Edits::default();
    // Re-apply the transfer encoding.
    let body_eol: &[u8] =
        if body_raw.windows(2).any(|w| w == b"\r\n") || body_raw.is_empty() && eol == b"\r\n" {
            b"\r\n"
        } else if body_raw.contains(&b'\n') {
            b"\n"
        } else {
            eol
        };
    let mut new_cte = None;
    match (cte.as_str(), change) {
        ("quoted-printable", Change::Insert { at, bytes }) => {
            let (off, line_start) = transfer::qp_encoded_offset(body_raw, at);
            let mut enc = Vec::with_capacity(bytes.len() * 2);
            if !line_start {
                enc.extend_from_slice(b"=");
                enc.extend_from_slice(body_eol);
            }
            enc.extend_from_slice(&transfer::qp_encode(&bytes, body_eol));
            edits.insert(part.body.start + off, enc);
        }
        ("quoted-printable", Change::Replace(new)) => {
            edits.replace(part.body.clone(), transfer::qp_encode(&new, body_eol));
        }
        ("base64", change) => {
            let new = apply_change(&decoded, change);
            let line_len = transfer::base64_line_len(body_raw);
            let final_eol = body_raw.ends_with(b"\n");
            edits.replace(
                part.body.clone(),
                transfer::base64_encode(&new, line_len, body_eol, final_eol),
            );
        }
        (cte, change) => {
            // 7bit, 8bit, binary: the decoded content is the raw body.
            let seven_bit = !matches!(cte, "8bit" | "binary");
            let adds_8bit = match &change {
                Change::Insert { bytes, .. } => !bytes.is_ascii(),
                Change::Replace(new) => !new.is_ascii(),
            };
            // A line made longer than SMTP's 998 octets by the insertion would be cut or
            // refused on the way: quoted-printable keeps lines short (binary has no limit).
            let overlong = cte != "binary" && makes_overlong_line(&decoded, &change);
            if seven_bit && adds_8bit || overlong {
                // A 7bit part that must now carry non-ASCII becomes quoted-printable.
                let new = apply_change(&decoded, change);
                edits.replace(part.body.clone(), transfer::qp_encode(&new, body_eol));
                new_cte = Some("quoted-printable");
            } else {
                match change {
                    Change::Insert { at, bytes } => edits.insert(part.body.start + at, bytes),
                    Change::Replace(new) => edits.replace(part.body.clone(), new),
                }
            }
        }
    }
    let body_edits = std::mem::take(&mut edits.0);
    let edits = header_edits;
    let mut new_fields = Vec::new();
    if let Some(cte) = new_cte {
        set_header(
            raw,
            part,
            "Content-Transfer-Encoding",
            cte,
            &mut new_fields,
            edits,
        );
    }
    if relabel {
        set_charset_utf8(raw, part, &mut new_fields, edits);
    }
    // Whether the header now ends with a line ending (`None`: with its empty line too).
    let mut header_ends = match part.fields.last() {
        Some(_) => Some(raw[..part.header_end].ends_with(b"\n")),
        None => Some(true),
    };
    if !new_fields.is_empty() {
        header_ends = add_fields(raw, part, &new_fields, eol, edits);
    }
    if !part.has_separator {
        // A header-only part: end its last line if needed, then the empty line, then the body.
        let mut sep = Vec::with_capacity(4);
        match header_ends {
            Some(false) => {
                sep.extend_from_slice(eol);
                sep.extend_from_slice(eol);
            }
            Some(true) => sep.extend_from_slice(eol),
            None => {}
        }
        edits.insert(part.body.start, sep);
    }
    edits.0.extend(body_edits);
    Ok(())
}

fn is_flowed(ct: &mime::ContentType) -> bool {
    ct.param("format")
        .is_some_and(|p| p.value.trim().eq_ignore_ascii_case("flowed"))
}

/// The signature text as fixed lines of a format=flowed body (RFC 3676): no trailing spaces
/// (they would join a line to the next; the "-- " separator keeps its own), and lines that
/// start with a space, ">" or "From " are space-stuffed so they read as written.
fn flowed_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in with_line_ending(text, "\n").lines() {
        let line = if line == "-- " {
            line
        } else {
            line.trim_end_matches([' ', '\t'])
        };
        if line.starts_with([' ', '>']) || line.starts_with("From ") {
            out.push(' ');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// SMTP's line limit, without the line ending (RFC 5322 2.1.1).
const MAX_LINE: usize = 998;

/// Whether inserting creates a line over [`MAX_LINE`] that was not that long before.
/// Measures by walking the bytes, never by slicing between line-break positions: an
/// insertion of any line structure (none, one or many breaks) at any offset is safe.
fn makes_overlong_line(decoded: &[u8], change: &Change) -> bool {
    let Change::Insert { at, bytes } = change else {
        return false;
    };
    let (before, after) = decoded.split_at((*at).min(decoded.len()));
    // The line the insertion lands in: its part before and after the insertion point.
    let head = before.rsplit(|b| *b == b'\n').next().unwrap_or_default();
    let tail = after.split(|b| *b == b'\n').next().unwrap_or_default();
    let longest = longest_line(head.iter().chain(bytes).chain(tail));
    longest > MAX_LINE && longest > longest_line(head.iter().chain(tail))
}

/// The longest line of a byte stream, without its line ending (CRLF or LF).
fn longest_line<'a>(bytes: impl Iterator<Item = &'a u8>) -> usize {
    let (mut longest, mut cur, mut cr) = (0, 0, false);
    for &b in bytes {
        if b == b'\n' {
            longest = longest.max(cur - usize::from(cr));
            (cur, cr) = (0, false);
        } else {
            cur += 1;
            cr = b == b'\r';
        }
    }
    longest.max(cur - usize::from(cr))
}

fn apply_change(decoded: &[u8], change: Change) -> Vec<u8> {
    match change {
        Change::Insert { at, bytes } => {
            let mut v = Vec::with_capacity(decoded.len() + bytes.len());
            v.extend_from_slice(&decoded[..at]);
            v.extend_from_slice(&bytes);
            v.extend_from_slice(&decoded[at..]);
            v
        }
        Change::Replace(v) => v,
    }
}

/// Inline PGP in a body we would stamp: changing it would break the signature or the armor.
fn refuse_inline_pgp(decoded: &[u8]) -> Result<(), Skip> {
    let mut from = 0;
    while let Some(at) = place::find_ci(decoded, b"-----BEGIN PGP ", from) {
        let rest = &decoded[at + 15..];
        if rest.starts_with(b"SIGNED MESSAGE-----") {
            return Err(Skip::Signed);
        }
        if rest.starts_with(b"MESSAGE-----") {
            return Err(Skip::Encrypted);
        }
        from = at + 1;
    }
    Ok(())
}

/// The line ending used inside decoded content.
fn content_eol(decoded: &[u8], default: &'static str) -> &'static str {
    match memchr::memchr(b'\n', decoded) {
        Some(i) if i > 0 && decoded[i - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => default,
    }
}

/// The text to insert at `at` (decoded content, as UTF-8 text), with its spacing.
fn fragment(content: &[u8], at: usize, kind: Kind, sig: &Signature, eol: &'static str) -> String {
    let le = content_eol(content, eol);
    match kind {
        // Whatever breaks the template and the directory values brought (LF, CRLF, a lone
        // CR), the signature takes the part's own line ending.
        Kind::Html => with_line_ending(&sig.html, le),
        Kind::Text => {
            let mut body = with_line_ending(sig.text.trim_end_matches(['\r', '\n']), le);
            body.push_str(le);
            let before = &content[..at];
            let mut out = String::new();
            // The signature starts after a blank line, whatever the text before ends with.
            if !before.is_empty() {
                if !before.ends_with(b"\n") {
                    out.push_str(le);
                    out.push_str(le);
                } else if !(before.ends_with(b"\n\n") || before.ends_with(b"\n\r\n")) {
                    out.push_str(le);
                }
            }
            out.push_str(&body);
            if at < content.len() {
                // Keep the quote apart from the signature.
                out.push_str(le);
            }
            out
        }
    }
}

/// `text` with every line break (CRLF, LF, or a lone CR) written as `le`.
fn with_line_ending(text: &str, le: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        out.push_str(&rest[..i]);
        out.push_str(le);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    out.push_str(rest);
    out
}

fn position(content: &[u8], kind: Kind) -> usize {
    match kind {
        Kind::Html => place::html_position(content),
        Kind::Text => place::text_position(content).unwrap_or(content.len()),
    }
}

/// ASCII-compatible charsets: find the spot in the bytes and splice the encoded signature.
/// Returns the change and whether the part must be relabelled as UTF-8.
fn change_bytes(
    decoded: &[u8],
    charset: Charset,
    kind: Kind,
    sig: &Signature,
    eol: &'static str,
) -> (Change, bool) {
    let at = position(decoded, kind);
    let text = fragment(decoded, at, kind, sig, eol);
    let encoded = match kind {
        Kind::Html => charset.encode_html(&text),
        Kind::Text => charset.encode_exact(&text),
    };
    if let Some(bytes) = encoded {
        return (Change::Insert { at, bytes }, false);
    }
    // Text the charset cannot carry: move the part to UTF-8 when its bytes allow it.
    match charset {
        Charset::Ascii if std::str::from_utf8(decoded).is_ok() => (
            Change::Insert {
                at,
                bytes: text.into_bytes(),
            },
            true,
        ),
        Charset::Compatible(_) => match charset.decode(decoded) {
            Some(s) => {
                // Recompute the offset in the UTF-8 text: decode the prefix alone.
                let prefix = charset.decode(&decoded[..at]).unwrap_or_default();
                let mut v = Vec::with_capacity(s.len() + text.len());
                v.extend_from_slice(prefix.as_bytes());
                v.extend_from_slice(text.as_bytes());
                v.extend_from_slice(&s.as_bytes()[prefix.len().min(s.len())..]);
                (Change::Replace(v), true)
            }
            None => (
                Change::Insert {
                    at,
                    bytes: charset.encode_lossy(&text),
                },
                false,
            ),
        },
        _ => (
            Change::Insert {
                at,
                bytes: charset.encode_lossy(&text),
            },
            false,
        ),
    }
}

/// UTF-16, ISO-2022-JP, UTF-7: decode, insert, re-encode.
fn change_unicode(
    decoded: &[u8],
    charset: Charset,
    kind: Kind,
    sig: &Signature,
    eol: &'static str,
) -> Result<(Change, bool), Skip> {
    let s = charset
        .decode(decoded)
        .ok_or_else(|| Skip::Malformed("body does not match its charset".into()))?;
    let at = position(s.as_bytes(), kind);
    let text = fragment(s.as_bytes(), at, kind, sig, eol);
    if let Charset::Utf16 { be, bom } = charset {
        // Splice: the existing code units stay as they are.
        let units_before = s[..at].encode_utf16().count();
        let offset = usize::from(bom) * 2 + units_before * 2;
        let bytes = charset::encode_utf16(&text, be, bom);
        return Ok((Change::Insert { at: offset, bytes }, false));
    }
    let mut new = String::with_capacity(s.len() + text.len());
    new.push_str(&s[..at]);
    new.push_str(&text);
    new.push_str(&s[at..]);
    let encoded = match kind {
        Kind::Html => charset.encode_html(&new),
        Kind::Text => charset.encode_exact(&new),
    };
    Ok(match encoded {
        Some(bytes) => (Change::Replace(bytes), false),
        None => (Change::Replace(new.into_bytes()), true),
    })
}

/// Set a header field of a part to `value`, keeping its position and name spelling; a
/// missing field is queued in `new_fields`.
fn set_header(
    raw: &[u8],
    part: &Part,
    name: &str,
    value: &str,
    new_fields: &mut Vec<String>,
    edits: &mut Edits,
) {
    if let Some(f) = mime::find_field(raw, &part.fields, name) {
        edits.replace(f.value.clone(), format!(" {value}").into_bytes());
    } else {
        new_fields.push(format!("{name}: {value}"));
    }
}

/// Append fields at the end of a part's header. Returns what [`stamp_part`] needs to know
/// of a header-only part: `Some(true)`, the added fields end with a line ending; `None`, the
/// empty line after them was written too.
fn add_fields(
    raw: &[u8],
    part: &Part,
    fields: &[String],
    eol: &[u8],
    edits: &mut Edits,
) -> Option<bool> {
    let mut bytes = Vec::new();
    // MIME fields in a message that had none need MIME-Version too.
    if part.start == bom_len(raw) && mime::find_field(raw, &part.fields, "mime-version").is_none() {
        bytes.extend_from_slice(b"MIME-Version: 1.0");
        bytes.extend_from_slice(eol);
    }
    for f in fields {
        bytes.extend_from_slice(f.as_bytes());
        bytes.extend_from_slice(eol);
    }
    match part.fields.last() {
        Some(last) => {
            // After the last field's line ending.
            let end = last.value.end;
            // Within the part: a header-only part's last line ends at the part's end (the
            // line break after it belongs to the next delimiter).
            let rest = &raw[end..part.header_end.max(end)];
            let le = if rest.starts_with(b"\r\n") {
                2
            } else {
                usize::from(rest.starts_with(b"\n"))
            };
            if le == 0 {
                // The last line has no line ending (a header-only part): end it first.
                bytes.splice(0..0, eol.iter().copied());
            }
            edits.insert(end + le, bytes);
            Some(true)
        }
        None => {
            // A part with no header at all: give it one, then the separator line.
            let separated = part.header_end == part.start;
            if separated {
                bytes.extend_from_slice(eol);
            }
            edits.insert(part.start, bytes);
            if separated {
                None
            } else {
                Some(true)
            }
        }
    }
}

/// Make the part's charset UTF-8: replace the parameter, or add one (and a Content-Type).
fn set_charset_utf8(raw: &[u8], part: &Part, new_fields: &mut Vec<String>, edits: &mut Edits) {
    if let Some(p) = part.ctype.param("charset") {
        edits.replace(p.range.clone(), b"utf-8".to_vec());
        return;
    }
    match mime::find_field(raw, &part.fields, "content-type") {
        Some(f) => {
            let v = &raw[f.value.clone()];
            let end = f.value.start
                + v.iter()
                    .rposition(|b| !b.is_ascii_whitespace() && *b != b';')
                    .map_or(0, |p| p + 1);
            edits.insert(end, b"; charset=utf-8".to_vec());
        }
        None => {
            let subtype = &part.ctype.subtype;
            new_fields.push(format!("Content-Type: text/{subtype}; charset=utf-8"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `cargo fuzz`: a message without a header got its MIME fields ahead of the trace
    /// header and the trace header ended up in the body, so a second pass stamped again.
    #[test]
    fn headerless_messages_are_stamped_once() {
        let sig = Signature::new("<p>sig</p>", "-- \nJosé");
        for raw in [&b""[..], b"\n", b"just a body line\n", b"\r\nbody\r\n"] {
            let Ok(s) = stamp(raw, &sig, &Options::default()) else {
                continue;
            };
            assert!(s.message.starts_with(b"X-Sigstamp: stamped"), "{raw:?}");
            assert_eq!(
                stamp(&s.message, &sig, &Options::default()),
                Err(Skip::AlreadyStamped),
                "{raw:?}"
            );
        }
    }
}

#[cfg(test)]
mod line_ending_tests {
    use super::*;

    /// Issue 11, finding 9: a bounce is recognised whatever its line endings and however
    /// its null path is written; a CR-only message is read line by line (over SMTP it still
    /// ends in CRLF).
    #[test]
    fn null_reverse_path_is_always_recognised() {
        let bounces: &[&[u8]] = &[
            b"Return-Path: <>\rFrom: a@b.example\r\rbody\r",
            b"Return-Path: <>\rFrom: a@b.example\r\rbody\r\n",
            b"From: a@b.example\r\nReturn-Path:\r\n <>\r\n\r\nbody\r\n",
            b"Return-Path: < > (bounce)\nFrom: a@b.example\n\nbody\n",
            b"\xEF\xBB\xBFReturn-Path:<>\n\nbody\n",
        ];
        let sig = Signature::new("<p>s</p>", "-- \ns");
        for raw in bounces {
            assert_eq!(precheck(raw), Err(Skip::NullSender), "{raw:?}");
            assert_eq!(stamp(raw, &sig, &Options::default()), Err(Skip::NullSender));
        }
        assert_eq!(precheck(b"Return-Path: <a@b>\r\n\r\nx\r\n"), Ok(()));
        assert!(!is_null_path(b" <x> "));
        let raw = b"From: Ann <ann@b.example>\rSubject: s\r\rHi\r\n";
        assert_eq!(from_address(raw).as_deref(), Some("ann@b.example"));
        let out = stamp(raw, &sig, &Options::default()).unwrap().message;
        assert!(out.starts_with(
            b"X-Sigstamp: stamped\r\nFrom: Ann <ann@b.example>\r\nSubject: s\r\n\r\nHi\r\n"
        ));
    }

    /// Issue 11, finding 2: the signature takes the part's line ending, whatever breaks the
    /// template or a value brought (LF, CRLF, lone CR).
    #[test]
    fn signature_takes_the_parts_line_ending() {
        let sig = Signature::new("<p>a</p>\n<p>b</p>\r<p>c</p>\r\n", "-- \rA\nB\r\nC\n");
        for eol in ["\n", "\r\n"] {
            for ct in ["text/plain", "text/html"] {
                let raw = format!("Content-Type: {ct}{eol}{eol}line one{eol}<body>x</body>{eol}");
                let out = stamp(raw.as_bytes(), &sig, &Options::default())
                    .unwrap()
                    .message;
                let lines = out.split(|b| *b == b'\n').count();
                let breaks = if eol == "\n" {
                    assert!(!out.contains(&b'\r'), "{ct} {eol:?}: CR in LF message");
                    lines
                } else {
                    let crlf = out.windows(2).filter(|w| w == b"\r\n").count();
                    assert_eq!(
                        out.iter().filter(|b| **b == b'\r').count(),
                        crlf,
                        "{ct}: bare CR"
                    );
                    crlf + 1
                };
                assert_eq!(breaks, lines, "{ct} {eol:?}: bare LF");
            }
        }
        assert_eq!(
            with_line_ending("a\rb\r\nc\nd\r", "\r\n"),
            "a\r\nb\r\nc\r\nd\r\n"
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn multipart(parts: usize) -> Vec<u8> {
        let mut m =
            b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        m.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\nHi\r\n");
        for _ in 1..parts {
            m.extend_from_slice(b"--b\r\n");
        }
        m.extend_from_slice(b"--b--\r\n");
        m
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut m = b"From: a@b.example\r\n".to_vec();
        for d in 0..depth {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{d}\r\n\r\n--b{d}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nHi\r\n");
        for d in (0..depth).rev() {
            m.extend_from_slice(format!("--b{d}--\r\n").as_bytes());
        }
        m
    }

    fn fields(n: usize) -> Vec<u8> {
        let mut m = b"From: a@b.example\r\n".to_vec();
        for i in 1..n {
            m.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
        }
        m.extend_from_slice(b"\r\nHi\r\n");
        m
    }

    /// Issue 11, finding 8: the limits, at and one past each.
    #[test]
    fn past_a_limit_the_message_is_too_complex() {
        let sig = Signature::new("<p>s</p>", "-- \ns");
        let run = |raw: Vec<u8>| stamp(&raw, &sig, &Options::default()).map(|_| ());
        // The message itself and its parts: 10,000 in all.
        assert_eq!(run(multipart(mime::MAX_PARTS - 1)), Ok(()));
        assert_eq!(run(multipart(mime::MAX_PARTS)), Err(Skip::TooComplex));
        assert_eq!(run(multipart(4_000_000 / 100)), Err(Skip::TooComplex));
        assert_eq!(run(nested(mime::MAX_DEPTH)), Ok(()));
        assert_eq!(run(nested(mime::MAX_DEPTH + 1)), Err(Skip::TooComplex));
        assert_eq!(run(fields(mime::MAX_FIELDS)), Ok(()));
        assert_eq!(run(fields(mime::MAX_FIELDS + 1)), Err(Skip::TooComplex));
        assert_eq!(Skip::TooComplex.label(), "too_complex");
    }
}

#[cfg(test)]
mod flowed_tests {
    use super::*;

    /// A format=flowed body: the signature's lines are fixed lines (a template's trailing
    /// spaces would join them), "-- " stays, and a line starting with ">" is space-stuffed.
    #[test]
    fn signature_lines_stay_fixed_in_flowed_text() {
        let sig = Signature::new("", "-- \nAna Silva  \n> Contoso \nFrom Lisbon");
        for params in ["format=flowed", "format=\"Flowed\"; delsp=yes"] {
            let raw = format!(
                "Content-Type: text/plain; charset=us-ascii; {params}\n\nA line that \nflows on.\n"
            );
            let out = stamp(raw.as_bytes(), &sig, &Options::default()).unwrap();
            let body = String::from_utf8(out.message).unwrap();
            let body = body.split_once("\n\n").unwrap().1;
            assert_eq!(
                body, "A line that \nflows on.\n\n-- \nAna Silva\n > Contoso\n From Lisbon\n",
                "{params}"
            );
        }
        // Not flowed: the text goes in as written.
        let raw = b"Content-Type: text/plain\n\nHi\n";
        let out = stamp(raw, &sig, &Options::default()).unwrap();
        assert!(String::from_utf8(out.message)
            .unwrap()
            .ends_with("Ana Silva  \n> Contoso \nFrom Lisbon\n"));
    }
}

#[cfg(test)]
mod line_length_tests {
    use super::*;

    /// An unencoded HTML part whose last line is close to the limit: the signature would make
    /// it longer than 998 octets, so the part goes quoted-printable (lines ≤ 76) instead.
    #[test]
    fn insertion_never_creates_overlong_lines() {
        let sig = Signature::new(format!("<div>{}</div>", "x".repeat(60)), "-- \nA");
        for (cte, width, want_qp) in [
            ("7bit", 950, true),
            ("8bit", 950, true),
            ("7bit", 100, false),
        ] {
            let raw = format!(
                "Content-Type: text/html\nContent-Transfer-Encoding: {cte}\n\n<html><body><p>{}</p></body></html>\n",
                "y".repeat(width)
            );
            let out = stamp(raw.as_bytes(), &sig, &Options::default()).unwrap();
            let text = String::from_utf8(out.message).unwrap();
            assert_eq!(
                text.contains("Content-Transfer-Encoding: quoted-printable"),
                want_qp,
                "{cte} {width}"
            );
            assert!(text.lines().all(|l| l.len() <= 998), "{cte} {width}");
            let body = text.split_once("\n\n").unwrap().1;
            let decoded = if want_qp {
                transfer::qp_decode(body.as_bytes())
            } else {
                body.as_bytes().to_vec()
            };
            assert!(String::from_utf8(decoded).unwrap().contains(&format!(
                "{}</p><div>{}</div></body>",
                "y".repeat(width),
                "x".repeat(60)
            )));
        }
    }

    /// Issue 11, finding 11: an HTML signature of exactly two lines (one line break) made
    /// the overlong-line check slice `first + 1..last` with first == last + … and panic on
    /// every 8bit HTML part. Any line structure of the signature, at any width, must stamp.
    #[test]
    fn signatures_of_any_line_structure_never_panic() {
        let shapes = [
            "<p>a</p>",
            "<p>a</p>\n<p>b</p>",
            "<p>a</p>\r\n<p>b</p>",
            "\n",
            "\n\n",
            "<p>a</p>\n",
            "\n<p>a</p>",
            "<p>a</p>\n\n<p>b</p>\n<p>c</p>",
            "\r",
            "",
        ];
        for html in shapes {
            for cte in ["7bit", "8bit", "binary"] {
                for width in [0, 10, 990, 1200] {
                    for eol in ["\n", "\r\n"] {
                        let raw = format!(
                            "Content-Type: text/html; charset=utf-8{eol}Content-Transfer-Encoding: {cte}{eol}{eol}<p>{}\u{e9}</p>{eol}",
                            "y".repeat(width)
                        );
                        let sig = Signature::new(html, "-- \nA");
                        let out = stamp(raw.as_bytes(), &sig, &Options::default());
                        assert!(out.is_ok(), "{html:?} {cte} {width}: {out:?}");
                    }
                }
            }
        }
        let change = |at, bytes: &[u8]| Change::Insert {
            at,
            bytes: bytes.to_vec(),
        };
        assert!(!makes_overlong_line(b"ab\ncd", &change(3, b"x\ny")));
        assert!(makes_overlong_line(&[b'a'; 990], &change(990, &[b'b'; 20])));
        assert!(!makes_overlong_line(&[b'a'; 990], &change(990, b"\nbb")));
        // Already overlong before: not made so by the insertion.
        assert!(!makes_overlong_line(&[b'a'; 1000], &change(0, b"x\n")));
    }
}

#[cfg(test)]
mod header_only_tests {
    use super::*;

    /// A part that is all header (no empty line, often no final line break) gets its fields,
    /// then the empty line, then the body: in that order, inside the part.
    #[test]
    fn header_only_parts_get_header_then_body() {
        let sig = Signature::new("<p>sig</p>", "-- \nJosé");
        let cases: &[&[u8]] = &[
            b"",
            b"Content-Type: text/html",
            b"From: a@b\nContent-Type: text/plain",
            b"From: a@b\nContent-Type: text/plain\n",
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b--\n",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n--b--\r\n",
        ];
        for raw in cases {
            let s = stamp(raw, &sig, &Options::default()).unwrap();
            let shown = String::from_utf8_lossy(&s.message).into_owned();
            let out = &s.message;
            let tree = Tree::parse(out, 0).unwrap();
            let bodies = select(out, &tree, 0);
            for (idx, kind) in [(bodies.text, Kind::Text), (bodies.html, Kind::Html)] {
                let Some(idx) = idx else { continue };
                let part = &tree.parts[idx];
                assert!(part.has_separator, "{shown}");
                let body = &out[part.body.clone()];
                let cte = mime::find_field(out, &part.fields, "content-transfer-encoding")
                    .map(|f| mime::simple_value(out, f.value.clone()));
                let decoded = match cte.as_deref() {
                    Some("quoted-printable") => transfer::qp_decode(body),
                    _ => body.to_vec(),
                };
                let want: &[u8] = match kind {
                    Kind::Text => "José".as_bytes(),
                    Kind::Html => b"<p>sig</p>",
                };
                assert!(place::find_ci(&decoded, want, 0).is_some(), "{shown}");
                // Every header line of the part is a field: nothing spilled into the header.
                let header = &out[part.start..part.header_end];
                for line in header.split(|b| *b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    assert!(line.is_empty() || line.contains(&b':'), "{shown}");
                }
            }
        }
    }
}

#[cfg(test)]
mod image_tests {
    use super::*;

    fn sig() -> Signature {
        let mut s = Signature::new("<img src=\"cid:ab@sigstamp\">", "-- \nx");
        s.images.push(InlineImage {
            cid: "ab@sigstamp".into(),
            content_type: "image/png".into(),
            filename: "a.png".into(),
            bytes: b"\x89PNG\r\n\x1a\n".to_vec().into(),
        });
        s
    }

    /// Odd single-part HTML messages: each is stamped once, with its image in a related that
    /// our own scanner parses back, or without images and the reason.
    #[test]
    fn odd_single_part_html_messages() {
        let cases: &[(&[u8], bool)] = &[
            (b"Content-Type: text/html\n\n<p>x</p>", true),
            (b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n", true),
            (b"From: a@b\nContent-Type: text/html", true),
            (b"From a@b Mon Jan 1 00:00:00 2026\nContent-Type: text/html\n\n<p>x</p>\n", true),
            (b"\xEF\xBB\xBFContent-Type: text/html\nContent-Transfer-Encoding: 8bit\n\n\xC3\xA9\n", true),
            (b"Subject: s\nContent-type: TEXT/HTML; charset=us-ascii\nX-After: 1\n\n<p>x</p>\n", true),
        ];
        for (raw, images) in cases {
            let s = stamp(raw, &sig(), &Options::default()).unwrap();
            let shown = String::from_utf8_lossy(&s.message).into_owned();
            assert_eq!(s.html_parts, 1, "{shown}");
            assert_eq!(
                (s.images == 1, s.images_dropped.is_none()),
                (*images, *images),
                "{shown}"
            );
            assert_eq!(
                stamp(&s.message, &sig(), &Options::default()),
                Err(Skip::AlreadyStamped)
            );
            // The result is a related holding the HTML and the image.
            let start = bom_len(&s.message);
            let tree = Tree::parse(&s.message, start).unwrap();
            let top = &tree.parts[0];
            assert_eq!(
                (top.ctype.mtype.as_str(), top.ctype.subtype.as_str()),
                ("multipart", "related"),
                "{shown}"
            );
            let kids: Vec<_> = top
                .children
                .iter()
                .map(|&c| tree.parts[c].ctype.subtype.as_str())
                .collect();
            assert_eq!(kids, ["html", "png"], "{shown}");
            // 8bit content keeps an 8bit label on the related too.
            if raw.windows(4).any(|w| w == b"8bit") {
                assert!(shown.contains("multipart/related; type=\"text/html\";\n\tboundary=\"=_sigstamp_rel_0\"\nContent-Transfer-Encoding: 8bit\n"), "{shown}");
            }
        }
    }
}
