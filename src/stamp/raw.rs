//! Reading the raw message: where its header starts, which line ending it uses, and messages
//! whose lines end in a lone CR.

use std::borrow::Cow;

/// Where the header starts: after a UTF-8 BOM and an mbox "From " line, if any.
pub(super) fn bom_len(raw: &[u8]) -> usize {
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

/// The line ending the message's header uses: new lines are written with it.
pub(super) fn message_eol(raw: &[u8]) -> &'static [u8] {
    if line_ending_is_crlf(raw) {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// A message whose lines end in a lone CR (old Mac style; over SMTP it still ends in the
/// final CRLF): each CR becomes CRLF, so its lines are read as lines, never glued into one.
/// Any other message is used as it is.
pub(super) fn cr_lines(raw: &[u8]) -> Cow<'_, [u8]> {
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
pub(super) fn has_lone_cr(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', bytes).any(|i| bytes.get(i + 1) != Some(&b'\n'))
}

fn line_ending_is_crlf(raw: &[u8]) -> bool {
    memchr::memchr(b'\n', raw).is_some_and(|i| i > 0 && raw[i - 1] == b'\r')
}
