//! The attribute map: LDAP attributes → the Graph names templates and rules use, with
//! defaults for Active Directory and for OpenLDAP's inetOrgPerson, and the conversion of one
//! search entry (parsed here without panicking on hostile BER) into a directory user.
//!
//! Every value is hostile: strings are cut to a length, control characters dropped, lists
//! capped, so what a directory entry costs in memory is bounded.

use crate::directory::{AttrValue, DeltaEntry, Name};
use ldap3::asn1::{StructureTag, PL};
use std::collections::BTreeMap;

/// The target name that carries the photo (`{{photo}}`), not kept as an attribute.
pub const PHOTO: &str = "photo";
/// Longest string value kept (bytes); longer ones are cut at a character boundary.
pub const MAX_VALUE: usize = 4096;
/// Most values kept of one multi-valued attribute.
pub const MAX_VALUES: usize = 1000;
/// Largest photo kept (AD's thumbnailPhoto is limited to 100 KB).
pub const MAX_PHOTO: usize = 100 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// Decided from the server's root DSE at each connection.
    Auto,
    ActiveDirectory,
    Openldap,
}

/// Targets that take every value as an array; the others take the first value.
const MULTI: &[&str] = &["businessPhones", "proxyAddresses", "memberOf"];

/// Active Directory's user attributes (`user` class).
pub const AD: &[(&str, &str)] = &[
    ("mail", "mail"),
    ("userPrincipalName", "userPrincipalName"),
    ("proxyAddresses", "proxyAddresses"),
    ("displayName", "displayName"),
    ("givenName", "givenName"),
    ("surname", "sn"),
    ("jobTitle", "title"),
    ("department", "department"),
    ("companyName", "company"),
    ("businessPhones", "telephoneNumber"),
    ("mobilePhone", "mobile"),
    ("faxNumber", "facsimileTelephoneNumber"),
    ("officeLocation", "physicalDeliveryOfficeName"),
    ("streetAddress", "streetAddress"),
    ("city", "l"),
    ("state", "st"),
    ("postalCode", "postalCode"),
    ("country", "co"),
    ("employeeId", "employeeID"),
    ("memberOf", "memberOf"),
    (PHOTO, "thumbnailPhoto"),
];

/// OpenLDAP's inetOrgPerson (and organizationalPerson) attributes.
pub const OPENLDAP: &[(&str, &str)] = &[
    ("mail", "mail"),
    ("displayName", "displayName"),
    ("givenName", "givenName"),
    ("surname", "sn"),
    ("jobTitle", "title"),
    ("department", "departmentNumber"),
    ("companyName", "o"),
    ("businessPhones", "telephoneNumber"),
    ("mobilePhone", "mobile"),
    ("faxNumber", "facsimileTelephoneNumber"),
    ("officeLocation", "physicalDeliveryOfficeName"),
    ("streetAddress", "street"),
    ("city", "l"),
    ("state", "st"),
    ("postalCode", "postalCode"),
    ("country", "co"),
    ("employeeId", "employeeNumber"),
    ("memberOf", "memberOf"),
    (PHOTO, "jpegPhoto"),
];

pub const AD_FILTER: &str = "(&(objectCategory=person)(objectClass=user)(mail=*))";
pub const OPENLDAP_FILTER: &str = "(&(objectClass=inetOrgPerson)(mail=*))";

/// The resolved map for one server: target name → LDAP attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMap {
    pub flavor: Flavor,
    /// target → LDAP attribute (lowercased for matching; LDAP names are case-insensitive).
    targets: Vec<(Name, String)>,
    /// The attribute the stable id comes from (`objectGUID` or `entryUUID`).
    pub id_attr: &'static str,
}

