//! Sync rounds: a full paged search of `base_dn` (which also catches deletions: users missing
//! from it are dropped), then incremental rounds asking only for entries changed since the
//! last round, by `uSNChanged` on Active Directory or `modifyTimestamp` elsewhere, until
//! `full_sync_interval` calls for the next full reconcile.
//!
//! Entries are staged aside and merged into the id-ordered user set only once a round is
//! complete (the Graph syncer's [`UserSet`]), so a failure half-way leaves the set as it was
//! and unchanged users keep their one allocation shared with the directory.

use super::client::{RootDse, Session};
use super::error::LdapError;
use super::map::{AttributeMap, Flavor, AD_FILTER, OPENLDAP_FILTER};
use super::photos::PhotoSet;
use super::LdapConfig;
use crate::directory::graph::sync::{Staged, SyncReport, UserSet};
use crate::directory::User;
use ldap3::Scope;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the next incremental round starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Watermark {
    /// AD: entries with `uSNChanged` above this, on this DC.
    Usn { server: Option<String>, usn: u64 },
    /// `modifyTimestamp` at or after this generalized time (`YYYYMMDDHHMMSSZ`).
    Timestamp(String),
}

pub struct LdapSyncer {
    cfg: LdapConfig,
    users: UserSet,
    photos: PhotoSet,
    mark: Option<Watermark>,
    flavor: Option<Flavor>,
    last_full: Option<Instant>,
}

impl LdapSyncer {
    pub fn new(cfg: LdapConfig) -> Self {
        LdapSyncer {
            cfg,
            users: UserSet::default(),
            photos: PhotoSet::default(),
            mark: None,
            flavor: None,
            last_full: None,
        }
    }

    /// Start from the directory's users (a snapshot), shared, not copied. The first round
    /// is still a full one: the snapshot may be old and deletions must be caught.
    pub fn seed_from(&mut self, users: &[Arc<User>]) {
        self.users = UserSet::new(users);
    }

    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.users().to_vec()
    }

    pub fn photos(&self) -> &PhotoSet {
        &self.photos
    }

    pub fn len(&self) -> usize {
        self.users.users().len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.users().is_empty()
    }

    /// Make the next round a full one.
    pub fn reset(&mut self) {
        self.mark = None;
    }

    /// One round, full or incremental.
    pub async fn sync(&mut self) -> Result<SyncReport, LdapError> {
        let started = Instant::now();
        let mut session = Session::open(&self.cfg).await?;
        let dse = session.root_dse().await?;
        let flavor = match self.cfg.flavor {
            Flavor::Auto if dse.active_directory => Flavor::ActiveDirectory,
            Flavor::Auto => Flavor::Openldap,
            f => f,
        };
        if self.flavor.is_some_and(|f| f != flavor) {
            self.mark = None;
        }
        self.flavor = Some(flavor);
        let map = AttributeMap::new(flavor, &self.cfg.attributes);
        let filter = self.cfg.filter.clone().unwrap_or_else(|| {
            match flavor {
                Flavor::ActiveDirectory => AD_FILTER,
                _ => OPENLDAP_FILTER,
            }
            .to_string()
        });
        let due = self
            .last_full
            .is_none_or(|t| t.elapsed() >= self.cfg.full_sync_interval);
        let since = match (&self.mark, due) {
            (Some(Watermark::Usn { server, usn }), false) if *server == dse.server => {
                Some(format!("(uSNChanged>={})", usn + 1))
            }
            (Some(Watermark::Timestamp(t)), false) => Some(format!("(modifyTimestamp>={t})")),
            _ => None,
        };
        let full = since.is_none();
        let filter = match &since {
            Some(s) => format!("(&{}{s})", wrap(&filter)),
            None => filter,
        };
        let mut staged = if full {
            Staged::Full(BTreeMap::new())
        } else {
            Staged::Changes(BTreeMap::new())
        };
        let mut photos = self.photos.staging(full);
        let mut entries = 0;
        let mut newest: Option<String> = None;
        let change_attr = map.change_attr();
        let users = &self.users;
        let pages = session
            .search(
                &self.cfg.base_dn,
                Scope::Subtree,
                &filter,
                &map.request(),
                self.cfg.page_size,
                &mut |e| {
                    entries += 1;
                    if flavor != Flavor::ActiveDirectory {
                        if let Some(t) = e.text(change_attr).filter(|t| is_time(t)) {
                            if newest.as_deref().is_none_or(|n| t[..14] > n[..14]) {
                                newest = Some(t);
                            }
                        }
                    }
                    if let Some(c) = map.convert(&e) {
                        photos.put(&c.id, c.photo);
                        users.stage(&mut staged, c.entry);
                    }
                },
            )
            .await;
        let pages = match pages {
            Ok(p) => p,
            Err(e) => {
                session.close().await;
                return Err(e);
            }
        };
        session.close().await;
        self.users.finish(staged);
        self.photos.finish(photos);
        if full {
            self.last_full = Some(started);
        }
        self.mark = next_mark(&dse, flavor, newest, started.elapsed())
            .or_else(|| self.mark.clone().filter(|_| !full));
        Ok(SyncReport {
            full,
            pages,
            entries,
            users: self.len(),
            duration: started.elapsed(),
        })
    }
}

