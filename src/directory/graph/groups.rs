//! Entra ID group membership for the rules (`group = "Sales"`): after every sync (delta does
//! not track membership), each group the rules name is resolved, by display name
//! (`/groups?$filter=displayName eq '…'`) or, when it looks like a GUID, by object id
//! (`/groups/{id}`), and its transitive user members are listed
//! (`/groups/{id}/transitiveMembers/microsoft.graph.user`, following `@odata.nextLink`).
//! The result is the directory's `memberOf` layer ([`crate::directory::memberships`]): the
//! display name and the id of each such group, on each member.
//!
//! Needs the `GroupMember.Read.All` application permission. A group that cannot be read for
//! a transient reason keeps its last-known members; one that does not exist is warned about
//! once and matches no one. The layer is cached beside the snapshot
//! (`<snapshot>.groups.json`, 0600) so a restart with dead tokens keeps it.

use super::client::GraphClient;
use super::error::GraphError;
use super::photos::encode_segment;
use crate::config::GraphConfig;
use crate::directory::memberships::Memberships;
use crate::directory::Directory;
use crate::metrics::{KindLabels, Metrics};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    id: String,
    display_name: String,
    /// Ids of its transitive user members.
    members: Vec<String>,
}

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupReport {
    /// Names/ids that resolved to at least one group this time.
    pub resolved: usize,
    /// Names/ids that do not exist (their rules match no one).
    pub unresolved: Vec<String>,
    /// Names/ids that could not be read now (they keep their last-known members).
    pub failed: usize,
    /// Users with a `memberOf` afterwards.
    pub users: usize,
}

/// The groups the rules name and what is known of them.
pub struct GroupSync {
    wanted: Vec<String>,
    /// wanted → the groups it resolved to (a display name may match several), last known.
    known: HashMap<String, Vec<Group>>,
    warned: HashSet<String>,
    forbidden: bool,
}

