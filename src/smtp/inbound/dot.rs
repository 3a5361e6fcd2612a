//! The DATA reader (RFC 5321 §4.5.2): removes the leading dot of each line, stops at the
//! line that is a lone `.`. The data begins at a line start, so a `.` line right after 354
//! ends the message and a first line `..x` is `.x`. smtp-proto's `DataReceiver` starts in
//! the middle of a line and gets both wrong.
//!
//! A line start is after CRLF only: a dot after a bare LF or bare CR is data (such data is
//! refused later as possible smuggling).

use std::slice::Iter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    LineStart,
    Mid,
    /// Mid-line, the last byte was CR.
    Cr,
    /// A dot at a line start (dropped).
    Dot,
    /// A dot at a line start, then CR (held back until we know whether LF follows).
    DotCr,
}

#[derive(Debug, Clone)]
pub struct DotReader {
    pos: Pos,
}

impl Default for DotReader {
    fn default() -> Self {
        DotReader {
            pos: Pos::LineStart,
        }
    }
}

impl DotReader {
    /// Take bytes from `it`, appending the unstuffed data to `out` (or dropping it when
    /// `None`). True at the end-of-data line; `it` then points just past it, the rest is
    /// left for the next command.
    pub fn ingest(&mut self, it: &mut Iter<'_, u8>, mut out: Option<&mut Vec<u8>>) -> bool {
        let mut push = |bytes: &[u8]| {
            if let Some(o) = out.as_deref_mut() {
                o.extend_from_slice(bytes);
            }
        };
        let mut rest = it.as_slice();
        while let Some(&b) = rest.first() {
            match self.pos {
                Pos::LineStart if b == b'.' => {
                    rest = &rest[1..];
                    self.pos = Pos::Dot;
                }
                Pos::Dot if b == b'\r' => {
                    rest = &rest[1..];
                    self.pos = Pos::DotCr;
                }
                Pos::DotCr if b == b'\n' => {
                    *it = rest[1..].iter();
                    self.pos = Pos::LineStart;
                    return true;
                }
                Pos::DotCr => {
                    push(b"\r");
                    self.pos = Pos::Cr;
                }
                Pos::Cr if b == b'\n' => {
                    push(b"\n");
                    rest = &rest[1..];
                    self.pos = Pos::LineStart;
                }
                Pos::LineStart | Pos::Dot | Pos::Cr | Pos::Mid => match memchr::memchr(b'\n', rest)
                {
                    None => {
                        push(rest);
                        self.pos = if rest.last() == Some(&b'\r') {
                            Pos::Cr
                        } else {
                            Pos::Mid
                        };
                        rest = &[];
                    }
                    Some(p) => {
                        push(&rest[..=p]);
                        // A `\n` at p == 0 follows a line start or a dot: a bare LF.
                        let crlf = p > 0 && rest[p - 1] == b'\r';
                        self.pos = if crlf { Pos::LineStart } else { Pos::Mid };
                        rest = &rest[p + 1..];
                    }
                },
            }
        }
        *it = [].iter();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::DotReader;

    /// Feed `chunks` one by one; the data and what was left after the end line, if any.
    fn read(chunks: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut rx = DotReader::default();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut it = c.iter();
            if rx.ingest(&mut it, Some(&mut out)) {
                let mut left = it.as_slice().to_vec();
                chunks[i + 1..]
                    .iter()
                    .for_each(|c| left.extend_from_slice(c));
                return (out, Some(left));
            }
        }
        (out, None)
    }

    #[test]
    fn table() {
        // (input, data, what is left after the end line if it came)
        type Case = (&'static [u8], &'static [u8], Option<&'static [u8]>);
        let cases: &[Case] = &[
            (b".\r\n", b"", Some(b"")),
            (b".\r\nNOOP\r\n", b"", Some(b"NOOP\r\n")),
            (b"..x\r\n.\r\n", b".x\r\n", Some(b"")),
            (
                b"a\r\n..\r\n.b\r\n\r\n.\r\nQUIT\r\n",
                b"a\r\n.\r\nb\r\n\r\n",
                Some(b"QUIT\r\n"),
            ),
            // Not line starts: bare LF, bare CR.
            (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n", Some(b"")),
            (b"a\r.\r\n.\r\n", b"a\r.\r\n", Some(b"")),
            // A dot line that is not exactly ".\r\n".
            (
                b". \r\n.\r\r\n.\n\r\n.\r\n",
                b" \r\n\r\r\n\n\r\n",
                Some(b""),
            ),
            (b"x\r\n.", b"x\r\n", None),
            (b"x\r\n.\r", b"x\r\n", None),
        ];
        for (input, data, left) in cases {
            let whole = read(&[input]);
            assert_eq!(
                (whole.0.as_slice(), whole.1.as_deref()),
                (*data, *left),
                "{}",
                String::from_utf8_lossy(input)
            );
            // Split at every point, and byte by byte: the same result.
            for at in 0..input.len() {
                let (a, b) = input.split_at(at);
                assert_eq!(read(&[a, b]), whole, "split at {at}");
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(read(&bytes), whole);
        }
    }
}