impl AttributeMap {
    /// The defaults of `flavor` (not `Auto`) with `extra` applied: target → LDAP attribute;
    /// an empty LDAP name removes a default.
    pub fn new(flavor: Flavor, extra: &BTreeMap<String, String>) -> Self {
        let (defaults, id_attr) = match flavor {
            Flavor::ActiveDirectory => (AD, "objectGUID"),
            _ => (OPENLDAP, "entryUUID"),
        };
        let mut map: BTreeMap<&str, String> =
            defaults.iter().map(|(t, l)| (*t, l.to_string())).collect();
        for (t, l) in extra {
            if l.trim().is_empty() {
                map.remove(t.as_str());
            } else {
                map.insert(t.as_str(), l.trim().to_string());
            }
        }
        AttributeMap {
            flavor,
            targets: map
                .into_iter()
                .map(|(t, l)| (Name::new(t), l.to_ascii_lowercase()))
                .collect(),
            id_attr,
        }
    }

    /// The attributes to request: every mapped one, the id, and the change marker.
    pub fn request(&self) -> Vec<String> {
        let mut attrs: Vec<String> = self.targets.iter().map(|(_, l)| l.clone()).collect();
        attrs.push(self.id_attr.to_string());
        attrs.push(self.change_attr().to_string());
        if self.flavor != Flavor::ActiveDirectory {
            // The display name falls back to the entry's cn.
            attrs.push("cn".into());
        }
        attrs.sort();
        attrs.dedup();
        attrs
    }

    /// The attribute incremental rounds filter on.
    pub fn change_attr(&self) -> &'static str {
        match self.flavor {
            Flavor::ActiveDirectory => "uSNChanged",
            _ => "modifyTimestamp",
        }
    }

    /// One entry as a full replacement for its user: every mapped target present (absent
    /// ones as null, so an attribute removed on the server is removed here), the photo
    /// apart. `None` without an id.
    pub fn convert(&self, entry: &Entry) -> Option<Converted> {
        let id = match self.flavor {
            Flavor::ActiveDirectory => guid(entry.first(self.id_attr)?)?,
            _ => clean(entry.first(self.id_attr)?, false)?,
        };
        let mut changes = Vec::with_capacity(self.targets.len() + 1);
        changes.push((Name::new("id"), AttrValue::from(id.as_str())));
        let mut photo = None;
        for (target, attr) in &self.targets {
            let values = entry.values(attr);
            if target.as_str() == PHOTO {
                photo = values
                    .first()
                    .filter(|p| !p.is_empty() && p.len() <= MAX_PHOTO)
                    .map(|p| p.to_vec());
                continue;
            }
            let multiline = target.as_str() == "streetAddress";
            let value = if MULTI.contains(&target.as_str()) {
                let mut list: Vec<AttrValue> = Vec::new();
                for v in values.iter().filter_map(|v| clean(v, false)) {
                    if list.len() == MAX_VALUES {
                        break;
                    }
                    if target.as_str() == "memberOf" {
                        // Rules name groups by name: keep the DN and its first RDN's value.
                        if let Some(cn) = first_rdn_value(&v) {
                            list.push(AttrValue::from(cn.as_str()));
                        }
                    }
                    list.push(AttrValue::from(v.as_str()));
                }
                if list.is_empty() {
                    AttrValue::Null
                } else {
                    AttrValue::Array(list.into_boxed_slice())
                }
            } else {
                values
                    .iter()
                    .find_map(|v| clean(v, multiline))
                    .map_or(AttrValue::Null, |s| AttrValue::from(s.as_str()))
            };
            changes.push((*target, value));
        }
        if self.flavor != Flavor::ActiveDirectory {
            // inetOrgPerson entries often have no displayName: the cn stands in.
            let name = changes
                .iter_mut()
                .find(|(n, v)| n.as_str() == "displayName" && v.is_null());
            let cn = entry.values("cn").iter().find_map(|v| clean(v, false));
            if let (Some((_, v)), Some(cn)) = (name, cn) {
                *v = AttrValue::from(cn.as_str());
            }
        }
        // A delta entry's changes are sorted by name (each name once: the map's keys and `id`).
        changes.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Some(Converted {
            id,
            entry: DeltaEntry {
                removed: false,
                changes,
            },
            photo,
        })
    }
}

