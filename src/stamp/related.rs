//! Inline images of the HTML signature: image parts beside the stamped HTML in a
//! multipart/related, so `cid:` references resolve.
//!
//! Three shapes, chosen by where the stamped text/html part sits:
//! - it is the root of a multipart/related (or sits in the multipart/alternative that is):
//!   the image parts go in before that related's close delimiter;
//! - it is any other body part: the part is wrapped, byte for byte, as the first part of a
//!   new `multipart/related; type="text/html"`;
//! - it is the whole message: the top-level Content-* fields move into the inner part and the
//!   message's Content-Type becomes the related; every other header field stays in place.
//!
//! Everything else keeps the core's guarantees: the new bytes are insertions around the
//! stamped part (or, for the whole-message shape, a move of its Content-* fields).

use super::edits::Edits;
use super::mime::{self, Tree};
use super::select::{content_id, related_root};
use super::transfer;
use memchr::memmem;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The domain of the Content-IDs the renderer gives signature images (`<hex>@sigstamp`).
pub const CID_DOMAIN: &str = "sigstamp";

/// Image bytes shared between the render cache and every message that carries them: cloning
/// is a reference count, never a copy.
#[derive(Clone)]
pub struct ImageBytes(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl ImageBytes {
    /// Share any owner of bytes (a `Vec<u8>`, a user's `Photo`, …) without copying them.
    pub fn shared<T: AsRef<[u8]> + Send + Sync + 'static>(owner: Arc<T>) -> Self {
        ImageBytes(owner)
    }
}

impl From<Vec<u8>> for ImageBytes {
    fn from(v: Vec<u8>) -> Self {
        ImageBytes(Arc::new(v))
    }
}

impl Deref for ImageBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl PartialEq for ImageBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for ImageBytes {}

impl fmt::Debug for ImageBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageBytes({} bytes)", self.len())
    }
}

/// An image the HTML signature references as `cid:<cid>`, added to the message as an inline
/// part next to the stamped HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineImage {
    /// The Content-ID without angle brackets, e.g. `3f9c…@sigstamp`.
    pub cid: String,
    /// `image/png`, `image/jpeg`, …
    pub content_type: String,
    /// The file name offered to the recipient's client.
    pub filename: String,
    pub bytes: ImageBytes,
}

/// Why a stamped message carries the signature without its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagesDropped {
    /// An image's Content-ID or content type cannot be written as a header field.
    InvalidImage,
    /// No boundary free of the content was found (never seen in practice).
    NoBoundary,
    /// The message's header could not be restructured (it has no separator line).
    Unstructured,
}

impl ImagesDropped {
    pub fn label(self) -> &'static str {
        match self {
            ImagesDropped::InvalidImage => "invalid_image",
            ImagesDropped::NoBoundary => "no_boundary",
            ImagesDropped::Unstructured => "unstructured_header",
        }
    }
}

impl fmt::Display for ImagesDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImagesDropped::InvalidImage => "an image has an invalid Content-ID or content type",
            ImagesDropped::NoBoundary => "no free MIME boundary",
            ImagesDropped::Unstructured => "the header has no separator line",
        })
    }
}

/// What [`plan`] decided.
pub(super) enum Plan {
    /// Edits were queued; this many image parts are added.
    Queued(usize),
    /// The HTML is the whole message: restructure the stamped output with [`wrap_message`].
    WholeMessage,
}

/// Queue the edits that put `images` beside the stamped text/html part `html`.
pub(super) fn plan(
    raw: &[u8],
    tree: &Tree,
    html: usize,
    images: &[InlineImage],
    eol: &[u8],
    edits: &mut Edits,
) -> Result<Plan, ImagesDropped> {
    if !images.iter().all(valid) {
        return Err(ImagesDropped::InvalidImage);
    }
    if html == 0 {
        return Ok(Plan::WholeMessage);
    }
    let parents = parents(tree);
    if let Some(related) = enclosing_related(raw, tree, &parents, html) {
        return Ok(Plan::Queued(add_to_related(
            raw, tree, related, images, eol, edits,
        )));
    }
    wrap_part(raw, tree, &parents, html, images, eol, edits)?;
    Ok(Plan::Queued(images.len()))
}

/// Whether an image can be written into a header safely.
fn valid(img: &InlineImage) -> bool {
    let cid_ok = !img.cid.is_empty()
        && img
            .cid
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\'));
    let ct_ok = img.content_type.split_once('/').is_some_and(|(t, s)| {
        let token = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        token(t) && token(s)
    });
    cid_ok && ct_ok
}

