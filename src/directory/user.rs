//! The compact in-memory user. A large tenant is held whole (100k users and more), so each
//! user is one sorted slice of (name, value) pairs: attribute names are interned (one copy
//! per process), strings are `Box<str>` (no spare capacity), arrays and objects boxed slices.
//! It serialises to exactly the JSON a `serde_json::Map` of the same attributes would (keys
//! in byte order), so snapshots, the JSON directory file and templates see the same thing.

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};
use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// An interned attribute name. The set of names is small and fixed in practice (Graph's
/// selected properties, their nested keys, an admin's custom attributes), so interned names
/// live for the whole process: a name costs nothing per user but its 16-byte reference.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(&'static str);

/// Names known up front, sorted: found without taking the interner's lock.
const KNOWN: &[&str] = &[
    "accountEnabled",
    "businessPhones",
    "city",
    "companyName",
    "country",
    "department",
    "displayName",
    "employeeId",
    "extensionAttribute1",
    "extensionAttribute10",
    "extensionAttribute11",
    "extensionAttribute12",
    "extensionAttribute13",
    "extensionAttribute14",
    "extensionAttribute15",
    "extensionAttribute2",
    "extensionAttribute3",
    "extensionAttribute4",
    "extensionAttribute5",
    "extensionAttribute6",
    "extensionAttribute7",
    "extensionAttribute8",
    "extensionAttribute9",
    "faxNumber",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "onPremisesExtensionAttributes",
    "postalCode",
    "proxyAddresses",
    "state",
    "streetAddress",
    "surname",
    "userPrincipalName",
    "userType",
];

impl Name {
    pub fn new(name: &str) -> Name {
        if let Ok(i) = KNOWN.binary_search(&name) {
            return Name(KNOWN[i]);
        }
        static OTHERS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let mut set = OTHERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = set.get(name) {
            return Name(n);
        }
        // Leaked once per distinct name (see the type's comment).
        let n: &'static str = Box::leak(name.into());
        set.insert(n);
        Name(n)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

/// A string value. Most attribute values are short (names, titles, phone numbers, cities):
/// up to 22 bytes are kept inline, with no allocation of their own; longer ones are boxed.
/// Either way a `Str` is 24 bytes, and an [`AttrValue`] holding one is no bigger.
#[derive(Clone, PartialEq, Eq)]
pub struct Str(Repr);

const INLINE: usize = 22;

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    // Unused bytes stay zero, so equal strings are equal representations.
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<str>),
}

impl Str {
    pub fn new(s: &str) -> Str {
        if s.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Str(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            Str(Repr::Heap(s.into()))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, buf } => {
                std::str::from_utf8(&buf[..*len as usize]).expect("inlined from a str whole")
            }
            Repr::Heap(s) => s,
        }
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        if s.len() <= INLINE {
            Str::new(&s)
        } else {
            Str(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One attribute value: a JSON value without its per-node overhead.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// Only inside arrays (and in a delta entry, where it clears the attribute): objects
    /// and users drop null members, which templates treat as missing anyway.
    Null,
    Bool(bool),
    Number(Number),
    String(Str),
    Array(Box<[AttrValue]>),
    Object(Fields),
}

/// Named values sorted by name, each name once: a user's attributes or a nested object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields(Box<[(Name, AttrValue)]>);

impl Fields {
    /// From pairs in any order; a later duplicate name wins (as in a JSON object), and null
    /// values are dropped.
    pub fn from_pairs(mut pairs: Vec<(Name, AttrValue)>) -> Fields {
        // Stable: equal names keep their order, so the last one can win below.
        pairs.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut out: Vec<(Name, AttrValue)> = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == n => last.1 = v,
                _ => out.push((n, v)),
            }
        }
        out.retain(|(_, v)| !v.is_null());
        Fields(out.into_boxed_slice())
    }

    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Names and values in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'static str, &AttrValue)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These fields with `changes` applied in order: a null removes the name, anything else
    /// sets it. One pass over both sorted lists.
    pub fn merged(&self, changes: impl IntoIterator<Item = (Name, AttrValue)>) -> Fields {
        let changes = Fields::sorted_changes(changes.into_iter().collect());
        let mut out = Vec::with_capacity(self.0.len() + changes.len());
        let mut old = self.0.iter().peekable();
        for (n, v) in changes {
            while let Some(o) = old.next_if(|(o, _)| o.as_str() < n.as_str()) {
                out.push(o.clone());
            }
            old.next_if(|(o, _)| *o == n);
            if !v.is_null() {
                out.push((n, v));
            }
        }
        out.extend(old.cloned());
        Fields(out.into_boxed_slice())
    }

