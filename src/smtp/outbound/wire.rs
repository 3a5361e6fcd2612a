//! The bytes of a message as they go to the next hop (and back to the MTA from the milter):
//! every line ends in CRLF, whatever the client, the templates and the directory put in.
//!
//! A bare LF or a lone CR is a line break to every reader that accepts it, so each becomes
//! CRLF; with only CRLF left, dot-stuffing after each CRLF (done in the same pass by
//! [`Encoder`] as the bytes are written, see [`super::SmtpDelivery`]) covers every line a
//! reader could see, and no `<LF>.<LF>` can end the data early on a lenient next hop (SMTP
//! smuggling).

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

/// [`Crlf`] and, for DATA, dot-stuffing (RFC 5321 §4.5.2) in the same pass: a line that
/// starts with `.` gets one more. The state carries a CR and the line start across pieces.
#[derive(Debug, Clone, Copy)]
pub struct Encoder {
    after_cr: bool,
    line_start: bool,
    stuff: bool,
}

impl Encoder {
    /// `stuff`: dot-stuff (DATA); without it, line breaks only (BDAT).
    pub fn new(stuff: bool) -> Self {
        Encoder {
            after_cr: false,
            line_start: true,
            stuff,
        }
    }

    /// Append `input`, encoded, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 4);
        let mut rest = input;
        loop {
            let Some(&first) = rest.first() else {
                // A CR at the end stays pending: the next piece may start with its LF.
                return;
            };
            if self.after_cr && first == b'\n' {
                // The second half of a CRLF already written.
                self.after_cr = false;
                rest = &rest[1..];
                continue;
            }
            self.after_cr = false;
            if self.line_start && self.stuff && first == b'.' {
                out.push(b'.');
            }
            self.line_start = false;
            match memchr::memchr2(b'\r', b'\n', rest) {
                Some(i) => {
                    out.extend_from_slice(&rest[..i]);
                    out.extend_from_slice(b"\r\n");
                    self.after_cr = rest[i] == b'\r';
                    self.line_start = true;
                    rest = &rest[i + 1..];
                }
                None => {
                    out.extend_from_slice(rest);
                    return;
                }
            }
        }
    }
}

/// `input` with every line ending CRLF.
pub fn to_crlf(input: &[u8]) -> Vec<u8> {
    if is_crlf(input) {
        // The usual case (a stamped message keeps the CRLF it came with): one copy.
        return input.to_vec();
    }
    let mut out = Vec::with_capacity(input.len() + 2);
    Crlf::default().push(input, &mut out);
    out
}

/// Every CR in `input` starts a CRLF and every LF ends one: [`to_crlf`] would change nothing.
pub fn is_crlf(input: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (input.first(), input.last()) else {
        return true;
    };
    if first == b'\n' || last == b'\r' {
        return false;
    }
    // Branch-free over each block of byte pairs, so the compiler vectorises it: a body has a
    // line break every few dozen bytes, which makes a search per break the slower way.
    // A pair is wrong when exactly one of "CR first", "LF second" holds. Blocks overlap by
    // one byte so no pair is missed; the loop stops at the first wrong block.
    (0..input.len()).step_by(4096).all(|start| {
        let end = (start + 4097).min(input.len());
        !input[start..end]
            .windows(2)
            .fold(false, |bad, w| bad | ((w[0] == b'\r') != (w[1] == b'\n')))
    })
}

/// The message without its final line break (any form): what precedes the `CRLF . CRLF`
/// (or BDAT's final CRLF) that ends the last line.
pub fn without_final_break(message: &[u8]) -> &[u8] {
    message
        .strip_suffix(b"\r\n")
        .or_else(|| message.strip_suffix(b"\n"))
        .or_else(|| message.strip_suffix(b"\r"))
        .unwrap_or(message)
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

    /// What a reader of the DATA stream sees: lines unstuffed, up to the `.` line.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in wire.split_inclusive(|b| *b == b'\n') {
            if line == b".\r\n" {
                break;
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    #[test]
    fn encoder_stuffs_and_normalises_in_one_pass() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b".", b".."),
            (b"a\r\n.b", b"a\r\n..b"),
            (b"a\n.\nMAIL", b"a\r\n..\r\nMAIL"),
            (b"a\r.b", b"a\r\n..b"),
            (b"..x\r\n\r\n.", b"...x\r\n\r\n.."),
            (b"a.b\r\n", b"a.b\r\n"),
        ];
        for (input, want) in table {
            let mut out = Vec::new();
            Encoder::new(true).push(input, &mut out);
            assert_eq!(out, *want, "{:?}", String::from_utf8_lossy(input));
            let mut plain = Vec::new();
            Encoder::new(false).push(input, &mut plain);
            assert_eq!(plain, to_crlf(input));
        }
    }

    proptest! {
        /// Any split gives the same bytes; a reader undoing the stuffing gets the message
        /// with CRLF line breaks, and no line of the stream is a lone `.` (no early end).
        #[test]
        fn encoder_pieces_agree_and_round_trip(
            input in prop::collection::vec(prop::sample::select(vec![b'\r', b'\n', b'.', b'a']), 0..200),
            size in 1usize..9,
        ) {
            let mut whole = Vec::new();
            Encoder::new(true).push(&input, &mut whole);
            let mut enc = Encoder::new(true);
            let mut joined = Vec::new();
            for piece in input.chunks(size) {
                enc.push(piece, &mut joined);
            }
            prop_assert_eq!(&joined, &whole);
            let mut stream = whole.clone();
            if !stream.is_empty() && !stream.ends_with(b"\r\n") {
                stream.extend_from_slice(b"\r\n");
            }
            for line in stream.split_inclusive(|b| *b == b'\n') {
                prop_assert!(line != b".\r\n");
            }
            let mut want = to_crlf(&input);
            if !want.is_empty() && !want.ends_with(b"\r\n") {
                want.extend_from_slice(b"\r\n");
            }
            stream.extend_from_slice(b".\r\n");
            prop_assert_eq!(unstuff(&stream), want);
        }

        /// The fast path's test agrees with the conversion: CRLF-clean is what it keeps.
        #[test]
        fn is_crlf_is_what_to_crlf_keeps(
            input in prop::collection::vec(prop::sample::select(vec![b'\r', b'\n', b'a']), 0..64),
        ) {
            let mut slow = Vec::new();
            Crlf::default().push(&input, &mut slow);
            prop_assert_eq!(is_crlf(&input), slow == input);
            prop_assert_eq!(to_crlf(&input), slow);
        }
    }
}
