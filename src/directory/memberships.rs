//! Entra ID group memberships as a directory layer: the synthetic attribute `memberOf`, a
//! JSON array holding the display name and the object id of every group (among those the
//! rules name) the user is a transitive member of.
//!
//! Kept apart from the base users (delta sync does not track membership, and the snapshot and
//! the syncer's change detection stay as Graph sent them) and from the overrides (an override
//! file edit must not drop it). Overrides still win: an admin may set `memberOf` by hand.

use super::{AttrValue, Name, User};
use serde_json::Value;
use std::collections::HashMap;

/// The attribute the rules match `group = "…"` against.
pub const MEMBER_OF: &str = "memberOf";

/// User id → the `memberOf` array.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memberships {
    by_id: HashMap<String, Value>,
}

impl Memberships {
    /// From user id → group labels (display names and ids); duplicates are dropped and the
    /// order is kept.
    pub fn new(by_id: HashMap<String, Vec<String>>) -> Self {
        let by_id = by_id
            .into_iter()
            .filter(|(_, groups)| !groups.is_empty())
            .map(|(id, groups)| {
                let mut seen = Vec::with_capacity(groups.len());
                for g in groups {
                    if !seen.contains(&g) {
                        seen.push(g);
                    }
                }
                (
                    id,
                    Value::Array(seen.into_iter().map(Value::String).collect()),
                )
            })
            .collect();
        Memberships { by_id }
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The `memberOf` value of the user with this Graph id.
    pub fn get(&self, user_id: &str) -> Option<&Value> {
        self.by_id.get(user_id)
    }

    /// The memberships in their plain form (for the on-disk cache).
    pub fn to_map(&self) -> HashMap<String, Vec<String>> {
        self.by_id
            .iter()
            .map(|(id, v)| {
                let groups = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                (id.clone(), groups)
            })
            .collect()
    }

    /// `user` with its `memberOf`, or `None` when it has none (the caller keeps sharing it).
    pub fn apply(&self, user: &User) -> Option<User> {
        let groups = self.get(user.id()?)?;
        Some(user.with_changes([(Name::new(MEMBER_OF), AttrValue::from(groups.clone()))]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn apply_sets_member_of_by_id_only() {
        let m = Memberships::new(HashMap::from([
            (
                "id-a".to_string(),
                vec!["Sales".into(), "g1".into(), "Sales".into()],
            ),
            ("id-empty".to_string(), vec![]),
        ]));
        assert_eq!(m.len(), 1);
        let a = User::new(
            json!({"id": "id-a", "mail": "a@x"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let b = User::new(json!({"id": "id-b"}).as_object().unwrap().clone());
        let no_id = User::new(json!({"mail": "c@x"}).as_object().unwrap().clone());
        assert_eq!(
            m.apply(&a).unwrap().get(MEMBER_OF).unwrap(),
            json!(["Sales", "g1"])
        );
        assert!(m.apply(&b).is_none());
        assert!(m.apply(&no_id).is_none());
        assert_eq!(m.to_map()["id-a"], vec!["Sales", "g1"]);
    }

    /// The layer survives base replacements and override edits; an override still wins.
    #[test]
    fn directory_layer_under_overrides() {
        use crate::directory::{overrides::Overrides, Directory, Source};
        let d = Directory::new();
        let users = || {
            vec![
                User::new(
                    json!({"id": "id-a", "mail": "a@x.example"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                User::new(
                    json!({"id": "id-b", "mail": "b@x.example"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            ]
        };
        d.replace_users(users(), Source::Graph);
        d.set_memberships(Memberships::new(HashMap::from([(
            "id-a".to_string(),
            vec!["Sales".to_string(), "g1".to_string()],
        )])));
        let member_of = |addr: &str| {
            d.lookup(addr)
                .and_then(|u| u.get(MEMBER_OF).map(AttrValue::to_json))
        };
        assert_eq!(member_of("a@x.example"), Some(json!(["Sales", "g1"])));
        assert_eq!(member_of("b@x.example"), None);
        // A base user without memberships is still shared, not copied.
        assert!(Arc::ptr_eq(
            &d.base_users()[1],
            &d.lookup("b@x.example").unwrap()
        ));

        d.replace_users(users(), Source::Graph);
        assert_eq!(member_of("a@x.example"), Some(json!(["Sales", "g1"])));

        let mut ov = Overrides::default();
        ov.set("a@x.example", "jobTitle", "Boss").unwrap();
        d.set_overrides(ov.clone());
        let a = d.lookup("a@x.example").unwrap();
        assert_eq!(a.str("jobTitle"), Some("Boss"));
        assert_eq!(a.get(MEMBER_OF).unwrap(), json!(["Sales", "g1"]));

        ov.set("a@x.example", MEMBER_OF, "Local").unwrap();
        d.set_overrides(ov);
        assert_eq!(member_of("a@x.example"), Some(json!("Local")));
        assert!(d.base_users()[0].get(MEMBER_OF).is_none(), "base untouched");
    }
}
