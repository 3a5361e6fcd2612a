//! A template's second part (`<name>.bottom.html.hbs` / `.bottom.txt.hbs`): a disclaimer or a
//! banner at the very end of the body, after the quoted thread. It goes into the message the
//! main part was just stamped into, so both are one stamping: one trace header, and the result
//! is never stamped again.

use super::edits::Edits;
use super::mime::Tree;
use super::part::stamp_part;
use super::raw::{bom_len, message_eol};
use super::select::{select, Kind};
use super::{stamp, Options, Signature, Skip, Stamped};

/// Where a signature goes in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Above the quoted earlier message of a reply or forward, else at the end of the
    /// author's text (see `place.rs`).
    Main,
    /// The very end: after the quoted thread, before `</body>`.
    End,
}

/// [`stamp`] with `sig`, then `bottom` (if any) at the end of each body that took `sig`.
/// The bottom part's images travel with the main part's (one multipart/related for both).
/// A bottom part that cannot go in leaves the main stamping as it is.
pub fn stamp_with_bottom(
    raw: &[u8],
    sig: &Signature,
    bottom: Option<&Signature>,
    opts: &Options,
) -> Result<Stamped, Skip> {
    let Some(bottom) = bottom else {
        return stamp(raw, sig, opts);
    };
    let merged;
    let sig = if bottom.images.is_empty() {
        sig
    } else {
        let mut s = sig.clone();
        for img in &bottom.images {
            if !s.images.iter().any(|i| i.cid == img.cid) {
                s.images.push(img.clone());
            }
        }
        merged = s;
        &merged
    };
    let mut out = stamp(raw, sig, opts)?;
    let kinds = [
        (Kind::Text, out.text_parts > 0 && !blank(&bottom.text)),
        (Kind::Html, out.html_parts > 0 && !blank(&bottom.html)),
    ];
    if let Some(message) = append(&out.message, bottom, kinds) {
        out.message = message;
    }
    Ok(out)
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Insert `bottom` at the end of the bodies of the kinds asked for; `None` when none took it.
fn append(raw: &[u8], bottom: &Signature, kinds: [(Kind, bool); 2]) -> Option<Vec<u8>> {
    let tree = Tree::parse(raw, bom_len(raw)).ok()?;
    let bodies = select(raw, &tree, 0);
    let eol = message_eol(raw);
    let mut edits = Edits::default();
    let mut done = 0;
    for (kind, wanted) in kinds {
        let idx = match kind {
            Kind::Text => bodies.text,
            Kind::Html => bodies.html,
        };
        let (Some(idx), true) = (idx, wanted) else {
            continue;
        };
        let part = &tree.parts[idx];
        if let Ok(part_edits) = stamp_part(raw, part, kind, bottom, eol, Place::End) {
            edits.add_part(part_edits);
            done += 1;
        }
    }
    (done > 0).then(|| edits.apply(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bottom() -> Signature {
        Signature::new("<p>Disclaimer</p>", "Disclaimer: confidential.")
    }

    /// The main part above the quote, the bottom part after it, one trace header; a second
    /// run changes nothing.
    #[test]
    fn main_above_the_quote_bottom_at_the_end() {
        let sig = Signature::new("<p>Sig</p>", "-- \nAna");
        let html = b"Content-Type: text/html\n\n<html><body><p>Hi</p><div class=\"gmail_quote\">On x wrote:<blockquote>q</blockquote></div></body></html>\n";
        let out = stamp_with_bottom(html, &sig, Some(&bottom()), &Options::default()).unwrap();
        let s = String::from_utf8(out.message.clone()).unwrap();
        assert!(
            s.contains("<p>Hi</p><p>Sig</p><div class=\"gmail_quote\">"),
            "{s}"
        );
        assert!(
            s.contains("</blockquote></div><p>Disclaimer</p></body>"),
            "{s}"
        );
        assert_eq!(s.matches("X-Sigstamp").count(), 1, "{s}");
        assert_eq!(
            stamp_with_bottom(&out.message, &sig, Some(&bottom()), &Options::default()),
            Err(Skip::AlreadyStamped)
        );
        let text = b"Content-Type: text/plain\n\nHi\n\nOn x, Bob wrote:\n> q\n";
        let out = stamp_with_bottom(text, &sig, Some(&bottom()), &Options::default()).unwrap();
        let s = String::from_utf8(out.message).unwrap();
        assert!(
            s.ends_with(
                "\n\nHi\n\n-- \nAna\n\nOn x, Bob wrote:\n> q\n\nDisclaimer: confidential.\n"
            ),
            "{s}"
        );
    }

    /// A bottom part with only one half goes only where it has content.
    #[test]
    fn an_empty_half_adds_nothing() {
        let sig = Signature::new("<p>Sig</p>", "-- \nAna");
        let raw = b"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nHi\n--b\nContent-Type: text/html\n\n<p>Hi</p>\n--b--\n";
        let only_html = Signature::new("<p>Banner</p>", "\n");
        let out = stamp_with_bottom(raw, &sig, Some(&only_html), &Options::default()).unwrap();
        let plain = stamp(raw, &sig, &Options::default()).unwrap();
        let (got, want) = (
            String::from_utf8(out.message).unwrap(),
            String::from_utf8(plain.message).unwrap(),
        );
        assert_eq!(got, want.replace("<p>Sig</p>", "<p>Sig</p><p>Banner</p>"));
    }
}