/// Each part's parent (`usize::MAX` for the message).
fn parents(tree: &Tree) -> Vec<usize> {
    let mut p = vec![usize::MAX; tree.parts.len()];
    for (i, part) in tree.parts.iter().enumerate() {
        for &c in &part.children {
            p[c] = i;
        }
    }
    p
}

fn is(tree: &Tree, idx: usize, mtype: &str, subtype: &str) -> bool {
    let ct = &tree.parts[idx].ctype;
    ct.mtype == mtype && ct.subtype == subtype
}

/// The multipart/related whose root is the HTML part, or the multipart/alternative holding it
/// (Outlook's related[alternative[text, html], images]).
fn enclosing_related(raw: &[u8], tree: &Tree, parents: &[usize], html: usize) -> Option<usize> {
    let mut child = html;
    let mut parent = *parents.get(html)?;
    if parent != usize::MAX && is(tree, parent, "multipart", "alternative") {
        child = parent;
        parent = parents[parent];
    }
    (parent != usize::MAX
        && is(tree, parent, "multipart", "related")
        && related_root(raw, tree, parent) == Some(child))
    .then_some(parent)
}

/// Insert the image parts before the close delimiter of an existing related. Images whose
/// Content-ID the related already holds are not added twice.
fn add_to_related(
    raw: &[u8],
    tree: &Tree,
    related: usize,
    images: &[InlineImage],
    eol: &[u8],
    edits: &mut Edits,
) -> usize {
    let part = &tree.parts[related];
    let (Some(boundary), Some(&last)) = (part.ctype.param_value("boundary"), part.children.last())
    else {
        return 0;
    };
    let present: Vec<&[u8]> = part
        .children
        .iter()
        .filter_map(|&c| content_id(raw, tree, c))
        .collect();
    let mut bytes = Vec::new();
    let mut added = 0;
    for img in images {
        let cid = format!("<{}>", img.cid);
        if present.contains(&cid.as_bytes()) {
            continue;
        }
        delimiter(&mut bytes, &boundary, eol, false);
        image_part(&mut bytes, img, eol);
        added += 1;
    }
    if added > 0 {
        // The last part ends where the line break before the close delimiter starts.
        edits.insert(tree.parts[last].body.end, bytes);
    }
    added
}

/// Wrap the part in a new multipart/related: its bytes, stamped, become the first part.
fn wrap_part(
    raw: &[u8],
    tree: &Tree,
    parents: &[usize],
    html: usize,
    images: &[InlineImage],
    eol: &[u8],
    edits: &mut Edits,
) -> Result<(), ImagesDropped> {
    let part = &tree.parts[html];
    let span = part.start..part.body.end;
    // The new content: the part's bytes and whatever stamping inserts into them.
    let mut content: Vec<&[u8]> = vec![&raw[span.clone()]];
    content.extend(edits.bytes_within(span));
    let mut outer = Vec::new();
    let mut a = parents[html];
    while a != usize::MAX {
        if let Some(b) = tree.parts[a].ctype.param_value("boundary") {
            outer.push(b);
        }
        a = parents[a];
    }
    let outer: Vec<&str> = outer.iter().map(String::as_str).collect();
    let boundary = choose_boundary(&content, &outer).ok_or(ImagesDropped::NoBoundary)?;
    let mut open = Vec::new();
    related_header(&mut open, &boundary, eight_bit(raw, part), eol);
    open.extend_from_slice(eol);
    open.extend_from_slice(b"--");
    open.extend_from_slice(boundary.as_bytes());
    open.extend_from_slice(eol);
    // Nothing else is inserted where the part's header starts; first anyway, to be sure.
    edits.insert_first(part.start, open);
    edits.insert(part.body.end, closing(&boundary, images, eol, false));
    Ok(())
}

/// Whether a part's own transfer encoding is 8bit or binary: the related around it must then
/// say so too (a multipart's encoding covers its parts).
fn eight_bit(raw: &[u8], part: &mime::Part) -> bool {
    mime::find_field(raw, &part.fields, "content-transfer-encoding").is_some_and(|f| {
        matches!(
            mime::simple_value(raw, f.value.clone()).as_str(),
            "8bit" | "binary"
        )
    })
}

/// `Content-Type: multipart/related; …` (and `Content-Transfer-Encoding: 8bit` when needed).
fn related_header(out: &mut Vec<u8>, boundary: &str, eight_bit: bool, eol: &[u8]) {
    out.extend_from_slice(b"Content-Type: multipart/related; type=\"text/html\";");
    out.extend_from_slice(eol);
    out.extend_from_slice(format!("\tboundary=\"{boundary}\"").as_bytes());
    out.extend_from_slice(eol);
    if eight_bit {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit");
        out.extend_from_slice(eol);
    }
}

