//! Postfix's XFORWARD (XFORWARD_README): the attributes of the original client, passed from
//! one MTA to the next so that the Postfix behind a `smtpd_proxy_filter` logs the real client.
//!
//! Values travel xtext-encoded (RFC 3461 §4); `[UNAVAILABLE]` stands for an unknown value.
//! Attributes are held here as (upper-case name, encoded value).

use std::net::SocketAddr;

/// Every attribute sigstamp accepts and sends, in the order Postfix sends them.
pub const ATTRS: [&str; 7] = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"];
/// Postfix's limit for one XFORWARD command line, CRLF included; longer sets are split.
const MAX_LINE: usize = 512;
pub const UNAVAILABLE: &str = "[UNAVAILABLE]";

pub type Attrs = Vec<(&'static str, String)>;

/// The EHLO keyword line we offer.
pub fn ehlo_keyword() -> String {
    format!("XFORWARD {}", ATTRS.join(" "))
}

/// Parse the arguments of a client's `XFORWARD name=value ...`; values stay encoded.
pub fn parse(args: &str) -> Result<Attrs, String> {
    let mut attrs = Attrs::new();
    for item in args.split_ascii_whitespace() {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not name=value"))?;
        let name = ATTRS
            .iter()
            .find(|a| a.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown attribute {name:?}"))?;
        if !is_xtext(value) {
            return Err(format!("{name} value is not xtext"));
        }
        attrs.retain(|(n, _)| n != name);
        attrs.push((name, value.to_string()));
    }
    if attrs.is_empty() {
        return Err("no attributes".into());
    }
    Ok(attrs)
}

/// sigstamp's own view of its client (after PROXY: the real address).
pub fn own_view(peer: Option<SocketAddr>, helo: Option<&str>, esmtp: bool) -> Attrs {
    let (addr, port) = match peer {
        Some(SocketAddr::V4(a)) => (a.ip().to_string(), a.port().to_string()),
        Some(SocketAddr::V6(a)) => match a.ip().to_ipv4_mapped() {
            Some(v4) => (v4.to_string(), a.port().to_string()),
            None => (format!("IPV6:{}", a.ip()), a.port().to_string()),
        },
        None => (UNAVAILABLE.into(), UNAVAILABLE.into()),
    };
    vec![
        // No reverse lookups here: the next hop logs "unknown[addr]".
        ("NAME", UNAVAILABLE.into()),
        ("ADDR", encode(&addr)),
        ("PORT", encode(&port)),
        ("PROTO", if esmtp { "ESMTP" } else { "SMTP" }.into()),
        ("HELO", helo.map_or_else(|| UNAVAILABLE.into(), encode)),
        ("IDENT", UNAVAILABLE.into()),
        ("SOURCE", "REMOTE".into()),
    ]
}

/// The names the next hop lists after `XFORWARD` in its EHLO reply, if it offers it.
pub fn offered(ehlo_lines: &[String]) -> Option<Vec<String>> {
    ehlo_lines.iter().find_map(|line| {
        let mut words = line.split_ascii_whitespace();
        words
            .next()
            .filter(|w| w.eq_ignore_ascii_case("XFORWARD"))
            .map(|_| words.map(str::to_ascii_uppercase).collect())
    })
}

/// The XFORWARD command lines carrying the attributes the next hop offers, each within
/// Postfix's 512-byte limit.
pub fn command_lines(attrs: &Attrs, offered: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for (name, value) in attrs.iter().filter(|(n, _)| offered.iter().any(|o| o == n)) {
        let item = format!(" {name}={value}");
        if !line.is_empty() && line.len() + item.len() + 2 > MAX_LINE {
            lines.push(std::mem::take(&mut line) + "\r\n");
        }
        if line.is_empty() {
            line.push_str("XFORWARD");
        }
        line.push_str(&item);
    }
    if !line.is_empty() {
        lines.push(line + "\r\n");
    }
    lines
}

/// xtext: `+`, `=`, controls, space and non-ASCII as `+HH`. A value longer than a line
/// allows is cut (it is for logging only).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes().iter().take(255) {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

fn is_xtext(value: &str) -> bool {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
                if i + 2 >= b.len() {
                    return false;
                }
                if !(hex(b[i + 1]) && hex(b[i + 2])) {
                    return false;
                }
                i += 3;
            }
            b'!'..=b'~' if b[i] != b'=' => i += 1,
            _ => return false,
        }
    }
    !b.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        for (args, ok) in [
            ("NAME=mx.example ADDR=192.0.2.1", true),
            ("addr=192.0.2.1 proto=ESMTP", true),
            ("HELO=a+20b", true),
            ("NAME=[UNAVAILABLE]", true),
            ("ADDR=IPV6:2001:db8::1", true),
            ("", false),
            ("NAME", false),
            ("FOO=bar", false),
            ("HELO=a+2", false),
            ("HELO=a+zz", false),
            ("HELO=a=b", false),
            ("HELO=", false),
        ] {
            assert_eq!(parse(args).is_ok(), ok, "{args:?}");
        }
        assert_eq!(
            parse("addr=1.2.3.4 ADDR=5.6.7.8").unwrap(),
            vec![("ADDR", "5.6.7.8".to_string())]
        );
    }

    #[test]
    fn encoding_and_views() {
        assert_eq!(encode("a b+c=d\u{e9}"), "a+20b+2Bc+3Dd+C3+A9");
        let attrs = own_view(Some("127.0.0.2:5000".parse().unwrap()), Some("x y"), true);
        let lines = command_lines(&attrs, &["ADDR".into(), "HELO".into(), "PROTO".into()]);
        assert_eq!(
            lines,
            vec!["XFORWARD ADDR=127.0.0.2 PROTO=ESMTP HELO=x+20y\r\n"]
        );
        let v6 = own_view(Some("[2001:db8::1]:25".parse().unwrap()), None, false);
        assert!(v6.contains(&("ADDR", "IPV6:2001:db8::1".into())), "{v6:?}");
        assert!(v6.contains(&("HELO", UNAVAILABLE.into())), "{v6:?}");
        let long: Attrs = ATTRS.iter().map(|n| (*n, "x".repeat(200))).collect();
        let offered: Vec<String> = ATTRS.iter().map(|s| s.to_string()).collect();
        let lines = command_lines(&long, &offered);
        assert!(
            lines.len() > 1
                && lines
                    .iter()
                    .all(|l| l.len() <= MAX_LINE && l.starts_with("XFORWARD "))
        );
        assert_eq!(
            offered_from(&["mx", "PIPELINING", "XFORWARD NAME ADDR PROTO HELO"]),
            Some(vec![
                "NAME".into(),
                "ADDR".into(),
                "PROTO".into(),
                "HELO".into()
            ])
        );
        assert_eq!(offered_from(&["mx", "PIPELINING"]), None);
    }

    fn offered_from(lines: &[&str]) -> Option<Vec<String>> {
        offered(&lines.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }
}