/// A filter in parentheses, as `(&…)` needs its parts.
fn wrap(filter: &str) -> String {
    let f = filter.trim();
    if f.starts_with('(') {
        f.to_string()
    } else {
        format!("({f})")
    }
}

fn is_time(t: &str) -> bool {
    t.len() >= 15 && t.as_bytes()[..14].iter().all(u8::is_ascii_digit)
}

/// The next round's watermark. AD: the USN read before this round's search. Elsewhere: the
/// newest `modifyTimestamp` seen, moved back by the round's length (whole seconds, at least
/// one), so an entry changed
/// while the round ran (with an older stamp than one already seen) is asked for again;
/// asking twice is harmless (the entries changed last come back each round).
fn next_mark(
    dse: &RootDse,
    flavor: Flavor,
    newest: Option<String>,
    took: Duration,
) -> Option<Watermark> {
    if flavor == Flavor::ActiveDirectory {
        return dse.highest_usn.map(|usn| Watermark::Usn {
            server: dse.server.clone(),
            usn,
        });
    }
    let newest = newest?;
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]");
    let at = time::PrimitiveDateTime::parse(&newest[..14], &fmt).ok()?;
    // Every change made while the round ran is stamped at or after its start (rounded down
    // to the second), and the newest stamp seen is at most its end: going back by its length
    // rounded up reaches its start.
    let secs = took.as_secs() + u64::from(took.subsec_nanos() > 0);
    let back = time::Duration::seconds(i64::try_from(secs.max(1)).unwrap_or(i64::MAX / 2));
    let at = at.checked_sub(back)?;
    Some(Watermark::Timestamp(format!("{}Z", at.format(&fmt).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_watermark_steps_back_by_the_round() {
        let m = next_mark(
            &RootDse::default(),
            Flavor::Openldap,
            Some("20261202035628Z".into()),
            Duration::from_millis(3500),
        );
        assert_eq!(m, Some(Watermark::Timestamp("20261202035624Z".into())));
        assert_eq!(
            next_mark(&RootDse::default(), Flavor::Openldap, None, Duration::ZERO),
            None
        );
        let dse = RootDse {
            active_directory: true,
            highest_usn: Some(4711),
            server: Some("CN=DC1".into()),
        };
        assert_eq!(
            next_mark(&dse, Flavor::ActiveDirectory, None, Duration::ZERO),
            Some(Watermark::Usn {
                server: Some("CN=DC1".into()),
                usn: 4711
            })
        );
        assert!(is_time("20261202035628.0Z") && !is_time("2026"));
        assert_eq!(wrap("objectClass=x"), "(objectClass=x)");
    }
}
