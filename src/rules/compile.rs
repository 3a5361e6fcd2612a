//! `[[rules]]` as written → [`Rule`]s, checked. Every error names its key, counting
//! `[[rules]]` tables from 1 as the admin page does: `rules[2].until: …`.

use super::dates::{parse_bound, Edge, Window};
use super::exceptions::{HeaderTest, Keywords};
use super::matchers::{normalize_domain, valid_domain, AttributeMatch, Domains};
use super::rule::{Action, Recipients, Rule};
use crate::config::ConfigError;
use crate::config::{RecipientsConfig, RuleConfig};
use crate::directory::memberships::MEMBER_OF;

/// The template name that means "no signature".
pub const NONE: &str = "none";

pub fn internal_domains(cfg: &RecipientsConfig) -> Result<Domains, ConfigError> {
    for (i, d) in cfg.internal_domains.iter().enumerate() {
        if !valid_domain(&normalize_domain(d)) {
            return Err(ConfigError::invalid(
                &format!("recipients.internal_domains[{i}]"),
                format!("{d:?} is not a domain"),
            ));
        }
    }
    Ok(Domains::new(&cfg.internal_domains))
}

pub fn rule(position: usize, c: &RuleConfig, internal: &Domains) -> Result<Rule, ConfigError> {
    let key = |field: &str| format!("rules[{position}].{field}");
    let err = |field: &str, msg: String| ConfigError::invalid(&key(field), msg);
    let nonblank = |field: &str, values: &[String]| -> Result<(), ConfigError> {
        match values.iter().find(|v| v.trim().is_empty()) {
            Some(_) => Err(err(field, "empty value".into())),
            None => Ok(()),
        }
    };

    if c.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(err("name", "empty name".into()));
    }
    for a in &c.sender {
        let ok = a
            .trim()
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && valid_domain(d));
        if !ok {
            return Err(err("sender", format!("{a:?} is not an email address")));
        }
    }
    for d in &c.sender_domain {
        if !valid_domain(&normalize_domain(d)) {
            return Err(err("sender_domain", format!("{d:?} is not a domain")));
        }
    }
    let mut attributes = Vec::with_capacity(c.attribute.len());
    for (name, values) in &c.attribute {
        let field = format!("attribute.{name}");
        if name.trim().is_empty() || name.split('.').any(str::is_empty) {
            return Err(err(&field, "not an attribute name".into()));
        }
        if values.0.is_empty() {
            return Err(err(&field, "no value given".into()));
        }
        nonblank(&field, &values.0)?;
        attributes.push(AttributeMatch::new(name, &values.0));
    }
    nonblank("group", &c.group)?;
    let recipients = match &c.recipients {
        None => Recipients::Any,
        Some(r) => Recipients::parse(r).ok_or_else(|| {
            err(
                "recipients",
                format!("unknown value {r:?}, expected \"internal\", \"external\" or \"any\""),
            )
        })?,
    };
    if recipients != Recipients::Any && internal.is_empty() {
        return Err(err(
            "recipients",
            "telling internal from external recipients needs `[recipients] internal_domains`"
                .into(),
        ));
    }
    nonblank("except_subject", &c.except_subject)?;
    nonblank("except_body", &c.except_body)?;
    let except_header = c
        .except_header
        .iter()
        .map(|h| HeaderTest::parse(h).map_err(|m| err("except_header", m)))
        .collect::<Result<Vec<_>, _>>()?;
    let window = Window {
        from: c
            .from
            .as_ref()
            .map(|v| parse_bound(v, Edge::From).map_err(|m| err("from", m)))
            .transpose()?,
        until: c
            .until
            .as_ref()
            .map(|v| parse_bound(v, Edge::Until).map_err(|m| err("until", m)))
            .transpose()?,
    };
    if let (Some(f), Some(u)) = (&window.from, &window.until) {
        if f.at >= u.at {
            return Err(err(
                "until",
                format!("{} is not after from = {}", u.shown, f.shown),
            ));
        }
    }
    let action = match c.template.as_deref().map(str::trim) {
        None => {
            return Err(err(
                "template",
                "missing: a template name, or \"none\" for no signature".into(),
            ))
        }
        Some("") => return Err(err("template", "empty template name".into())),
        Some(t) if t.eq_ignore_ascii_case(NONE) => Action::NoSignature,
        Some(t) => Action::Template(t.to_string()),
    };
    Ok(Rule {
        position,
        name: c.name.as_ref().map(|n| n.trim().to_string()),
        senders: c
            .sender
            .iter()
            .map(|a| a.trim().to_ascii_lowercase())
            .collect(),
        domains: Domains::new(&c.sender_domain),
        attributes,
        groups: (!c.group.is_empty()).then(|| AttributeMatch::new(MEMBER_OF, &c.group)),
        recipients,
        except_subject: Keywords::new(&c.except_subject),
        except_body: Keywords::new(&c.except_body),
        except_header,
        window,
        action,
    })
}
