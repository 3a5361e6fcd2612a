//! The signature in a part's decoded content: where it goes, with what spacing and line
//! endings, and in which charset.

use super::bottom::Place;
use super::charset::{self, Charset};
use super::mime;
use super::place;
use super::reencode::Body;
use super::select::Kind;
use super::{Signature, Skip};
use std::borrow::Cow;

/// The signature's change to a part's decoded content.
pub(super) struct Insertion {
    pub(super) change: Change,
    /// The part must now be labelled `charset=utf-8`.
    pub(super) relabel_utf8: bool,
}

impl Insertion {
    /// The part keeps its charset label.
    fn kept(change: Change) -> Self {
        Insertion {
            change,
            relabel_utf8: false,
        }
    }

    /// The part's content is now UTF-8.
    fn utf8(change: Change) -> Self {
        Insertion {
            change,
            relabel_utf8: true,
        }
    }
}

/// Put `sig` into the decoded content of `part` (a body of `kind`) at `place`.
pub(super) fn insert(
    part: &mime::Part,
    body: &Body,
    kind: Kind,
    sig: &Signature,
    eol: &[u8],
    place: Place,
) -> Result<Insertion, Skip> {
    let sig = for_part(part, kind, sig);
    let frag = Fragment {
        kind,
        sig: &sig,
        eol: if eol == b"\r\n" { "\r\n" } else { "\n" },
        place,
    };
    let decoded: &[u8] = &body.decoded;
    let label = part.ctype.param("charset").map(|p| p.value.as_str());
    let charset = Charset::classify(label, decoded);
    if charset.needs_unicode() {
        return change_unicode(decoded, charset, &frag);
    }
    // HTML in a 7bit part takes the signature as ASCII with character references, so the
    // part keeps its encoding and every existing byte.
    let seven_bit = matches!(body.cte.as_str(), "" | "7bit");
    let charset = if seven_bit && kind == Kind::Html && charset != Charset::Utf7 {
        Charset::Ascii
    } else {
        charset
    };
    Ok(change_bytes(decoded, charset, &frag))
}

/// The signature as this part takes it: in a format=flowed text body, its text as fixed lines.
fn for_part<'s>(part: &mime::Part, kind: Kind, sig: &'s Signature) -> Cow<'s, Signature> {
    if kind == Kind::Text && is_flowed(&part.ctype) {
        Cow::Owned(Signature::new("", flowed_text(&sig.text)))
    } else {
        Cow::Borrowed(sig)
    }
}

/// What the stamping of one part's decoded content produced.
pub(super) enum Change {
    /// Insert these bytes (in the part's charset) at this offset of the decoded content.
    Insert { at: usize, bytes: Vec<u8> },
    /// The whole decoded content, re-encoded (stateful charsets, or a switch to UTF-8).
    Replace(Vec<u8>),
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

pub(super) fn apply_change(decoded: &[u8], change: Change) -> Vec<u8> {
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

/// The line ending used inside decoded content.
fn content_eol(decoded: &[u8], default: &'static str) -> &'static str {
    match memchr::memchr(b'\n', decoded) {
        Some(i) if i > 0 && decoded[i - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => default,
    }
}

/// What goes into a part's content, whatever its charset.
struct Fragment<'s> {
    kind: Kind,
    sig: &'s Signature,
    /// The message's line ending, for content without one of its own.
    eol: &'static str,
    place: Place,
}

impl Fragment<'_> {
    /// Where it goes in `content`.
    fn position(&self, content: &[u8]) -> usize {
        match (self.kind, self.place) {
            (Kind::Html, Place::Main) => place::html_position(content),
            (Kind::Text, Place::Main) => place::text_position(content).unwrap_or(content.len()),
            (Kind::Html, Place::End) => place::html_end(content),
            (Kind::Text, Place::End) => content.len(),
        }
    }

    /// The text to insert at `at` (decoded content, as UTF-8 text), with its spacing.
    fn text(&self, content: &[u8], at: usize) -> String {
        fragment(content, at, self.kind, self.sig, self.eol)
    }

    /// `text` in `charset`; `None` when the charset cannot carry it.
    fn encode(&self, charset: Charset, text: &str) -> Option<Vec<u8>> {
        match self.kind {
            Kind::Html => charset.encode_html(text),
            Kind::Text => charset.encode_exact(text),
        }
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
pub(super) fn with_line_ending(text: &str, le: &str) -> String {
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

/// ASCII-compatible charsets: find the spot in the bytes and splice the encoded signature.
fn change_bytes(decoded: &[u8], charset: Charset, frag: &Fragment) -> Insertion {
    let at = frag.position(decoded);
    let text = frag.text(decoded, at);
    if let Some(bytes) = frag.encode(charset, &text) {
        return Insertion::kept(Change::Insert { at, bytes });
    }
    // Text the charset cannot carry: move the part to UTF-8 when its bytes allow it.
    match charset {
        Charset::Ascii if std::str::from_utf8(decoded).is_ok() => {
            return Insertion::utf8(Change::Insert {
                at,
                bytes: text.into_bytes(),
            })
        }
        Charset::Compatible(_) => {
            if let Some(s) = charset.decode(decoded) {
                // Recompute the offset in the UTF-8 text: decode the prefix alone.
                let prefix = charset.decode(&decoded[..at]).unwrap_or_default();
                let mut v = Vec::with_capacity(s.len() + text.len());
                v.extend_from_slice(prefix.as_bytes());
                v.extend_from_slice(text.as_bytes());
                v.extend_from_slice(&s.as_bytes()[prefix.len().min(s.len())..]);
                return Insertion::utf8(Change::Replace(v));
            }
        }
        _ => {}
    }
    Insertion::kept(Change::Insert {
        at,
        bytes: charset.encode_lossy(&text),
    })
}

/// UTF-16, ISO-2022-JP, UTF-7: decode, insert, re-encode.
fn change_unicode(decoded: &[u8], charset: Charset, frag: &Fragment) -> Result<Insertion, Skip> {
    let s = charset
        .decode(decoded)
        .ok_or_else(|| Skip::Malformed("body does not match its charset".into()))?;
    let at = frag.position(s.as_bytes());
    let text = frag.text(s.as_bytes(), at);
    if let Charset::Utf16 { be, bom } = charset {
        // Splice: the existing code units stay as they are.
        let units_before = s[..at].encode_utf16().count();
        let offset = usize::from(bom) * 2 + units_before * 2;
        let bytes = charset::encode_utf16(&text, be, bom);
        return Ok(Insertion::kept(Change::Insert { at: offset, bytes }));
    }
    let mut new = String::with_capacity(s.len() + text.len());
    new.push_str(&s[..at]);
    new.push_str(&text);
    new.push_str(&s[at..]);
    Ok(match frag.encode(charset, &new) {
        Some(bytes) => Insertion::kept(Change::Replace(bytes)),
        None => Insertion::utf8(Change::Replace(new.into_bytes())),
    })
}
