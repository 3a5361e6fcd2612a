//! The attribute cache: users in Microsoft Graph's user shape, indexed by every address.
//!
//! Reads are lock-free: an immutable [`Index`] is swapped in whole (arc-swap). Sources
//! (a JSON file, Microsoft Graph, the on-disk snapshot) replace the base users; local
//! overrides are layered on top and merged into the index, so a lookup is one hash probe.

pub mod file;
pub mod graph;
pub mod memberships;
pub mod overrides;
pub mod photo;
pub mod snapshot;
mod user;

pub use user::{AttrValue, DeltaEntry, Fields, Name, User};

use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// A user's attributes as a `serde_json` object: the shape users are built from in tests
/// and by callers holding JSON (see [`User::new`]).
pub type Attributes = Map<String, Value>;

/// Where the base users came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Empty,
    File,
    Graph,
    Snapshot,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Empty => "empty",
            Source::File => "file",
            Source::Graph => "graph",
            Source::Snapshot => "snapshot",
        }
    }
}

/// An immutable lookup table; replaced whole on every change.
#[derive(Debug, Default)]
pub struct Index {
    // Box<str> keys: 8 bytes a slot less than String (two addresses a user, typically).
    by_address: HashMap<Box<str>, Arc<User>>,
    users: Vec<Arc<User>>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn users(&self) -> &[Arc<User>] {
        &self.users
    }

    /// The user found by `address` (any case, surrounding blanks and `<>` ignored).
    pub fn lookup(&self, address: &str) -> Option<Arc<User>> {
        self.by_address
            .get(normalize_address(address).as_ref())
            .cloned()
    }
}

/// The form addresses are indexed under: trimmed, without `<>`, ASCII-lowercased. Borrows
/// when nothing needs changing (the usual case: the core already lowercases From).
pub fn normalize_address(address: &str) -> Cow<'_, str> {
    let a = address.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .map_or(a, str::trim);
    if a.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(a.to_ascii_lowercase())
    } else {
        Cow::Borrowed(a)
    }
}

/// Base users plus the metadata the status endpoint shows.
#[derive(Debug, Clone)]
struct Base {
    users: Arc<Vec<Arc<User>>>,
    source: Source,
    loaded_at: Option<OffsetDateTime>,
    /// The snapshot these users came from (its deltaLink and time), when they did.
    from_snapshot: Option<Arc<snapshot::Loaded>>,
}

/// The shared directory. Cheap to clone behind an `Arc`.
pub struct Directory {
    index: ArcSwap<Index>,
    // Writers are rare (sync, override edits); they serialise here and rebuild the index.
    state: Mutex<(Base, Arc<overrides::Overrides>)>,
    // Group memberships (`memberOf`), a layer under the overrides; written under `state`.
    memberships: ArcSwap<memberships::Memberships>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    pub fn new() -> Self {
        Directory {
            index: ArcSwap::from_pointee(Index::default()),
            state: Mutex::new((
                Base {
                    users: Arc::new(Vec::new()),
                    source: Source::Empty,
                    loaded_at: None,
                    from_snapshot: None,
                },
                Arc::new(overrides::Overrides::default()),
            )),
            memberships: ArcSwap::from_pointee(memberships::Memberships::default()),
        }
    }

    /// Lock-free lookup by any address, case-insensitive. On the hot path (once per
    /// message): an address that is already lowercase is looked up without allocating.
    pub fn lookup(&self, address: &str) -> Option<Arc<User>> {
        self.index.load().lookup(address)
    }

    /// The current index (for listing, status, preview).
    pub fn snapshot(&self) -> Arc<Index> {
        self.index.load_full()
    }

    pub fn source(&self) -> Source {
        self.state.lock().unwrap().0.source
    }

    /// When the base users were last replaced.
    pub fn loaded_at(&self) -> Option<OffsetDateTime> {
        self.state.lock().unwrap().0.loaded_at
    }

    /// The base users as the source gave them, without overrides.
    pub fn base_users(&self) -> Arc<Vec<Arc<User>>> {
        self.state.lock().unwrap().0.users.clone()
    }

    /// Replace the base users (a sync, a file load, a snapshot load).
    pub fn replace_users(&self, users: Vec<User>, source: Source) {
        self.replace_shared_users(users.into_iter().map(Arc::new).collect(), source);
    }

    /// [`Directory::replace_users`] with users that may be shared with the current base (a
    /// sync keeps its unchanged users, so memory grows only by what changed).
    pub fn replace_shared_users(&self, users: Vec<Arc<User>>, source: Source) {
        self.replace_base(users, source, None);
    }

    /// Replace the base users with a snapshot's (`Source::Snapshot`), remembering its header
    /// so a refresher can continue from its deltaLink without reading the file again.
    pub fn replace_from_snapshot(&self, users: Vec<User>, loaded: snapshot::Loaded) {
        let users = users.into_iter().map(Arc::new).collect();
        self.replace_base(users, Source::Snapshot, Some(Arc::new(loaded)));
    }

    /// The snapshot the current base users were loaded from, if they were.
    pub fn from_snapshot(&self) -> Option<Arc<snapshot::Loaded>> {
        self.state.lock().unwrap().0.from_snapshot.clone()
    }

