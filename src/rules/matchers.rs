//! Sender matchers and the internal/external split of recipients. All comparisons ignore
//! case: addresses and domains are ASCII-lowercased, attribute values Unicode-lowercased.

use crate::directory::{AttrValue, User};

/// The domain part of an address (after the last `@`), without a trailing dot; `None` for
/// a bare local part such as `postmaster`.
pub fn domain_of(address: &str) -> Option<&str> {
    let (_, d) = address.rsplit_once('@')?;
    Some(d.trim().trim_end_matches(['>', '.']))
}

/// A domain list where each entry covers itself and every subdomain: `contoso.example`
/// matches `contoso.example` and `eu.contoso.example`, not `notcontoso.example`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domains(Vec<String>);

impl Domains {
    /// Entries are normalised: lowercase, without a leading `@` or `.` or a trailing `.`.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        Domains(
            entries
                .iter()
                .map(|d| normalize_domain(d.as_ref()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }

    pub fn contains(&self, domain: &str) -> bool {
        // Bytes, not str slices: a recipient's domain may be UTF-8 (SMTPUTF8), and a cut
        // inside a character must not panic.
        let domain = domain.trim_end_matches('.').as_bytes();
        self.0.iter().any(|d| {
            let d = d.as_bytes();
            domain.len() >= d.len()
                && domain[domain.len() - d.len()..].eq_ignore_ascii_case(d)
                && (domain.len() == d.len() || domain[domain.len() - d.len() - 1] == b'.')
        })
    }
}

pub fn normalize_domain(d: &str) -> String {
    d.trim()
        .trim_start_matches(['@', '.'])
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Is a syntactically plausible domain for the config: labels of letters, digits, `-`, and
/// non-ASCII (IDN written in Unicode), no empty label.
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || !c.is_ascii())
        })
}

/// A recipient is internal when its domain is one of `internal` (or a subdomain of one).
/// A recipient without a domain (`postmaster`) is local to the next hop, hence internal.
/// Everything else, address literals included, is external.
pub fn is_internal(internal: &Domains, recipient: &str) -> bool {
    match domain_of(recipient) {
        None => true,
        Some(d) => internal.contains(d),
    }
}

/// One `attribute = { key = value(s) }` entry: the user's attribute (a dotted path reaches
/// into objects, e.g. `onPremisesExtensionAttributes.extensionAttribute1`) must equal one of
/// the values. For a list attribute (`memberOf`, `businessPhones`), one element must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMatch {
    pub key: String,
    /// As written, for display.
    pub shown: Vec<String>,
    /// Lowercased, for matching.
    values: Vec<String>,
}

impl AttributeMatch {
    pub fn new(key: &str, values: &[String]) -> Self {
        AttributeMatch {
            key: key.to_string(),
            shown: values.to_vec(),
            values: values.iter().map(|v| v.trim().to_lowercase()).collect(),
        }
    }

    pub fn matches(&self, user: &User) -> bool {
        let mut path = self.key.split('.');
        let first = path.next().unwrap_or_default();
        let Some(mut v) = user.get(first) else {
            return false;
        };
        for seg in path {
            match v.get(seg) {
                Some(inner) => v = inner,
                None => return false,
            }
        }
        match v.as_array() {
            Some(items) => items.iter().any(|i| self.matches_scalar(i)),
            None => self.matches_scalar(v),
        }
    }

