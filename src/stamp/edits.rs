//! The edit list: byte edits of the raw message, applied in one pass.

use std::ops::Range;

/// Byte edits of the raw message, applied in one pass. Edits never overlap: header edits sit
/// in a part's header, body edits in its body.
#[derive(Default)]
pub(super) struct Edits(Vec<(Range<usize>, Vec<u8>)>);

impl Edits {
    pub(super) fn insert(&mut self, at: usize, bytes: Vec<u8>) {
        self.0.push((at..at, bytes));
    }

    /// An insertion that goes before every other edit at the same offset.
    pub(super) fn insert_first(&mut self, at: usize, bytes: Vec<u8>) {
        self.0.insert(0, (at..at, bytes));
    }

    pub(super) fn replace(&mut self, range: Range<usize>, bytes: Vec<u8>) {
        self.0.push((range, bytes));
    }

    /// Queue a stamped part's edits: its header's first, so that where both sit at one
    /// offset (a header-only part) the new fields and the empty line come before the body.
    pub(super) fn add_part(&mut self, part: PartEdits) {
        self.0.extend(part.header.0);
        self.0.extend(part.body.0);
    }

    /// The new bytes of the edits that fall inside `span`.
    pub(super) fn bytes_within(&self, span: Range<usize>) -> impl Iterator<Item = &[u8]> {
        self.0
            .iter()
            .filter(move |(r, _)| span.start <= r.start && r.end <= span.end)
            .map(|(_, b)| b.as_slice())
    }

    pub(super) fn apply(mut self, raw: &[u8]) -> Vec<u8> {
        // Stable sort: insertions at the same offset keep their order.
        self.0.sort_by_key(|(r, _)| (r.start, r.end));
        let extra: usize = self.0.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(raw.len() + extra);
        let mut pos = 0;
        for (r, bytes) in &self.0 {
            out.extend_from_slice(&raw[pos..r.start]);
            out.extend_from_slice(bytes);
            pos = r.end;
        }
        out.extend_from_slice(&raw[pos..]);
        out
    }
}

/// What stamping one body part changes.
pub(super) struct PartEdits {
    /// The part's header: a new Content-Transfer-Encoding or charset, added fields, and the
    /// empty line of a header-only part.
    pub(super) header: Edits,
    /// The part's body: the signature spliced in, or the body re-encoded whole.
    pub(super) body: Edits,
}
