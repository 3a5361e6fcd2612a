//! Delta sync of `/users/delta` (contract §2.2, §2.3): a full round follows `@odata.nextLink`
//! to the `@odata.deltaLink`; later rounds start from the deltaLink and merge changes into an
//! id-keyed map. A gone delta state (410, syncStateNotFound, resyncRequired) means a full round.

use super::client::GraphClient;
use super::clock::Clock;
use super::error::GraphError;
use crate::directory::{Attributes, User};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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
    /// id → the user's attributes as compact JSON text: a third of the memory of a parsed
    /// map, and only changed users are ever re-parsed.
    users: BTreeMap<String, Box<str>>,
    delta_link: Option<String>,
    delta_at: Option<OffsetDateTime>,
}

impl Syncer {
    pub fn new(client: GraphClient, clock: Arc<dyn Clock>) -> Self {
        Syncer {
            client,
            clock,
            users: BTreeMap::new(),
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
        self.seed_from(users.iter(), delta_link, delta_at);
    }

    /// [`Syncer::seed`] from borrowed users (the directory's own), so seeding costs no
    /// parsed copy of the tenant.
    pub fn seed_from<'a>(
        &mut self,
        users: impl IntoIterator<Item = &'a User>,
        delta_link: Option<String>,
        delta_at: Option<OffsetDateTime>,
    ) {
        self.users = users
            .into_iter()
            .filter_map(|u| Some((u.id()?.to_string(), encode(&u.attrs))))
            .collect();
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
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The merged users, in id order.
    pub fn users(&self) -> Vec<User> {
        self.users.values().map(|j| User::new(decode(j))).collect()
    }

    /// The merged users, in id order, sharing each one unchanged from `current` (the
    /// directory's base users) instead of parsing it again: publishing a round then holds a
    /// second parsed copy only of the users it changed.
    pub fn users_sharing(&self, current: &[Arc<User>]) -> Vec<Arc<User>> {
        share_unchanged(&self.users, current)
    }

    /// The merged users, in id order, consuming the syncer: each compact entry is freed as
    /// soon as it is parsed, so the set is never held twice.
    pub fn into_users(self) -> Vec<User> {
        let mut out = Vec::with_capacity(self.users.len());
        out.extend(self.users.into_values().map(|j| User::new(decode(&j))));
        out
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
        match staged {
            Staged::Full(users) => self.users = users,
            Staged::Changes(changes) => {
                for (id, user) in changes {
                    match user {
                        Some(json) => self.users.insert(id, json),
                        None => self.users.remove(&id),
                    };
                }
            }
        }
        self.delta_link = Some(round.delta_link);
        self.delta_at = Some(round.started_at);
        Ok(SyncReport {
            full,
            pages: round.pages,
            entries: round.entries,
            users: self.users.len(),
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
            let mut page = self.client.get_json(&url, true).await?;
            pages += 1;
            if let Some(Value::Array(v)) = page.get_mut("value").map(Value::take) {
                entries += v.len();
                match staged {
                    // A full round is merged page by page into a compact map, so a large
                    // tenant is never held as parsed JSON all at once.
                    Staged::Full(users) => v.into_iter().for_each(|e| merge(users, e)),
                    // An incremental round stages each changed user merged in full, as
                    // compact JSON, over the current set; no page is kept parsed.
                    Staged::Changes(changes) => {
                        v.into_iter().for_each(|e| stage(&self.users, changes, e))
                    }
                }
            }
            progress(Progress { pages, entries });
            if let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) {
                url = next.to_string();
            } else if let Some(delta) = page.get("@odata.deltaLink").and_then(Value::as_str) {
                return Ok(Round {
                    entries,
                    pages,
                    delta_link: delta.to_string(),
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

/// A round's results, kept aside until the round is complete.
enum Staged {
    /// The whole new set (a full round).
    Full(BTreeMap<String, Box<str>>),
    /// id → the user as it will be after the round, `None` when removed (an incremental round).
    Changes(BTreeMap<String, Option<Box<str>>>),
}

struct Round {
    entries: usize,
    pages: usize,
    delta_link: String,
    started_at: OffsetDateTime,
}

fn encode(attrs: &Attributes) -> Box<str> {
    serde_json::to_string(attrs)
        .expect("a JSON map always serialises")
        .into_boxed_str()
}

fn decode(json: &str) -> Attributes {
    serde_json::from_str(json).expect("the syncer only stores JSON it encoded")
}

fn share_unchanged(users: &BTreeMap<String, Box<str>>, current: &[Arc<User>]) -> Vec<Arc<User>> {
    let by_id: HashMap<&str, &Arc<User>> =
        current.iter().filter_map(|u| Some((u.id()?, u))).collect();
    users
        .iter()
        .map(|(id, json)| match by_id.get(id.as_str()) {
            // Same compact text (maps serialise in key order): the same attributes.
            Some(u) if *encode(&u.attrs) == **json => Arc::clone(u),
            _ => Arc::new(User::new(decode(json))),
        })
        .collect()
}

/// Apply one delta entry: `@removed` drops the user; otherwise an absent key is unchanged, a
/// `null` clears it and a value sets it (§2.2 [ours]). Idempotent, so replays are harmless.
pub fn merge(users: &mut BTreeMap<String, Box<str>>, entry: Value) {
    let Some((id, obj)) = split(entry) else {
        return;
    };
    match apply(users.get(&id).map(|j| &**j), obj) {
        Some(json) => users.insert(id, json),
        None => users.remove(&id),
    };
}

/// [`merge`] into an incremental round's staged changes, over the current set `base`.
fn stage(
    base: &BTreeMap<String, Box<str>>,
    changes: &mut BTreeMap<String, Option<Box<str>>>,
    entry: Value,
) {
    let Some((id, obj)) = split(entry) else {
        return;
    };
    let current = match changes.get(&id) {
        Some(staged) => staged.as_deref(),
        None => base.get(&id).map(|j| &**j),
    };
    let next = apply(current, obj);
    changes.insert(id, next);
}

/// A delta entry's id and object; `None` for anything else.
fn split(entry: Value) -> Option<(String, Attributes)> {
    let Value::Object(obj) = entry else {
        return None;
    };
    let id = obj.get("id").and_then(Value::as_str)?.to_string();
    Some((id, obj))
}

/// The user after one entry, from its current JSON; `None` when the entry removes it.
fn apply(current: Option<&str>, obj: Attributes) -> Option<Box<str>> {
    if obj.contains_key("@removed") {
        return None;
    }
    let mut user = current.map(decode).unwrap_or_default();
    merge_attrs(&mut user, obj);
    Some(encode(&user))
}

fn merge_attrs(user: &mut Attributes, obj: Attributes) {
    for (k, v) in obj {
        // Annotations (`@odata.type`, `manager@delta`, …) are not attributes.
        if k.contains('@') {
            continue;
        }
        if v.is_null() {
            user.remove(&k);
        } else {
            user.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_rules() {
        let mut m = BTreeMap::new();
        merge(
            &mut m,
            json!({"id":"1","displayName":"A","jobTitle":"X","@odata.type":"#u"}),
        );
        merge(&mut m, json!({"id":"1","jobTitle":null,"mail":"a@x"}));
        let u = &decode(&m["1"]);
        assert_eq!(u["displayName"], "A");
        assert_eq!(u["mail"], "a@x");
        assert!(!u.contains_key("jobTitle") && !u.contains_key("@odata.type"));
        merge(&mut m, json!({"id":"1","manager@delta":[{"id":"2"}]}));
        assert!(!decode(&m["1"]).contains_key("manager@delta"));
        merge(&mut m, json!({"id":"1","@removed":{"reason":"changed"}}));
        assert!(m.is_empty());
        merge(&mut m, json!({"id":"1","@removed":{"reason":"deleted"}}));
        assert!(m.is_empty());
        merge(&mut m, json!({"displayName":"no id"}));
        assert!(m.is_empty());
    }

    #[test]
    fn unchanged_users_are_shared_changed_ones_parsed() {
        let mut m = BTreeMap::new();
        merge(
            &mut m,
            json!({"id":"1","displayName":"A","businessPhones":["1"]}),
        );
        merge(&mut m, json!({"id":"2","displayName":"B"}));
        let current = share_unchanged(&m, &[]);
        assert_eq!(current.len(), 2);
        merge(&mut m, json!({"id":"2","displayName":"B2"}));
        merge(&mut m, json!({"id":"3","displayName":"C"}));
        let next = share_unchanged(&m, &current);
        let ids: Vec<_> = next.iter().map(|u| u.id().unwrap()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert!(Arc::ptr_eq(&next[0], &current[0]), "unchanged: shared");
        assert!(!Arc::ptr_eq(&next[1], &current[1]), "changed: parsed anew");
        assert_eq!(next[1].str("displayName"), Some("B2"));
        assert_eq!(next[0].attrs["businessPhones"], json!(["1"]));
    }

    /// Staging an incremental round and applying it at the end gives the same set as
    /// merging entry by entry, while leaving the current set untouched until then.
    #[test]
    fn staged_changes_equal_sequential_merge() {
        let mut base = BTreeMap::new();
        merge(
            &mut base,
            json!({"id":"1","displayName":"A","jobTitle":"X"}),
        );
        merge(&mut base, json!({"id":"2","displayName":"B"}));
        let entries = [
            json!({"id":"1","jobTitle":null}),
            json!({"id":"1","mail":"a@x"}),
            json!({"id":"2","@removed":{"reason":"changed"}}),
            json!({"id":"2","displayName":"B2"}),
            json!({"id":"3","displayName":"C"}),
            json!({"id":"3","@removed":{"reason":"deleted"}}),
            json!({"id":"4","displayName":"D"}),
            json!({"no":"id"}),
        ];
        let mut expected = base.clone();
        let mut changes = BTreeMap::new();
        for e in entries {
            merge(&mut expected, e.clone());
            stage(&base, &mut changes, e);
        }
        assert_eq!(decode(&base["1"])["jobTitle"], "X", "base untouched");
        for (id, u) in changes {
            match u {
                Some(j) => base.insert(id, j),
                None => base.remove(&id),
            };
        }
        assert_eq!(base, expected);
        assert_eq!(
            base.keys().collect::<Vec<_>>(),
            ["1", "2", "4"],
            "3 removed again, 2 re-added"
        );
        assert_eq!(decode(&base["2"]).get("displayName"), Some(&json!("B2")));
        assert!(!decode(&base["1"]).contains_key("jobTitle"));
    }
}
