//! Body selection: which text/plain and text/html parts of the MIME tree are the author's
//! text, the ones that take the signature.

use super::mime::{self, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Html,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Bodies {
    pub(super) text: Option<usize>,
    pub(super) html: Option<usize>,
}

/// The main text/plain and text/html bodies under `idx`.
pub(super) fn select(raw: &[u8], tree: &Tree, idx: usize) -> Bodies {
    let part = &tree.parts[idx];
    if part.attachment {
        return Bodies::default();
    }
    let ct = &part.ctype;
    match (ct.mtype.as_str(), ct.subtype.as_str()) {
        ("text", "plain") => Bodies {
            text: Some(idx),
            html: None,
        },
        ("text", "html") => Bodies {
            text: None,
            html: Some(idx),
        },
        ("multipart", "alternative") => {
            // Alternatives go from least to most preferred: keep the last of each kind.
            part.children.iter().fold(Bodies::default(), |acc, &c| {
                let b = select(raw, tree, c);
                Bodies {
                    text: b.text.or(acc.text),
                    html: b.html.or(acc.html),
                }
            })
        }
        ("multipart", "related") => {
            related_root(raw, tree, idx).map_or_else(Bodies::default, |r| select(raw, tree, r))
        }
        ("multipart", "digest") => Bodies::default(),
        ("multipart", _) => mixed(raw, tree, idx),
        _ => Bodies::default(),
    }
}

/// A multipart/mixed (or unknown multipart) `idx`: the body is the first part that is not itself
/// an attached file (some clients put a file or an image ahead of the text); the rest are
/// attached.
fn mixed(raw: &[u8], tree: &Tree, idx: usize) -> Bodies {
    let part = &tree.parts[idx];
    let Some(pos) = part
        .children
        .iter()
        .position(|&c| !is_attached_file(raw, tree, c))
    else {
        return Bodies::default();
    };
    let first = part.children[pos];
    let body = select(raw, tree, first);
    // Apple Mail puts an inline image in the middle of the text as
    // mixed[text, image (inline), text]: the author's text ends in the last text part.
    let Some(kind) = inline_text_kind(raw, tree, first) else {
        return body;
    };
    let tail = part.children[pos + 1..]
        .iter()
        .copied()
        .take_while(|&c| inline_text_kind(raw, tree, c) == Some(kind) || is_inline(raw, tree, c))
        .filter(|&c| inline_text_kind(raw, tree, c) == Some(kind))
        .last();
    match (tail, kind) {
        (Some(t), Kind::Text) => Bodies {
            text: Some(t),
            ..body
        },
        (Some(t), Kind::Html) => Bodies {
            html: Some(t),
            ..body
        },
        (None, _) => body,
    }
}

/// The root of the multipart/related `idx`: named by `start`, else the first part; when that
/// first part is not of the declared root `type`, the first part that is (MHTML-style
/// ordering).
pub(super) fn related_root(raw: &[u8], tree: &Tree, idx: usize) -> Option<usize> {
    let part = &tree.parts[idx];
    let ct = &part.ctype;
    let start = ct
        .param("start")
        .map(|p| p.value.trim().as_bytes().to_vec());
    let by_type = || {
        let want = ct.param("type")?.value.to_ascii_lowercase();
        let is = |c: &usize| {
            let t = &tree.parts[*c].ctype;
            format!("{}/{}", t.mtype, t.subtype) == want
        };
        let first = part.children.first()?;
        if is(first) {
            return Some(*first);
        }
        part.children.iter().copied().find(is)
    };
    start
        .and_then(|id| {
            part.children
                .iter()
                .copied()
                .find(|&c| content_id(raw, tree, c) == Some(id.as_slice()))
        })
        .or_else(by_type)
        .or_else(|| part.children.first().copied())
}

/// A text/plain or text/html leaf shown in line: no attachment disposition, no file name.
fn inline_text_kind(raw: &[u8], tree: &Tree, idx: usize) -> Option<Kind> {
    let p = &tree.parts[idx];
    let kind = match (p.ctype.mtype.as_str(), p.ctype.subtype.as_str()) {
        ("text", "plain") => Kind::Text,
        ("text", "html") => Kind::Html,
        _ => return None,
    };
    let named = p.ctype.params.iter().any(|x| x.name.starts_with("name"))
        || mime::find_field(raw, &p.fields, "content-disposition")
            .and_then(|f| mime::parse_content_type(raw, f.value.clone(), true))
            .is_some_and(|d| d.params.iter().any(|x| x.name.starts_with("filename")));
    (!p.attachment && !named).then_some(kind)
}

/// A leaf of a multipart/mixed that is a file rather than the message text: marked as an
/// attachment, a named text part (`name=` / `filename=` without a disposition is a file
/// too), or any leaf that is not text/plain or text/html (images, documents, message/*).
fn is_attached_file(raw: &[u8], tree: &Tree, idx: usize) -> bool {
    let p = &tree.parts[idx];
    p.attachment || (p.ctype.mtype != "multipart" && inline_text_kind(raw, tree, idx).is_none())
}

/// A part explicitly marked `Content-Disposition: inline` (an image shown in the text).
fn is_inline(raw: &[u8], tree: &Tree, idx: usize) -> bool {
    let p = &tree.parts[idx];
    p.ctype.mtype != "multipart"
        && mime::find_field(raw, &p.fields, "content-disposition")
            .and_then(|f| mime::parse_content_type(raw, f.value.clone(), true))
            .is_some_and(|d| d.mtype == "inline")
}

pub(super) fn content_id<'r>(raw: &'r [u8], tree: &Tree, idx: usize) -> Option<&'r [u8]> {
    let f = mime::find_field(raw, &tree.parts[idx].fields, "content-id")?;
    Some(raw[f.value.clone()].trim_ascii())
}
