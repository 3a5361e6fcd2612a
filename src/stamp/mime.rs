//! A byte-exact MIME scanner: header fields and parts as ranges into the raw message, so the
//! stamper can splice without re-serialising anything. Linear in the message size (each
//! multipart level scans its own body once for its boundary).

use super::Skip;
use memchr::memmem;
use std::ops::Range;

/// Limits that keep the scan's memory bounded by the message's bytes rather than by what
/// they describe: past any of them the message passes unchanged as [`Skip::TooComplex`].
/// No real client goes near them.
pub const MAX_PARTS: usize = 10_000;
/// Multipart nesting levels below the message.
pub const MAX_DEPTH: usize = 100;
/// Header fields of one part.
pub const MAX_FIELDS: usize = 1_000;

/// One header field. Offsets are absolute in the raw message.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: Range<usize>,
    /// From after the colon to the end of the last continuation line, line ending excluded.
    pub value: Range<usize>,
}

/// Parse the header fields of the entity starting at `start`; returns the fields and where the
/// body starts (after the empty separator line, or `end` when there is none). At most
/// [`MAX_FIELDS`] + 1 fields are kept.
pub fn parse_header(raw: &[u8], start: usize, end: usize) -> (Vec<Field>, usize) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = start;
    while pos < end {
        let line_end = memchr::memchr(b'\n', &raw[pos..end]).map_or(end, |i| pos + i + 1);
        let content_end = trim_eol(raw, pos, line_end);
        if content_end == pos {
            // The empty line: the body follows.
            return (fields, line_end);
        }
        let first = raw[pos];
        if first == b' ' || first == b'\t' {
            // Folded continuation of the previous field.
            if let Some(f) = fields.last_mut() {
                f.value.end = content_end;
            }
        } else if let Some(colon) = memchr::memchr(b':', &raw[pos..content_end]) {
            let name_end = pos + colon;
            let mut name_trim = name_end;
            while name_trim > pos && matches!(raw[name_trim - 1], b' ' | b'\t') {
                name_trim -= 1;
            }
            // One past the limit is enough to tell; the scan goes on to find the body.
            if fields.len() <= MAX_FIELDS {
                fields.push(Field {
                    name: pos..name_trim,
                    value: name_end + 1..content_end,
                });
            }
        } else if fields.is_empty() && pos == start {
            // A part that starts directly with body text has no header at all.
            return (fields, start);
        }
        // Other lines without a colon are kept as they are and otherwise ignored.
        pos = line_end;
    }
    (fields, end)
}

/// Whether the header region `start..end` closes with an empty line.
fn ends_with_empty_line(raw: &[u8], start: usize, end: usize) -> bool {
    let h = &raw[start..end];
    h == b"\n" || h == b"\r\n" || h.ends_with(b"\n\n") || h.ends_with(b"\n\r\n")
}

/// End of the line content, before CRLF or LF.
fn trim_eol(raw: &[u8], start: usize, line_end: usize) -> usize {
    let mut e = line_end;
    if e > start && raw[e - 1] == b'\n' {
        e -= 1;
        if e > start && raw[e - 1] == b'\r' {
            e -= 1;
        }
    }
    e
}

pub fn find_field<'f>(raw: &[u8], fields: &'f [Field], name: &str) -> Option<&'f Field> {
    fields
        .iter()
        .find(|f| raw[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
}

/// A parameter of a structured header, with where its value sits in the raw message.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub value: String,
    /// Raw range of the value (inside the quotes when quoted).
    pub range: Range<usize>,
}

/// A parsed Content-Type (or Content-Disposition: `mtype` is then the disposition).
#[derive(Debug, Clone)]
pub struct ContentType {
    pub mtype: String,
    pub subtype: String,
    pub params: Vec<Param>,
}

