//! Checks for messages stamped with a signature that carries inline images.

use mail_parser::{MessageParser, MimeHeaders, PartType};
use sigstamp::stamp::{InlineImage, Signature, TRACE_HEADER};

/// A real 1×1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

pub const LOGO_CID: &str = "5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c@sigstamp";
pub const PHOTO_CID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9@sigstamp";

/// A photo stand-in: a JPEG header and some bytes, long enough for several base64 lines.
pub fn photo_bytes() -> Vec<u8> {
    let mut v = b"\xFF\xD8\xFF\xE0".to_vec();
    v.extend((0..=255u8).cycle().take(300));
    v
}

/// The signature of the image fixtures and tests: a logo and a photo, both referenced.
pub fn image_signature(marker: &str) -> Signature {
    let mut sig = Signature::new(
        format!(
            "<div class=\"signature\">José Müller · {marker}<br>\
             <img src=\"cid:{LOGO_CID}\" alt=\"Contoso\"> <img src=\"cid:{PHOTO_CID}\" alt=\"\"></div>"
        ),
        format!("-- \nJosé Müller · {marker}\nContoso · Sales"),
    );
    sig.images = vec![
        InlineImage {
            cid: LOGO_CID.into(),
            content_type: "image/png".into(),
            filename: "logo.png".into(),
            bytes: PNG.to_vec().into(),
        },
        InlineImage {
            cid: PHOTO_CID.into(),
            content_type: "image/jpeg".into(),
            filename: "photo.jpg".into(),
            bytes: photo_bytes().into(),
        },
    ];
    sig
}

/// The header field lines of the message header, without the trace header; folded lines
/// joined to their field.
fn top_fields(raw: &[u8]) -> Vec<Vec<u8>> {
    let end = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 1)
        .or_else(|| raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in raw[..end].split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some(l) = out.last_mut() {
                l.extend_from_slice(line);
            }
        } else {
            out.push(line.to_vec());
        }
    }
    out.retain(|l| !l.starts_with(format!("{TRACE_HEADER}:").as_bytes()));
    out
}

fn is_content_field(line: &[u8]) -> bool {
    line.len() > 8 && line[..8].eq_ignore_ascii_case(b"content-")
}

/// A message stamped with `sig` (which has images): it parses; the HTML part holding
/// `marker` sits in a multipart/related (directly, or through the alternative that is the
/// related's root) that holds every image the HTML references as `cid:`, decoding to the
/// signature's bytes; no text/plain part got images; every part of the input that was not
/// stamped is byte-identical in the output; the message's other header fields keep their
/// bytes and order.
pub fn check_images(
    input: &[u8],
    output: &[u8],
    sig: &Signature,
    marker: &str,
) -> Result<(), String> {
    let a = MessageParser::default()
        .parse(input)
        .ok_or("input does not parse")?;
    let b = MessageParser::default()
        .parse(output)
        .ok_or("output does not parse")?;

    // Header fields other than Content-*: same bytes, same order.
    let keep = |v: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        v.into_iter().filter(|l| !is_content_field(l)).collect()
    };
    let (ha, hb) = (keep(top_fields(input)), keep(top_fields(output)));
    let hb: Vec<Vec<u8>> = hb
        .into_iter()
        .filter(|l| !l.starts_with(b"MIME-Version:") || ha.contains(l))
        .collect();
    if ha != hb {
        return Err("top-level header fields changed".into());
    }

    // Unstamped parts: byte-identical, found verbatim in the output.
    if a.parts.len() > 1 {
        for (i, p) in a.parts.iter().enumerate().skip(1) {
            if matches!(p.body, PartType::Multipart(_)) {
                continue;
            }
            let raw = &input[p.raw_header_offset() as usize..p.raw_end_offset() as usize];
            let text = matches!(p.body, PartType::Text(_) | PartType::Html(_));
            if !text && memchr::memmem::find(output, raw).is_none() {
                return Err(format!(
                    "input part {i} is not byte-identical in the output"
                ));
            }
        }
    }

    // Parent of every part of the output.
    let mut parent = vec![None; b.parts.len()];
    for (i, p) in b.parts.iter().enumerate() {
        if let PartType::Multipart(children) = &p.body {
            for &c in children {
                parent[c as usize] = Some(i);
            }
        }
    }
    let ctype = |i: usize| {
        b.parts[i]
            .content_type()
            .map(|c| {
                format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()).to_ascii_lowercase()
            })
            .unwrap_or_else(|| "text/plain".into())
    };
    let html = b
        .parts
        .iter()
        .position(|p| matches!(&p.body, PartType::Html(t) if t.contains(marker)))
        .ok_or("no HTML part with the signature")?;
    let mut holder = parent[html].ok_or("the HTML part is not inside a multipart")?;
    if ctype(holder) == "multipart/alternative" {
        holder = parent[holder].ok_or("alternative without a related around it")?;
    }
    if ctype(holder) != "multipart/related" {
        return Err(format!("the HTML sits in {}, not a related", ctype(holder)));
    }
    let PartType::Multipart(siblings) = &b.parts[holder].body else {
        unreachable!()
    };
    let PartType::Html(html_text) = &b.parts[html].body else {
        unreachable!()
    };
    for img in &sig.images {
        if !html_text.contains(&format!("cid:{}", img.cid)) {
            continue;
        }
        let found: Vec<usize> = siblings
            .iter()
            .map(|&s| s as usize)
            .filter(|&s| b.parts[s].content_id() == Some(img.cid.as_str()))
            .collect();
        let [part] = found[..] else {
            return Err(format!("{} parts with Content-ID {}", found.len(), img.cid));
        };
        if ctype(part) != img.content_type {
            return Err(format!("image {} has type {}", img.cid, ctype(part)));
        }
        if b.parts[part].contents() != &*img.bytes {
            return Err(format!("image {} does not decode to its bytes", img.cid));
        }
    }
    // Text parts never get images; images only sit beside the HTML.
    for (i, p) in b.parts.iter().enumerate() {
        let is_ours = p
            .content_id()
            .is_some_and(|c| sig.images.iter().any(|img| img.cid == c));
        if is_ours && parent[i] != Some(holder) {
            return Err(format!("image part {i} outside the HTML's related"));
        }
    }
    Ok(())
}
