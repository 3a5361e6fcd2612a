//! Local attribute overrides and custom attributes, layered over the source's values.
//! Never sent to Graph. (Loading from disk, CSV import and the `attributes` command: TODO.)

use super::User;
use serde_json::Value;
use std::collections::HashMap;

/// address (lowercase) → attribute → value. `Value::Null` removes the attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub by_address: HashMap<String, HashMap<String, Value>>,
}

impl Overrides {
    /// The user with every override that names one of its addresses applied.
    pub fn apply(&self, user: &User) -> User {
        if self.by_address.is_empty() {
            return user.clone();
        }
        let mut out = user.clone();
        for a in user.addresses() {
            if let Some(attrs) = self.by_address.get(&a) {
                for (k, v) in attrs {
                    if v.is_null() {
                        out.attrs.remove(k);
                    } else {
                        out.attrs.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        out
    }
}
