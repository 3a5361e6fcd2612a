//! The spool: one JSON file per pending job, written atomically (temporary file, fsync,
//! rename), removed when the job is done or given up. A restart loads what is left.

use super::job::Job;
use crate::directory::snapshot::write_atomic;
use std::io;
use std::path::{Path, PathBuf};

/// A job file larger than this is not loaded (a body is at most a message's size).
const MAX_JOB_FILE: u64 = 256 * 1024 * 1024;

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Create the directory (0700) if needed.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Write the job's file; when this returns Ok, the job survives a crash.
    pub fn write(&self, job: &Job) -> io::Result<()> {
        let bytes = serde_json::to_vec(job).map_err(io::Error::other)?;
        write_atomic(&self.path(&job.id), &bytes, 0o600)
    }

    pub fn read(&self, id: &str) -> io::Result<Job> {
        let path = self.path(id);
        if std::fs::metadata(&path)?.len() > MAX_JOB_FILE {
            return Err(io::Error::other("job file too large"));
        }
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Remove a finished job. Already gone is fine.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The ids of the jobs on disk. Leftover temporary files of an interrupted write are
    /// removed; a file that is not a job is renamed `*.bad` and reported once.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp.") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if valid_id(id) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Set a broken job file aside so it is not loaded again.
    pub fn quarantine(&self, id: &str) {
        let from = self.path(id);
        let _ = std::fs::rename(&from, self.dir.join(format!("{id}.json.bad")));
    }
}

/// Ids are our UUIDs: never a path.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sent_items::job::Body;

    fn job(id: &str) -> Job {
        Job {
            id: id.into(),
            mailbox: "u1".into(),
            sender: "a@x".into(),
            internet_message_id: "<m@x>".into(),
            queued_at: time::OffsetDateTime::UNIX_EPOCH,
            body: Body {
                content_type: "Text".into(),
                content: "hi".into(),
            },
            images: vec![],
        }
    }

    #[test]
    fn write_list_read_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(&tmp.path().join("spool")).unwrap();
        spool.write(&job("0a-1")).unwrap();
        spool.write(&job("0b-2")).unwrap();
        std::fs::write(tmp.path().join("spool/.0c.json.tmp.99"), b"partial").unwrap();
        std::fs::write(tmp.path().join("spool/../x.json"), b"{}").unwrap();
        std::fs::write(tmp.path().join("spool/not-a-uuid!.json"), b"{}").unwrap();
        assert_eq!(spool.list().unwrap(), vec!["0a-1", "0b-2"]);
        assert!(!tmp.path().join("spool/.0c.json.tmp.99").exists());
        assert_eq!(spool.read("0a-1").unwrap(), job("0a-1"));
        spool.remove("0a-1").unwrap();
        spool.remove("0a-1").unwrap();
        assert_eq!(spool.list().unwrap(), vec!["0b-2"]);
        std::fs::write(tmp.path().join("spool/0d.json"), b"{not json").unwrap();
        assert!(spool.read("0d").is_err());
        spool.quarantine("0d");
        assert_eq!(spool.list().unwrap(), vec!["0b-2"]);
    }
}