impl GroupSync {
    /// `wanted`: display names or object ids (`RuleSet::groups()`); blanks and repeats dropped.
    pub fn new(wanted: Vec<String>) -> Self {
        let mut uniq: Vec<String> = Vec::new();
        for w in wanted {
            let w = w.trim().to_string();
            if !w.is_empty() && !uniq.contains(&w) {
                uniq.push(w);
            }
        }
        GroupSync {
            wanted: uniq,
            known: HashMap::new(),
            warned: HashSet::new(),
            forbidden: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Resolve every group and list its members; returns the `memberOf` layer, or `None`
    /// when a group could not be read and nothing is known of it yet (just after a start):
    /// the layer in place (from the cache) is then better than one without that group.
    pub async fn refresh(
        &mut self,
        client: &GraphClient,
        metrics: &Metrics,
    ) -> (Option<Memberships>, GroupReport) {
        let mut report = GroupReport::default();
        let mut forbidden_now = false;
        let mut incomplete = false;
        for w in self.wanted.clone() {
            match fetch(client, &w).await {
                Ok(Some(groups)) => {
                    report.resolved += 1;
                    if self.warned.remove(&w) {
                        tracing::info!(group = %w, "group found in Entra ID now");
                    }
                    self.known.insert(w, groups);
                }
                Ok(None) => {
                    count(metrics, "unresolved");
                    if self.warned.insert(w.clone()) {
                        tracing::warn!(group = %w, "no Entra ID group has this display name or id: rules naming it match no one");
                    }
                    self.known.remove(&w);
                    report.unresolved.push(w);
                }
                Err(GraphError::Api(a)) if a.status == 403 => {
                    count(metrics, "forbidden");
                    forbidden_now = true;
                    report.failed += 1;
                    incomplete |= !self.known.contains_key(&w);
                    if !self.forbidden {
                        self.forbidden = true;
                        tracing::warn!(group = %w, code = %a.code, "Microsoft Graph refused to read group members (403): grant the GroupMember.Read.All application permission (admin consent); group rules use the last-known members until then");
                    }
                }
                Err(e) => {
                    count(metrics, e.kind());
                    report.failed += 1;
                    incomplete |= !self.known.contains_key(&w);
                    tracing::warn!(group = %w, error = %e, "cannot read the group's members now; keeping the last-known ones");
                }
            }
        }
        if self.forbidden && !forbidden_now && report.failed == 0 {
            self.forbidden = false;
            tracing::info!("group members are readable again");
        }
        let memberships = self.memberships();
        report.users = memberships.len();
        ((!incomplete).then_some(memberships), report)
    }

    fn memberships(&self) -> Memberships {
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        // In the rules' order, so `memberOf` reads the same way on every refresh.
        for w in &self.wanted {
            for g in self.known.get(w).into_iter().flatten() {
                for m in &g.members {
                    let labels = by_user.entry(m.clone()).or_default();
                    labels.push(g.display_name.clone());
                    labels.push(g.id.clone());
                }
            }
        }
        Memberships::new(by_user)
    }
}

fn count(metrics: &Metrics, kind: &str) {
    metrics
        .group_failures
        .get_or_create(&KindLabels { kind: kind.into() })
        .inc();
}

/// `8-4-4-4-12` hex digits: an object id rather than a display name.
pub fn looks_like_guid(s: &str) -> bool {
    let lens: Vec<usize> = s.split('-').map(str::len).collect();
    lens == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

/// A query value: OData string quotes doubled, then percent-encoded (spaces as `%20`).
fn odata_string(s: &str) -> String {
    encode_segment(&format!("'{}'", s.replace('\'', "''")))
}

/// The groups `wanted` names with their members; `None` when there is no such group.
async fn fetch(client: &GraphClient, wanted: &str) -> Result<Option<Vec<Group>>, GraphError> {
    let heads: Vec<Value> = if looks_like_guid(wanted) {
        let url = client.url(&format!(
            "/groups/{}?$select=id,displayName",
            encode_segment(wanted)
        ));
        match client.get_json(&url, false).await {
            Ok(g) => vec![g],
            Err(GraphError::Api(a)) if a.status == 404 => return Ok(None),
            Err(e) => return Err(e),
        }
    } else {
        let url = client.url(&format!(
            "/groups?$filter=displayName%20eq%20{}&$select=id,displayName",
            odata_string(wanted)
        ));
        pages(client, url).await?
    };
    let mut groups = Vec::new();
    for h in heads {
        let Some(id) = h.get("id").and_then(Value::as_str) else {
            continue;
        };
        let display_name = h
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or(wanted)
            .to_string();
        let url = client.url(&format!(
            "/groups/{}/transitiveMembers/microsoft.graph.user?$select=id&$top=999",
            encode_segment(id)
        ));
        let members = pages(client, url)
            .await?
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        groups.push(Group {
            id: id.to_string(),
            display_name,
            members,
        });
    }
    Ok((!groups.is_empty()).then_some(groups))
}

/// Every `value` entry of a collection, following `@odata.nextLink` as given.
async fn pages(client: &GraphClient, mut url: String) -> Result<Vec<Value>, GraphError> {
    let mut out = Vec::new();
    loop {
        let mut page = client.get_json(&url, false).await?;
        match page.get_mut("value").map(Value::take) {
            Some(Value::Array(v)) => out.extend(v),
            _ => {
                return Err(GraphError::protocol(
                    "Microsoft Graph",
                    "a collection page had no value array",
                ))
            }
        }
        match page.get("@odata.nextLink").and_then(Value::as_str) {
            Some(next) => url = next.to_string(),
            None => return Ok(out),
        }
    }
}

// ---- the on-disk cache -----------------------------------------------------------------

/// `state/directory.json` → `state/directory.groups.json`.
pub fn cache_path(snapshot: Option<&Path>) -> Option<PathBuf> {
    Some(snapshot?.with_extension("groups.json"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    #[serde(with = "time::serde::rfc3339")]
    written_at: OffsetDateTime,
    /// User id → `memberOf`.
    users: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read group cache {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("group cache {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The cached layer; `None` when there is no cache yet.
pub fn read_cache(path: &Path) -> Result<Option<Memberships>, CacheError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CacheError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|source| CacheError::Corrupt {
        path: path.into(),
        source,
    })?;
    Ok(Some(Memberships::new(file.users.into_iter().collect())))
}

/// Write the layer atomically, 0600 (it tells who is in which group).
pub fn write_cache(path: &Path, m: &Memberships, now: OffsetDateTime) -> std::io::Result<()> {
    let file = CacheFile {
        written_at: now,
        users: m.to_map().into_iter().collect(),
    };
    let json = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    crate::directory::snapshot::write_atomic(path, &json, 0o600)
}

/// Load the cached layer into `directory` (start-up, before any Graph call). A missing
/// cache is normal; a corrupt or unreadable one is reported and ignored.
pub fn seed_from(path: &Path, directory: &Directory) {
    match read_cache(path) {
        Ok(Some(m)) => {
            tracing::info!(path = %path.display(), users = m.len(), "group memberships loaded from cache");
            directory.set_memberships(m);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("{e}; ignoring it until the next sync"),
    }
}

/// [`seed_from`] for `sigstamp serve`'s configuration (a `[graph]` section and
/// `[directory] snapshot`).
pub fn seed(graph: Option<&GraphConfig>, snapshot: Option<&Path>, directory: &Directory) {
    if graph.is_none() {
        return;
    }
    if let Some(path) = cache_path(snapshot) {
        seed_from(&path, directory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_and_odata_quoting() {
        assert!(looks_like_guid("02bd9fd6-8f93-4758-87c3-1fb73740a315"));
        assert!(looks_like_guid("02BD9FD6-8F93-4758-87C3-1FB73740A315"));
        assert!(!looks_like_guid("Sales"));
        assert!(!looks_like_guid("02bd9fd6-8f93-4758-87c3-1fb73740a31"));
        assert!(!looks_like_guid("02bd9fd6-8f93-4758-87c3-1fb73740a31g"));
        assert_eq!(odata_string("O'Neil Team"), "%27O%27%27Neil%20Team%27");
    }

    #[test]
    fn wanted_is_trimmed_and_unique() {
        let g = GroupSync::new(vec![" Sales ".into(), "Sales".into(), "".into()]);
        assert_eq!(g.wanted, ["Sales"]);
        assert!(GroupSync::new(vec![" ".into()]).is_empty());
    }

    #[test]
    fn layer_lists_name_and_id_per_group() {
        let mut g = GroupSync::new(vec!["Sales".into(), "g-2".into()]);
        g.known.insert(
            "Sales".into(),
            vec![Group {
                id: "g-1".into(),
                display_name: "Sales".into(),
                members: vec!["u1".into(), "u2".into()],
            }],
        );
        g.known.insert(
            "g-2".into(),
            vec![Group {
                id: "g-2".into(),
                display_name: "Marketing".into(),
                members: vec!["u2".into()],
            }],
        );
        let m = g.memberships();
        assert_eq!(m.get("u1"), Some(&serde_json::json!(["Sales", "g-1"])));
        assert_eq!(
            m.get("u2"),
            Some(&serde_json::json!(["Sales", "g-1", "Marketing", "g-2"]))
        );
    }

    #[test]
    fn cache_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = tmp.path().join("directory.json");
        let path = cache_path(Some(&snap)).unwrap();
        assert_eq!(path, tmp.path().join("directory.groups.json"));
        assert!(read_cache(&path).unwrap().is_none());
        let m = Memberships::new(HashMap::from([(
            "u1".to_string(),
            vec!["Sales".to_string(), "g-1".to_string()],
        )]));
        write_cache(&path, &m, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(read_cache(&path).unwrap(), Some(m));
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(read_cache(&path), Err(CacheError::Corrupt { .. })));
    }
}
