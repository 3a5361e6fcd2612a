//! What to tell the admin and when: a pure state machine over (now, token state, certificate),
//! and the text of each message. The run loop in `mod.rs` does the I/O.

use super::aadsts;
use super::cert::CertInfo;
use super::mail::Mail;
use crate::status::{SnapshotStatus, TokenState, TokenStatus};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Days before the certificate's notAfter at which to warn; 0 is "has expired".
pub const CERT_WARN_DAYS: [i64; 4] = [14, 7, 1, 0];

#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    TokenExpired {
        token: TokenStatus,
        /// A repeat after `notify_interval`, not the first message.
        reminder: bool,
    },
    TokenRecovered {
        code: Option<String>,
        expired_since: OffsetDateTime,
    },
    CertExpiring {
        /// One of [`CERT_WARN_DAYS`].
        days: i64,
        path: PathBuf,
        cert: CertInfo,
    },
    /// The directory snapshot cannot be written: a restart would lose the directory.
    SnapshotFailing {
        snapshot: SnapshotStatus,
        reminder: bool,
    },
    SnapshotRecovered {
        path: PathBuf,
        failing_since: OffsetDateTime,
    },
}

impl Alert {
    /// The `kind` label of the notifications metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::TokenExpired { .. } => "token_expired",
            Alert::TokenRecovered { .. } => "token_recovered",
            Alert::CertExpiring { .. } => "certificate_expiry",
            Alert::SnapshotFailing { .. } => "snapshot_failing",
            Alert::SnapshotRecovered { .. } => "snapshot_recovered",
        }
    }
}

/// An expired-token episode: from the first `expired` until the next `valid`.
#[derive(Debug, Clone)]
struct Incident {
    since: OffsetDateTime,
    code: Option<String>,
    last_sent: Option<OffsetDateTime>,
}

impl Incident {
    /// Whether to say it now: `Some(false)` the first time, `Some(true)` again once `interval`
    /// has passed since it was last said, `None` not yet.
    fn due(&self, now: OffsetDateTime, interval: Duration) -> Option<bool> {
        match self.last_sent {
            None => Some(false),
            Some(t) if now >= t + interval => Some(true),
            Some(_) => None,
        }
    }
}

/// Remembers what was already said, so each thing is said once (or once per interval).
#[derive(Debug)]
pub struct Tracker {
    interval: Duration,
    incident: Option<Incident>,
    /// A snapshot-write episode: from the first failed write until the next good one.
    snapshot: Option<Incident>,
    /// (notAfter, smallest threshold already warned about) of the current certificate.
    cert_warned: Option<(OffsetDateTime, i64)>,
}

impl Tracker {
    pub fn new(interval: Duration) -> Self {
        Tracker {
            interval,
            incident: None,
            snapshot: None,
            cert_warned: None,
        }
    }

    /// The alerts due now. Nothing is marked as said until [`Tracker::sent`], so an alert whose
    /// delivery failed comes back on the next call.
    pub fn due(
        &mut self,
        now: OffsetDateTime,
        token: &TokenStatus,
        cert: Option<(PathBuf, CertInfo)>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        if let Some(a) = self.token_due(now, token) {
            out.push(a);
        }
        if let Some((path, cert)) = cert {
            if let Some(days) = self.cert_due(now, &cert) {
                out.push(Alert::CertExpiring { days, path, cert });
            }
        }
        out
    }

    fn token_due(&mut self, now: OffsetDateTime, token: &TokenStatus) -> Option<Alert> {
        match token.state {
            TokenState::Expired => {
                let inc = self.incident.get_or_insert_with(|| Incident {
                    since: token.since,
                    code: token.error_code.clone(),
                    last_sent: None,
                });
                if inc.code != token.error_code {
                    // A different cause needs a different fix: say so at once.
                    inc.code = token.error_code.clone();
                    inc.last_sent = None;
                }
                let reminder = inc.due(now, self.interval)?;
                Some(Alert::TokenExpired {
                    token: token.clone(),
                    reminder,
                })
            }
            TokenState::Valid => {
                let inc = self.incident.as_ref()?;
                if inc.last_sent.is_none() {
                    // The admin never heard of it; no news is good news.
                    self.incident = None;
                    return None;
                }
                Some(Alert::TokenRecovered {
                    code: inc.code.clone(),
                    expired_since: inc.since,
                })
            }
            // Transient trouble after `expired` does not end the episode, nor repeat it; nor
            // does `starting`, the state before the first token answer after a restart.
            TokenState::Failing | TokenState::Unconfigured | TokenState::Starting => None,
        }
    }

