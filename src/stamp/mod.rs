//! The stamping core: a pure function from (raw message, rendered signature) to the stamped
//! message, or the unchanged message with a reason. No I/O, no allocation beyond the output.
//!
//! Guarantee: only the body of the stamped text part(s) may change (and, where needed, that
//! part's Content-Transfer-Encoding and charset parameter), plus one trace header
//! ([`TRACE_HEADER`]) prepended to the message. Every other byte stays identical.

mod bottom;
pub mod charset;
mod checks;
mod edits;
mod header;
mod insert;
mod mime;
mod part;
pub(crate) mod place;
mod raw;
mod reencode;
mod related;
mod select;
pub mod transfer;

#[cfg(test)]
mod tests;

use checks::{precheck_fields, refuse_protected};
use edits::Edits;
use mime::Tree;
use part::stamp_part;
use raw::{bom_len, cr_lines, has_lone_cr, message_eol};
use select::{select, Bodies, Kind};
use std::fmt;

pub use bottom::{stamp_with_bottom, Place};
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
    /// `[stamp] auto_replies`: `Auto-Submitted: auto-replied` (out-of-office) is stamped;
    /// every other `Auto-Submitted` value still is not.
    pub auto_replies: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            trace_value: "stamped".into(),
            auto_replies: false,
        }
    }
}

impl crate::config::StampConfig {
    /// The stamping core's options for this `[stamp]` section.
    pub fn options(&self) -> Options {
        Options {
            auto_replies: self.auto_replies,
            ..Default::default()
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
    let tree = parse_stampable(raw, start, opts)?;
    let bodies = select(raw, &tree, 0);
    if bodies.text.is_none() && bodies.html.is_none() {
        return Err(Skip::NoTextBody);
    }
    let eol = message_eol(raw);
    let mut edits = Edits::default();
    let counts = stamp_bodies(raw, &tree, bodies, sig, eol, &mut edits)?;
    // Images go with the stamped HTML; any trouble leaves them out, never the signature.
    let mut images_dropped = None;
    let plan =
        plan_images(raw, &tree, bodies, counts, sig, eol, &mut edits).unwrap_or_else(|why| {
            images_dropped = Some(why);
            related::Plan::Queued(0)
        });
    // First at `start`, ahead of any field added to a header-less message at the same offset.
    edits.insert_first(start, trace_field(opts, eol));
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
        html_parts: counts.html,
        text_parts: counts.text,
        images,
        images_dropped,
    })
}

/// The MIME tree of a message that may be stamped, or why it may not.
fn parse_stampable(raw: &[u8], start: usize, opts: &Options) -> Result<Tree, Skip> {
    let (fields, body_start) = mime::parse_header(raw, start, raw.len());
    precheck_fields(raw, &fields, opts.auto_replies)?;
    if has_lone_cr(&raw[start..body_start]) {
        // Some lines break at a lone CR, others at LF: reading on would glue header lines.
        return Err(Skip::Malformed("lone CR line breaks in the header".into()));
    }
    let tree = Tree::parse(raw, start)?;
    if tree.parts[0].ctype_invalid {
        return Err(Skip::InvalidContentType);
    }
    refuse_protected(&tree, 0)?;
    Ok(tree)
}

/// How many bodies of each kind took the signature.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    text: usize,
    html: usize,
}

/// Queue the signature's edits into the selected bodies. At least one must take it.
fn stamp_bodies(
    raw: &[u8],
    tree: &Tree,
    bodies: Bodies,
    sig: &Signature,
    eol: &[u8],
    edits: &mut Edits,
) -> Result<Counts, Skip> {
    let mut counts = Counts::default();
    let mut first_refusal = None;
    for (idx, kind) in [(bodies.text, Kind::Text), (bodies.html, Kind::Html)] {
        let Some(idx) = idx else { continue };
        let part = &tree.parts[idx];
        match stamp_part(raw, part, kind, sig, eol, Place::Main) {
            Ok(part_edits) => {
                edits.add_part(part_edits);
                match kind {
                    Kind::Text => counts.text += 1,
                    Kind::Html => counts.html += 1,
                }
            }
            // A signed or encrypted body anywhere means the whole message is left alone.
            Err(s @ (Skip::Signed | Skip::Encrypted)) => return Err(s),
            Err(s) => first_refusal = first_refusal.or(Some(s)),
        }
    }
    if counts.html + counts.text == 0 {
        return Err(first_refusal.unwrap_or(Skip::NoTextBody));
    }
    Ok(counts)
}

/// Queue the image parts beside the one stamped HTML body, if the signature has images.
fn plan_images(
    raw: &[u8],
    tree: &Tree,
    bodies: Bodies,
    counts: Counts,
    sig: &Signature,
    eol: &[u8],
    edits: &mut Edits,
) -> Result<related::Plan, ImagesDropped> {
    match (bodies.html, counts.html, sig.images.is_empty()) {
        (Some(html), 1, false) => related::plan(raw, tree, html, &sig.images, eol, edits),
        _ => Ok(related::Plan::Queued(0)),
    }
}

/// The trace header field, with its line ending.
fn trace_field(opts: &Options, eol: &[u8]) -> Vec<u8> {
    let mut trace = Vec::with_capacity(TRACE_HEADER.len() + opts.trace_value.len() + 4);
    trace.extend_from_slice(TRACE_HEADER.as_bytes());
    trace.extend_from_slice(b": ");
    trace.extend_from_slice(opts.trace_value.as_bytes());
    trace.extend_from_slice(eol);
    trace
}

/// Cheap checks that need no signature: trace header, null sender, Auto-Submitted.
/// The pipeline runs these before the directory lookup; [`stamp`] runs them too.
pub fn precheck(raw: &[u8], opts: &Options) -> Result<(), Skip> {
    let raw = &*cr_lines(raw);
    let start = bom_len(raw);
    let (fields, _) = mime::parse_header(raw, start, raw.len());
    precheck_fields(raw, &fields, opts.auto_replies)
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
    let v = String::from_utf8_lossy(raw[f.value.clone()].trim_ascii()).into_owned();
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
