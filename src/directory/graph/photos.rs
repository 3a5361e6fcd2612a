//! User photos from Microsoft Graph for `{{photo}}` (contract §3.3), fetched in the
//! background and served lock-free to the renderer.
//!
//! Each round (after a successful sync) checks the users whose photo was last checked more
//! than `photo_refresh` ago: `GET /users/{id}/photo` for the `@odata.mediaEtag`, then
//! `GET /users/{id}/photo/$value` only when the ETag changed or nothing is cached. 404 means
//! no photo. Photos are cached on disk (`{id}.bin` with `{id}.json` beside: ETag, content
//! type, length; both 0600, written atomically) and loaded at start, before any Graph call.

use super::client::GraphClient;
use super::clock::Clock;
use super::error::GraphError;
use crate::config::ConfigError;
use crate::config::GraphConfig;
use crate::directory::photo::{Photo, PhotoSource};
use crate::directory::snapshot::create_private_dir;
use crate::metrics::{KindLabels, Metrics};
use arc_swap::ArcSwap;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A photo larger than this is skipped (Graph's largest, 648x648, is far smaller).
pub const MAX_PHOTO_BYTES: usize = 4 << 20;
/// Requests in flight at once during a round.
pub const CONCURRENCY: usize = 4;
/// The map the renderer reads is republished after this many changes (and at the end of a
/// round): often enough that photos appear during a long first round, rarely enough that
/// copying the map stays cheap.
const PUBLISH_EVERY: usize = 64;
/// `graph.photo_dir`, else `photos/` beside `[directory] snapshot`; `None`: memory only.
pub fn cache_dir(graph: &GraphConfig, snapshot: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = &graph.photo_dir {
        return Some(d.clone());
    }
    let parent = snapshot?.parent()?;
    Some(if parent.as_os_str().is_empty() {
        PathBuf::from("photos")
    } else {
        parent.join("photos")
    })
}

/// The store of `sigstamp serve`, with its disk cache loaded; `None` when photos are off.
/// An unusable photo directory stops start-up, naming the key.
pub fn open(
    graph: Option<&GraphConfig>,
    snapshot: Option<&Path>,
) -> Result<Option<Arc<PhotoStore>>, ConfigError> {
    let Some(g) = graph.filter(|g| g.photos) else {
        return Ok(None);
    };
    let store = match cache_dir(g, snapshot) {
        Some(dir) => {
            let key = if g.photo_dir.is_some() {
                "graph.photo_dir"
            } else {
                "directory.snapshot"
            };
            PhotoStore::open(dir).map_err(|e| ConfigError::invalid(key, e.to_string()))?
        }
        None => {
            tracing::info!("neither graph.photo_dir nor directory.snapshot is set: user photos are kept in memory only");
            PhotoStore::in_memory()
        }
    };
    Ok(Some(Arc::new(store)))
}

#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("cannot use photo directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What is kept beside each cached photo.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    etag: Option<String>,
    content_type: String,
    len: usize,
}

/// What the background task knows of one user.
#[derive(Debug, Clone)]
struct Known {
    /// The ETag of the cached photo (`None`: no photo, or Graph gave no ETag).
    etag: Option<String>,
    /// `None`: loaded from disk, not checked since start.
    checked_at: Option<OffsetDateTime>,
}

struct State {
    known: HashMap<String, Known>,
    /// A 403 was seen and logged; logged again only once photos are readable again.
    forbidden: bool,
    disk_ok: bool,
}

/// User photos by Graph user id.
pub struct PhotoStore {
    photos: ArcSwap<HashMap<Arc<str>, Arc<Photo>>>,
    dir: Option<PathBuf>,
    // One round at a time; the renderer never takes it.
    state: tokio::sync::Mutex<State>,
}

impl PhotoSource for PhotoStore {
    fn photo(&self, user_id: &str) -> Option<Arc<Photo>> {
        self.photos.load().get(user_id).cloned()
    }
}

