//! A small cache of rendered signatures. A handlebars render of the default pair costs tens
//! of microseconds, far more than the lookup before it, while a user's signature changes
//! only when the user's attributes or the templates do. Each [`super::Templates`] owns one
//! cache, so new templates start empty; an entry is used only if the user's attributes are
//! equal to those it was rendered from, so a directory change is never served stale. The
//! same holds for the user's photo: an entry rendered with another photo (or none) is not
//! used. Images are shared (`ImageBytes`), so a hit copies no image bytes.

use crate::directory::photo::Photo;
use crate::directory::User;
use crate::stamp::Signature;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// At most this many signatures are kept (a few KB each); when full, the cache starts over.
/// Cheap and good enough: the senders of a busy hour fit, a whole large tenant need not.
pub(super) const CAPACITY: usize = 2048;

struct Entry {
    user: User,
    photo: Option<Arc<Photo>>,
    sig: Signature,
}

/// The same photo: the very same one (the usual case), or equal content.
fn same_photo(a: Option<&Arc<Photo>>, b: Option<&Arc<Photo>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

#[derive(Default)]
pub(super) struct Cache {
    // template name → user key → entry; nested so a hit borrows both keys (no allocation).
    map: Mutex<HashMap<String, HashMap<String, Entry>>>,
}

/// Which entry a user would be found under: any stable per-user string will do, because
/// entries are checked against the attributes.
fn user_key(user: &User) -> Option<&str> {
    user.id()
        .or_else(|| user.str("mail"))
        .or_else(|| user.str("userPrincipalName"))
}

impl Cache {
    pub(super) fn get(
        &self,
        name: &str,
        user: &User,
        photo: Option<&Arc<Photo>>,
    ) -> Option<Signature> {
        let key = user_key(user)?;
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.get(name)?.get(key)?;
        (entry.user == *user && same_photo(entry.photo.as_ref(), photo)).then(|| entry.sig.clone())
    }

    pub(super) fn put(&self, name: &str, user: &User, photo: Option<Arc<Photo>>, sig: &Signature) {
        let Some(key) = user_key(user) else { return };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.values().map(HashMap::len).sum::<usize>() >= CAPACITY {
            map.clear();
        }
        map.entry(name.to_string()).or_default().insert(
            key.to_string(),
            Entry {
                user: user.clone(),
                photo,
                sig: sig.clone(),
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let map = self.map.lock().unwrap();
        map.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: serde_json::Value) -> User {
        User::new(v.as_object().unwrap().clone())
    }

    fn sig(s: &str) -> Signature {
        Signature {
            html: s.into(),
            text: s.into(),
            ..Default::default()
        }
    }

    #[test]
    fn hit_only_for_equal_attributes_and_same_template() {
        let c = Cache::default();
        let a = user(json!({"mail": "a@x.example", "jobTitle": "CEO"}));
        assert_eq!(c.get("default", &a, None), None);
        c.put("default", &a, None, &sig("one"));
        assert_eq!(c.get("default", &a, None), Some(sig("one")));
        assert_eq!(c.get("sales", &a, None), None);
        let changed = user(json!({"mail": "a@x.example", "jobTitle": "Chair"}));
        assert_eq!(
            c.get("default", &changed, None),
            None,
            "stale signature served"
        );
        // Users without any key are simply not cached.
        let anon = user(json!({"displayName": "Nobody"}));
        c.put("default", &anon, None, &sig("x"));
        assert_eq!(c.get("default", &anon, None), None);
    }

    #[test]
    fn a_changed_photo_is_a_miss() {
        let c = Cache::default();
        let a = user(json!({"id": "1", "mail": "a@x.example"}));
        let photo = |b: &[u8]| {
            Arc::new(Photo {
                content_type: "image/jpeg".into(),
                bytes: b.to_vec(),
            })
        };
        let p1 = photo(b"one");
        c.put("default", &a, Some(p1.clone()), &sig("with"));
        assert_eq!(c.get("default", &a, Some(&p1)), Some(sig("with")));
        // Fetched again, same bytes: still a hit.
        assert_eq!(
            c.get("default", &a, Some(&photo(b"one"))),
            Some(sig("with"))
        );
        assert_eq!(c.get("default", &a, Some(&photo(b"two"))), None);
        assert_eq!(c.get("default", &a, None), None);
    }

    #[test]
    fn bounded() {
        let c = Cache::default();
        for i in 0..CAPACITY + 10 {
            c.put(
                "default",
                &user(json!({ "mail": format!("u{i}@x.example") })),
                None,
                &sig("s"),
            );
        }
        assert!(c.len() <= CAPACITY, "{}", c.len());
    }
}
