//! Stamping one body part: decode it, put the signature in, re-encode it, fix its header.

use super::bottom::Place;
use super::checks::refuse_inline_pgp;
use super::edits::PartEdits;
use super::header;
use super::insert::insert;
use super::mime::Part;
use super::reencode::{reencode, Body};
use super::select::Kind;
use super::{Signature, Skip};

/// The edits that put `sig` into `part`, a body of `kind`, at `place`. `eol` is the
/// message's line ending. Nothing is queued for a part that is refused.
pub(super) fn stamp_part(
    raw: &[u8],
    part: &Part,
    kind: Kind,
    sig: &Signature,
    eol: &[u8],
    place: Place,
) -> Result<PartEdits, Skip> {
    let body = Body::decode(raw, part)?;
    refuse_inline_pgp(&body.decoded)?;
    let inserted = insert(part, &body, kind, sig, eol, place)?;
    let reencoded = reencode(part, &body, inserted.change, eol);
    Ok(PartEdits {
        header: header::edits(raw, part, reencoded.new_cte, inserted.relabel_utf8, eol),
        body: reencoded.edits,
    })
}
