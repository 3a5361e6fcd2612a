//! Small HTML helpers for the status page: escaping, query encoding, times people read.

use std::fmt::Write as _;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Minimal HTML escaping for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Escaped text where `` `spans` `` and config keys (`graph.client_secret`) become `<code>`:
/// the help texts name commands and keys that way, and an admin copies them from the page.
pub fn with_code(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    // An unpaired backtick (an even number of parts) stays literal.
    let paired = parts.len() - (1 - parts.len() % 2);
    let mut out = String::with_capacity(s.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i >= paired {
            out.push('`');
            out.push_str(&escape(part));
        } else if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&config_keys(&escape(part)));
        }
    }
    out
}

/// Config sections whose `section.key` names are marked as code in help texts.
const SECTIONS: &[&str] = &["graph.", "directory.", "templates.", "admin."];

/// Wrap `section.key` words of already escaped text in `<code>`.
fn config_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, section)) = SECTIONS
        .iter()
        .filter_map(|s| rest.find(s).map(|i| (i, s)))
        .min()
    {
        let word_start = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric());
        let key_len = rest[at + section.len()..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len() - at - section.len());
        let end = at + section.len() + key_len;
        out.push_str(&rest[..at]);
        if word_start && key_len > 0 {
            let _ = write!(out, "<code>{}</code>", &rest[at..end]);
        } else {
            out.push_str(&rest[at..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// How long ago `t` was, roughly: "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - t).whole_seconds();
    if secs < -60 {
        return "in the future (check this host's clock)".into();
    }
    match secs {
        ..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// `<time>` with the machine-readable instant, the UTC time and how long ago it was.
pub fn when(t: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    let Some(t) = t else {
        return "never".into();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let iso = t.format(&Rfc3339).unwrap_or_default();
    let shown = t
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_else(|_| iso.clone());
    format!(
        "<time datetime=\"{iso}\">{shown}</time> <span class=\"ago\">({})</span>",
        ago(t, now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_encode("a b+c@d.e"), "a%20b%2Bc@d.e");
    }

    #[test]
    fn code_spans() {
        assert_eq!(
            with_code("run `sigstamp login --config FILE` to <sign> in"),
            "run <code>sigstamp login --config FILE</code> to &lt;sign&gt; in"
        );
        assert_eq!(
            with_code("a `b` c `d`"),
            "a <code>b</code> c <code>d</code>"
        );
        assert_eq!(with_code("plain"), "plain");
        assert_eq!(with_code("odd ` <x>"), "odd ` &lt;x&gt;");
        assert_eq!(
            with_code("put it in graph.client_secret or graph.client_secret_file."),
            "put it in <code>graph.client_secret</code> or \
             <code>graph.client_secret_file</code>."
        );
        assert_eq!(
            with_code("check graph.tenant_id (GUID)"),
            "check <code>graph.tenant_id</code> (GUID)"
        );
        assert_eq!(
            with_code("Microsoft graph. Or subgraph.x"),
            "Microsoft graph. Or subgraph.x"
        );
    }

    #[test]
    fn relative_times() {
        let now = datetime!(2026-11-26 10:00:00 UTC);
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(datetime!(2026-11-26 09:55:00 UTC), now), "5 min ago");
        assert_eq!(ago(datetime!(2026-11-26 07:00:00 UTC), now), "3 h ago");
        assert_eq!(ago(datetime!(2026-11-25 09:00:00 UTC), now), "25 h ago");
        assert_eq!(ago(datetime!(2026-11-20 10:00:00 UTC), now), "6 days ago");
        assert!(ago(datetime!(2026-11-26 11:00:00 UTC), now).starts_with("in the future"));
        assert_eq!(
            when(Some(datetime!(2026-11-26 07:00:00 +02:00)), now),
            "<time datetime=\"2026-11-26T05:00:00Z\">2026-11-26 05:00:00 UTC</time> \
             <span class=\"ago\">(5 h ago)</span>"
        );
        assert_eq!(when(None, now), "never");
    }
}
