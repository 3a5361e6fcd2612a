//! The on-disk snapshot of the last good Graph sync (`[directory] snapshot`): users, the
//! deltaLink and the time. Written atomically after every successful sync and loaded at
//! start before any Graph call, so a restart with dead tokens still stamps.

use super::{Directory, User};
use crate::status::Status;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub written_at: OffsetDateTime,
    pub delta_link: Option<String>,
    /// When the deltaLink was obtained (delta tokens expire, §2.3).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delta_at: Option<OffsetDateTime>,
    /// Parsed straight into compact users (the same JSON objects as ever, so snapshots of
    /// every earlier version load).
    pub users: Vec<User>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("snapshot {path} has version {found}, expected {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write snapshot {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Snapshot {
    pub fn into_users(self) -> Vec<User> {
        self.users
    }
}

/// What [`write`] serialises: the same shape as [`Snapshot`], borrowing the users so a
/// large directory is not copied again just to be written.
pub struct SnapshotRef<'a> {
    pub written_at: OffsetDateTime,
    pub delta_link: Option<&'a str>,
    pub delta_at: Option<OffsetDateTime>,
    pub users: &'a [Arc<User>],
}

impl Serialize for SnapshotRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Users<'a>(&'a [Arc<User>]);
        impl Serialize for Users<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|u| &**u))
            }
        }
        let rfc = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .map_err(serde::ser::Error::custom)
        };
        let mut st = s.serialize_struct("Snapshot", 5)?;
        st.serialize_field("version", &VERSION)?;
        st.serialize_field("written_at", &rfc(self.written_at)?)?;
        st.serialize_field("delta_link", &self.delta_link)?;
        st.serialize_field("delta_at", &self.delta_at.map(rfc).transpose()?)?;
        st.serialize_field("users", &Users(self.users))?;
        st.end()
    }
}

/// Read a snapshot. `Ok(None)` when the file does not exist (first start).
pub fn read(path: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    read_as(path)
}

trait Versioned {
    fn version(&self) -> u32;
}

impl Versioned for Snapshot {
    fn version(&self) -> u32 {
        self.version
    }
}

fn read_as<T: serde::de::DeserializeOwned + Versioned>(
    path: &Path,
) -> Result<Option<T>, SnapshotError> {
    // Parsed from a buffered reader: the file's text is never held whole beside the users.
    let file = match std::fs::File::open(path) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let snap: T = serde_json::from_reader(file).map_err(|source| match source.io_error_kind() {
        Some(kind) => SnapshotError::Read {
            path: path.into(),
            source: std::io::Error::new(kind, source),
        },
        None => SnapshotError::Corrupt {
            path: path.into(),
            source,
        },
    })?;
    if snap.version() != VERSION {
        return Err(SnapshotError::Version {
            path: path.into(),
            found: snap.version(),
        });
    }
    Ok(Some(snap))
}

/// What [`load`] put into the directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub users: usize,
    pub written_at: OffsetDateTime,
    pub delta_link: Option<String>,
    pub delta_at: Option<OffsetDateTime>,
}

/// Load the snapshot into `directory` (`Source::Snapshot`). `Ok(None)` when there is none.
/// The caller reports an error and goes on without it: a bad snapshot is never fatal.
pub fn load(path: &Path, directory: &Directory) -> Result<Option<Loaded>, SnapshotError> {
    let Some(snap) = read(path)? else {
        return Ok(None);
    };
    let loaded = Loaded {
        users: snap.users.len(),
        written_at: snap.written_at,
        delta_link: snap.delta_link.clone(),
        delta_at: snap.delta_at,
    };
    directory.replace_from_snapshot(snap.into_users(), loaded.clone());
    Ok(Some(loaded))
}

/// Start-up (`sigstamp serve`, before any edge or Graph call): create the snapshot's folder,
/// load the snapshot into `directory` and record in `status` what was found, so the file is
/// read once. Nothing here is fatal: a folder that cannot be created or a bad snapshot shows
/// on `/status` (`directory.snapshot.error`) until a later write succeeds.
pub fn open_at_start(path: &Path, directory: &Directory, status: &Status) -> Option<Loaded> {
    let now = OffsetDateTime::now_utc();
    if let Err(e) = create_parent(path) {
        let e = format!("cannot create the folder of {}: {e}", path.display());
        tracing::error!("{e}; the directory snapshot cannot be written");
        status.update_snapshot(path, |s| s.failed(e, now));
        return None;
    }
    match load(path, directory) {
        Ok(Some(l)) => {
            tracing::info!(users = l.users, path = %path.display(), written_at = %l.written_at, "directory loaded from snapshot");
            // The snapshot was written right after the sync it holds.
            status.last_sync.store(Arc::new(Some(l.written_at)));
            status.update_snapshot(path, |s| s.ok(Some(l.written_at)));
            Some(l)
        }
        Ok(None) => {
            tracing::info!(path = %path.display(), "no directory snapshot yet; waiting for the first sync");
            status.update_snapshot(path, |s| s.ok(None));
            None
        }
        Err(e) => {
            tracing::warn!("{e}; ignoring the snapshot, waiting for the first sync");
            status.update_snapshot(path, |s| s.failed(format!("{e} (ignored)"), now));
            None
        }
    }
}