/// A delimiter line, preceded by the line break that belongs to it.
fn delimiter(out: &mut Vec<u8>, boundary: &str, eol: &[u8], close: bool) {
    out.extend_from_slice(eol);
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    if close {
        out.extend_from_slice(b"--");
    } else {
        out.extend_from_slice(eol);
    }
}

/// The image parts and the close delimiter, appended after the HTML part's last byte.
fn closing(boundary: &str, images: &[InlineImage], eol: &[u8], final_eol: bool) -> Vec<u8> {
    let size: usize = images.iter().map(|i| i.bytes.len() * 4 / 3 + 256).sum();
    let mut out = Vec::with_capacity(size);
    for img in images {
        delimiter(&mut out, boundary, eol, false);
        image_part(&mut out, img, eol);
    }
    delimiter(&mut out, boundary, eol, true);
    if final_eol {
        out.extend_from_slice(eol);
    }
    out
}

/// One image part: header, empty line, base64 in 76-character lines (no final line break:
/// the one before the next delimiter belongs to the delimiter).
fn image_part(out: &mut Vec<u8>, img: &InlineImage, eol: &[u8]) {
    let mut line = |s: String| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(eol);
    };
    line(format!(
        "Content-Type: {}; {}",
        img.content_type,
        file_param("name", &img.filename)
    ));
    line("Content-Transfer-Encoding: base64".into());
    line(format!("Content-ID: <{}>", img.cid));
    line(format!(
        "Content-Disposition: inline; {}",
        file_param("filename", &img.filename)
    ));
    out.extend_from_slice(eol);
    out.extend_from_slice(&transfer::base64_encode(&img.bytes, 76, eol, false));
}

/// `name="x.png"`, or RFC 2231 `name*=utf-8''…` for names a quoted string cannot carry.
fn file_param(key: &str, name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if plain {
        return format!("{key}=\"{name}\"");
    }
    let mut enc = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{key}*=utf-8''{enc}")
}

/// The first candidate boundary that occurs in none of `content` and is neither a prefix of
/// an enclosing boundary nor has one as its prefix (lenient parsers match delimiters by
/// prefix). Deterministic, so the same message always stamps to the same bytes.
pub(super) fn choose_boundary(content: &[&[u8]], outer: &[&str]) -> Option<String> {
    // Four families with different first characters: an enclosing boundary can be the
    // prefix of at most one, so the search always ends.
    const FAMILIES: [&str; 4] = [
        "=_sigstamp_rel_",
        "_=sigstamp_rel_",
        "sigstamp=_rel_",
        ".=sigstamp_rel_",
    ];
    (0..4096usize)
        .map(|n| format!("{}{}", FAMILIES[n % 4], n / 4))
        .find(|b| {
            let finder = memmem::Finder::new(b.as_bytes());
            content.iter().all(|c| finder.find(c).is_none())
                && outer
                    .iter()
                    .all(|o| !o.starts_with(b.as_str()) && !b.starts_with(o))
        })
}

