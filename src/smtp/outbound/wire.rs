//! The bytes of a message as they go to the next hop (and back to the MTA from the milter):
//! every line ends in CRLF, whatever the client, the templates and the directory put in.
//!
//! A bare LF or a lone CR is a line break to every reader that accepts it, so each becomes
//! CRLF; with only CRLF left, dot-stuffing after each CRLF (done by lettre's codec as the
//! bytes are written, see [`super::SmtpDelivery`]) covers every line a reader could see,
//! and no `<LF>.<LF>` can end the data early on a lenient next hop (SMTP smuggling).

/// One pass over the bytes, in pieces of any size: CRLF stays, a bare LF or a lone CR
/// becomes CRLF. The state carries a CR across piece boundaries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Crlf {
    /// The last byte seen was a CR (already written as CRLF): an LF right after it is its
    /// own line break's second half, not a new one.
    after_cr: bool,
}

impl Crlf {
    /// Append `input`, normalised, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 2);
        let mut rest = input;
        while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
            out.extend_from_slice(&rest[..i]);
            let b = rest[i];
            if !(b == b'\n' && self.after_cr && i == 0) {
                out.extend_from_slice(b"\r\n");
            }
            self.after_cr = b == b'\r';
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            out.extend_from_slice(rest);
            self.after_cr = false;
        }
    }
}

/// `input` with every line ending CRLF.
pub fn to_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 2);
    Crlf::default().push(input, &mut out);
    out
}

/// The message without its final line break (any form): what precedes lettre's
/// `CRLF . CRLF`, which ends the last line itself.
pub fn without_final_break(message: &[u8]) -> &[u8] {
    message
        .strip_suffix(b"\r\n")
        .or_else(|| message.strip_suffix(b"\n"))
        .or_else(|| message.strip_suffix(b"\r"))
        .unwrap_or(message)
}

/// The DATA content in normalised pieces of about `size` bytes (memory stays bounded by
/// the piece, not the message).
pub fn pieces(message: &[u8], size: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut crlf = Crlf::default();
    message.chunks(size.max(1)).map(move |c| {
        let mut out = Vec::new();
        crlf.push(c, &mut out);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn line_breaks_become_crlf() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"a"),
            (b"a\r\nb", b"a\r\nb"),
            (b"a\nb", b"a\r\nb"),
            (b"a\rb", b"a\r\nb"),
            (b"a\n.\nMAIL", b"a\r\n.\r\nMAIL"),
            (b"\r\r\n\n\r", b"\r\n\r\n\r\n\r\n"),
            (b"\n\r", b"\r\n\r\n"),
        ];
        for (input, want) in table {
            assert_eq!(
                to_crlf(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(without_final_break(b"a\r\n"), b"a");
        assert_eq!(without_final_break(b"a\n"), b"a");
        assert_eq!(without_final_break(b"a\r"), b"a");
        assert_eq!(without_final_break(b"a\n\n"), b"a\n");
    }

    proptest! {
        /// Any split into pieces gives the same bytes, with no bare CR or LF.
        #[test]
        fn pieces_agree_and_leave_no_bare_break(
            input in prop::collection::vec(prop::sample::select(vec![b'\r', b'\n', b'.', b'a']), 0..200),
            size in 1usize..9,
        ) {
            let whole = to_crlf(&input);
            let joined: Vec<u8> = pieces(&input, size).flatten().collect();
            prop_assert_eq!(&joined, &whole);
            for (i, b) in whole.iter().enumerate() {
                match b {
                    b'\r' => prop_assert_eq!(whole.get(i + 1), Some(&b'\n')),
                    b'\n' => prop_assert!(i > 0 && whole[i - 1] == b'\r'),
                    _ => {}
                }
            }
        }
    }
}