/// What one round did (logged, and read by tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Users whose photo was checked (metadata requested).
    pub checked: usize,
    /// Photos downloaded (`$value`).
    pub downloaded: usize,
    /// Checked users without a photo (404), or whose photo was skipped.
    pub without: usize,
    /// Photos dropped because their user left the directory.
    pub removed: usize,
    /// Users whose check failed (retried next round).
    pub failed: usize,
    /// Why the round stopped early (token, network, missing permission).
    pub aborted: Option<String>,
}

enum Fetched {
    /// Same ETag as the cached photo.
    Unchanged,
    /// No photo, or one that is skipped (too large, not an image).
    Without(&'static str),
    Photo {
        photo: Photo,
        etag: Option<String>,
    },
}

impl PhotoStore {
    /// A store without a disk cache.
    pub fn in_memory() -> Self {
        Self::with_dir(None, HashMap::new(), HashMap::new())
    }

    /// A store cached in `dir` (created 0700 if missing), loaded from it. Unreadable or
    /// inconsistent entries are reported and dropped, never fatal.
    pub fn open(dir: PathBuf) -> Result<Self, PhotoError> {
        let err = |source| PhotoError::Dir {
            path: dir.clone(),
            source,
        };
        create_private_dir(&dir).map_err(err)?;
        let entries = std::fs::read_dir(&dir).map_err(err)?;
        let (mut photos, mut known) = (HashMap::new(), HashMap::new());
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !safe_id(id) {
                continue;
            }
            match read_cached(&dir, id) {
                Ok((photo, etag)) => {
                    photos.insert(Arc::from(id), Arc::new(photo));
                    known.insert(
                        id.to_string(),
                        Known {
                            etag,
                            checked_at: None,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(user = id, error = %e, "dropping an unreadable cached photo");
                    remove_files(&dir, id);
                }
            }
        }
        tracing::info!(dir = %dir.display(), photos = photos.len(), "user photos loaded from the disk cache");
        Ok(Self::with_dir(Some(dir), photos, known))
    }

    fn with_dir(
        dir: Option<PathBuf>,
        photos: HashMap<Arc<str>, Arc<Photo>>,
        known: HashMap<String, Known>,
    ) -> Self {
        PhotoStore {
            photos: ArcSwap::from_pointee(photos),
            dir,
            state: tokio::sync::Mutex::new(State {
                known,
                forbidden: false,
                disk_ok: true,
            }),
        }
    }

    /// Users with a photo.
    pub fn len(&self) -> usize {
        self.photos.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// One round over the directory's users (`user_ids`): drop the photos of users no longer
    /// there, check those not checked within `every`, download what changed.
    pub async fn refresh(
        &self,
        client: &GraphClient,
        user_ids: &[String],
        every: Duration,
        clock: &dyn Clock,
        metrics: &Metrics,
    ) -> RoundReport {
        let mut st = self.state.lock().await;
        let now = clock.now();
        let mut report = RoundReport::default();
        let mut pending: Vec<(String, Option<Arc<Photo>>)> = Vec::new();

        let present: HashSet<&str> = user_ids.iter().map(String::as_str).collect();
        // A full Arc, not a guard: it is held across the awaits below.
        let current = self.photos.load_full();
        let gone: HashSet<String> = st
            .known
            .keys()
            .map(String::as_str)
            .chain(current.keys().map(|k| &**k))
            .filter(|id| !present.contains(id))
            .map(str::to_string)
            .collect();
        for id in gone {
            st.known.remove(&id);
            if current.contains_key(id.as_str()) {
                report.removed += 1;
                self.forget(&id).await;
                pending.push((id, None));
            }
        }

        let every = time::Duration::try_from(every).unwrap_or(time::Duration::MAX);
        let due: Vec<(String, Option<String>)> = user_ids
            .iter()
            .filter(|id| {
                st.known
                    .get(*id)
                    .and_then(|k| k.checked_at)
                    .is_none_or(|t| now - t >= every)
            })
            .map(|id| {
                // Only an ETag with a cached photo behind it can save a download.
                let etag = st
                    .known
                    .get(id)
                    .filter(|_| current.contains_key(id.as_str()))
                    .and_then(|k| k.etag.clone());
                (id.clone(), etag)
            })
            .collect();
        drop(current);

        let mut results = futures::stream::iter(due)
            .map(|(id, etag)| async move {
                let r = fetch(client, &id, etag.as_deref()).await;
                (id, r)
            })
            .buffer_unordered(CONCURRENCY);
        let mut readable = false;
        while let Some((id, result)) = results.next().await {
            report.checked += 1;
            let checked = |etag| Known {
                etag,
                checked_at: Some(now),
            };
            match result {
                Ok(Fetched::Unchanged) => {
                    readable = true;
                    if let Some(k) = st.known.get_mut(&id) {
                        k.checked_at = Some(now);
                    }
                }
                Ok(Fetched::Without(why)) => {
                    readable = true;
                    report.without += 1;
                    if why != "none" {
                        tracing::debug!(user = %id, why, "user photo skipped");
                        count(metrics, why);
                    }
                    if self.photos.load().contains_key(id.as_str()) {
                        self.forget(&id).await;
                        pending.push((id.clone(), None));
                    }
                    st.known.insert(id, checked(None));
                }
                Ok(Fetched::Photo { photo, etag }) => {
                    readable = true;
                    report.downloaded += 1;
                    let photo = Arc::new(photo);
                    self.save(&mut st, &id, &photo, etag.as_deref()).await;
                    pending.push((id.clone(), Some(photo)));
                    st.known.insert(id, checked(etag));
                }
                Err(e) if is_forbidden(&e) => {
                    count(metrics, "forbidden");
                    if !readable {
                        if !st.forbidden {
                            st.forbidden = true;
                            tracing::warn!(error = %e, "Microsoft Graph refused to read user photos (403): grant the User.Read.All application permission (admin consent); signatures go out without photos until then");
                        }
                        report.aborted = Some(format!("no permission to read photos: {e}"));
                        break;
                    }
                    // Photos are readable in general: this one user's is not. Try again at
                    // its next refresh rather than every round.
                    report.without += 1;
                    st.known.insert(id, checked(None));
                }
                Err(e) => {
                    report.failed += 1;
                    count(metrics, e.kind());
                    if aborts_round(&e) {
                        report.aborted = Some(e.to_string());
                        break;
                    }
                    tracing::debug!(user = %id, error = %e, "user photo check failed; retried next round");
                }
            }
            if pending.len() >= PUBLISH_EVERY {
                self.publish(&mut pending);
            }
        }
        drop(results);
        self.publish(&mut pending);
        if readable && st.forbidden {
            st.forbidden = false;
            tracing::info!("user photos are readable again");
        }
        metrics.directory_photos.set(self.len() as i64);
        report
    }

    /// Apply `pending` to the map the renderer reads. Only the round (under the state lock)
    /// writes, so load-copy-store loses nothing.
    fn publish(&self, pending: &mut Vec<(String, Option<Arc<Photo>>)>) {
        if pending.is_empty() {
            return;
        }
        let mut map = HashMap::clone(&self.photos.load());
        for (id, photo) in pending.drain(..) {
            match photo {
                Some(p) => {
                    map.insert(Arc::from(id.as_str()), p);
                }
                None => {
                    map.remove(id.as_str());
                }
            }
        }
        self.photos.store(Arc::new(map));
    }

    /// Write a photo and its metadata to the disk cache. A failure is reported once per
    /// change; the photo is still served from memory.
    async fn save(&self, st: &mut State, id: &str, photo: &Arc<Photo>, etag: Option<&str>) {
        let Some(dir) = self.dir.clone().filter(|_| safe_id(id)) else {
            return;
        };
        let (id, photo) = (id.to_string(), photo.clone());
        let meta = Meta {
            etag: etag.map(str::to_string),
            content_type: photo.content_type.clone(),
            len: photo.bytes.len(),
        };
        let written = tokio::task::spawn_blocking(move || write_cached(&dir, &id, &photo, &meta))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match written {
            Ok(()) if !st.disk_ok => {
                st.disk_ok = true;
                tracing::info!("photo cache written again");
            }
            Err(e) if st.disk_ok => {
                st.disk_ok = false;
                tracing::warn!(error = %e, "cannot write the photo cache; photos are served from memory but a restart without Graph would start without them");
            }
            _ => {}
        }
    }

    async fn forget(&self, id: &str) {
        if let Some(dir) = self.dir.clone().filter(|_| safe_id(id)) {
            let id = id.to_string();
            let _ = tokio::task::spawn_blocking(move || remove_files(&dir, &id)).await;
        }
    }
}

fn count(metrics: &Metrics, kind: &str) {
    metrics
        .photo_failures
        .get_or_create(&KindLabels { kind: kind.into() })
        .inc();
}

fn is_forbidden(e: &GraphError) -> bool {
    matches!(e, GraphError::Api(a) if a.status == 403)
}

/// Errors that would fail for every user alike (the token, the network, throttling the
/// client already waited out): stop the round instead of trying every user.
fn aborts_round(e: &GraphError) -> bool {
    match e {
        GraphError::Api(a) => a.is_throttle() || a.is_invalid_token(),
        GraphError::Protocol { .. } => false,
        _ => true,
    }
}

/// One user's photo: metadata first; the bytes only when the ETag differs from `cached`.
async fn fetch(
    client: &GraphClient,
    id: &str,
    cached: Option<&str>,
) -> Result<Fetched, GraphError> {
    let base = format!("/users/{}/photo", encode_segment(id));
    let meta = match client.get_json(&client.url(&base), false).await {
        Ok(m) => m,
        Err(e) if is_not_found(&e) => return Ok(Fetched::Without("none")),
        Err(e) => return Err(e),
    };
    // The metadata call has been documented to describe a 1x1 placeholder instead of a 404.
    let dim = |k| meta.get(k).and_then(Value::as_u64);
    if matches!((dim("width"), dim("height")), (Some(w), Some(h)) if w <= 1 && h <= 1) {
        return Ok(Fetched::Without("none"));
    }
    let etag = meta
        .get("@odata.mediaEtag")
        .and_then(Value::as_str)
        .map(str::to_string);
    if etag.is_some() && etag.as_deref() == cached {
        return Ok(Fetched::Unchanged);
    }
    let mut resp = match client
        .get(&client.url(&format!("{base}/$value")), false)
        .await
    {
        Ok(r) => r,
        Err(e) if is_not_found(&e) => return Ok(Fetched::Without("none")),
        Err(e) => return Err(e),
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_PHOTO_BYTES as u64)
    {
        return Ok(Fetched::Without("too_large"));
    }
    // Graph's Content-Type, not an assumed JPEG (§3.3); the metadata's as a fallback.
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .or_else(|| meta.get("@odata.mediaContentType").and_then(Value::as_str))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !content_type.starts_with("image/") {
        return Ok(Fetched::Without("not_image"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| GraphError::Transport {
        what: "Microsoft Graph",
        source,
    })? {
        if bytes.len() + chunk.len() > MAX_PHOTO_BYTES {
            return Ok(Fetched::Without("too_large"));
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Ok(Fetched::Without("none"));
    }
    Ok(Fetched::Photo {
        photo: Photo {
            content_type,
            bytes,
        },
        etag,
    })
}

fn is_not_found(e: &GraphError) -> bool {
    matches!(e, GraphError::Api(a) if a.status == 404)
}

/// A path segment: unreserved characters kept, everything else percent-encoded.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Graph ids are GUIDs; anything else is not used as a file name (kept in memory only).
fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn read_cached(dir: &Path, id: &str) -> std::io::Result<(Photo, Option<String>)> {
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.json")))?)
        .map_err(std::io::Error::other)?;
    let bytes = std::fs::read(dir.join(format!("{id}.bin")))?;
    if bytes.len() != meta.len || bytes.len() > MAX_PHOTO_BYTES {
        return Err(std::io::Error::other(format!(
            "{} bytes, the metadata says {}",
            bytes.len(),
            meta.len
        )));
    }
    Ok((
        Photo {
            content_type: meta.content_type,
            bytes,
        },
        meta.etag,
    ))
}

/// The bytes first, then the metadata that vouches for them: a crash in between leaves a
/// length mismatch, which the next start drops.
fn write_cached(dir: &Path, id: &str, photo: &Photo, meta: &Meta) -> std::io::Result<()> {
    use crate::directory::snapshot::write_atomic;
    write_atomic(&dir.join(format!("{id}.bin")), &photo.bytes, 0o600)?;
    let json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(format!("{id}.json")), &json, 0o600)
}

fn remove_files(dir: &Path, id: &str) {
    // The metadata goes first: without it the bytes are never loaded.
    let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
    let _ = std::fs::remove_file(dir.join(format!("{id}.bin")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn photo(b: &[u8]) -> Photo {
        Photo {
            content_type: "image/png".into(),
            bytes: b.to_vec(),
        }
    }

    #[test]
    fn disk_cache_round_trip_and_bad_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("photos");
        let store = PhotoStore::open(dir.clone()).unwrap();
        assert!(store.is_empty());
        let meta = |len, etag: &str| Meta {
            etag: Some(etag.into()),
            content_type: "image/png".into(),
            len,
        };
        write_cached(&dir, "id-a", &photo(b"PNG-A"), &meta(5, "\"A\"")).unwrap();
        write_cached(&dir, "id-b", &photo(b"PNG-B"), &meta(99, "\"B\"")).unwrap();
        std::fs::write(dir.join("id-c.json"), b"{not json").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["id-a.bin", "id-a.json"] {
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let store = PhotoStore::open(dir.clone()).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(*store.photo("id-a").unwrap(), photo(b"PNG-A"));
        assert!(store.photo("id-b").is_none(), "length mismatch dropped");
        assert!(!dir.join("id-b.json").exists() && !dir.join("id-c.json").exists());
    }

    #[test]
    fn config_keys() {
        let base = "tenant_id = \"t.example\"\nclient_id = \"a\"\nclient_secret = \"s\"\n";
        let parse = |extra: &str| -> Result<GraphConfig, String> {
            let c: GraphConfig =
                toml::from_str(&format!("{base}{extra}")).map_err(|e| e.to_string())?;
            c.validate().map(|_| c).map_err(|e| e.to_string())
        };
        let c = parse("").unwrap();
        assert!(!c.photos);
        assert_eq!(c.photo_refresh, Duration::from_secs(86400));
        let c = parse("photos = true\nphoto_dir = \"/var/lib/p\"\nphoto_refresh = \"6h\"").unwrap();
        assert!(c.photos);
        assert_eq!(c.photo_refresh, Duration::from_secs(6 * 3600));
        assert_eq!(
            cache_dir(&c, Some(Path::new("/s/d.json"))),
            Some(PathBuf::from("/var/lib/p"))
        );
        let e = parse("photo_refresh = \"10s\"").unwrap_err();
        assert!(e.contains("graph.photo_refresh"), "{e}");
        let e = parse("photo_refresh = \"often\"").unwrap_err();
        assert!(e.contains("photo_refresh"), "{e}");
        let e = parse("photo_dir = \"\"").unwrap_err();
        assert!(e.contains("graph.photo_dir"), "{e}");
        let c = parse("").unwrap();
        assert_eq!(
            cache_dir(&c, Some(Path::new("state/directory.json"))),
            Some(PathBuf::from("state/photos"))
        );
        assert_eq!(
            cache_dir(&c, Some(Path::new("directory.json"))),
            Some(PathBuf::from("photos"))
        );
        assert_eq!(cache_dir(&c, None), None);
    }

    #[test]
    fn unusable_photo_dir_names_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let text = format!(
            "[graph]\ntenant_id = \"t.example\"\nclient_id = \"a\"\nclient_secret = \"s\"\nphotos = true\nphoto_dir = {:?}\n",
            file.join("sub")
        );
        let cfg = Config::parse(&text).unwrap();
        let e = open(cfg.graph.as_ref(), None).err().unwrap().to_string();
        assert!(e.contains("graph.photo_dir"), "{e}");
        let cfg = Config::parse(&text.replace("photos = true", "photos = false")).unwrap();
        assert!(open(cfg.graph.as_ref(), None).unwrap().is_none());
    }

    #[test]
    fn ids_and_segments() {
        assert!(safe_id("6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0"));
        assert!(!safe_id("../etc") && !safe_id("") && !safe_id("a/b"));
        assert_eq!(encode_segment("a b/'c"), "a%20b%2F%27c");
    }
}
