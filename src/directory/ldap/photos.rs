//! Users' photos from the directory (`thumbnailPhoto` on AD, `jpegPhoto` on OpenLDAP) for
//! `{{photo}}`: read with the users, kept in memory by user id, swapped in whole after each
//! published round. A value that is not a JPEG, PNG, GIF or WebP image is ignored.

use crate::directory::photo::{Photo, PhotoSource};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// The photos of the synced users, by id.
#[derive(Default, Clone)]
pub struct PhotoSet(HashMap<Box<str>, Arc<Photo>>);

/// A round's photos, kept aside until the round is complete.
pub struct Staging {
    full: bool,
    photos: HashMap<Box<str>, Option<Arc<Photo>>>,
}

impl PhotoSet {
    pub fn staging(&self, full: bool) -> Staging {
        Staging {
            full,
            photos: HashMap::new(),
        }
    }

    pub fn finish(&mut self, s: Staging) {
        if s.full {
            self.0 = s
                .photos
                .into_iter()
                .filter_map(|(id, p)| Some((id, p?)))
                .collect();
            return;
        }
        for (id, p) in s.photos {
            match p {
                Some(p) => self.0.insert(id, p),
                None => self.0.remove(&id),
            };
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Staging {
    /// An entry's photo (`None`: it has none, or none that is an image).
    pub fn put(&mut self, id: &str, bytes: Option<Vec<u8>>) {
        let photo = bytes.and_then(|b| {
            let content_type = crate::render::images::sniff(&b, "photo")?;
            Some(Arc::new(Photo {
                content_type: content_type.into(),
                bytes: b,
            }))
        });
        self.photos.insert(id.into(), photo);
    }
}

/// What the renderer reads: the photos of the last published round.
#[derive(Default)]
pub struct LdapPhotos(ArcSwap<PhotoSet>);

impl LdapPhotos {
    pub fn publish(&self, set: &PhotoSet) {
        self.0.store(Arc::new(set.clone()));
    }
}

impl PhotoSource for LdapPhotos {
    fn photo(&self, user_id: &str) -> Option<Arc<Photo>> {
        self.0.load().0.get(user_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_replace_or_change_the_set() {
        let mut set = PhotoSet::default();
        let mut s = set.staging(true);
        s.put("a", Some(b"\xFF\xD8\xFFjpeg".to_vec()));
        s.put("b", Some(b"not an image".to_vec()));
        s.put("c", Some(b"\x89PNG\r\n\x1a\nrest".to_vec()));
        set.finish(s);
        assert_eq!(set.len(), 2);
        let mut s = set.staging(false);
        s.put("a", None);
        set.finish(s);
        let shared = LdapPhotos::default();
        shared.publish(&set);
        assert!(shared.photo("a").is_none());
        assert_eq!(shared.photo("c").unwrap().content_type, "image/png");
    }
}
