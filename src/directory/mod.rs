//! The attribute cache: users in Microsoft Graph's user shape, indexed by every address.
//!
//! Reads are lock-free: an immutable [`Index`] is swapped in whole (arc-swap). Sources
//! (a JSON file, Microsoft Graph, the on-disk snapshot) replace the base users; local
//! overrides are layered on top and merged into the index, so a lookup is one hash probe.

pub mod file;
pub mod graph;
pub mod overrides;
pub mod snapshot;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// One user: the JSON object of a Graph user (`displayName`, `mail`, `businessPhones`, …)
/// with overrides and custom attributes already merged in.
pub type Attributes = Map<String, Value>;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub attrs: Attributes,
}

impl User {
    pub fn new(attrs: Attributes) -> Self {
        User { attrs }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str)
    }

    /// Graph's object id, if present.
    pub fn id(&self) -> Option<&str> {
        self.str("id")
    }

    /// Every address this user is found by: `mail`, `userPrincipalName` and each `smtp:`
    /// entry of `proxyAddresses`, lowercased, without duplicates.
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |a: &str| {
            let a = a.trim().to_ascii_lowercase();
            if !a.is_empty() && a.contains('@') && !out.contains(&a) {
                out.push(a);
            }
        };
        if let Some(m) = self.str("mail") {
            push(m);
        }
        if let Some(u) = self.str("userPrincipalName") {
            push(u);
        }
        if let Some(list) = self.attrs.get("proxyAddresses").and_then(Value::as_array) {
            for p in list.iter().filter_map(Value::as_str) {
                if let Some((scheme, addr)) = p.split_once(':') {
                    if scheme.eq_ignore_ascii_case("smtp") {
                        push(addr);
                    }
                }
            }
        }
        out
    }
}

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
    by_address: HashMap<String, Arc<User>>,
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
}

/// Base users plus the metadata the status endpoint shows.
#[derive(Debug, Clone)]
struct Base {
    users: Arc<Vec<User>>,
    source: Source,
    loaded_at: Option<OffsetDateTime>,
}

/// The shared directory. Cheap to clone behind an `Arc`.
pub struct Directory {
    index: ArcSwap<Index>,
    // Writers are rare (sync, override edits); they serialise here and rebuild the index.
    state: Mutex<(Base, Arc<overrides::Overrides>)>,
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
                },
                Arc::new(overrides::Overrides::default()),
            )),
        }
    }

    /// Lock-free lookup by any address, case-insensitive.
    pub fn lookup(&self, address: &str) -> Option<Arc<User>> {
        let index = self.index.load();
        if let Some(u) = index.by_address.get(address) {
            return Some(u.clone());
        }
        index
            .by_address
            .get(&address.trim().to_ascii_lowercase())
            .cloned()
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
    pub fn base_users(&self) -> Arc<Vec<User>> {
        self.state.lock().unwrap().0.users.clone()
    }

    /// Replace the base users (a sync, a file load, a snapshot load).
    pub fn replace_users(&self, users: Vec<User>, source: Source) {
        let mut st = self.state.lock().unwrap();
        st.0 = Base {
            users: Arc::new(users),
            source,
            loaded_at: Some(OffsetDateTime::now_utc()),
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

    fn rebuild(&self, base: &Base, ov: &overrides::Overrides) {
        let mut by_address = HashMap::with_capacity(base.users.len() * 2);
        let mut users = Vec::with_capacity(base.users.len());
        for u in base.users.iter() {
            let merged = Arc::new(ov.apply(u));
            for a in merged.addresses() {
                by_address.entry(a).or_insert_with(|| merged.clone());
            }
            users.push(merged);
        }
        self.index.store(Arc::new(Index { by_address, users }));
    }
}
