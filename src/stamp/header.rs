//! Header edits of a stamped part: a new Content-Transfer-Encoding, charset=utf-8, the
//! MIME-Version a message without MIME fields needs, and the empty line a header-only part
//! lacks.

use super::edits::Edits;
use super::mime::{self, Part};
use super::raw::bom_len;

/// The header edits of a stamped `part`: a `new_cte`, a switch to `charset=utf-8`, and for a
/// header-only part the empty line before its body.
pub(super) fn edits(
    raw: &[u8],
    part: &Part,
    new_cte: Option<&str>,
    relabel_utf8: bool,
    eol: &[u8],
) -> Edits {
    let mut edits = Edits::default();
    let mut new_fields = Vec::new();
    if let Some(cte) = new_cte {
        set_header(
            raw,
            part,
            "Content-Transfer-Encoding",
            cte,
            &mut new_fields,
            &mut edits,
        );
    }
    if relabel_utf8 {
        set_charset_utf8(raw, part, &mut new_fields, &mut edits);
    }
    // Whether the header now ends with a line ending (`None`: with its empty line too).
    let mut header_ends = match part.fields.last() {
        Some(_) => Some(raw[..part.header_end].ends_with(b"\n")),
        None => Some(true),
    };
    if !new_fields.is_empty() {
        header_ends = add_fields(raw, part, &new_fields, eol, &mut edits);
    }
    if !part.has_separator {
        edits.insert(part.body.start, separator(header_ends, eol));
    }
    edits
}

/// A header-only part: end its last line if needed, then the empty line (the body follows).
fn separator(header_ends: Option<bool>, eol: &[u8]) -> Vec<u8> {
    let mut sep = Vec::with_capacity(4);
    match header_ends {
        Some(false) => {
            sep.extend_from_slice(eol);
            sep.extend_from_slice(eol);
        }
        Some(true) => sep.extend_from_slice(eol),
        None => {}
    }
    sep
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

/// Append fields at the end of a part's header. Returns what [`edits`] needs to know
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