/// One entry converted: its user (as a full-replacement delta entry) and its photo.
pub struct Converted {
    pub id: String,
    pub entry: DeltaEntry,
    pub photo: Option<Vec<u8>>,
}

/// A search entry: its DN and attributes (names lowercased, values as bytes).
#[derive(Debug, Default)]
pub struct Entry {
    pub dn: String,
    attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    pub fn values(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(attr))
            .map_or(&[], |(_, v)| v.as_slice())
    }

    pub fn first(&self, attr: &str) -> Option<&[u8]> {
        self.values(attr).first().map(Vec::as_slice)
    }

    /// The first value as text.
    pub fn text(&self, attr: &str) -> Option<String> {
        clean(self.first(attr)?, false)
    }

    /// A SearchResultEntry (`[APPLICATION 4] SEQUENCE { objectName, attributes }`), or
    /// `None` when it is not one; never panics on malformed input. Attribute options
    /// (`;binary`, `;range=…`) are cut from the names.
    pub fn parse(tag: StructureTag) -> Option<Entry> {
        if tag.id != 4 {
            return None;
        }
        let mut parts = constructed(tag)?.into_iter();
        let dn = String::from_utf8(primitive(parts.next()?)?).ok()?;
        let mut attrs = Vec::new();
        for attr in constructed(parts.next()?)? {
            let mut pa = constructed(attr)?.into_iter();
            let name = String::from_utf8(primitive(pa.next()?)?).ok()?;
            let name = name.split(';').next().unwrap_or_default().to_string();
            let values: Vec<Vec<u8>> = constructed(pa.next()?)?
                .into_iter()
                .filter_map(primitive)
                .collect();
            attrs.push((name, values));
        }
        Some(Entry { dn, attrs })
    }

    /// An entry made by hand (tests).
    pub fn new(dn: &str, attrs: &[(&str, &[&[u8]])]) -> Entry {
        Entry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(n, v)| (n.to_string(), v.iter().map(|b| b.to_vec()).collect()))
                .collect(),
        }
    }
}

fn constructed(t: StructureTag) -> Option<Vec<StructureTag>> {
    match t.payload {
        PL::C(v) => Some(v),
        PL::P(_) => None,
    }
}

fn primitive(t: StructureTag) -> Option<Vec<u8>> {
    match t.payload {
        PL::P(v) => Some(v),
        PL::C(_) => None,
    }
}

/// A value as clean text: valid UTF-8, control characters dropped (line breaks kept only
/// when `multiline`, as `\n`), trimmed, cut to [`MAX_VALUE`] bytes; `None` when empty.
pub fn clean(v: &[u8], multiline: bool) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?;
    let mut out = String::with_capacity(s.len().min(MAX_VALUE));
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_VALUE {
            break;
        }
        match c {
            '\n' if multiline => out.push('\n'),
            '\r' if multiline => {}
            '\r' | '\n' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// AD's objectGUID (16 bytes, the first three groups little-endian) in its usual text form.
pub fn guid(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    ))
}