    fn replace_base(
        &self,
        users: Vec<Arc<User>>,
        source: Source,
        from_snapshot: Option<Arc<snapshot::Loaded>>,
    ) {
        let mut st = self.state.lock().unwrap();
        st.0 = Base {
            users: Arc::new(users),
            source,
            loaded_at: Some(OffsetDateTime::now_utc()),
            from_snapshot,
        };
        self.rebuild(&st.0, &st.1);
    }

    /// Replace the overrides layer; applies at once.
    pub fn set_overrides(&self, ov: overrides::Overrides) {
        let mut st = self.state.lock().unwrap();
        st.1 = Arc::new(ov);
        self.rebuild(&st.0, &st.1);
    }

    pub fn overrides(&self) -> Arc<overrides::Overrides> {
        self.state.lock().unwrap().1.clone()
    }

    /// Replace the group-membership layer (`memberOf`); applies at once, kept across syncs
    /// and override edits.
    pub fn set_memberships(&self, m: memberships::Memberships) {
        let st = self.state.lock().unwrap();
        self.memberships.store(Arc::new(m));
        self.rebuild(&st.0, &st.1);
    }

    pub fn memberships(&self) -> Arc<memberships::Memberships> {
        self.memberships.load_full()
    }

    fn rebuild(&self, base: &Base, ov: &overrides::Overrides) {
        let mut by_address = HashMap::with_capacity(base.users.len() * 2);
        let mut users = Vec::with_capacity(base.users.len());
        let groups = self.memberships.load();
        for u in base.users.iter() {
            let addresses = u.addresses();
            // Users no override names share the base copy: one copy of the tenant in memory.
            let touched = !ov.is_empty() && addresses.iter().any(|a| ov.by_address.contains_key(a));
            let grouped = groups.apply(u);
            let merged = match (grouped, touched) {
                (Some(g), true) => Arc::new(ov.apply(&g)),
                (Some(g), false) => Arc::new(g),
                (None, true) => Arc::new(ov.apply(u)),
                (None, false) => u.clone(),
            };
            // Overrides cannot change the addresses (they are protected attributes).
            for a in addresses {
                by_address
                    .entry(a.into_boxed_str())
                    .or_insert_with(|| merged.clone());
            }
            users.push(merged);
        }
        self.index.store(Arc::new(Index { by_address, users }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: Value) -> User {
        User::new(v.as_object().unwrap().clone())
    }

    fn sample() -> Directory {
        let d = Directory::new();
        d.replace_users(
            vec![
                user(json!({
                    "displayName": "José Müller",
                    "mail": "Jose.Mueller@Contoso.example",
                    "userPrincipalName": "jmueller@contoso.example",
                    "proxyAddresses": [
                        "SMTP:jose.mueller@contoso.example",
                        "smtp:j.mueller@contoso.example",
                        "SMTP: spaced@contoso.example",
                        "SIP:sip-only@contoso.example",
                        "X500:/o=Org/cn=x"
                    ]
                })),
                user(json!({"displayName": "No Mail", "mail": null,
                            "userPrincipalName": "nomail@contoso.example"})),
            ],
            Source::File,
        );
        d
    }

    #[test]
    fn lookup_by_every_address_kind_and_case() {
        let d = sample();
        for a in [
            "jose.mueller@contoso.example",
            "JOSE.MUELLER@CONTOSO.EXAMPLE",
            "jmueller@contoso.example",
            "JMueller@Contoso.Example",
            "j.mueller@contoso.example",
            "spaced@contoso.example",
            " <J.Mueller@contoso.example> ",
        ] {
            let u = d.lookup(a).unwrap_or_else(|| panic!("{a} not found"));
            assert_eq!(u.str("displayName"), Some("José Müller"), "{a}");
        }
        assert_eq!(
            d.lookup("nomail@contoso.example")
                .unwrap()
                .str("displayName"),
            Some("No Mail")
        );
        assert!(d.lookup("sip-only@contoso.example").is_none());
        assert!(d.lookup("stranger@contoso.example").is_none());
        assert!(d.lookup("").is_none());
        assert_eq!(d.snapshot().len(), 2);
        assert_eq!(d.source(), Source::File);
        assert!(d.loaded_at().is_some());
    }

    #[test]
    fn lowercase_addresses_are_not_copied() {
        assert!(matches!(
            normalize_address("a.b@example.com"),
            Cow::Borrowed("a.b@example.com")
        ));
        assert!(matches!(
            normalize_address("<a@b.example>"),
            Cow::Borrowed("a@b.example")
        ));
        assert_eq!(normalize_address(" A@B.example "), "a@b.example");
    }

    #[test]
    fn addresses_are_unique_and_lowercase() {
        let d = sample();
        let u = d.lookup("jmueller@contoso.example").unwrap();
        assert_eq!(
            u.addresses(),
            [
                "jose.mueller@contoso.example",
                "jmueller@contoso.example",
                "j.mueller@contoso.example",
                "spaced@contoso.example"
            ]
        );
    }
}
