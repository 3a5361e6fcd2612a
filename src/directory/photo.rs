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