    /// The snapshot alert due now, like the expired token's: at once, then every
    /// `interval`, and one "recovered" once a write succeeds.
    pub fn snapshot_due(
        &mut self,
        now: OffsetDateTime,
        snap: Option<&SnapshotStatus>,
    ) -> Option<Alert> {
        let failing = snap.filter(|s| s.error.is_some());
        let Some(snap) = failing else {
            let inc = self.snapshot.as_ref()?;
            if inc.last_sent.is_none() {
                self.snapshot = None;
                return None;
            }
            return Some(Alert::SnapshotRecovered {
                path: snap.map(|s| s.path.clone()).unwrap_or_default(),
                failing_since: inc.since,
            });
        };
        let inc = self.snapshot.get_or_insert_with(|| Incident {
            since: snap.error_since.unwrap_or(now),
            code: None,
            last_sent: None,
        });
        let reminder = inc.due(now, self.interval)?;
        Some(Alert::SnapshotFailing {
            snapshot: snap.clone(),
            reminder,
        })
    }

    fn cert_due(&self, now: OffsetDateTime, cert: &CertInfo) -> Option<i64> {
        let remaining = cert.not_after - now;
        // The most urgent threshold reached; earlier ones passed while down are not sent late.
        let days = CERT_WARN_DAYS
            .iter()
            .rev()
            .copied()
            .find(|&d| remaining <= time::Duration::days(d))?;
        match self.cert_warned {
            Some((not_after, warned)) if not_after == cert.not_after && warned <= days => None,
            _ => Some(days),
        }
    }

    /// Record a delivered alert.
    pub fn sent(&mut self, alert: &Alert, now: OffsetDateTime) {
        match alert {
            Alert::TokenExpired { .. } => {
                if let Some(inc) = &mut self.incident {
                    inc.last_sent = Some(now);
                }
            }
            Alert::TokenRecovered { .. } => self.incident = None,
            Alert::CertExpiring { days, cert, .. } => {
                self.cert_warned = Some((cert.not_after, *days));
            }
            Alert::SnapshotFailing { .. } => {
                if let Some(inc) = &mut self.snapshot {
                    inc.last_sent = Some(now);
                }
            }
            Alert::SnapshotRecovered { .. } => self.snapshot = None,
        }
    }
}

/// What was already said, kept across restarts so a restart (or a crash loop) while the
/// token is dead does not alert again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    #[serde(default)]
    pub token: Option<SavedIncident>,
    #[serde(default)]
    pub certificate: Option<SavedCert>,
    #[serde(default)]
    pub snapshot: Option<SavedIncident>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedIncident {
    pub code: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_sent: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCert {
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub days: i64,
}

impl Tracker {
    /// The announced episode and certificate warning, if any.
    pub fn save(&self) -> Saved {
        let announced = |i: &Incident| {
            Some(SavedIncident {
                code: i.code.clone(),
                since: i.since,
                last_sent: i.last_sent?,
            })
        };
        Saved {
            token: self.incident.as_ref().and_then(announced),
            snapshot: self.snapshot.as_ref().and_then(announced),
            certificate: self
                .cert_warned
                .map(|(not_after, days)| SavedCert { not_after, days }),
        }
    }

    pub fn restore(&mut self, saved: Saved) {
        let incident = |t: SavedIncident| Incident {
            since: t.since,
            code: t.code,
            last_sent: Some(t.last_sent),
        };
        self.incident = saved.token.map(incident);
        self.snapshot = saved.snapshot.map(incident);
        self.cert_warned = saved.certificate.map(|c| (c.not_after, c.days));
    }
}

/// Facts the messages quote.
#[derive(Debug, Clone)]
pub struct Context {
    pub now: OffsetDateTime,
    pub users: usize,
    pub source: &'static str,
    pub last_sync: Option<OffsetDateTime>,
    pub interval: Duration,
}

/// Plain-text mail reads best, and stays 7bit, with lines under 76 columns.
const WIDTH: usize = 72;

/// Greedy word wrap. Continuation lines are indented like the line's text: under the value of
/// a `Label:   value` line, or at the line's own indentation.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / width);
    for line in text.lines() {
        if line.chars().count() <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let lead = line.len() - line.trim_start().len();
        let indent = label_width(line).unwrap_or(lead);
        out.push_str(&line[..indent]);
        let pad = " ".repeat(indent);
        let mut col = indent;
        for (i, word) in line[indent..]
            .split(' ')
            .filter(|w| !w.is_empty())
            .enumerate()
        {
            let n = word.chars().count();
            if i > 0 && col + 1 + n > width {
                out.push('\n');
                out.push_str(&pad);
                col = indent;
            } else if i > 0 {
                out.push(' ');
                col += 1;
            }
            out.push_str(word);
            col += n;
        }
        out.push('\n');
    }
    out
}