/// `Sales` from `CN=Sales,OU=Groups,DC=example,DC=com` (escapes undone for `\,` and the like).
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            ',' | '+' => break,
            c => out.push(c),
        }
    }
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(u: &'a DeltaEntry, name: &str) -> Option<&'a AttrValue> {
        u.changes
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v)
    }

    #[test]
    fn ad_entry_maps_to_graph_names() {
        let map = AttributeMap::new(Flavor::ActiveDirectory, &BTreeMap::new());
        let guid_bytes: Vec<u8> = (1..=16).collect();
        let e = Entry::new(
            "CN=Ann,OU=Staff,DC=example,DC=com",
            &[
                ("objectGUID", &[&guid_bytes]),
                ("mail", &[b"Ann@Example.com"]),
                ("sn", &[b"Example"]),
                ("title", &[b"Head of\r\nSales\x07"]),
                ("telephoneNumber", &[b"+1 555 0100"]),
                (
                    "proxyAddresses",
                    &[b"SMTP:ann@example.com", b"smtp:a@example.com"],
                ),
                (
                    "memberOf",
                    &[b"CN=Sales\\, EMEA,OU=Groups,DC=example,DC=com"],
                ),
                ("streetAddress", &[b"1 Main St\r\nSuite 2"]),
                ("thumbnailPhoto", &[b"\xff\xd8jpeg"]),
            ],
        );
        let c = map.convert(&e).unwrap();
        assert_eq!(c.id, "04030201-0605-0807-090a-0b0c0d0e0f10");
        assert_eq!(
            c.entry.id(),
            Some(c.id.as_str()),
            "changes sorted, id found"
        );
        assert_eq!(
            attr(&c.entry, "surname").unwrap(),
            &AttrValue::from("Example")
        );
        assert_eq!(
            attr(&c.entry, "jobTitle").unwrap(),
            &AttrValue::from("Head of  Sales")
        );
        assert_eq!(
            attr(&c.entry, "streetAddress").unwrap(),
            &AttrValue::from("1 Main St\nSuite 2")
        );
        assert_eq!(
            attr(&c.entry, "businessPhones").unwrap().to_json(),
            serde_json::json!(["+1 555 0100"])
        );
        assert_eq!(
            attr(&c.entry, "memberOf").unwrap().to_json(),
            serde_json::json!([
                "Sales, EMEA",
                "CN=Sales\\, EMEA,OU=Groups,DC=example,DC=com"
            ])
        );
        assert!(
            attr(&c.entry, "department").unwrap().is_null(),
            "absent: cleared"
        );
        assert!(attr(&c.entry, PHOTO).is_none());
        assert_eq!(c.photo.as_deref(), Some(&b"\xff\xd8jpeg"[..]));
        // No id: no user.
        assert!(map
            .convert(&Entry::new("CN=x", &[("mail", &[b"x@y"])]))
            .is_none());
        assert!(map
            .convert(&Entry::new("CN=x", &[("objectGUID", &[b"short"])]))
            .is_none());
    }

    #[test]
    fn openldap_defaults_extra_attributes_and_limits() {
        let extra = BTreeMap::from([
            ("extensionAttribute1".to_string(), "carLicense".to_string()),
            ("jobTitle".to_string(), "".to_string()),
        ]);
        let map = AttributeMap::new(Flavor::Openldap, &extra);
        assert!(map.request().contains(&"carlicense".to_string()));
        assert!(!map.request().contains(&"title".to_string()));
        assert!(map.request().contains(&"entryUUID".to_string()));
        let long = "x".repeat(MAX_VALUE + 10);
        let e = Entry::new(
            "uid=a,dc=x",
            &[
                ("entryUUID", &[b"1234-5678"]),
                ("CN", &[b"Ann Example"]),
                ("carLicense", &[long.as_bytes()]),
                ("title", &[b"ignored"]),
                ("mail", &[b"\xff\xfe"]),
            ],
        );
        let c = map.convert(&e).unwrap();
        assert_eq!(c.id, "1234-5678");
        assert_eq!(
            attr(&c.entry, "displayName").unwrap(),
            &AttrValue::from("Ann Example"),
            "cn stands in"
        );
        assert_eq!(
            attr(&c.entry, "extensionAttribute1")
                .unwrap()
                .as_str()
                .unwrap()
                .len(),
            MAX_VALUE
        );
        assert!(attr(&c.entry, "jobTitle").is_none());
        assert!(
            attr(&c.entry, "mail").unwrap().is_null(),
            "not UTF-8: dropped"
        );
    }

    #[test]
    fn rdn_values() {
        assert_eq!(first_rdn_value("cn=Sales,dc=x").as_deref(), Some("Sales"));
        assert_eq!(
            first_rdn_value("CN=A\\,B+uid=c,dc=x").as_deref(),
            Some("A,B")
        );
        assert_eq!(first_rdn_value("nothing"), None);
        assert_eq!(first_rdn_value("cn=,dc=x"), None);
    }
}
