//! The message as the milter protocol hands it over, and the edits that turn it into the
//! stamped message. Pure functions, no I/O.
//!
//! The MTA sends each header as (name, value) with folded lines joined by a bare `\n`, then
//! the body in wire form (CRLF). We rebuild `headers CRLF body`, let the pipeline stamp it,
//! and answer with the difference: the trace header (inserted on top), changed top-level
//! headers (Content-Transfer-Encoding, Content-Type charset) and the new body.

use crate::stamp::TRACE_HEADER;

/// One header exactly as the MTA sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Vec<u8>,
    /// Everything after the colon. With `SMFIP_HDR_LEADSPC` this includes the leading space;
    /// folded lines are separated by `\n` (Postfix, Sendmail) or `\r\n`.
    pub value: Vec<u8>,
}

/// Rebuild the raw message: headers, an empty line, the body. Line endings become CRLF.
/// `leadspc`: the values carry their own leading whitespace; otherwise the MTA ate one
/// space after the colon and we put it back.
pub fn rebuild(headers: &[Header], body: &[u8], leadspc: bool) -> Vec<u8> {
    let size = headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 8)
        .sum::<usize>()
        + body.len()
        + 2;
    let mut out = Vec::with_capacity(size);
    for h in headers {
        out.extend_from_slice(&h.name);
        out.push(b':');
        if !leadspc {
            out.push(b' ');
        }
        push_crlf(&mut out, &h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Append `text` with every bare `\n` turned into `\r\n`.
fn push_crlf(out: &mut Vec<u8>, text: &[u8]) {
    let mut prev = 0u8;
    for &b in text {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

/// Split a message at the empty line: (header block, body). Without an empty line the whole
/// message is header and the body is empty.
pub fn split(msg: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    while pos < msg.len() {
        let end = memchr::memchr(b'\n', &msg[pos..]).map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return (&msg[..pos], &msg[end..]);
        }
        pos = end;
    }
    (msg, &[])
}

/// A header field of a header block: its name and the raw bytes after the colon, without
/// the final line ending (folding kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Parse a header block into fields. A line that is neither a continuation nor `name:` is
/// kept as a field with that whole line as name, so nothing is silently dropped.
pub fn fields(block: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    // (start of field, end of its last line without the line ending)
    let mut current: Option<(usize, usize)> = None;
    while pos < block.len() {
        let nl = memchr::memchr(b'\n', &block[pos..]).map(|i| pos + i);
        let next = nl.map_or(block.len(), |i| i + 1);
        let mut end = nl.unwrap_or(block.len());
        if end > pos && block[end - 1] == b'\r' {
            end -= 1;
        }
        let continuation = matches!(block[pos], b' ' | b'\t');
        match (continuation, current) {
            (true, Some((start, _))) => current = Some((start, end)),
            _ => {
                if let Some((start, end)) = current.take() {
                    out.push(field(&block[start..end]));
                }
                current = Some((pos, end));
            }
        }
        pos = next;
    }
    if let Some((start, end)) = current {
        out.push(field(&block[start..end]));
    }
    out
}

fn field(raw: &[u8]) -> Field<'_> {
    match memchr::memchr(b':', raw) {
        Some(c) => Field {
            name: trim_end(&raw[..c]),
            value: &raw[c + 1..],
        },
        None => Field {
            name: raw,
            value: &[],
        },
    }
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &s[..n]
}

/// A header modification to send at end of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// SMFIR_INSHEADER: insert at `index` (0 = on top).
    Insert {
        index: u32,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    /// SMFIR_CHGHEADER: replace the `index`-th (1-based) header of that name; an empty
    /// value deletes it.
    Change {
        index: u32,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    /// SMFIR_ADDHEADER: append.
    Add { name: Vec<u8>, value: Vec<u8> },
}

/// What the MTA must do to turn the original message into the stamped one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaChanges {
    pub headers: Vec<HeaderEdit>,
    /// The new body (everything after the stamped message's empty line).
    pub body: Vec<u8>,
}

/// Compare the original (rebuilt) message with the stamped one. The trace header the core
/// adds is inserted on top; other differing headers are changed in place by occurrence.
pub fn edits(original: &[u8], stamped: &[u8], leadspc: bool) -> MtaChanges {
    let (orig_block, _) = split(original);
    let (new_block, new_body) = split(stamped);
    let orig = fields(orig_block);
    let new = fields(new_block);

    let mut headers = Vec::new();
    let mut inserted = 0u32;
    let mut names: Vec<Vec<u8>> = Vec::new();
    for f in orig.iter().chain(new.iter()) {
        let lower = f.name.to_ascii_lowercase();
        if !names.contains(&lower) {
            names.push(lower);
        }
    }
    for name in &names {
        let before: Vec<&Field<'_>> = orig
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .collect();
        let after: Vec<&Field<'_>> = new
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .collect();
        let trace = name.eq_ignore_ascii_case(TRACE_HEADER.as_bytes());
        let common = before.len().min(after.len());
        for k in 0..common {
            if before[k].value != after[k].value {
                headers.push(HeaderEdit::Change {
                    index: k as u32 + 1,
                    name: after[k].name.to_vec(),
                    value: wire_value(after[k].value, leadspc),
                });
            }
        }
        for f in &after[common..] {
            let (n, v) = (f.name.to_vec(), wire_value(f.value, leadspc));
            headers.push(if trace {
                // On top, in the order the core wrote them, like a Received header.
                inserted += 1;
                HeaderEdit::Insert {
                    index: inserted - 1,
                    name: n,
                    value: v,
                }
            } else {
                HeaderEdit::Add { name: n, value: v }
            });
        }
        // Delete from the last one down so earlier indexes stay valid.
        for k in (common..before.len()).rev() {
            headers.push(HeaderEdit::Change {
                index: k as u32 + 1,
                name: before[k].name.to_vec(),
                value: Vec::new(),
            });
        }
    }
    MtaChanges {
        headers,
        // SMFIR_REPLBODY carries the body in SMTP form: CRLF lines only.
        body: crate::smtp::outbound::wire::to_crlf(new_body),
    }
}

/// A header value as the MTA expects it in a modification: folded lines joined by `\n`,
/// and without the one leading space the MTA adds itself unless `leadspc` was negotiated.
fn wire_value(raw: &[u8], leadspc: bool) -> Vec<u8> {
    let raw = if !leadspc && raw.first() == Some(&b' ') {
        &raw[1..]
    } else {
        raw
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn rebuild_keeps_names_values_order_and_folding() {
        let headers = [
            h("From", " Ann <ann@example.com>"),
            h("Subject", " a long\n\tfolded subject"),
            h("X-Empty", ""),
        ];
        let raw = rebuild(&headers, b"body\r\n", true);
        assert_eq!(
            raw,
            b"From: Ann <ann@example.com>\r\nSubject: a long\r\n\tfolded subject\r\n\
              X-Empty:\r\n\r\nbody\r\n"
        );
        let raw = rebuild(&[h("Subject", "hi")], b"", false);
        assert_eq!(raw, b"Subject: hi\r\n\r\n");
    }

    #[test]
    fn rebuild_keeps_existing_crlf() {
        let raw = rebuild(&[h("Subject", " a\r\n b")], b"", true);
        assert_eq!(raw, b"Subject: a\r\n b\r\n\r\n");
    }

    #[test]
    fn split_finds_first_empty_line() {
        assert_eq!(
            split(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore"),
            (&b"A: 1\r\nB: 2\r\n"[..], &b"body\r\n\r\nmore"[..])
        );
        assert_eq!(split(b"A: 1\n\nbody"), (&b"A: 1\n"[..], &b"body"[..]));
        assert_eq!(split(b"\r\nbody"), (&b""[..], &b"body"[..]));
        assert_eq!(split(b"A: 1\r\n"), (&b"A: 1\r\n"[..], &b""[..]));
    }

    #[test]
    fn fields_join_continuations() {
        let f = fields(b"A: 1\r\nB:  two\r\n\tlines\r\nC :x\r\n");
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].name, b"B");
        assert_eq!(f[1].value, b"  two\r\n\tlines");
        assert_eq!(f[2].name, b"C");
        assert_eq!(f[2].value, b"x");
    }

    #[test]
    fn edits_insert_trace_and_replace_body() {
        let orig = b"From: a@example.com\r\nSubject: s\r\n\r\nhello\r\n";
        let stamped = b"X-Sigstamp: stamped\r\nFrom: a@example.com\r\nSubject: s\r\n\r\nhello\r\n-- \r\nAnn\r\n";
        let e = edits(orig, stamped, true);
        assert_eq!(
            e.headers,
            vec![HeaderEdit::Insert {
                index: 0,
                name: b"X-Sigstamp".to_vec(),
                value: b" stamped".to_vec()
            }]
        );
        assert_eq!(e.body, b"hello\r\n-- \r\nAnn\r\n");
        let e = edits(orig, stamped, false);
        assert_eq!(
            e.headers,
            vec![HeaderEdit::Insert {
                index: 0,
                name: b"X-Sigstamp".to_vec(),
                value: b"stamped".to_vec()
            }]
        );
    }

    #[test]
    fn edits_change_top_level_content_headers_by_occurrence() {
        let orig = b"Received: a\r\nReceived: b\r\nContent-Type: text/plain;\r\n charset=us-ascii\r\n\r\nx\r\n";
        let stamped = b"X-Sigstamp: stamped\r\nReceived: a\r\nReceived: b\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ny\r\n";
        let e = edits(orig, stamped, true);
        assert_eq!(
            e.headers,
            vec![
                HeaderEdit::Change {
                    index: 1,
                    name: b"Content-Type".to_vec(),
                    value: b" text/plain;\n charset=utf-8".to_vec()
                },
                HeaderEdit::Insert {
                    index: 0,
                    name: b"X-Sigstamp".to_vec(),
                    value: b" stamped".to_vec()
                },
                HeaderEdit::Add {
                    name: b"Content-Transfer-Encoding".to_vec(),
                    value: b" quoted-printable".to_vec()
                },
            ]
        );
    }

    #[test]
    fn edits_delete_removed_headers_from_the_last() {
        let orig = b"X-A: 1\r\nX-A: 2\r\nX-A: 3\r\n\r\n";
        let stamped = b"X-A: 1\r\n\r\n";
        let e = edits(orig, stamped, true);
        let idx: Vec<u32> = e
            .headers
            .iter()
            .map(|h| match h {
                HeaderEdit::Change { index, value, .. } if value.is_empty() => *index,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(idx, vec![3, 2]);
    }

    #[test]
    fn unchanged_headers_give_no_edits() {
        let m = b"From: a\r\nSubject: b\r\n\r\nbody";
        let e = edits(m, m, true);
        assert!(e.headers.is_empty());
        assert_eq!(e.body, b"body");
    }
}
