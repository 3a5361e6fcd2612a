//! User photos: the type shared by the store that fetches them from Graph and the renderer
//! that embeds them (`{{photo}}`).

use std::sync::Arc;

/// One user's photo, as Graph served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    /// `image/jpeg`, `image/png`, … (Graph's Content-Type).
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Where the renderer finds photos, by Graph user id. A user without one simply has none.
pub trait PhotoSource: Send + Sync {
    fn photo(&self, user_id: &str) -> Option<Arc<Photo>>;
}

/// No photos at all (no Graph, or photos turned off).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPhotos;

impl PhotoSource for NoPhotos {
    fn photo(&self, _user_id: &str) -> Option<Arc<Photo>> {
        None
    }
}

/// The content type from the first bytes (SVG, being text, by its name and an `<svg` tag).
pub fn sniff(bytes: &[u8], name: &str) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xFF\xD8\xFF") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if name.to_ascii_lowercase().ends_with(".svg")
        && memchr::memmem::find(&bytes[..bytes.len().min(4096)], b"<svg").is_some()
    {
        Some("image/svg+xml")
    } else {
        None
    }
}
