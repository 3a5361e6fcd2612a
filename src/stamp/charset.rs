//! Charsets of the stamped parts: which ones can be searched and spliced as bytes, and how the
//! signature is written into each.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// us-ascii (also the MIME default).
    Ascii,
    Utf8,
    /// A charset where every ASCII byte stands for itself (ISO-8859-x, windows-125x, KOI8,
    /// Shift_JIS, GBK, Big5, EUC-*): markers can be found and the signature spliced as bytes.
    Compatible(&'static Encoding),
    /// UTF-16 with the byte order and whether the body starts with a BOM.
    Utf16 {
        be: bool,
        bom: bool,
    },
    /// ISO-2022-JP: stateful, so decode, insert and re-encode.
    Stateful(&'static Encoding),
    /// UTF-7: decoded, then the part becomes UTF-8 (no encoder, and '+' is special).
    Utf7,
    /// A label nothing here knows; treated as ASCII-compatible, signature in ASCII only.
    Unknown,
}

impl Charset {
    pub fn classify(label: Option<&str>, body: &[u8]) -> Charset {
        // Some mailers quote the label in single quotes (`charset='UTF-8'`).
        let Some(label) = label.map(|l| {
            l.trim_matches(|c: char| c == '\'' || c.is_ascii_whitespace())
                .to_ascii_lowercase()
        }) else {
            return Charset::Ascii;
        };
        match label.as_str() {
            "" | "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" | "us" => Charset::Ascii,
            "utf-8" | "utf8" => Charset::Utf8,
            "utf-7" | "utf7" | "unicode-1-1-utf-7" => Charset::Utf7,
            "utf-16" | "utf16" | "unicode" => match body {
                [0xFF, 0xFE, ..] => Charset::Utf16 {
                    be: false,
                    bom: true,
                },
                [0xFE, 0xFF, ..] => Charset::Utf16 {
                    be: true,
                    bom: true,
                },
                _ => Charset::Utf16 {
                    be: utf16_is_big_endian(body),
                    bom: false,
                },
            },
            "utf-16le" | "utf-16be" => {
                let be = label == "utf-16be";
                let bom = matches!(
                    (be, body),
                    (false, [0xFF, 0xFE, ..]) | (true, [0xFE, 0xFF, ..])
                );
                Charset::Utf16 { be, bom }
            }
            _ => match Encoding::for_label(label.as_bytes()) {
                Some(enc) if enc == encoding_rs::UTF_8 => Charset::Utf8,
                Some(enc) if enc.is_ascii_compatible() && enc != encoding_rs::REPLACEMENT => {
                    Charset::Compatible(enc)
                }
                Some(enc) if enc == encoding_rs::ISO_2022_JP => Charset::Stateful(enc),
                _ => Charset::Unknown,
            },
        }
    }

    /// Whether markers are searched in the decoded Unicode text rather than in the bytes.
    pub fn needs_unicode(self) -> bool {
        matches!(
            self,
            Charset::Utf16 { .. } | Charset::Stateful(_) | Charset::Utf7
        )
    }

    /// Strictly decode the body; `None` when its bytes do not match the charset.
    pub fn decode(self, body: &[u8]) -> Option<String> {
        match self {
            Charset::Ascii => body
                .is_ascii()
                .then(|| String::from_utf8_lossy(body).into_owned()),
            Charset::Utf8 => std::str::from_utf8(body).ok().map(str::to_string),
            Charset::Compatible(enc) | Charset::Stateful(enc) => enc
                .decode_without_bom_handling_and_without_replacement(body)
                .map(|c| c.into_owned()),
            Charset::Utf16 { be, bom } => {
                let enc = if be { UTF_16BE } else { UTF_16LE };
                let body = if bom { &body[2..] } else { body };
                enc.decode_without_bom_handling_and_without_replacement(body)
                    .map(|c| c.into_owned())
            }
            Charset::Utf7 => {
                mail_parser::decoders::charsets::map::charset_decoder(b"utf-7").map(|f| f(body))
            }
            Charset::Unknown => None,
        }
    }

    /// Encode `text` exactly; `None` when a character cannot be represented.
    pub fn encode_exact(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Ascii | Charset::Unknown => text.is_ascii().then(|| text.as_bytes().to_vec()),
            Charset::Utf8 => Some(text.as_bytes().to_vec()),
            Charset::Compatible(enc) | Charset::Stateful(enc) => {
                let (out, _, unmappable) = enc.encode(text);
                (!unmappable).then(|| out.into_owned())
            }
            Charset::Utf16 { be, bom } => Some(encode_utf16(text, be, bom)),
            Charset::Utf7 => None,
        }
    }

    /// Encode for HTML: characters the charset lacks become numeric character references.
    pub fn encode_html(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Ascii | Charset::Unknown => Some(ncr_ascii(text)),
            Charset::Compatible(enc) | Charset::Stateful(enc) => {
                Some(enc.encode(text).0.into_owned())
            }
            _ => self.encode_exact(text),
        }
    }

    /// Encode for text that must keep the existing bytes: unrepresentable characters become '?'.
    pub fn encode_lossy(self, text: &str) -> Vec<u8> {
        if let Some(b) = self.encode_exact(text) {
            return b;
        }
        let mut out = Vec::with_capacity(text.len());
        let mut buf = [0u8; 4];
        for c in text.chars() {
            match self.encode_exact(c.encode_utf8(&mut buf)) {
                Some(b) => out.extend_from_slice(&b),
                None => out.push(b'?'),
            }
        }
        out
    }
}

