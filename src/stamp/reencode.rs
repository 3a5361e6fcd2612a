//! Transfer re-encoding: a part's body decoded from its Content-Transfer-Encoding for the
//! insertion, and the change written back under it, or under quoted-printable when the
//! part can no longer keep its own.

use super::edits::Edits;
use super::insert::{apply_change, Change};
use super::mime::{self, Part};
use super::{transfer, Skip};
use std::borrow::Cow;

/// A part's body and its content, decoded from its Content-Transfer-Encoding.
pub(super) struct Body<'r> {
    /// The body as the message has it.
    pub(super) raw: &'r [u8],
    /// The Content-Transfer-Encoding, as [`mime::simple_value`] reads it; empty if none.
    pub(super) cte: String,
    pub(super) decoded: Cow<'r, [u8]>,
}

impl<'r> Body<'r> {
    pub(super) fn decode(raw: &'r [u8], part: &Part) -> Result<Self, Skip> {
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
        Ok(Body {
            raw: body_raw,
            cte,
            decoded,
        })
    }

    /// The line ending new encoded lines take: the body's own, else the message's.
    fn eol<'a>(&self, eol: &'a [u8]) -> &'a [u8] {
        let body_raw = self.raw;
        if body_raw.windows(2).any(|w| w == b"\r\n") || body_raw.is_empty() && eol == b"\r\n" {
            b"\r\n"
        } else if body_raw.contains(&b'\n') {
            b"\n"
        } else {
            eol
        }
    }
}

/// A part's body edit, and the Content-Transfer-Encoding the part now needs, if it changed.
pub(super) struct Reencoded {
    pub(super) edits: Edits,
    pub(super) new_cte: Option<&'static str>,
}

/// The body edit that makes `change` under the part's transfer encoding.
pub(super) fn reencode(part: &Part, body: &Body, change: Change, eol: &[u8]) -> Reencoded {
    let mut edits = Edits::default();
    let body_eol = body.eol(eol);
    let mut new_cte = None;
    match (body.cte.as_str(), change) {
        ("quoted-printable", Change::Insert { at, bytes }) => {
            let (off, line_start) = transfer::qp_encoded_offset(body.raw, at);
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
            let new = apply_change(&body.decoded, change);
            let line_len = transfer::base64_line_len(body.raw);
            let final_eol = body.raw.ends_with(b"\n");
            edits.replace(
                part.body.clone(),
                transfer::base64_encode(&new, line_len, body_eol, final_eol),
            );
        }
        (cte, change) => new_cte = unencoded(part, body, cte, change, body_eol, &mut edits),
    }
    Reencoded { edits, new_cte }
}

/// 7bit, 8bit, binary: the decoded content is the raw body. Returns the new
/// Content-Transfer-Encoding when the part must move to quoted-printable.
fn unencoded(
    part: &Part,
    body: &Body,
    cte: &str,
    change: Change,
    body_eol: &[u8],
    edits: &mut Edits,
) -> Option<&'static str> {
    let seven_bit = !matches!(cte, "8bit" | "binary");
    let adds_8bit = match &change {
        Change::Insert { bytes, .. } => !bytes.is_ascii(),
        Change::Replace(new) => !new.is_ascii(),
    };
    // A line made longer than SMTP's 998 octets by the insertion would be cut or
    // refused on the way: quoted-printable keeps lines short (binary has no limit).
    let overlong = cte != "binary" && makes_overlong_line(&body.decoded, &change);
    if seven_bit && adds_8bit || overlong {
        // A 7bit part that must now carry non-ASCII becomes quoted-printable.
        let new = apply_change(&body.decoded, change);
        edits.replace(part.body.clone(), transfer::qp_encode(&new, body_eol));
        return Some("quoted-printable");
    }
    match change {
        Change::Insert { at, bytes } => edits.insert(part.body.start + at, bytes),
        Change::Replace(new) => edits.replace(part.body.clone(), new),
    }
    None
}

/// SMTP's line limit, without the line ending (RFC 5322 2.1.1).
pub(super) const MAX_LINE: usize = 998;

/// Whether inserting creates a line over [`MAX_LINE`] that was not that long before.
/// Measures by walking the bytes, never by slicing between line-break positions: an
/// insertion of any line structure (none, one or many breaks) at any offset is safe.
pub(super) fn makes_overlong_line(decoded: &[u8], change: &Change) -> bool {
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
pub(super) fn longest_line<'a>(bytes: impl Iterator<Item = &'a u8>) -> usize {
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
