//! Delta sync of `/users/delta` (contract §2.2, §2.3): a full round follows `@odata.nextLink`
//! to the `@odata.deltaLink`; later rounds start from the deltaLink and merge changes into the
//! id-ordered set. A gone delta state (410, syncStateNotFound, resyncRequired) means a full
//! round.
//!
//! Memory: pages are parsed straight into compact users, and the set is held as the very
//! `Arc<User>`s the directory is given, so a published tenant is in memory once. A user a
//! round leaves as it was keeps its allocation (even through a full resync).

use super::client::GraphClient;
use super::clock::Clock;
use super::error::GraphError;
use crate::directory::{DeltaEntry, Fields, User};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Every property of §3.1 a template may use. `id` is always returned anyway.
pub const SELECT: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "companyName",
    "officeLocation",
    "businessPhones",
    "mobilePhone",
    "faxNumber",
    "mail",
    "userPrincipalName",
    "proxyAddresses",
    "streetAddress",
    "city",
    "state",
    "country",
    "postalCode",
    "employeeId",
    "onPremisesExtensionAttributes",
    "accountEnabled",
    "userType",
];

/// Delta tokens live 7 days; resync a day early (§2.3 [ours]).
pub const DELTA_MAX_AGE: Duration = Duration::from_secs(6 * 24 * 3600);

/// Progress of one round, for the CLI's progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub pages: usize,
    pub entries: usize,
}

#[derive(Debug, Clone)]
pub struct SyncReport {
    /// A full round (first sync, expired/missing deltaLink, or the server asked for it).
    pub full: bool,
    pub pages: usize,
    /// Entries received (changed or removed users).
    pub entries: usize,
    /// Users in the merged set afterwards.
    pub users: usize,
    pub duration: Duration,
}

pub struct Syncer {
    client: GraphClient,
    clock: Arc<dyn Clock>,
    users: UserSet,
    delta_link: Option<String>,
    delta_at: Option<OffsetDateTime>,
}

impl Syncer {
    pub fn new(client: GraphClient, clock: Arc<dyn Clock>) -> Self {
        Syncer {
            client,
            clock,
            users: UserSet::default(),
            delta_link: None,
            delta_at: None,
        }
    }

    /// Start from a snapshot: its users and deltaLink (so a restart syncs incrementally).
    pub fn seed(
        &mut self,
        users: Vec<User>,
        delta_link: Option<String>,
        delta_at: Option<OffsetDateTime>,
    ) {
        let users: Vec<_> = users.into_iter().map(Arc::new).collect();
        self.seed_from(&users, delta_link, delta_at);
    }

    /// [`Syncer::seed`] sharing the given users (the directory's own), so seeding costs no
    /// copy of the tenant.
    pub fn seed_from(
        &mut self,
        users: &[Arc<User>],
        delta_link: Option<String>,
        delta_at: Option<OffsetDateTime>,
    ) {
        self.users = UserSet::new(users);
        self.delta_link = delta_link;
        self.delta_at = delta_at;
    }

    pub fn delta_link(&self) -> Option<&str> {
        self.delta_link.as_deref()
    }

    pub fn delta_at(&self) -> Option<OffsetDateTime> {
        self.delta_at
    }

    pub fn len(&self) -> usize {
        self.users.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.0.is_empty()
    }