/// The whole-message shape, on the stamped output: the top-level Content-* fields move into
/// the new first part (a Content-Transfer-Encoding of 8bit or binary also stays on top), the
/// Content-Type field's place takes the related's, every other field stays where it is.
pub(super) fn wrap_message(
    out: &[u8],
    start: usize,
    images: &[InlineImage],
    eol: &[u8],
) -> Result<Vec<u8>, ImagesDropped> {
    let (fields, body_start) = mime::parse_header(out, start, out.len());
    let header = &out[start..body_start];
    let separated = header.ends_with(b"\n\n") || header.ends_with(b"\n\r\n");
    if !separated || mime::find_field(out, &fields, "content-type").is_none() {
        return Err(ImagesDropped::Unstructured);
    }
    let body = &out[body_start..];
    let boundary = choose_boundary(&[body], &[]).ok_or(ImagesDropped::NoBoundary)?;
    let has_mime_version = mime::find_field(out, &fields, "mime-version").is_some();
    let line_end = |end: usize| {
        end + memchr::memchr(b'\n', &out[end..body_start]).map_or(body_start - end, |i| i + 1)
    };
    let mut top = Vec::with_capacity(out.len() + images.len() * 256);
    let mut moved = Vec::new();
    let mut typed = false;
    let mut pos = start;
    top.extend_from_slice(&out[..start]);
    for f in &fields {
        let name = &out[f.name.clone()];
        let line = f.name.start..line_end(f.value.end);
        top.extend_from_slice(&out[pos..line.start]);
        pos = line.end;
        if name.len() < 8 || !name[..8].eq_ignore_ascii_case(b"content-") {
            top.extend_from_slice(&out[line.clone()]);
            continue;
        }
        moved.extend_from_slice(&out[line.clone()]);
        if name.eq_ignore_ascii_case(b"content-type") && !typed {
            typed = true;
            if !has_mime_version {
                top.extend_from_slice(b"MIME-Version: 1.0");
                top.extend_from_slice(eol);
            }
            related_header(&mut top, &boundary, false, eol);
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding")
            && matches!(
                mime::simple_value(out, f.value.clone()).as_str(),
                "8bit" | "binary"
            )
        {
            top.extend_from_slice(&out[line]);
        }
    }
    // The rest of the header: lines without a colon, and the empty separator line.
    top.extend_from_slice(&out[pos..body_start]);
    top.extend_from_slice(b"--");
    top.extend_from_slice(boundary.as_bytes());
    top.extend_from_slice(eol);
    top.extend_from_slice(&moved);
    top.extend_from_slice(eol);
    top.extend_from_slice(body);
    top.extend_from_slice(&closing(&boundary, images, eol, true));
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_avoids_content_and_enclosing_boundaries() {
        assert_eq!(
            choose_boundary(&[b"hello"], &[]).as_deref(),
            Some("=_sigstamp_rel_0")
        );
        let c: &[u8] = b"x\n--=_sigstamp_rel_0\n";
        assert_eq!(
            choose_boundary(&[b"", c], &[]).as_deref(),
            Some("_=sigstamp_rel_0")
        );
        // An enclosing boundary that is a prefix of every candidate of one family.
        assert_eq!(
            choose_boundary(&[], &["=_"]).as_deref(),
            Some("_=sigstamp_rel_0")
        );
        // ... or the candidate is a prefix of it.
        assert_eq!(
            choose_boundary(&[], &["=_sigstamp_rel_0_outer"]).as_deref(),
            Some("_=sigstamp_rel_0")
        );
    }

    #[test]
    fn boundary_search_ends_when_everything_is_taken() {
        let all: String = (0..4096usize)
            .map(|n| {
                format!(
                    "{}{}\n",
                    [
                        "=_sigstamp_rel_",
                        "_=sigstamp_rel_",
                        "sigstamp=_rel_",
                        ".=sigstamp_rel_"
                    ][n % 4],
                    n / 4
                )
            })
            .collect();
        assert_eq!(choose_boundary(&[all.as_bytes()], &[]), None);
    }

    proptest::proptest! {
        /// Whatever the content and the enclosing boundaries, the chosen boundary occurs in
        /// none of the content and is no prefix of, nor prefixed by, an enclosing one.
        #[test]
        fn chosen_boundary_is_free(
            content in proptest::collection::vec("(--)?(=_sigstamp_rel_[0-3]|_=sigstamp_rel_[0-2]|sigstamp=_rel_[01]|[a-z=_. ]{0,12})\n?", 0..12),
            outer in proptest::collection::vec("(=_sigstamp_rel_[0-3]?|_=|sigstamp|\\.=sig|[a-z=_]{1,8})", 0..4),
        ) {
            let joined = content.concat();
            let outer: Vec<&str> = outer.iter().map(String::as_str).collect();
            let b = choose_boundary(&[joined.as_bytes()], &outer).expect("a boundary");
            proptest::prop_assert!(!joined.contains(&b));
            for o in &outer {
                proptest::prop_assert!(!o.starts_with(&b) && !b.starts_with(o), "{b} vs {o}");
            }
        }
    }

    #[test]
    fn file_names_are_quoted_or_rfc2231_encoded() {
        assert_eq!(file_param("name", "logo.png"), "name=\"logo.png\"");
        assert_eq!(
            file_param("filename", "Müller \"x\".png"),
            "filename*=utf-8''M%C3%BCller%20%22x%22.png"
        );
    }

    #[test]
    fn invalid_image_metadata_is_refused() {
        let img = |cid: &str, ct: &str| InlineImage {
            cid: cid.into(),
            content_type: ct.into(),
            filename: "a.png".into(),
            bytes: vec![1, 2, 3].into(),
        };
        assert!(valid(&img("abc@sigstamp", "image/png")));
        assert!(!valid(&img("a b@sigstamp", "image/png")));
        assert!(!valid(&img("abc>\r\nBcc: x@sigstamp", "image/png")));
        assert!(!valid(&img("abc@sigstamp", "image/png\r\nX: y")));
        assert!(!valid(&img("abc@sigstamp", "png")));
    }
}
