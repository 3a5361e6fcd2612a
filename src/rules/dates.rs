//! A rule's active window: `from` (inclusive) and `until` (inclusive for a date, exclusive
//! for a date-time). A bare date is a UTC calendar day: `until = 2026-12-31` keeps the rule
//! active to 2026-12-31T23:59:59Z; a date-time with an offset is an exact instant.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time};

/// One bound as written and as an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// As written (for the page and `describe`).
    pub shown: String,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<Bound>,
    /// The first instant the rule is no longer active.
    pub until: Option<Bound>,
}

impl Window {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.from.as_ref().is_none_or(|f| now >= f.at)
            && self.until.as_ref().is_none_or(|u| now < u.at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    From,
    Until,
}

/// Parse a TOML value (a string, or a TOML date / date-time) as one bound.
pub fn parse_bound(value: &toml::Value, edge: Edge) -> Result<Bound, String> {
    let text = match value {
        toml::Value::String(s) => s.trim().to_string(),
        toml::Value::Datetime(dt) => dt.to_string(),
        other => {
            return Err(format!(
                "expected an RFC 3339 date or date-time, got a {}",
                other.type_str()
            ))
        }
    };
    let at = parse_instant(&text, edge).ok_or_else(|| {
        format!(
            "{text:?} is not an RFC 3339 date (2026-12-31) or date-time \
             (2026-12-31T18:00:00+01:00)"
        )
    })?;
    Ok(Bound { shown: text, at })
}

fn parse_instant(text: &str, edge: Edge) -> Option<OffsetDateTime> {
    if let Ok(dt) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(dt);
    }
    // TOML's own date-time syntax allows a space for `T`.
    if let Ok(dt) = OffsetDateTime::parse(&text.replacen(' ', "T", 1), &Rfc3339) {
        return Some(dt);
    }
    if let Ok(d) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        let day = PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc();
        return Some(match edge {
            Edge::From => day,
            // The whole day counts: the window ends at the next midnight.
            Edge::Until => day + Duration::days(1),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn b(s: &str, edge: Edge) -> Bound {
        parse_bound(&toml::Value::String(s.into()), edge).unwrap()
    }

    #[test]
    fn window_edges() {
        let w = Window {
            from: Some(b("2026-12-01", Edge::From)),
            until: Some(b("2026-12-31", Edge::Until)),
        };
        let table = [
            (datetime!(2026-11-30 23:59:59.999 UTC), false),
            (datetime!(2026-12-01 00:00:00 UTC), true),
            (datetime!(2026-12-15 12:00 UTC), true),
            (datetime!(2026-12-31 23:59:59.999 UTC), true),
            (datetime!(2027-01-01 00:00:00 UTC), false),
            // The same instants seen from another offset.
            (datetime!(2026-12-01 00:30 +01:00), false),
            (datetime!(2027-01-01 00:30 +01:00), true),
        ];
        for (now, want) in table {
            assert_eq!(w.is_active(now), want, "{now}");
        }
        assert!(Window::default().is_active(datetime!(2000-01-01 0:00 UTC)));
    }

    #[test]
    fn date_times_are_exact_and_until_is_exclusive() {
        let w = Window {
            from: Some(b("2026-12-01T09:00:00+01:00", Edge::From)),
            until: Some(b("2026-12-01T18:00:00Z", Edge::Until)),
        };
        assert!(!w.is_active(datetime!(2026-12-01 07:59:59 UTC)));
        assert!(w.is_active(datetime!(2026-12-01 08:00 UTC)));
        assert!(w.is_active(datetime!(2026-12-01 17:59:59 UTC)));
        assert!(!w.is_active(datetime!(2026-12-01 18:00 UTC)));
    }

    #[test]
    fn toml_dates_and_bad_values() {
        let v: toml::Table = toml::from_str(
            "a = 2026-12-31\nb = 2026-12-31T10:00:00Z\nc = 2026-12-31 10:00:00+02:00\nd = 5\n",
        )
        .unwrap();
        assert_eq!(
            parse_bound(&v["a"], Edge::Until).unwrap().at,
            datetime!(2027-01-01 0:00 UTC)
        );
        assert_eq!(
            parse_bound(&v["b"], Edge::From).unwrap().at,
            datetime!(2026-12-31 10:00 UTC)
        );
        assert_eq!(
            parse_bound(&v["c"], Edge::From).unwrap().at,
            datetime!(2026-12-31 08:00 UTC)
        );
        assert!(parse_bound(&v["d"], Edge::From)
            .unwrap_err()
            .contains("integer"));
        for bad in [
            "2026-13-01",
            "31.12.2026",
            "2026-12-31T10:00:00",
            "tomorrow",
            "",
        ] {
            let e = parse_bound(&toml::Value::String(bad.into()), Edge::From).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