/// ASCII with every other character as `&#N;`.
fn ncr_ascii(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c as u8);
        } else {
            out.extend_from_slice(format!("&#{};", c as u32).as_bytes());
        }
    }
    out
}

/// UTF-16 (no BOM: the BOM, if any, stays where it is in the body).
pub fn encode_utf16(text: &str, be: bool, _bom: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for u in text.encode_utf16() {
        let b = if be { u.to_be_bytes() } else { u.to_le_bytes() };
        out.extend_from_slice(&b);
    }
    out
}

/// The byte order of UTF-16 without a byte-order mark, from its bytes: text in any script
/// that uses ASCII spaces, digits, punctuation or line breaks has a zero high byte in those
/// code units, on the even offsets in big-endian and the odd ones in little-endian (as
/// Windows writes it). When the zeros do not tell, the order whose decoding is valid (no
/// lone surrogate) wins; big-endian only when neither tells (RFC 2781 §4.3).
fn utf16_is_big_endian(body: &[u8]) -> bool {
    let sample = &body[..body.len().min(64 * 1024) & !1];
    let (mut even, mut odd) = (0usize, 0usize);
    for pair in sample.chunks_exact(2) {
        even += usize::from(pair[0] == 0);
        odd += usize::from(pair[1] == 0);
    }
    if even != odd {
        return even > odd;
    }
    let valid = |enc: &'static Encoding| {
        enc.decode_without_bom_handling_and_without_replacement(sample)
            .is_some()
    };
    // Little-endian only when it alone decodes.
    !valid(UTF_16LE) || valid(UTF_16BE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let cases: &[(Option<&str>, &[u8], Charset)] = &[
            (None, b"", Charset::Ascii),
            (Some("US-ASCII"), b"", Charset::Ascii),
            (Some("utf-8"), b"", Charset::Utf8),
            (Some("UTF8"), b"", Charset::Utf8),
            (Some("'UTF-8'"), b"", Charset::Utf8),
            (Some(" utf-8 "), b"", Charset::Utf8),
            (
                Some("ks_c_5601-1987"),
                b"",
                Charset::Compatible(encoding_rs::EUC_KR),
            ),
            (
                Some("iso-8859-1"),
                b"",
                Charset::Compatible(encoding_rs::WINDOWS_1252),
            ),
            (
                Some("koi8-r"),
                b"",
                Charset::Compatible(encoding_rs::KOI8_R),
            ),
            (
                Some("iso-2022-jp"),
                b"",
                Charset::Stateful(encoding_rs::ISO_2022_JP),
            ),
            (
                Some("utf-16"),
                &[0xFF, 0xFE],
                Charset::Utf16 {
                    be: false,
                    bom: true,
                },
            ),
            (
                Some("UTF-16LE"),
                b"a\0",
                Charset::Utf16 {
                    be: false,
                    bom: false,
                },
            ),
            // Issue 11, finding 9: no BOM, the bytes tell the order.
            (
                Some("utf-16"),
                b"H\0i\0\r\0\n\0",
                Charset::Utf16 {
                    be: false,
                    bom: false,
                },
            ),
            (
                Some("utf-16"),
                b"\0H\0i\0\r\0\n",
                Charset::Utf16 {
                    be: true,
                    bom: false,
                },
            ),
            // No zero bytes and both orders decode: big-endian, as RFC 2781 says (a real
            // body has line breaks, whose zero bytes tell).
            (
                Some("utf-16"),
                &[0xE5, 0x65, 0x2C, 0x67],
                Charset::Utf16 {
                    be: true,
                    bom: false,
                },
            ),
            (
                Some("utf-16"),
                // A surrogate pair in LE; as BE, two high surrogates.
                &[0xD8, 0xD8, 0xD8, 0xDC],
                Charset::Utf16 {
                    be: false,
                    bom: false,
                },
            ),
            (
                Some("utf-16"),
                b"",
                Charset::Utf16 {
                    be: true,
                    bom: false,
                },
            ),
            (Some("utf-7"), b"", Charset::Utf7),
            (Some("x-unknown-thing"), b"", Charset::Unknown),
        ];
        for (label, body, expected) in cases {
            assert_eq!(Charset::classify(*label, body), *expected, "{label:?}");
        }
    }

    #[test]
    fn encodings_of_a_signature() {
        let name = "José Müller 日本";
        assert_eq!(Charset::Ascii.encode_exact(name), None);
        assert_eq!(Charset::Ascii.encode_html("é").unwrap(), b"&#233;".to_vec());
        let w1252 = Charset::Compatible(encoding_rs::WINDOWS_1252);
        assert_eq!(w1252.encode_exact("é").unwrap(), vec![0xE9]);
        assert_eq!(w1252.encode_exact(name), None);
        assert_eq!(w1252.encode_lossy("é日"), vec![0xE9, b'?']);
        assert!(String::from_utf8_lossy(&w1252.encode_html(name).unwrap()).contains("&#26085;"));
        let jis = Charset::Stateful(encoding_rs::ISO_2022_JP);
        let enc = jis.encode_exact("日本 Tel").unwrap();
        assert_eq!(jis.decode(&enc).unwrap(), "日本 Tel");
        let u16 = Charset::Utf16 {
            be: false,
            bom: true,
        };
        assert_eq!(u16.decode(&[0xFF, 0xFE, b'a', 0]).unwrap(), "a");
    }
}