impl ContentType {
    pub fn default_text() -> Self {
        ContentType {
            mtype: "text".into(),
            subtype: "plain".into(),
            params: Vec::new(),
        }
    }
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// A parameter's value, also when it is written as RFC 2231 continuations
    /// (`boundary*0="ab"; boundary*1="cd"`) or extended (`boundary*=us-ascii''abcd`).
    pub fn param_value(&self, name: &str) -> Option<String> {
        if let Some(p) = self.param(name) {
            return Some(p.value.clone());
        }
        let mut sections: Vec<(usize, bool, &str)> = Vec::new();
        for p in &self.params {
            let Some(rest) = p.name.strip_prefix(name).and_then(|r| r.strip_prefix('*')) else {
                continue;
            };
            // `name*` alone is one extended section; `name*N` and `name*N*` are numbered.
            let (num, extended) = match rest.strip_suffix('*') {
                Some(n) => (n, true),
                None if rest.is_empty() => ("0", true),
                None => (rest, false),
            };
            let n: usize = num.parse().ok()?;
            sections.push((n, extended, p.value.as_str()));
        }
        sections.sort_by_key(|s| s.0);
        if sections.is_empty() || sections.iter().enumerate().any(|(i, s)| s.0 != i) {
            return None;
        }
        let mut out = Vec::new();
        for (i, &(_, extended, v)) in sections.iter().enumerate() {
            if !extended {
                out.extend_from_slice(v.as_bytes());
                continue;
            }
            // The first extended section starts with charset'language'.
            let v = if i == 0 {
                v.splitn(3, '\'').nth(2).unwrap_or(v)
            } else {
                v
            };
            let b = v.as_bytes();
            let mut j = 0;
            while j < b.len() {
                let hex = (b[j] == b'%')
                    .then(|| b.get(j + 1..j + 3))
                    .flatten()
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        j += 3;
                    }
                    None => {
                        out.push(b[j]);
                        j += 1;
                    }
                }
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// Skip whitespace, folding and (nested) comments.
fn skip_cfws(raw: &[u8], mut i: usize, end: usize) -> usize {
    let mut depth = 0usize;
    while i < end {
        match raw[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    i.min(end)
}

fn take_token(raw: &[u8], i: usize, end: usize) -> usize {
    let mut j = i;
    while j < end && is_token(raw[j]) {
        j += 1;
    }
    j
}

/// Parse `type/subtype; name=value; name="quoted"` from a field value. `None` when the value
/// is not a valid media type (or, with `disposition`, when it has no leading token).
pub fn parse_content_type(
    raw: &[u8],
    value: Range<usize>,
    disposition: bool,
) -> Option<ContentType> {
    let end = value.end;
    let mut i = skip_cfws(raw, value.start, end);
    let t_end = take_token(raw, i, end);
    if t_end == i {
        return None;
    }
    let mtype = String::from_utf8_lossy(&raw[i..t_end]).to_ascii_lowercase();
    i = t_end;
    let subtype = if disposition {
        String::new()
    } else {
        i = skip_cfws(raw, i, end);
        if i >= end || raw[i] != b'/' {
            return None;
        }
        i = skip_cfws(raw, i + 1, end);
        let s_end = take_token(raw, i, end);
        if s_end == i {
            return None;
        }
        let s = String::from_utf8_lossy(&raw[i..s_end]).to_ascii_lowercase();
        i = s_end;
        s
    };
    let params = parse_params(raw, i, end);
    Some(ContentType {
        mtype,
        subtype,
        params,
    })
}

/// Lenient parameter list: tolerates missing semicolons, unquoted values with `=` in them
/// (Outlook Express boundaries), and stray semicolons.
fn parse_params(raw: &[u8], mut i: usize, end: usize) -> Vec<Param> {
    let mut params = Vec::new();
    loop {
        i = skip_cfws(raw, i, end);
        while i < end && raw[i] == b';' {
            i = skip_cfws(raw, i + 1, end);
        }
        if i >= end {
            break;
        }
        let n_end = take_token(raw, i, end);
        if n_end == i {
            i += 1;
            continue;
        }
        let name = String::from_utf8_lossy(&raw[i..n_end]).to_ascii_lowercase();
        i = skip_cfws(raw, n_end, end);
        if i >= end || raw[i] != b'=' {
            continue;
        }
        i = skip_cfws(raw, i + 1, end);
        if i < end && raw[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            let mut value = Vec::new();
            while j < end && raw[j] != b'"' {
                if raw[j] == b'\\' && j + 1 < end {
                    j += 1;
                }
                if raw[j] != b'\r' && raw[j] != b'\n' {
                    value.push(raw[j]);
                }
                j += 1;
            }
            params.push(Param {
                name,
                value: String::from_utf8_lossy(&value).into_owned(),
                range: start..j,
            });
            i = (j + 1).min(end);
        } else {
            // Unquoted: up to `;` or whitespace (accepts `=` and other tspecials).
            let start = i;
            while i < end && !matches!(raw[i], b';' | b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            params.push(Param {
                name,
                value: String::from_utf8_lossy(&raw[start..i]).into_owned(),
                range: start..i,
            });
        }
    }
    params
}

/// The value of a simple field (Content-Transfer-Encoding, Auto-Submitted): its first token,
/// lowercased; tolerates a trailing `;` and comments.
pub fn simple_value(raw: &[u8], value: Range<usize>) -> String {
    let i = skip_cfws(raw, value.start, value.end);
    let mut j = i;
    while j < value.end && !matches!(raw[j], b';' | b' ' | b'\t' | b'\r' | b'\n' | b'(') {
        j += 1;
    }
    String::from_utf8_lossy(&raw[i..j]).to_ascii_lowercase()
}

/// One MIME entity of the tree, stored in a flat arena.
#[derive(Debug, Clone)]
pub struct Part {
    /// The first header byte.
    pub start: usize,
    pub fields: Vec<Field>,
    /// Where the header ends and the body begins (both header edits and body edits key on it).
    pub header_end: usize,
    pub body: Range<usize>,
    /// False when the entity ends inside its header (no empty line): a body needs one first.
    pub has_separator: bool,
    pub ctype: ContentType,
    /// Content-Type present but not a valid media type.
    pub ctype_invalid: bool,
    pub attachment: bool,
    pub children: Vec<usize>,
}

/// The parsed tree; `parts[0]` is the message itself.
#[derive(Debug)]
pub struct Tree {
    pub parts: Vec<Part>,
}

impl Tree {
    pub fn parse(raw: &[u8], start: usize) -> Result<Tree, Skip> {
        let mut tree = Tree { parts: Vec::new() };
        tree.parse_entity(raw, start, raw.len(), 0, false)?;
        Ok(tree)
    }

    fn parse_entity(
        &mut self,
        raw: &[u8],
        start: usize,
        end: usize,
        depth: usize,
        in_digest: bool,
    ) -> Result<usize, Skip> {
        if depth > MAX_DEPTH || self.parts.len() >= MAX_PARTS {
            return Err(Skip::TooComplex);
        }
        let (fields, body_start) = parse_header(raw, start, end);
        if fields.len() > MAX_FIELDS {
            return Err(Skip::TooComplex);
        }
        let has_separator = body_start < end || ends_with_empty_line(raw, start, body_start);
        let (ctype, ctype_invalid) = match find_field(raw, &fields, "content-type") {
            Some(f) => match parse_content_type(raw, f.value.clone(), false) {
                Some(ct) => (ct, false),
                None => (
                    ContentType {
                        mtype: "application".into(),
                        subtype: "octet-stream".into(),
                        params: Vec::new(),
                    },
                    true,
                ),
            },
            None if in_digest => (
                ContentType {
                    mtype: "message".into(),
                    subtype: "rfc822".into(),
                    params: Vec::new(),
                },
                false,
            ),
            None => (ContentType::default_text(), false),
        };
        let attachment = find_field(raw, &fields, "content-disposition")
            .and_then(|f| parse_content_type(raw, f.value.clone(), true))
            .is_some_and(|d| d.mtype == "attachment");
        let idx = self.parts.len();
        let header_end = if body_start > start {
            body_start
        } else {
            start
        };
        self.parts.push(Part {
            start,
            fields,
            header_end,
            body: body_start..end,
            has_separator,
            ctype,
            ctype_invalid,
            attachment,
            children: Vec::new(),
        });
        if self.parts[idx].ctype.mtype == "multipart" {
            let ct = &self.parts[idx].ctype;
            let digest = ct.subtype == "digest";
            let boundary = ct
                .param_value("boundary")
                .filter(|b| !b.is_empty())
                .ok_or_else(|| Skip::Malformed("multipart without boundary".into()))?;
            let room = MAX_PARTS - self.parts.len();
            let ranges = split_multipart(raw, body_start..end, boundary.as_bytes(), room)?;
            let mut children = Vec::with_capacity(ranges.len());
            for r in ranges {
                children.push(self.parse_entity(raw, r.start, r.end, depth + 1, digest)?);
            }
            self.parts[idx].children = children;
        }
        Ok(idx)
    }
}

/// The body ranges of the parts of a multipart body. Errors when the boundary is never used,
/// when there is no part, or when the closing delimiter is missing; [`Skip::TooComplex`]
/// past `room` parts (before collecting more).
fn split_multipart(
    raw: &[u8],
    body: Range<usize>,
    boundary: &[u8],
    room: usize,
) -> Result<Vec<Range<usize>>, Skip> {
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delim);
    let hay = &raw[body.clone()];
    let mut parts = Vec::new();
    let mut open: Option<usize> = None; // start of the current part
    let mut search = 0usize;
    while let Some(rel) = finder.find(&hay[search..]) {
        let at = search + rel;
        search = at + delim.len();
        if at > 0 && hay[at - 1] != b'\n' {
            continue;
        }
        let after = at + delim.len();
        let line_end = memchr::memchr(b'\n', &hay[after..]).map_or(hay.len(), |i| after + i + 1);
        let rest = &hay[after..line_end];
        let close = rest.starts_with(b"--");
        if !close
            && !rest
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            // "--boundaryXYZ": a longer boundary of a nested part, not ours.
            continue;
        }
        if let Some(s) = open.take() {
            // The line break before the delimiter belongs to the delimiter.
            let mut e = at;
            if e > s && hay[e - 1] == b'\n' {
                e -= 1;
                if e > s && hay[e - 1] == b'\r' {
                    e -= 1;
                }
            }
            if parts.len() >= room {
                return Err(Skip::TooComplex);
            }
            parts.push(body.start + s..body.start + e.max(s));
        }
        if close {
            if parts.is_empty() {
                return Err(Skip::Malformed("multipart with no parts".into()));
            }
            return Ok(parts);
        }
        open = Some(line_end);
        search = line_end;
    }
    Err(Skip::Malformed(if open.is_some() || !parts.is_empty() {
        "missing closing boundary".into()
    } else {
        "multipart boundary never used".into()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(s: &str) -> Option<ContentType> {
        parse_content_type(s.as_bytes(), 0..s.len(), false)
    }

    #[test]
    fn rfc2231_parameter_values() {
        let cases: &[(&str, Option<&str>)] = &[
            ("multipart/mixed; boundary=\"plain\"", Some("plain")),
            (
                "multipart/mixed; boundary*0=\"ab\"; boundary*1=cd",
                Some("abcd"),
            ),
            (
                "multipart/mixed; boundary*1=\"cd\"; boundary*0=\"ab\"",
                Some("abcd"),
            ),
            ("multipart/mixed; boundary*=us-ascii''a%20b", Some("a b")),
            (
                "multipart/mixed; boundary*0*=us-ascii'en'a%3D; boundary*1=b",
                Some("a=b"),
            ),
            ("multipart/mixed; boundary*1=\"cd\"", None),
            ("multipart/mixed; charset=x", None),
        ];
        for (input, want) in cases {
            let got = ct(input).unwrap().param_value("boundary");
            assert_eq!(got.as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn content_types() {
        type Expected = Option<(
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
        )>;
        let cases: &[(&str, Expected)] = &[
            ("text/plain", Some(("text", "plain", &[]))),
            (
                " Text/HTML ; charset=\"UTF-8\"",
                Some(("text", "html", &[("charset", "UTF-8")])),
            ),
            (
                "multipart/alternative; boundary=----=_NextPart_000_0005",
                Some((
                    "multipart",
                    "alternative",
                    &[("boundary", "----=_NextPart_000_0005")],
                )),
            ),
            (
                "multipart/mixed;\r\n\tboundary=\"a b\"; charset=x",
                Some((
                    "multipart",
                    "mixed",
                    &[("boundary", "a b"), ("charset", "x")],
                )),
            ),
            (
                "text/plain (comment); charset=us-ascii",
                Some(("text", "plain", &[("charset", "us-ascii")])),
            ),
            ("application-x-gzip", None),
            ("text/", None),
            ("", None),
        ];
        for (input, expected) in cases {
            let got = ct(input);
            match (got, expected) {
                (None, None) => {}
                (Some(g), Some((t, s, params))) => {
                    assert_eq!((g.mtype.as_str(), g.subtype.as_str()), (*t, *s), "{input}");
                    let got_params: Vec<(&str, &str)> = g
                        .params
                        .iter()
                        .map(|p| (p.name.as_str(), p.value.as_str()))
                        .collect();
                    assert_eq!(got_params, params.to_vec(), "{input}");
                    for p in &g.params {
                        if !input[p.range.clone()].contains(' ') {
                            assert_eq!(&input[p.range.clone()], p.value, "{input}");
                        }
                    }
                }
                (g, e) => panic!("{input}: got {g:?}, expected {e:?}"),
            }
        }
    }

    #[test]
    fn header_fields_and_folding() {
        let raw = b"A: 1\r\nB: two\r\n  lines\r\nC:3\r\n\r\nbody";
        let (fields, body) = parse_header(raw, 0, raw.len());
        assert_eq!(fields.len(), 3);
        assert_eq!(&raw[fields[1].value.clone()], b" two\r\n  lines");
        assert_eq!(&raw[body..], b"body");
    }

    #[test]
    fn multipart_split_table() {
        let cases: &[(&str, Result<Vec<&str>, &str>)] = &[
            ("pre\n--b\nA\n--b\nB\n--b--\nepi", Ok(vec!["A", "B"])),
            ("--b\r\nA\r\n--b--\r\n", Ok(vec!["A"])),
            (
                "--b \nA\n--bc\nstill A\n--b--",
                Ok(vec!["A\n--bc\nstill A"]),
            ),
            ("--b\nA\n--b\nB\n", Err("missing closing boundary")),
            ("no delimiters", Err("multipart boundary never used")),
            ("--b--\n", Err("multipart with no parts")),
            ("x--b\nA\n--b--", Err("multipart with no parts")),
        ];
        for (body, expected) in cases {
            let raw = body.as_bytes();
            let got = split_multipart(raw, 0..raw.len(), b"b", usize::MAX)
                .map(|v| v.into_iter().map(|r| &body[r]).collect::<Vec<_>>());
            match (got, expected) {
                (Ok(g), Ok(e)) => assert_eq!(&g, e, "{body:?}"),
                (Err(Skip::Malformed(m)), Err(e)) => assert_eq!(m, *e, "{body:?}"),
                (g, e) => panic!("{body:?}: got {g:?}, expected {e:?}"),
            }
        }
    }
}
