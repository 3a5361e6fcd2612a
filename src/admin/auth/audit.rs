//! The audit log (`[admin] audit_log`): one JSON line per change or sign-in event, appended
//! and fsynced before the change is reported done.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The signed-in UPN (`local` for `[admin] local_admin`, the claimed name or `-` for a
    /// refused sign-in).
    pub who: String,
    /// `sign_in`, `sign_out`, `sign_in_refused`, or the editing handler's verb.
    pub action: String,
    pub target: String,
    pub before: Value,
    pub after: Value,
}

/// The log, or nothing (`audit_log` unset: entries go to the tracing log only).
#[derive(Debug, Clone, Default)]
pub struct Audit {
    path: Option<PathBuf>,
    // One writer at a time, so lines never interleave.
    lock: Arc<Mutex<()>>,
}

/// How much of the end of the file [`Audit::latest`] reads.
const TAIL_BYTES: u64 = 4 << 20;

impl Audit {
    pub fn new(path: Option<PathBuf>) -> Self {
        Audit {
            path,
            lock: Arc::default(),
        }
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Append one entry and fsync it. An error means the entry is not on disk: the caller
    /// should report the change as failed (or, for sign-in events, log it).
    pub async fn record(
        &self,
        who: &str,
        action: &str,
        target: &str,
        before: Value,
        after: Value,
    ) -> std::io::Result<()> {
        let entry = AuditEntry {
            time: OffsetDateTime::now_utc(),
            who: who.into(),
            action: action.into(),
            target: target.into(),
            before,
            after,
        };
        tracing::info!(who, action, target, "audit");
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let lock = self.lock.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&line)?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// The latest `n` entries, newest first (lines that do not parse are skipped).
    pub async fn latest(&self, n: usize) -> std::io::Result<Vec<AuditEntry>> {
        let Some(path) = self.path.clone() else {
            return Ok(Vec::new());
        };
        tokio::task::spawn_blocking(move || {
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let len = f.metadata()?.len();
            let start = len.saturating_sub(TAIL_BYTES);
            f.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::new();
            f.take(TAIL_BYTES).read_to_end(&mut buf)?;
            let mut lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
            if start > 0 && !lines.is_empty() {
                lines.remove(0); // a partial first line
            }
            Ok(lines
                .iter()
                .rev()
                .filter_map(|l| serde_json::from_slice(l).ok())
                .take(n)
                .collect())
        })
        .await
        .map_err(std::io::Error::other)?
    }
}