/// Write the snapshot atomically (temp file, fsync, rename), mode 0600: it holds directory
/// data and a deltaLink. Streamed, so a large directory is not buffered whole.
pub fn write(path: &Path, snap: &SnapshotRef<'_>) -> Result<(), SnapshotError> {
    write_atomic_with(path, 0o600, |w| {
        serde_json::to_writer(w, snap).map_err(std::io::Error::other)
    })
    .map_err(|source| SnapshotError::Write {
        path: path.into(),
        source,
    })
}

/// Replace `path` with `bytes` so that readers see the old or the new file, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(path, mode, |w| w.write_all(bytes))
}

/// The folder a state file lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Create `dir` and its missing parents, mode 0700 (state files hold directory data and
/// credentials); an existing folder is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)?;
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    Ok(())
}

/// Create the folder of the state file `path` (see [`create_private_dir`]).
pub fn create_parent(path: &Path) -> std::io::Result<()> {
    create_private_dir(parent_dir(path))
}

/// [`write_atomic`] with the content produced by `fill`. A missing folder is created (0700):
/// a state folder removed while running comes back with the next write.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        create_private_dir(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut w = std::io::BufWriter::new(opts.open(&tmp)?);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    #[cfg(not(unix))]
    let _ = mode;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Source;
    use serde_json::json;

    fn user(id: &str, mail: &str) -> User {
        User::new(json!({"id": id, "mail": mail}).as_object().unwrap().clone())
    }

    #[test]
    fn round_trip_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("snap.json");
        let now = OffsetDateTime::now_utc();
        let users = [Arc::new(user("1", "a@x.test"))];
        let snap = SnapshotRef {
            written_at: now,
            delta_link: Some("dl"),
            delta_at: Some(now),
            users: &users,
        };
        write(&p, &snap).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let d = Directory::new();
        let l = load(&p, &d).unwrap().unwrap();
        assert_eq!(l.users, 1);
        assert_eq!(l.delta_link.as_deref(), Some("dl"));
        assert_eq!(d.source(), Source::Snapshot);
        assert!(d.lookup("A@x.test").is_some());
        // No stray temp files.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A snapshot as every earlier version wrote it (users as plain JSON objects, nulls
    /// included) still loads, and is written back in the same shape.
    #[test]
    fn earlier_snapshots_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("snap.json");
        let old = r#"{"version":1,"written_at":"2026-11-20T10:00:00Z","delta_link":"https://graph.test/v1.0/users/delta?$deltatoken=x","delta_at":"2026-11-20T09:59:58Z","users":[{"businessPhones":["+1 555 0100"],"displayName":"Adele","id":"a","jobTitle":null,"mail":"adele@contoso.test","onPremisesExtensionAttributes":{"extensionAttribute1":"X","extensionAttribute2":null},"proxyAddresses":["SMTP:adele@contoso.test","smtp:a@contoso.test"]}]}"#;
        std::fs::write(&p, old).unwrap();
        let d = Directory::new();
        let l = load(&p, &d).unwrap().unwrap();
        assert_eq!(l.users, 1);
        assert!(l.delta_at.is_some());
        let u = d.lookup("a@contoso.test").unwrap();
        assert_eq!(u.str("displayName"), Some("Adele"));
        assert!(u.get("jobTitle").is_none());
        let meta = d.from_snapshot().unwrap();
        assert_eq!(meta.delta_link, l.delta_link);
        write(
            &p,
            &SnapshotRef {
                written_at: l.written_at,
                delta_link: l.delta_link.as_deref(),
                delta_at: l.delta_at,
                users: &d.base_users(),
            },
        )
        .unwrap();
        let again = std::fs::read_to_string(&p).unwrap();
        let expected = old
            .replace(r#""jobTitle":null,"#, "")
            .replace(r#","extensionAttribute2":null"#, "");
        assert_eq!(again, expected);
    }

    #[test]
    fn missing_is_none_corrupt_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("snap.json");
        let d = Directory::new();
        assert!(load(&p, &d).unwrap().is_none());
        std::fs::write(&p, b"{\"version\":1,\"users\":[").unwrap();
        assert!(matches!(load(&p, &d), Err(SnapshotError::Corrupt { .. })));
        assert_eq!(d.source(), Source::Empty);
    }
}