    /// Sorted by name, the last of equal names kept; nulls kept (they mean "remove").
    fn sorted_changes(mut pairs: Vec<(Name, AttrValue)>) -> Vec<(Name, AttrValue)> {
        pairs.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut out: Vec<(Name, AttrValue)> = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == n => last.1 = v,
                _ => out.push((n, v)),
            }
        }
        out
    }

    /// The same fields as a `serde_json` object.
    pub fn to_json(&self) -> Map<String, Value> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.to_json()))
            .collect()
    }
}

impl From<Map<String, Value>> for Fields {
    fn from(map: Map<String, Value>) -> Fields {
        // A Map is already sorted and unique; only nulls go.
        Fields(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (Name::new(&k), AttrValue::from(v)))
                .collect(),
        )
    }
}

impl AttrValue {
    pub fn is_null(&self) -> bool {
        matches!(self, AttrValue::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[AttrValue]> {
        match self {
            AttrValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Fields> {
        match self {
            AttrValue::Object(o) => Some(o),
            _ => None,
        }
    }

    /// A member of an object value (`onPremisesExtensionAttributes` → `extensionAttribute1`).
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.as_object()?.get(key)
    }

    /// The same value as `serde_json` (the handlebars context, tests).
    pub fn to_json(&self) -> Value {
        match self {
            AttrValue::Null => Value::Null,
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Number(n) => Value::Number(n.clone()),
            AttrValue::String(s) => Value::String(s.as_str().to_string()),
            AttrValue::Array(a) => Value::Array(a.iter().map(AttrValue::to_json).collect()),
            AttrValue::Object(o) => Value::Object(o.to_json()),
        }
    }
}

impl From<Value> for AttrValue {
    fn from(v: Value) -> AttrValue {
        match v {
            Value::Null => AttrValue::Null,
            Value::Bool(b) => AttrValue::Bool(b),
            Value::Number(n) => AttrValue::Number(n),
            Value::String(s) => AttrValue::String(s.into()),
            Value::Array(a) => AttrValue::Array(a.into_iter().map(AttrValue::from).collect()),
            Value::Object(o) => AttrValue::Object(Fields::from(o)),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> AttrValue {
        AttrValue::String(Str::new(s))
    }
}

impl PartialEq<Value> for AttrValue {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (AttrValue::Null, Value::Null) => true,
            (AttrValue::Bool(a), Value::Bool(b)) => a == b,
            (AttrValue::Number(a), Value::Number(b)) => a == b,
            (AttrValue::String(a), Value::String(b)) => a.as_str() == b,
            (AttrValue::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
            }
            (AttrValue::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((k, x), (l, y))| k == l && x == y)
            }
            _ => false,
        }
    }
}

impl PartialEq<Value> for &AttrValue {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl Serialize for AttrValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttrValue::Null => s.serialize_unit(),
            AttrValue::Bool(b) => s.serialize_bool(*b),
            AttrValue::Number(n) => n.serialize(s),
            AttrValue::String(v) => s.serialize_str(v.as_str()),
            AttrValue::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a.iter() {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            AttrValue::Object(o) => o.serialize(s),
        }
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (n, v) in self.iter() {
            map.serialize_entry(n, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(Name::new(v))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AttrValue, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Builds values straight from the parser: no `serde_json::Value` in between.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = AttrValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<AttrValue, E> {
        Ok(AttrValue::Null)
    }
    fn visit_none<E>(self) -> Result<AttrValue, E> {
        Ok(AttrValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AttrValue, D::Error> {
        AttrValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<AttrValue, E> {
        Ok(AttrValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<AttrValue, E> {
        Ok(AttrValue::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<AttrValue, E> {
        Ok(AttrValue::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<AttrValue, E> {
        Ok(Number::from_f64(v).map_or(AttrValue::Null, AttrValue::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<AttrValue, E> {
        Ok(AttrValue::String(Str::new(v)))
    }
    fn visit_string<E>(self, v: String) -> Result<AttrValue, E> {
        Ok(AttrValue::String(v.into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttrValue, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(AttrValue::Array(out.into_boxed_slice()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AttrValue, A::Error> {
        FieldsVisitor.visit_map(map).map(AttrValue::Object)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(n) = map.next_key::<Name>()? {
            pairs.push((n, map.next_value::<AttrValue>()?));
        }
        Ok(Fields::from_pairs(pairs))
    }
}

/// One `/users/delta` entry as the page is parsed: annotations (`@odata.type`,
/// `manager@delta`) are skipped before their names are interned, `@removed` is remembered,
/// and nulls stay (a null clears the attribute).
#[derive(Debug, Default)]
pub struct DeltaEntry {
    pub removed: bool,
    /// Sorted by name, the last of equal names kept.
    pub changes: Vec<(Name, AttrValue)>,
}

impl DeltaEntry {
    pub fn id(&self) -> Option<&str> {
        self.changes
            .binary_search_by(|(n, _)| n.as_str().cmp("id"))
            .ok()
            .and_then(|i| self.changes[i].1.as_str())
    }
}

impl<'de> Deserialize<'de> for DeltaEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DeltaEntry, D::Error> {
        d.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

/// A delta entry's key, classified without allocating.
enum EntryKey {
    Removed,
    Annotation,
    Attribute(Name),
}

impl<'de> Deserialize<'de> for EntryKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EntryKey, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EntryKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a property name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EntryKey, E> {
                Ok(match v {
                    "@removed" => EntryKey::Removed,
                    _ if v.contains('@') => EntryKey::Annotation,
                    _ => EntryKey::Attribute(Name::new(v)),
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = DeltaEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a delta entry")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DeltaEntry, A::Error> {
        let mut e = DeltaEntry::default();
        while let Some(k) = map.next_key::<EntryKey>()? {
            match k {
                EntryKey::Removed => {
                    e.removed = true;
                    map.next_value::<IgnoredAny>()?;
                }
                EntryKey::Annotation => {
                    map.next_value::<IgnoredAny>()?;
                }
                EntryKey::Attribute(n) => e.changes.push((n, map.next_value()?)),
            }
        }
        e.changes = Fields::sorted_changes(std::mem::take(&mut e.changes));
        Ok(e)
    }
    // Anything but an object is no entry: skipped (it has no id).
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<DeltaEntry, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| DeltaEntry::default())
    }
    fn visit_unit<E>(self) -> Result<DeltaEntry, E> {
        Ok(DeltaEntry::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<DeltaEntry, E> {
        Ok(DeltaEntry::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<DeltaEntry, E> {
        Ok(DeltaEntry::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<DeltaEntry, E> {
        Ok(DeltaEntry::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<DeltaEntry, E> {
        Ok(DeltaEntry::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<DeltaEntry, E> {
        Ok(DeltaEntry::default())
    }
}

/// One user: the attributes of a Graph user (`displayName`, `mail`, `businessPhones`, …)
/// with overrides and custom attributes already merged in. Attributes that are null (Graph
/// sends every selected property) are not kept: templates treat missing and null alike.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct User {
    attrs: Fields,
}

impl User {
    /// From a JSON object (tests, the overrides layer, callers holding `serde_json` values).
    pub fn new(attrs: Map<String, Value>) -> Self {
        User {
            attrs: Fields::from(attrs),
        }
    }

    pub fn from_fields(attrs: Fields) -> Self {
        User { attrs }
    }

    /// One attribute's value. Read attributes through `get`/`str`/`attributes` only.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.attrs.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(AttrValue::as_str)
    }

    /// Every attribute, in name order.
    pub fn attributes(&self) -> impl ExactSizeIterator<Item = (&'static str, &AttrValue)> {
        self.attrs.iter()
    }

    pub fn fields(&self) -> &Fields {
        &self.attrs
    }

    /// This user with `changes` applied: a null removes an attribute, a value sets it.
    pub fn with_changes(&self, changes: impl IntoIterator<Item = (Name, AttrValue)>) -> User {
        User {
            attrs: self.attrs.merged(changes),
        }
    }

    /// The attributes as a `serde_json` object (the handlebars context).
    pub fn to_json(&self) -> Map<String, Value> {
        self.attrs.to_json()
    }

    /// Graph's object id, if present.
    pub fn id(&self) -> Option<&str> {
        self.str("id")
    }

    /// Every address this user is found by: `mail`, `userPrincipalName` and each `smtp:`
    /// entry (primary `SMTP:` or alias `smtp:`) of `proxyAddresses`, normalised as by
    /// [`super::normalize_address`], without duplicates. Other proxy types (`SIP:`, `X500:`)
    /// are not mail addresses and are skipped.
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |a: &str| {
            let a = super::normalize_address(a);
            if a.contains('@') && !out.iter().any(|o| *o == a) {
                out.push(a.into_owned());
            }
        };
        if let Some(m) = self.str("mail") {
            push(m);
        }
        if let Some(u) = self.str("userPrincipalName") {
            push(u);
        }
        if let Some(list) = self.get("proxyAddresses").and_then(AttrValue::as_array) {
            for p in list.iter().filter_map(AttrValue::as_str) {
                if let Some((scheme, addr)) = p.split_once(':') {
                    if scheme.trim().eq_ignore_ascii_case("smtp") {
                        push(addr);
                    }
                }
            }
        }
        out
    }
}

impl Serialize for User {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.attrs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<User, D::Error> {
        Fields::deserialize(d).map(User::from_fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: Value) -> User {
        User::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn small_enough() {
        // The point of this type: a value is three words, a user one boxed slice.
        assert!(std::mem::size_of::<AttrValue>() <= 24);
        assert_eq!(std::mem::size_of::<Str>(), 24);
        assert_eq!(std::mem::size_of::<User>(), 16);
    }

    #[test]
    fn same_json_as_serde_json_and_nulls_dropped() {
        let v = json!({
            "zeta": "z", "id": "1", "businessPhones": ["+1", null], "mail": null,
            "accountEnabled": true, "n": 3, "f": 1.5, "neg": -2, "esc": "a\"b\\c\u{1}é",
            "onPremisesExtensionAttributes": {"extensionAttribute2": "B", "extensionAttribute1": null},
            "custom attr": {"nested": {"deep": [1, {"x": null}]}}
        });
        let u = user(v.clone());
        let parsed: User = serde_json::from_value(v.clone()).unwrap();
        let from_text: User = serde_json::from_str(&v.to_string()).unwrap();
        assert_eq!(u, parsed);
        assert_eq!(u, from_text);
        let mut expected = v.as_object().unwrap().clone();
        expected.remove("mail");
        expected["onPremisesExtensionAttributes"]
            .as_object_mut()
            .unwrap()
            .remove("extensionAttribute1");
        expected["custom attr"]["nested"]["deep"][1]
            .as_object_mut()
            .unwrap()
            .remove("x");
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        assert_eq!(u.to_json(), expected);
        assert_eq!(u.get("businessPhones").unwrap(), json!(["+1", null]));
        assert_eq!(u.str("esc"), Some("a\"b\\c\u{1}é"));
        assert_eq!(u.get("n").and_then(AttrValue::as_i64), Some(3));
        assert_eq!(
            u.get("onPremisesExtensionAttributes")
                .and_then(|o| o.get("extensionAttribute2"))
                .and_then(AttrValue::as_str),
            Some("B")
        );
        assert!(u.get("mail").is_none());
        let names: Vec<_> = u.attributes().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn short_strings_inline_long_ones_boxed() {
        for s in [
            "",
            "a",
            "é",
            "exactly twenty-two b.",
            "exactly twenty-two by",
            "twenty-three bytes long",
            "ä".repeat(11).as_str(),
            "ä".repeat(12).as_str(),
        ] {
            let a = Str::new(s);
            assert_eq!(a.as_str(), s);
            assert_eq!(Str::from(s.to_string()), a);
            assert_eq!(matches!(a.0, Repr::Inline { .. }), s.len() <= INLINE, "{s}");
        }
    }

    #[test]
    fn names_are_interned() {
        let a = Name::new("some custom attribute");
        let b = Name::new(&String::from("some custom attribute"));
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert!(std::ptr::eq(
            Name::new("mail").as_str(),
            Name::new("mail").as_str()
        ));
        let mut known = KNOWN.to_vec();
        known.sort();
        assert_eq!(known, KNOWN, "KNOWN must stay sorted for its binary search");
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let u: User = serde_json::from_str(r#"{"a":"1","b":"x","a":"2"}"#).unwrap();
        assert_eq!(u.str("a"), Some("2"));
        assert_eq!(u.attributes().len(), 2);
    }

    #[test]
    fn changes_set_and_remove() {
        let u = user(json!({"a": "1", "c": "3", "e": "5"}));
        let changed = u.with_changes([
            (Name::new("d"), AttrValue::from("4")),
            (Name::new("a"), AttrValue::Null),
            (Name::new("e"), AttrValue::from("x")),
            (Name::new("e"), AttrValue::from("five")),
            (Name::new("z"), AttrValue::Null),
        ]);
        assert_eq!(
            changed.to_json(),
            *json!({"c": "3", "d": "4", "e": "five"})
                .as_object()
                .unwrap()
        );
        assert_eq!(u.str("a"), Some("1"), "the original is untouched");
    }

    #[test]
    fn delta_entries_skip_annotations_and_keep_nulls() {
        let e: DeltaEntry = serde_json::from_str(
            r##"{"id":"7","@odata.type":"#microsoft.graph.user","manager@delta":[{"id":"2"}],
                "jobTitle":null,"mail":"a@x"}"##,
        )
        .unwrap();
        assert!(!e.removed);
        assert_eq!(e.id(), Some("7"));
        let names: Vec<_> = e.changes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["id", "jobTitle", "mail"]);
        assert!(e.changes[1].1.is_null());
        let r: DeltaEntry =
            serde_json::from_str(r#"{"id":"7","@removed":{"reason":"deleted"}}"#).unwrap();
        assert!(r.removed);
        let list: Vec<DeltaEntry> = serde_json::from_str(r#"[1, "x", [2], null]"#).unwrap();
        assert!(list.iter().all(|e| e.id().is_none()));
    }
}
