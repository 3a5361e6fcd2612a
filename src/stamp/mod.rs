//! The stamping core: a pure function from (raw message, rendered signature) to the stamped
//! message, or the unchanged message with a reason. No I/O, no allocation beyond the output.
//!
//! Guarantee: only the body of the stamped text part(s) may change (and, where needed, that
//! part's Content-Transfer-Encoding and charset parameter), plus one trace header
//! ([`TRACE_HEADER`]) prepended to the message. Every other byte stays identical.

use std::fmt;

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
        }
    }
}

/// Stamp `raw` with `sig`. Returns the stamped message, or why it stays unchanged.
pub fn stamp(raw: &[u8], sig: &Signature, opts: &Options) -> Result<Stamped, Skip> {
    let _ = (raw, sig, opts);
    Err(Skip::NoTextBody)
}

/// Cheap checks that need no signature: trace header, null sender, Auto-Submitted.
/// The pipeline runs these before the directory lookup; [`stamp`] runs them too.
pub fn precheck(raw: &[u8]) -> Result<(), Skip> {
    let _ = raw;
    Ok(())
}

/// The address of the From header (lowercased as written, without display name), if any.
pub fn from_address(raw: &[u8]) -> Option<String> {
    let _ = raw;
    None
}