    /// The merged users, in id order (shared, not copied).
    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.0.clone()
    }

    /// The merged users, in id order, consuming the syncer.
    pub fn into_users(self) -> Vec<Arc<User>> {
        self.users.0
    }

    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    /// Drop the deltaLink: the next sync is a full round.
    pub fn reset(&mut self) {
        self.delta_link = None;
        self.delta_at = None;
    }

    /// One round: incremental when a fresh deltaLink is held, full otherwise (or when the
    /// server says the delta state is gone).
    pub async fn sync(
        &mut self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<SyncReport, GraphError> {
        let started = std::time::Instant::now();
        let fresh = self.delta_at.is_some_and(|t| {
            self.clock.now() - t
                < time::Duration::try_from(DELTA_MAX_AGE).unwrap_or(time::Duration::MAX)
        });
        let link = self.delta_link.clone().filter(|_| fresh);
        let mut staged = Staged::Changes(BTreeMap::new());
        let mut round = None;
        if let Some(link) = link {
            match self.round(link, &mut staged, progress).await {
                Err(GraphError::Api(e)) if e.needs_resync() => {
                    tracing::info!(status = e.status, code = %e.code, "Graph delta state gone; running a full sync");
                    self.reset();
                }
                other => round = Some(other?),
            }
        }
        let full = round.is_none();
        let round = match round {
            Some(r) => r,
            None => {
                // Users missing from a full set count as removed (§2.3): start from nothing.
                staged = Staged::Full(BTreeMap::new());
                self.round(self.first_url(), &mut staged, progress).await?
            }
        };
        self.users.finish(staged);
        self.delta_link = Some(round.delta_link);
        self.delta_at = Some(round.started_at);
        Ok(SyncReport {
            full,
            pages: round.pages,
            entries: round.entries,
            users: self.len(),
            duration: started.elapsed(),
        })
    }

    fn first_url(&self) -> String {
        self.client
            .url(&format!("/users/delta?$select={}", SELECT.join(",")))
    }

    /// Follow nextLinks from `url` to the deltaLink, staging entries aside: they replace or
    /// change the merged set only once the round is complete, so a failure half-way leaves it
    /// untouched.
    async fn round(
        &self,
        mut url: String,
        staged: &mut Staged,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Round, GraphError> {
        let started_at = self.clock.now();
        let (mut pages, mut entries) = (0, 0);
        loop {
            let page: Page = self.client.get_parsed(&url, true).await?;
            pages += 1;
            entries += page.value.len();
            // Each entry is merged as it comes: no page is kept once it is staged.
            for e in page.value {
                self.users.stage(staged, e);
            }
            progress(Progress { pages, entries });
            if let Some(next) = page.next_link {
                url = next;
            } else if let Some(delta_link) = page.delta_link {
                return Ok(Round {
                    entries,
                    pages,
                    delta_link,
                    started_at,
                });
            } else {
                return Err(GraphError::protocol(
                    "Microsoft Graph",
                    "a users/delta page had neither @odata.nextLink nor @odata.deltaLink",
                ));
            }
        }
    }
}

/// The merged users, sorted by id, each id once (every user here has one).
#[derive(Default)]
pub(crate) struct UserSet(Vec<Arc<User>>);

impl UserSet {
    pub(crate) fn new(users: &[Arc<User>]) -> Self {
        let mut users: Vec<Arc<User>> =
            users.iter().filter(|u| u.id().is_some()).cloned().collect();
        // Snapshots are written in id order; sort anyway (cheap when sorted), and keep the
        // last of a repeated id as a merge would.
        users.reverse();
        users.sort_by(|a, b| a.id().cmp(&b.id()));
        users.dedup_by(|a, b| a.id() == b.id());
        UserSet(users)
    }

    /// The users, in id order.
    pub(crate) fn users(&self) -> &[Arc<User>] {
        &self.0
    }

    /// The current user with this id.
    fn current(&self, id: &str) -> Option<&Arc<User>> {
        self.0
            .binary_search_by(|u| u.id().unwrap_or_default().cmp(id))
            .ok()
            .map(|i| &self.0[i])
    }

    /// `user` behind an `Arc`: the current one when it is equal, so an unchanged user keeps
    /// its one allocation (shared with the directory).
    fn share(&self, user: User) -> Arc<User> {
        match user.id().and_then(|id| self.current(id)) {
            Some(current) if **current == user => Arc::clone(current),
            _ => Arc::new(user),
        }
    }

    /// Stage one delta entry (see [`apply`]) over what is staged for its id, or else over
    /// the current set.
    pub(crate) fn stage(&self, staged: &mut Staged, entry: DeltaEntry) {
        let Some(id) = entry.id().map(Box::<str>::from) else {
            return;
        };
        match staged {
            Staged::Full(users) => match apply(users.get(&id).map(|u| &**u), entry) {
                Some(u) => {
                    users.insert(id, self.share(u));
                }
                None => {
                    users.remove(&id);
                }
            },
            Staged::Changes(changes) => {
                let current = match changes.get(&id) {
                    Some(staged) => staged.as_deref(),
                    None => self.current(&id).map(|u| &**u),
                };
                let next = apply(current, entry).map(|u| self.share(u));
                changes.insert(id, next);
            }
        }
    }

    /// Merge an incremental round's changes (both sides in id order) into the set; users it
    /// did not touch are moved over as they are.
    fn apply_changes(&mut self, changes: BTreeMap<Box<str>, Option<Arc<User>>>) {
        let mut out = Vec::with_capacity(self.0.len() + changes.len());
        let mut changes = changes.into_iter().peekable();
        for u in std::mem::take(&mut self.0) {
            let id = u.id().unwrap_or_default();
            while let Some((_, c)) = changes.next_if(|(cid, _)| **cid < *id) {
                out.extend(c);
            }
            match changes.next_if(|(cid, _)| **cid == *id) {
                Some((_, c)) => out.extend(c),
                None => out.push(u),
            }
        }
        out.extend(changes.filter_map(|(_, c)| c));
        self.0 = out;
    }

    /// Replace or change the set with a completed round's results.
    pub(crate) fn finish(&mut self, staged: Staged) {
        match staged {
            Staged::Full(users) => self.0 = users.into_values().collect(),
            Staged::Changes(changes) => self.apply_changes(changes),
        }
    }
}

/// One `/users/delta` page (unknown members such as `@odata.context` are skipped).
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<DeltaEntry>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

/// A round's results, kept aside until the round is complete.
pub(crate) enum Staged {
    /// The whole new set by id (a full round).
    Full(BTreeMap<Box<str>, Arc<User>>),
    /// id → the user as it will be after the round, `None` when removed (an incremental round).
    Changes(BTreeMap<Box<str>, Option<Arc<User>>>),
}

struct Round {
    entries: usize,
    pages: usize,
    delta_link: String,
    started_at: OffsetDateTime,
}

/// The user after one entry, from its current state; `None` when the entry removes it. An
/// absent key is unchanged, a `null` clears it and a value sets it (§2.2 [ours]); annotations
/// were skipped when the entry was parsed. Idempotent, so replays are harmless.
pub fn apply(current: Option<&User>, entry: DeltaEntry) -> Option<User> {
    if entry.removed {
        return None;
    }
    Some(match current {
        Some(u) => u.with_changes(entry.changes),
        None => User::from_fields(Fields::from_pairs(entry.changes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn entry(v: Value) -> DeltaEntry {
        serde_json::from_value(v).unwrap()
    }

    /// A round of `entries` over `set`, finished.
    fn round(set: &mut UserSet, full: bool, entries: &[Value]) {
        let mut staged = if full {
            Staged::Full(BTreeMap::new())
        } else {
            Staged::Changes(BTreeMap::new())
        };
        for e in entries {
            set.stage(&mut staged, entry(e.clone()));
        }
        set.finish(staged);
    }

    fn ids(set: &UserSet) -> Vec<&str> {
        set.0.iter().map(|u| u.id().unwrap()).collect()
    }

    #[test]
    fn merge_rules() {
        let mut set = UserSet::default();
        round(
            &mut set,
            true,
            &[
                json!({"id":"1","displayName":"A","jobTitle":"X","@odata.type":"#u"}),
                json!({"id":"1","jobTitle":null,"mail":"a@x"}),
            ],
        );
        let u = &set.0[0];
        assert_eq!(u.str("displayName"), Some("A"));
        assert_eq!(u.str("mail"), Some("a@x"));
        assert!(u.get("jobTitle").is_none() && u.get("@odata.type").is_none());
        round(
            &mut set,
            false,
            &[json!({"id":"1","manager@delta":[{"id":"2"}]})],
        );
        assert!(set.0[0].get("manager@delta").is_none());
        assert_eq!(set.0[0].attributes().len(), 3);
        round(
            &mut set,
            false,
            &[json!({"id":"1","@removed":{"reason":"changed"}})],
        );
        assert!(set.0.is_empty());
        round(
            &mut set,
            false,
            &[
                json!({"id":"1","@removed":{"reason":"deleted"}}),
                json!({"displayName":"no id"}),
                json!("not an object"),
            ],
        );
        assert!(set.0.is_empty());
    }

    #[test]
    fn unchanged_users_are_shared_changed_ones_new() {
        let mut set = UserSet::default();
        let first = [
            json!({"id":"1","displayName":"A","businessPhones":["1"]}),
            json!({"id":"2","displayName":"B"}),
        ];
        round(&mut set, true, &first);
        let before = set.0.clone();
        round(
            &mut set,
            false,
            &[
                json!({"id":"2","displayName":"B2"}),
                json!({"id":"3","displayName":"C"}),
                // A change that changes nothing keeps the allocation too.
                json!({"id":"1","displayName":"A"}),
            ],
        );
        assert_eq!(ids(&set), ["1", "2", "3"]);
        assert!(Arc::ptr_eq(&set.0[0], &before[0]), "unchanged: shared");
        assert!(!Arc::ptr_eq(&set.0[1], &before[1]), "changed: new");
        assert_eq!(set.0[1].str("displayName"), Some("B2"));
        assert_eq!(set.0[0].get("businessPhones").unwrap(), json!(["1"]));
        // A full resync keeps every user it leaves unchanged.
        let before = set.0.clone();
        round(
            &mut set,
            true,
            &[
                json!({"id":"3","displayName":"C","jobTitle":null}),
                json!({"id":"1","displayName":"A","businessPhones":["1"]}),
            ],
        );
        assert_eq!(
            ids(&set),
            ["1", "3"],
            "2 missing from a full round: removed"
        );
        assert!(Arc::ptr_eq(&set.0[0], &before[0]));
        assert!(Arc::ptr_eq(&set.0[1], &before[2]));
    }

    /// Staging an incremental round and applying it at the end gives the same set as
    /// merging entry by entry, while leaving the current set untouched until then.
    #[test]
    fn staged_changes_equal_sequential_merge() {
        let base = [
            json!({"id":"1","displayName":"A","jobTitle":"X"}),
            json!({"id":"2","displayName":"B"}),
        ];
        let entries = [
            json!({"id":"1","jobTitle":null}),
            json!({"id":"1","mail":"a@x"}),
            json!({"id":"2","@removed":{"reason":"changed"}}),
            json!({"id":"2","displayName":"B2"}),
            json!({"id":"3","displayName":"C"}),
            json!({"id":"3","@removed":{"reason":"deleted"}}),
            json!({"id":"4","displayName":"D"}),
            json!({"id":"0","displayName":"Z"}),
            json!({"no":"id"}),
        ];
        let mut set = UserSet::default();
        round(&mut set, true, &base);
        let mut expected = UserSet::default();
        round(&mut expected, true, &base);
        for e in &entries {
            round(&mut expected, false, std::slice::from_ref(e));
        }
        let mut staged = Staged::Changes(BTreeMap::new());
        for e in &entries {
            set.stage(&mut staged, entry(e.clone()));
        }
        assert_eq!(set.0[0].str("jobTitle"), Some("X"), "base untouched");
        set.finish(staged);
        assert_eq!(
            ids(&set),
            ["0", "1", "2", "4"],
            "3 removed again, 2 re-added"
        );
        let plain = |s: &UserSet| s.0.iter().map(|u| (**u).clone()).collect::<Vec<_>>();
        assert_eq!(plain(&set), plain(&expected));
        assert_eq!(set.0[2].str("displayName"), Some("B2"));
        assert!(set.0[1].get("jobTitle").is_none());
    }

    #[test]
    fn seeding_sorts_and_keeps_the_last_of_an_id() {
        let u = |id: &str, n: &str| {
            Arc::new(User::new(
                json!({"id": id, "displayName": n})
                    .as_object()
                    .unwrap()
                    .clone(),
            ))
        };
        let set = UserSet::new(&[
            u("b", "1"),
            u("a", "2"),
            u("b", "3"),
            Arc::new(User::default()),
        ]);
        assert_eq!(ids(&set), ["a", "b"]);
        assert_eq!(set.0[1].str("displayName"), Some("3"));
    }
}