/// The width of a `Label:   ` prefix (no spaces in the label, at least two spaces after).
fn label_width(line: &str) -> Option<usize> {
    let colon = line.find(':')?;
    if line[..colon].contains(' ') || !line[colon + 1..].starts_with("  ") {
        return None;
    }
    let rest = &line[colon + 1..];
    Some(colon + 1 + rest.len() - rest.trim_start().len())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

impl Alert {
    pub fn mail(&self, ctx: &Context) -> Mail {
        match self {
            Alert::TokenExpired { token, reminder } => expired_mail(token, *reminder, ctx),
            Alert::TokenRecovered {
                code,
                expired_since,
            } => recovered_mail(code.as_deref(), *expired_since, ctx),
            Alert::CertExpiring { days, path, cert } => cert_mail(*days, path, cert),
            Alert::SnapshotFailing { snapshot, reminder } => {
                snapshot_mail(snapshot, *reminder, ctx)
            }
            Alert::SnapshotRecovered {
                path,
                failing_since,
            } => Mail {
                subject: "sigstamp: the directory snapshot is written again".into(),
                body: wrap(
                    &format!(
                        "The directory snapshot {} was written again ({}).\n\
                         It could not be written since {}.\n",
                        path.display(),
                        rfc3339(ctx.now),
                        rfc3339(*failing_since),
                    ),
                    WIDTH,
                ),
            },
        }
    }
}

fn snapshot_mail(snap: &SnapshotStatus, reminder: bool, ctx: &Context) -> Mail {
    let still = if reminder { "still " } else { "" };
    let restart = match snap.written_at {
        None => "a restart now would start with no directory: nothing would be stamped \
                 until the directory source answers again"
            .to_string(),
        Some(t) => format!(
            "a restart now would start with the directory as it was on {}",
            rfc3339(t)
        ),
    };
    let body = format!(
        "sigstamp {still}cannot write its directory snapshot.\n\
         \n\
         File:     {path}\n\
         Error:    {error}\n\
         Since:    {since}\n\
         \n\
         Mail is still stamped ({users} users from {source} in memory), but {restart}.\n\
         \n\
         What to do:\n  Make the snapshot's folder exist and writable for the user sigstamp \
         runs as (check [directory] snapshot, the disk space and the permissions). \
         sigstamp writes it again after the next sync and then sends one more message.\n\
         Until then this message repeats every {every}.\n",
        path = snap.path.display(),
        error = snap.error.as_deref().unwrap_or("-"),
        since = snap.error_since.map(rfc3339).unwrap_or_else(|| "-".into()),
        users = ctx.users,
        source = ctx.source,
        every = humantime::format_duration(ctx.interval),
    );
    Mail {
        subject: format!(
            "sigstamp: the directory snapshot {still}cannot be written ({})",
            snap.path.display()
        ),
        body: wrap(&body, WIDTH),
    }
}

fn expired_mail(token: &TokenStatus, reminder: bool, ctx: &Context) -> Mail {
    let ex = aadsts::explain(token.error_code.as_deref());
    let meaning = ex.meaning.trim_end_matches('.');
    let state = if reminder { "still expired" } else { "expired" };
    let subject = match &token.error_code {
        Some(_) => format!(
            "sigstamp: Microsoft Graph token {state}: {} ({meaning})",
            ex.code
        ),
        None => format!("sigstamp: Microsoft Graph token {state} ({meaning})"),
    };
    let last_sync = ctx.last_sync.map(rfc3339).unwrap_or_else(|| "never".into());
    let body = format!(
        "sigstamp can no longer read the directory from Microsoft Graph.\n\
         \n\
         State:       expired since {since}\n\
         Error code:  {code}\n\
         Meaning:     {meaning_full}\n\
         Details:     {description}\n\
         \n\
         What to do:\n  {action}\n\
         \n\
         Meanwhile mail is still stamped with the last-known directory values:\n\
         {users} users from {source}, last successful sync: {last_sync}.\n\
         \n\
         sigstamp keeps retrying and sends one more message when the token works again.\n\
         Until then this message repeats every {every}.\n",
        since = rfc3339(token.since),
        code = ex.code,
        meaning_full = ex.meaning,
        description = token.description,
        action = ex.action,
        users = ctx.users,
        source = ctx.source,
        every = humantime::format_duration(ctx.interval),
    );
    Mail {
        subject,
        body: wrap(&body, WIDTH),
    }
}

fn recovered_mail(code: Option<&str>, expired_since: OffsetDateTime, ctx: &Context) -> Mail {
    let code = code.map(|c| aadsts::explain(Some(c)).code);
    let subject = "sigstamp: Microsoft Graph token valid again".to_string();
    let body = format!(
        "The Microsoft Graph token works again ({now}).\n\
         It had been expired since {since}{code}.\n\
         \n\
         The directory syncs again; changed values are used without a restart \
         ({users} users from {source} right now).\n",
        now = rfc3339(ctx.now),
        since = rfc3339(expired_since),
        code = code.map(|c| format!(" ({c})")).unwrap_or_default(),
        users = ctx.users,
        source = ctx.source,
    );
    Mail {
        subject,
        body: wrap(&body, WIDTH),
    }
}

fn cert_mail(days: i64, path: &std::path::Path, cert: &CertInfo) -> Mail {
    let not_after = rfc3339(cert.not_after);
    let when = match days {
        0 => "has expired".to_string(),
        1 => "expires within 1 day".to_string(),
        d => format!("expires within {d} days"),
    };
    let subject = format!("sigstamp: Graph client certificate {when} ({not_after})");
    let body = format!(
        "The client certificate sigstamp uses to sign in to Microsoft Graph {when}.\n\
         \n\
         File:      {path}\n\
         Subject:   {subject}\n\
         Not after: {not_after}\n\
         \n\
         What to do:\n  Create a new certificate and key, upload the certificate (public part) \
         to the app registration in the Entra admin center (App registrations > the sigstamp \
         app > Certificates & secrets), and point [graph] client_certificate and client_key at \
         the new files. After the certificate expires Entra ID refuses every token request \
         (AADSTS700027) and the directory stops syncing; mail keeps being stamped with the \
         last-known values.\n",
        path = path.display(),
        subject = cert.subject,
    );
    Mail {
        subject,
        body: wrap(&body, WIDTH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);
    const DAY: Duration = Duration::from_secs(86_400);

    fn token(state: TokenState, code: Option<&str>) -> TokenStatus {
        TokenStatus {
            state,
            error_code: code.map(str::to_string),
            description: "d".into(),
            since: T0,
        }
    }

    fn cert(not_after: OffsetDateTime) -> Option<(PathBuf, CertInfo)> {
        Some((
            "c.pem".into(),
            CertInfo {
                subject: "CN=x".into(),
                not_after,
            },
        ))
    }

    /// Run `due` and mark everything as sent, returning the kinds.
    fn step(
        t: &mut Tracker,
        now: OffsetDateTime,
        tok: &TokenStatus,
        c: Option<(PathBuf, CertInfo)>,
    ) -> Vec<Alert> {
        let a = t.due(now, tok, c);
        for x in &a {
            t.sent(x, now);
        }
        a
    }

    #[test]
    fn expired_once_then_reminder_then_recovery() {
        let mut t = Tracker::new(DAY);
        let exp = token(TokenState::Expired, Some("AADSTS7000222"));
        assert!(step(&mut t, T0, &token(TokenState::Valid, None), None).is_empty());
        let a = step(&mut t, T0, &exp, None);
        assert!(matches!(
            a[..],
            [Alert::TokenExpired {
                reminder: false,
                ..
            }]
        ));
        assert!(step(&mut t, T0 + DAY / 2, &exp, None).is_empty());
        assert!(step(
            &mut t,
            T0 + DAY / 2,
            &token(TokenState::Failing, None),
            None
        )
        .is_empty());
        let a = step(&mut t, T0 + DAY, &exp, None);
        assert!(matches!(
            a[..],
            [Alert::TokenExpired { reminder: true, .. }]
        ));
        let a = step(&mut t, T0 + DAY, &token(TokenState::Valid, None), None);
        assert!(matches!(a[..], [Alert::TokenRecovered { .. }]));
        assert!(step(&mut t, T0 + DAY, &token(TokenState::Valid, None), None).is_empty());
    }

    #[test]
    fn unsent_alert_comes_back_and_code_change_is_news() {
        let mut t = Tracker::new(DAY);
        let exp = token(TokenState::Expired, Some("AADSTS7000222"));
        assert_eq!(t.due(T0, &exp, None).len(), 1);
        assert_eq!(t.due(T0, &exp, None).len(), 1, "not marked sent: due again");
        step(&mut t, T0, &exp, None);
        let other = token(TokenState::Expired, Some("AADSTS7000215"));
        let a = step(&mut t, T0, &other, None);
        assert!(matches!(
            a[..],
            [Alert::TokenExpired {
                reminder: false,
                ..
            }]
        ));
    }

    #[test]
    fn saved_state_survives_a_restart() {
        let mut t = Tracker::new(DAY);
        let exp = token(TokenState::Expired, Some("AADSTS7000222"));
        step(&mut t, T0, &exp, cert(T0 + 3 * DAY));
        let saved = t.save();
        assert!(saved.token.is_some() && saved.certificate.is_some());
        let json = serde_json::to_string(&saved).unwrap();
        let back: Saved = serde_json::from_str(&json).unwrap();
        assert_eq!(back, saved);

        let mut t2 = Tracker::new(DAY);
        t2.restore(back);
        // After the restart the token starts `starting`, then fails again with a new since.
        assert!(step(
            &mut t2,
            T0 + DAY / 2,
            &token(TokenState::Starting, None),
            cert(T0 + 3 * DAY)
        )
        .is_empty());
        let mut again = exp.clone();
        again.since = T0 + DAY / 2;
        assert!(step(&mut t2, T0 + DAY / 2, &again, cert(T0 + 3 * DAY)).is_empty());
        let a = step(&mut t2, T0 + DAY, &again, None);
        assert!(matches!(
            a[..],
            [Alert::TokenExpired { reminder: true, .. }]
        ));
        assert_eq!(Tracker::new(DAY).save(), Saved::default());
    }

    #[test]
    fn never_announced_episode_ends_silently() {
        let mut t = Tracker::new(DAY);
        let _ = t.due(T0, &token(TokenState::Expired, Some("AADSTS50173")), None);
        assert!(t.due(T0, &token(TokenState::Valid, None), None).is_empty());
    }

    #[test]
    fn certificate_thresholds_once_each() {
        let mut t = Tracker::new(DAY);
        let na = T0 + 20 * DAY;
        let v = token(TokenState::Valid, None);
        let days = |a: Vec<Alert>| {
            a.into_iter()
                .map(|x| match x {
                    Alert::CertExpiring { days, .. } => days,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(days(step(&mut t, T0, &v, cert(na))), Vec::<i64>::new());
        assert_eq!(days(step(&mut t, na - 14 * DAY, &v, cert(na))), [14]);
        assert_eq!(
            days(step(&mut t, na - 10 * DAY, &v, cert(na))),
            Vec::<i64>::new()
        );
        // Down between 7 and 1 days: only the most urgent one is sent.
        assert_eq!(days(step(&mut t, na - DAY / 2, &v, cert(na))), [1]);
        assert_eq!(
            days(step(&mut t, na - DAY / 4, &v, cert(na))),
            Vec::<i64>::new()
        );
        assert_eq!(days(step(&mut t, na, &v, cert(na))), [0]);
        // A renewed certificate starts over.
        let renewed = na + 365 * DAY;
        assert_eq!(
            days(step(&mut t, renewed - 13 * DAY, &v, cert(renewed))),
            [14]
        );
    }

    #[test]
    fn wrapping_keeps_label_columns() {
        let long = format!("Details:     {}", "word ".repeat(30));
        let w = wrap(&long, 40);
        let lines: Vec<&str> = w.lines().collect();
        assert!(lines.len() > 3, "{w}");
        assert!(lines.iter().all(|l| l.len() <= 40), "{w}");
        assert!(lines[0].starts_with("Details:     word"), "{w}");
        assert!(lines[1].starts_with("             word"), "{w}");
        let para = format!("  {}", "abc ".repeat(30));
        assert!(wrap(&para, 40).lines().all(|l| l.starts_with("  abc")));
        assert_eq!(wrap("short\n\nx", 40), "short\n\nx\n");
    }

    #[test]
    fn texts_carry_code_meaning_and_action() {
        let ctx = Context {
            now: T0,
            users: 3,
            source: "snapshot",
            last_sync: None,
            interval: DAY,
        };
        let tok = token(TokenState::Expired, Some("AADSTS7000222"));
        let m = Alert::TokenExpired {
            token: tok.clone(),
            reminder: false,
        }
        .mail(&ctx);
        assert!(m.subject.contains("AADSTS7000222"), "{}", m.subject);
        assert!(
            m.subject.contains("client secret has expired"),
            "{}",
            m.subject
        );
        assert!(m.body.contains("What to do"));
        assert!(m.body.contains("client_secret"));
        assert!(m.body.contains("2026-11-01T12:00:00Z"));
        let r = Alert::TokenExpired {
            token: tok,
            reminder: true,
        }
        .mail(&ctx);
        assert!(r.subject.contains("still expired"), "{}", r.subject);
    }
}