    fn matches_scalar(&self, v: &AttrValue) -> bool {
        let text = match v {
            AttrValue::String(s) => s.trim().to_lowercase(),
            AttrValue::Number(n) => n.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            _ => return false,
        };
        self.values.contains(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn user(v: Value) -> User {
        User::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn domains_cover_subdomains_only_at_label_boundaries() {
        let d = Domains::new(&[
            "Contoso.example",
            "@fabrikam.example.",
            ".corp.example",
            "ple",
        ]);
        assert_eq!(
            d.entries(),
            ["contoso.example", "fabrikam.example", "corp.example", "ple"]
        );
        let table = [
            ("contoso.example", true),
            ("CONTOSO.EXAMPLE", true),
            ("eu.contoso.example", true),
            ("a.b.Contoso.Example", true),
            ("contoso.example.", true),
            ("notcontoso.example", false),
            ("contoso.example.evil", false),
            ("example", false),
            ("fabrikam.example", true),
            ("x.corp.example", true),
            ("", false),
            ("bücher.contoso.example", true),
            ("exam.ple", true),
            ("éxample", false),
            ("ü", false),
            ("üab", false), // a str slice would cut inside "ü"
        ];
        for (domain, want) in table {
            assert_eq!(d.contains(domain), want, "{domain}");
        }
        assert!(!Domains::default().contains("contoso.example"));
    }

    #[test]
    fn recipients_are_classified_by_domain() {
        let d = Domains::new(&["contoso.example"]);
        let table = [
            ("bob@contoso.example", true),
            ("Bob@Contoso.Example", true),
            ("bob@sales.contoso.example", true),
            ("bob@contoso.example.", true),
            ("postmaster", true),
            ("bob@fabrikam.example", false),
            ("bob@notcontoso.example", false),
            ("\"a@contoso.example\"@evil.example", false),
            ("bob@[192.0.2.1]", false),
        ];
        for (rcpt, want) in table {
            assert_eq!(is_internal(&d, rcpt), want, "{rcpt}");
        }
    }

    #[test]
    fn domain_syntax() {
        for ok in [
            "contoso.example",
            "a-b.example",
            "bücher.example",
            "localhost",
        ] {
            assert!(valid_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "a b.example",
            "a@b.example",
            "contoso.example/x",
        ] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }

    #[test]
    fn attribute_values_ignore_case_and_reach_lists_and_paths() {
        let u = user(json!({
            "department": "Sales ",
            "employeeId": 42,
            "accountEnabled": true,
            "businessPhones": ["+1 555 0100", "+1 555 0199"],
            "memberOf": ["Sales Team", "0b0c6f3e-aaaa-bbbb-cccc-000000000001"],
            "onPremisesExtensionAttributes": {"extensionAttribute1": "VIP"},
            "manager": null,
        }));
        let m = |k: &str, vals: &[&str]| {
            AttributeMatch::new(k, &vals.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .matches(&u)
        };
        let table: &[(&str, &[&str], bool)] = &[
            ("department", &["sales"], true),
            ("department", &["SALES"], true),
            ("department", &["Marketing", "Sales"], true),
            ("department", &["Sale"], false),
            ("Department", &["Sales"], false),
            ("employeeId", &["42"], true),
            ("accountEnabled", &["TRUE"], true),
            ("businessPhones", &["+1 555 0199"], true),
            ("memberOf", &["sales team"], true),
            ("memberOf", &["0B0C6F3E-AAAA-BBBB-CCCC-000000000001"], true),
            ("memberOf", &["Finance"], false),
            (
                "onPremisesExtensionAttributes.extensionAttribute1",
                &["vip"],
                true,
            ),
            (
                "onPremisesExtensionAttributes.extensionAttribute2",
                &["vip"],
                false,
            ),
            ("manager", &[""], false),
            ("missing", &["x"], false),
        ];
        for (key, vals, want) in table {
            assert_eq!(m(key, vals), *want, "{key} = {vals:?}");
        }
    }

    proptest::proptest! {
        /// Any recipient, UTF-8 included: no panic, and the same answer as comparing labels.
        #[test]
        fn domain_match_is_a_label_suffix(domain in "[a-zA-Z0-9.ü-]{0,12}", entry in "[a-z.ü]{1,6}") {
            let d = Domains::new(&[entry.as_str()]);
            let norm = normalize_domain(&entry);
            let want = {
                let got = domain.trim_end_matches('.').to_ascii_lowercase();
                got == norm || got.ends_with(&format!(".{norm}"))
            };
            proptest::prop_assert_eq!(d.contains(&domain), want);
            let _ = is_internal(&d, &format!("x@{domain}"));
        }
    }

    #[test]
    fn domain_of_address() {
        assert_eq!(domain_of("a@B.example"), Some("B.example"));
        assert_eq!(domain_of("a@b.example."), Some("b.example"));
        assert_eq!(domain_of("\"x@y\"@z.example"), Some("z.example"));
        assert_eq!(domain_of("postmaster"), None);
    }
}
