//! Content-Transfer-Encodings: quoted-printable and base64, decode and encode, with the
//! offset mapping that lets a signature be spliced into a QP body without re-encoding the rest.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The longest encoded line we write, as RFC 2045 allows.
pub const MAX_LINE: usize = 76;

/// One step of a QP walk: how many encoded bytes it spans and the decoded byte, if any.
fn qp_step(enc: &[u8], i: usize) -> (usize, Option<u8>) {
    let b = enc[i];
    if b != b'=' {
        return (1, Some(b));
    }
    // Soft line break: "=" then optional whitespace then a line ending.
    let mut j = i + 1;
    while j < enc.len() && matches!(enc[j], b' ' | b'\t') {
        j += 1;
    }
    if j < enc.len() && enc[j] == b'\n' {
        return (j + 1 - i, None);
    }
    if j + 1 < enc.len() && enc[j] == b'\r' && enc[j + 1] == b'\n' {
        return (j + 2 - i, None);
    }
    if j == enc.len() {
        // "=" at the very end: a soft break with nothing after.
        return (j - i, None);
    }
    if let (Some(h), Some(l)) = (
        enc.get(i + 1).and_then(|c| hex(*c)),
        enc.get(i + 2).and_then(|c| hex(*c)),
    ) {
        return (3, Some(h << 4 | l));
    }
    // A lone "=": keep it literally, as lenient decoders do.
    (1, Some(b'='))
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

pub fn qp_decode(enc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(enc.len());
    let mut i = 0;
    // Runs without "=" decode to themselves: copy them whole.
    while let Some(rel) = memchr::memchr(b'=', &enc[i..]) {
        out.extend_from_slice(&enc[i..i + rel]);
        i += rel;
        let (n, b) = qp_step(enc, i);
        if let Some(b) = b {
            out.push(b);
        }
        i += n;
    }
    out.extend_from_slice(&enc[i..]);
    out
}

/// The encoded offset at which decoded byte `target` begins (after any soft line breaks that
/// precede it), and whether that offset is at the start of an encoded line.
pub fn qp_encoded_offset(enc: &[u8], target: usize) -> (usize, bool) {
    let mut i = 0;
    let mut count = 0;
    while i < enc.len() {
        // Up to the next "=", each encoded byte is one decoded byte.
        let run = memchr::memchr(b'=', &enc[i..]).unwrap_or(enc.len() - i);
        if count + run > target {
            i += target - count;
            break;
        }
        count += run;
        i += run;
        if i >= enc.len() {
            break;
        }
        let (n, b) = qp_step(enc, i);
        if b.is_some() {
            if count == target {
                break;
            }
            count += 1;
        }
        i += n;
    }
    let line_start = i == 0 || enc[i - 1] == b'\n';
    (i, line_start)
}

fn needs_qp_escape(b: u8) -> bool {
    b == b'=' || b >= 0x7f || (b < 0x20 && b != b'\t')
}

/// Quoted-printable encode `data` starting at column 0. Hard line breaks in `data` (LF or
/// CRLF) become `eol`. When `data` does not end with a line break, the output ends with a
/// soft break so that whatever follows continues the same decoded line.
pub fn qp_encode(data: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3 / 2 + 8);
    let mut col = 0usize;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        let at_break = b == b'\n' || (b == b'\r' && data.get(i + 1) == Some(&b'\n'));
        if at_break {
            out.extend_from_slice(eol);
            col = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        // Whitespace right before a hard break (or the end) must be encoded.
        let next_is_break = match data.get(i + 1) {
            None => false, // followed by our soft break
            Some(b'\n') => true,
            Some(b'\r') => data.get(i + 2) == Some(&b'\n'),
            _ => false,
        };
        let escape = needs_qp_escape(b) || (matches!(b, b' ' | b'\t') && next_is_break);
        let width = if escape { 3 } else { 1 };
        // Keep room for the "=" of a soft break.
        if col + width > MAX_LINE - 1 {
            out.push(b'=');
            out.extend_from_slice(eol);
            col = 0;
        }
        if escape {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
        col += width;
        i += 1;
    }
    if col > 0 {
        out.push(b'=');
        out.extend_from_slice(eol);
    }
    out
}

/// Decode base64, ignoring line breaks and anything outside the alphabet.
pub fn base64_decode(enc: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = enc
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    let mut padded = clean;
    while !padded.len().is_multiple_of(4) {
        padded.push(b'=');
    }
    STANDARD.decode(&padded).ok()
}

/// The line length an existing base64 body uses, so the re-encoded body looks the same.
pub fn base64_line_len(enc: &[u8]) -> usize {
    let first = enc.split(|b| *b == b'\n').next().unwrap_or_default();
    let len = first.strip_suffix(b"\r").unwrap_or(first).len();
    if (4..=MAX_LINE).contains(&len) && len.is_multiple_of(4) && enc.len() > len + 2 {
        len
    } else {
        MAX_LINE
    }
}

/// Encode base64 in lines of `line_len` characters ending with `eol`; the last line ends with
/// `eol` too when `final_eol`.
pub fn base64_encode(data: &[u8], line_len: usize, eol: &[u8], final_eol: bool) -> Vec<u8> {
    let enc = STANDARD.encode(data);
    let mut out = Vec::with_capacity(enc.len() + enc.len() / line_len * eol.len() + eol.len());
    let mut chunks = enc.as_bytes().chunks(line_len).peekable();
    while let Some(c) = chunks.next() {
        out.extend_from_slice(c);
        if chunks.peek().is_some() || final_eol {
            out.extend_from_slice(eol);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qp_decode_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"plain", b"plain"),
            (b"caf=C3=A9", "café".as_bytes()),
            (b"soft=\r\nbreak", b"softbreak"),
            (b"soft= \nbreak", b"softbreak"),
            (b"a=3db", b"a=b"),
            (b"lone = sign", b"lone = sign"),
            (b"end=", b"end"),
            (b"hard\r\nbreak", b"hard\r\nbreak"),
        ];
        for (enc, dec) in cases {
            assert_eq!(qp_decode(enc), *dec, "{:?}", String::from_utf8_lossy(enc));
        }
    }

    #[test]
    fn qp_roundtrip_and_line_length() {
        let data = "Grüße aus München = 100% ".repeat(20) + "\r\nline two \r\n\tend";
        let enc = qp_encode(data.as_bytes(), b"\r\n");
        for line in enc.split(|b| *b == b'\n') {
            assert!(
                line.len() <= MAX_LINE + 1,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(qp_decode(&enc), data.as_bytes());
    }

    #[test]
    fn qp_offsets() {
        let enc = b"ab=3D=\r\ncd\r\nef";
        // decoded: "ab=cd\r\nef"
        assert_eq!(qp_encoded_offset(enc, 0), (0, true));
        assert_eq!(qp_encoded_offset(enc, 2), (2, false));
        assert_eq!(qp_encoded_offset(enc, 3), (8, true)); // after the soft break
        assert_eq!(qp_encoded_offset(enc, 7), (12, true));
        assert_eq!(qp_encoded_offset(enc, 9), (14, false));
    }

    #[test]
    fn base64_roundtrip() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let enc = base64_encode(&data, 76, b"\n", true);
        assert!(enc.split(|b| *b == b'\n').all(|l| l.len() <= 76));
        assert_eq!(base64_decode(&enc).unwrap(), data);
        assert_eq!(base64_line_len(&enc), 76);
        assert_eq!(base64_decode(b"YWJj\r\nZA").unwrap(), b"abcd");
    }
}
