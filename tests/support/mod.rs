//! Shared helpers of the stamping tests.
#![allow(dead_code)]

pub mod images;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use sigstamp::stamp::charset::Charset;
use sigstamp::stamp::{transfer, Signature, TRACE_HEADER};
use std::path::PathBuf;

/// A token that appears once per stamped body.
pub const MARKER: &str = "SIGSTAMP-MARK";

/// The message with every bare LF made CRLF (the CRLF variant of an LF fixture).
pub fn crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 20);
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' && (i == 0 || b[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

/// A signature with non-ASCII text, so charset handling is exercised on every message.
pub fn test_signature() -> Signature {
    Signature {
        html: format!("<table class=\"sig\"><tr><td>José Müller · {MARKER}</td></tr></table>"),
        text: format!("-- \nJosé Müller · {MARKER}\nHead of Sales\n+1 555 0100"),
        ..Default::default()
    }
}

/// `../shared/corpus` beside the checkout (or `$SIGSTAMP_CORPUS`, for a checkout elsewhere).
/// Missing: skip, except in CI where it must exist.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SIGSTAMP_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
        PathBuf::from,
    );
    let what = format!("the corpus at {}", dir.display());
    sigstamp_testkit::required(&what, dir.join("INDEX.md").exists().then_some(dir))
}

fn header_fields(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some(last) = out.last_mut() {
                last.1.extend_from_slice(line);
            }
        } else if let Some(colon) = line.iter().position(|b| *b == b':') {
            let name = String::from_utf8_lossy(&line[..colon])
                .trim()
                .to_ascii_lowercase();
            out.push((name, line.to_vec()));
        }
    }
    out
}

/// Only Content-Type (its charset) and Content-Transfer-Encoding may change or be added.
fn check_part_header(before: &[u8], after: &[u8]) -> Result<(), String> {
    let may_change =
        |n: &str| n == "content-type" || n == "content-transfer-encoding" || n == "mime-version";
    let b: Vec<_> = header_fields(before)
        .into_iter()
        .filter(|f| !may_change(&f.0))
        .collect();
    let a: Vec<_> = header_fields(after)
        .into_iter()
        .filter(|f| !may_change(&f.0))
        .collect();
    if a != b {
        return Err("a header other than Content-Type/Content-Transfer-Encoding changed".into());
    }
    Ok(())
}

/// Strictly decode a part body as its headers now say.
fn strict_text(part: &mail_parser::MessagePart, raw: &[u8]) -> Option<String> {
    let body = &raw[part.raw_body_offset() as usize..part.raw_end_offset() as usize];
    let cte = part
        .content_transfer_encoding()
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = match cte.as_str() {
        "quoted-printable" => transfer::qp_decode(body),
        "base64" => transfer::base64_decode(body)?,
        _ => body.to_vec(),
    };
    let charset = part.content_type().and_then(|c| c.attribute("charset"));
    Charset::classify(charset, &bytes).decode(&bytes)
}

fn text_of<'a>(p: &'a mail_parser::MessagePart) -> Option<&'a str> {
    match &p.body {
        PartType::Text(t) | PartType::Html(t) => Some(t),
        _ => None,
    }
}

/// Check a stamped message against its input; `expected` bodies must have changed.
pub fn check_stamped(input: &[u8], output: &[u8], expected: usize) -> Result<(), String> {
    check(input, output, Some(expected))
}

fn check(input: &[u8], output: &[u8], expected: Option<usize>) -> Result<(), String> {
    // The trace header opens the header (after an mbox "From " line, if any).
    let skip = if input.starts_with(b"From ") {
        input.iter().position(|b| *b == b'\n').unwrap() + 1
    } else {
        0
    };
    if output[..skip] != input[..skip] {
        return Err("bytes before the header changed".into());
    }
    let prefix = format!("{TRACE_HEADER}: ");
    if !output[skip..].starts_with(prefix.as_bytes()) {
        return Err("trace header is not the first header line".into());
    }
    let nl = skip + output[skip..].iter().position(|b| *b == b'\n').unwrap();
    let out = [&output[..skip], &output[nl + 1..]].concat();
    let out = out.as_slice();
    let a = MessageParser::default()
        .parse(input)
        .ok_or("input does not parse")?;
    let b = MessageParser::default()
        .parse(out)
        .ok_or("output does not parse")?;
    if a.parts.len() != b.parts.len() {
        return Err(format!("{} parts became {}", a.parts.len(), b.parts.len()));
    }
    let mut changed = 0;
    for (i, (pa, pb)) in a.parts.iter().zip(b.parts.iter()).enumerate() {
        let ha = &input[pa.raw_header_offset() as usize..pa.raw_body_offset() as usize];
        let hb = &out[pb.raw_header_offset() as usize..pb.raw_body_offset() as usize];
        if let PartType::Multipart(_) = pa.body {
            if ha != hb {
                return Err(format!("part {i}: multipart header changed"));
            }
            continue;
        }
        let ra = &input[pa.raw_header_offset() as usize..pa.raw_end_offset() as usize];
        let rb = &out[pb.raw_header_offset() as usize..pb.raw_end_offset() as usize];
        if ra == rb {
            continue;
        }
        changed += 1;
        let ct = pb.content_type().map(|c| {
            format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()).to_ascii_lowercase()
        });
        if !matches!(ct.as_deref(), None | Some("text/plain") | Some("text/html")) {
            return Err(format!("part {i} ({ct:?}) changed"));
        }
        check_part_header(ha, hb).map_err(|e| format!("part {i}: {e}"))?;
        // Our strict decoder knows more charsets (ISO-2022-JP, UTF-16) than mail-parser's
        // default build; fall back to mail-parser's text where the input is not strict.
        let sa = strict_text(pa, input);
        let sb = strict_text(pb, out);
        let ta = sa.as_deref().or(text_of(pa)).unwrap_or_default();
        let tb = sb.as_deref().or(text_of(pb)).unwrap_or_default();
        if expected.is_some() && tb.matches(MARKER).count() != 1 {
            return Err(format!(
                "part {i}: marker appears {} times",
                tb.matches(MARKER).count()
            ));
        }
        // Nothing else changed: the old text is the new one minus one inserted run.
        let k = ta
            .chars()
            .zip(tb.chars())
            .take_while(|(x, y)| x == y)
            .count();
        let ka: usize = ta.chars().take(k).map(char::len_utf8).sum();
        let kb: usize = tb.chars().take(k).map(char::len_utf8).sum();
        if !tb[kb..].ends_with(&ta[ka..]) {
            return Err(format!(
                "part {i}: existing text changed around the signature"
            ));
        }
        if sa.is_some() && sb.is_none() {
            return Err(format!(
                "part {i}: no longer decodes strictly in its charset"
            ));
        }
    }
    match expected {
        Some(n) if changed != n => Err(format!("{changed} parts changed, expected {n}")),
        None if changed == 0 => Err("no part changed".into()),
        _ => Ok(()),
    }
}

/// The structural half of [`check_stamped`] for messages whose signature text varies:
/// trace header first, other parts byte-identical, headers in order.
pub fn check_structure(input: &[u8], output: &[u8]) -> Result<(), String> {
    check(input, output, None)
}
