//! Helpers every template may use, in both registries.
//!
//! - `{{first businessPhones}}`: the first element of an array (Graph's `businessPhones` is a
//!   collection that holds at most one number), or the value itself when it is not an array.
//! - `{{join postalCode city sep=" "}}`: the non-empty values (arrays flattened) joined with
//!   `sep` (default `", "`); handy for address lines where any part may be missing.
//! - `{{tel mobilePhone}}`: the number reduced to `+` and digits, for `tel:` links.

use handlebars::{handlebars_helper, Handlebars};
use serde_json::Value;

handlebars_helper!(first: |v: Json| match v {
    Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
    other => other.clone(),
});

handlebars_helper!(join: |{sep: str = ", "}, *args| {
    let mut parts: Vec<&str> = Vec::new();
    for v in args {
        scalars(v, &mut parts);
    }
    Value::String(parts.join(sep))
});

handlebars_helper!(tel: |v: Json| {
    let mut parts = Vec::new();
    scalars(v, &mut parts);
    let number = parts.first().copied().unwrap_or_default();
    Value::String(number.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect())
});

/// Every non-empty string in `v`, trimmed (arrays flattened; other types skipped).
fn scalars<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) if !s.trim().is_empty() => out.push(s.trim()),
        Value::Array(items) => items.iter().for_each(|i| scalars(i, out)),
        _ => {}
    }
}

pub(super) fn register(reg: &mut Handlebars<'static>) {
    reg.register_helper("first", Box::new(first));
    reg.register_helper("join", Box::new(join));
    reg.register_helper("tel", Box::new(tel));
}
