//! What leaves a message unchanged before any edit: the trace header, bounces, automatic
//! mail, and content that must not change (signatures, encryption, reports, invitations).

use super::mime::{self, Field, Tree};
use super::{place, Skip, TRACE_HEADER};

pub(super) fn precheck_fields(
    raw: &[u8],
    fields: &[Field],
    auto_replies: bool,
) -> Result<(), Skip> {
    let value = |f: &Field| mime::simple_value(raw, f.value.clone());
    for f in fields {
        let name = &raw[f.name.clone()];
        if name.eq_ignore_ascii_case(TRACE_HEADER.as_bytes()) {
            return Err(Skip::AlreadyStamped);
        }
        if name.eq_ignore_ascii_case(b"return-path") && is_null_path(&raw[f.value.clone()]) {
            return Err(Skip::NullSender);
        }
        if name.eq_ignore_ascii_case(b"auto-submitted") {
            let v = value(f);
            if v != "no" && !(auto_replies && v == "auto-replied") {
                return Err(Skip::AutoSubmitted);
            }
        }
    }
    Ok(())
}

/// `<>` with any whitespace, folding and comments around or inside it.
pub(super) fn is_null_path(value: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut rest = Vec::with_capacity(2);
    for &b in value {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            _ if depth > 0 || b.is_ascii_whitespace() => {}
            _ => rest.push(b),
        }
        if rest.len() > 2 {
            return false;
        }
    }
    rest == b"<>"
}

/// Refuse messages whose content must not change: signatures, encryption, reports,
/// invitations, TNEF-only. Attached messages (message/*) are not looked into.
pub(super) fn refuse_protected(tree: &Tree, idx: usize) -> Result<(), Skip> {
    let part = &tree.parts[idx];
    let ct = &part.ctype;
    match (ct.mtype.as_str(), ct.subtype.as_str()) {
        ("multipart", "signed") => return Err(Skip::Signed),
        ("multipart", "encrypted") => return Err(Skip::Encrypted),
        ("multipart", "report") => return Err(Skip::Report),
        ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
            let kind = ct.param("smime-type").map(|p| p.value.to_ascii_lowercase());
            return Err(match kind.as_deref() {
                Some("signed-data" | "certs-only") => Skip::Signed,
                _ => Skip::Encrypted,
            });
        }
        ("application", "pgp-encrypted") => return Err(Skip::Encrypted),
        ("text", "calendar") | ("application", "ics") => return Err(Skip::Calendar),
        ("application", "ms-tnef" | "vnd.ms-tnef") if idx == 0 => return Err(Skip::Tnef),
        _ => {}
    }
    part.children
        .iter()
        .try_for_each(|&c| refuse_protected(tree, c))
}

/// Inline PGP in a body we would stamp: changing it would break the signature or the armor.
pub(super) fn refuse_inline_pgp(decoded: &[u8]) -> Result<(), Skip> {
    let mut from = 0;
    while let Some(at) = place::find_ci(decoded, b"-----BEGIN PGP ", from) {
        let rest = &decoded[at + 15..];
        if rest.starts_with(b"SIGNED MESSAGE-----") {
            return Err(Skip::Signed);
        }
        if rest.starts_with(b"MESSAGE-----") {
            return Err(Skip::Encrypted);
        }
        from = at + 1;
    }
    Ok(())
}
