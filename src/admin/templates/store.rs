//! The template folder as the editor sees it: the live pair `<name>.html.hbs` +
//! `<name>.txt.hbs` (what `Templates::load` reads, so a restart keeps what was saved) and
//! every saved version under `.history/<name>/<n>.{html.hbs,txt.hbs,json}`.
//!
//! A save (or a rollback, which saves an old version again) checks the whole folder with the
//! draft in place, writes the version files, then replaces the live pair and swaps the
//! stamper's templates: the next message uses them. The live pair is two files, so the swap is
//! journalled: `.history/<name>/pending` names the version being put live until both files
//! are replaced; [`TemplateStore::new`] finishes a swap a crash interrupted. A hand edit of
//! the live files (outside the editor) is kept: the next save records it as a version first.

use crate::config::TemplatesConfig;
use crate::directory::photo::PhotoSource;
use crate::pipeline::Stamper;
use crate::render::{ImageOptions, RenderError, Templates};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;

const HTML_EXT: &str = ".html.hbs";
const TEXT_EXT: &str = ".txt.hbs";
/// The history folder inside the templates folder (a dot folder: `Templates::load` skips it).
pub const HISTORY: &str = ".history";
const PENDING: &str = "pending";
/// The largest part the editor accepts (a signature template is a few KiB).
pub const MAX_PART: usize = 256 * 1024;

/// The two halves of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub html: String,
    pub text: String,
}

impl Pair {
    /// A short fingerprint of the content: the editor sends back the one it started from, so a
    /// save over someone else's change is refused instead of silently undoing it.
    pub fn fingerprint(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(self.html.as_bytes());
        ctx.update(&[0]);
        ctx.update(self.text.as_bytes());
        ctx.finish().as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// One saved version's facts (`<n>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The signed-in UPN; `-` for a version found on disk.
    pub who: String,
    /// `initial` (the folder's content before the first save), `on_disk` (a hand edit found
    /// at the next save), `save` or `rollback`.
    pub action: String,
    /// For a rollback: the version it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<u32>,
}

/// A handlebars problem of a draft, placed for the editor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `html` or `text`; empty when it is not in the edited template (an image setting).
    pub part: &'static str,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("template editing needs a folder: set [templates] dir (the built-in templates are read-only)")]
    ReadOnly,
    #[error("no template named {0:?}")]
    NoTemplate(String),
    #[error("template {0:?} has no version {1}")]
    NoVersion(String, u32),
    #[error("the draft has errors")]
    Invalid(Vec<Problem>),
    #[error("template {name:?} changed since you opened it (now: {now}); reload it and redo your change")]
    Conflict { name: String, now: String },
    #[error("nothing to save: the draft is the live template")]
    Unchanged,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// What a successful save reports.
#[derive(Debug, Clone)]
pub struct Saved {
    pub before: (u32, Pair),
    pub after: (u32, Pair),
}

/// The editable templates of `[templates] dir`, and where a save takes effect.
pub struct TemplateStore {
    dir: Option<PathBuf>,
    images: ImageOptions,
    photos: Arc<dyn PhotoSource>,
    stamper: Arc<Stamper>,
    /// One save at a time (the version numbers and the live pair).
    lock: tokio::sync::Mutex<()>,
}

impl TemplateStore {
    /// The store of `cfg`'s folder (none: the built-in templates, read-only). Finishes a swap
    /// a crash interrupted, and then reloads the stamper's templates from the folder.
    pub fn new(cfg: &TemplatesConfig, photos: Arc<dyn PhotoSource>, stamper: Arc<Stamper>) -> Self {
        let store = TemplateStore {
            dir: cfg.dir.clone(),
            images: cfg.image_options(),
            photos,
            stamper,
            lock: tokio::sync::Mutex::new(()),
        };
        if let Err(e) = store.recover() {
            tracing::error!(error = %e, "templates: cannot finish an interrupted save");
        }
        store
    }

    pub fn editable(&self) -> bool {
        self.dir.is_some()
    }

    fn dir(&self) -> Result<&Path, StoreError> {
        self.dir.as_deref().ok_or(StoreError::ReadOnly)
    }

    /// The stamper the editor previews with and saves into.
    pub fn stamper(&self) -> &Arc<Stamper> {
        &self.stamper
    }

    /// Every pair in the folder (bottom parts included, as `<name>.bottom`), sorted.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.dir()?;
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(io("cannot read templates.dir", dir))?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(HTML_EXT)
                    .map(str::to_string)
            })
            .filter(|n| dir.join(format!("{n}{TEXT_EXT}")).is_file())
            .collect();
        names.sort();
        Ok(names)
    }

    /// `name` if it is one of the folder's templates (never a path of the client's making).
    fn known(&self, name: &str) -> Result<String, StoreError> {
        self.names()?
            .into_iter()
            .find(|n| n == name)
            .ok_or_else(|| StoreError::NoTemplate(name.into()))
    }

    /// The live pair.
    pub fn live(&self, name: &str) -> Result<Pair, StoreError> {
        let name = self.known(name)?;
        read_pair(self.dir()?, &name)
    }

    /// The saved versions of `name`, oldest first.
    pub fn history(&self, name: &str) -> Result<Vec<Version>, StoreError> {
        let name = self.known(name)?;
        history(&self.dir()?.join(HISTORY).join(name))
    }

    /// One saved version's content.
    pub fn version(&self, name: &str, n: u32) -> Result<Pair, StoreError> {
        let name = self.known(name)?;
        let folder = self.dir()?.join(HISTORY).join(&name);
        read_pair(&folder, &n.to_string()).map_err(|_| StoreError::NoVersion(name, n))
    }

    /// The whole folder loaded with `draft` as `name`, as a save would put it live; the
    /// problems (with line and column) when it does not load.
    pub fn check(&self, name: &str, draft: &Pair) -> Result<Templates, StoreError> {
        let name = self.known(name)?;
        let mut problems = Vec::new();
        for (part, src) in [("html", &draft.html), ("text", &draft.text)] {
            if src.len() > MAX_PART {
                problems.push(Problem {
                    part,
                    line: 0,
                    column: 0,
                    message: format!("larger than {} KiB", MAX_PART / 1024),
                });
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Invalid(problems));
        }
        let drafts = BTreeMap::from([(name.clone(), (draft.html.clone(), draft.text.clone()))]);
        match Templates::load_overlaid(self.dir()?, &self.images, &drafts) {
            Ok(t) => Ok(t.with_photos(self.photos.clone())),
            Err(e) => Err(StoreError::Invalid(vec![problem(&name, e)])),
        }
    }

    /// Put `draft` live as `name`'s next version. `base`: the fingerprint of the live pair the
    /// draft was made from (a mismatch is a [`StoreError::Conflict`]); `restores`: the version
    /// a rollback brings back.
    pub async fn save(
        &self,
        who: &str,
        name: &str,
        draft: Pair,
        base: Option<&str>,
        restores: Option<u32>,
    ) -> Result<Saved, StoreError> {
        let _one = self.lock.lock().await;
        let name = self.known(name)?;
        let templates = self.check(&name, &draft)?;
        let dir = self.dir()?.to_path_buf();
        let who = who.to_string();
        let base = base.map(str::to_string);
        let saved = tokio::task::spawn_blocking(move || {
            put_live(&dir, &name, draft, &who, base.as_deref(), restores)
        })
        .await
        .map_err(|e| StoreError::Io {
            what: "save",
            path: String::new(),
            source: std::io::Error::other(e),
        })??;
        self.stamper.templates.store(Arc::new(templates));
        Ok(saved)
    }

    /// Finish every swap a crash interrupted (`pending`), then reload the stamper's templates.
    fn recover(&self) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let history = dir.join(HISTORY);
        let Ok(entries) = std::fs::read_dir(&history) else {
            return Ok(());
        };
        let mut finished = false;
        for entry in entries.flatten() {
            let folder = entry.path();
            let Ok(n) = std::fs::read_to_string(folder.join(PENDING)) else {
                continue;
            };
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let pair = read_pair(&folder, n.trim())?;
            tracing::warn!(template = %name, version = n.trim(), "templates: finishing a save a restart interrupted");
            write_live(dir, &name, &pair)?;
            remove(&folder.join(PENDING))?;
            finished = true;
        }
        if finished {
            match Templates::load_with(dir, &self.images) {
                Ok(t) => self
                    .stamper
                    .templates
                    .store(Arc::new(t.with_photos(self.photos.clone()))),
                Err(e) => {
                    tracing::error!(error = %e, "templates: the recovered folder does not load")
                }
            }
        }
        Ok(())
    }
}

/// A load error as the editor shows it: the part (by the file it names), line and column.
fn problem(name: &str, e: RenderError) -> Problem {
    match e {
        RenderError::Syntax {
            file,
            line,
            column,
            message,
        } => {
            let part = if file.ends_with(&format!("{name}{HTML_EXT}")) {
                "html"
            } else if file.ends_with(&format!("{name}{TEXT_EXT}")) {
                "text"
            } else {
                ""
            };
            let message = if part.is_empty() {
                format!("{file}: {message}")
            } else {
                message
            };
            Problem {
                part,
                line,
                column,
                message,
            }
        }
        other => Problem {
            part: "",
            line: 0,
            column: 0,
            message: other.to_string(),
        },
    }
}

fn read_pair(folder: &Path, stem: &str) -> Result<Pair, StoreError> {
    let read = |ext: &str| {
        let p = folder.join(format!("{stem}{ext}"));
        std::fs::read_to_string(&p).map_err(|source| StoreError::Io {
            what: "cannot read",
            path: p.display().to_string(),
            source,
        })
    };
    Ok(Pair {
        html: read(HTML_EXT)?,
        text: read(TEXT_EXT)?,
    })
}

fn history(folder: &Path) -> Result<Vec<Version>, StoreError> {
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("cannot read", folder)(e)),
    };
    let mut versions: Vec<Version> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    versions.sort_by_key(|v| v.version);
    Ok(versions)
}

/// The blocking part of a save, under the store's lock.
fn put_live(
    dir: &Path,
    name: &str,
    draft: Pair,
    who: &str,
    base: Option<&str>,
    restores: Option<u32>,
) -> Result<Saved, StoreError> {
    let live = read_pair(dir, name)?;
    if let Some(base) = base {
        if base != live.fingerprint() {
            return Err(StoreError::Conflict {
                name: name.into(),
                now: live.fingerprint(),
            });
        }
    }
    if draft == live {
        return Err(StoreError::Unchanged);
    }
    let folder = dir.join(HISTORY).join(name);
    std::fs::create_dir_all(&folder).map_err(io("cannot create", &folder))?;
    let versions = history(&folder)?;
    let mut last = versions.last().map_or(0, |v| v.version);
    // The live pair is a version too: the folder's first content, or a hand edit since.
    let recorded = match versions.last() {
        Some(v) => read_pair(&folder, &v.version.to_string()).ok() == Some(live.clone()),
        None => false,
    };
    if !recorded {
        last += 1;
        let action = if versions.is_empty() {
            "initial"
        } else {
            "on_disk"
        };
        write_version(&folder, last, &live, "-", action, None)?;
    }
    let before = (last, live);
    let n = last + 1;
    let action = if restores.is_some() {
        "rollback"
    } else {
        "save"
    };
    write_version(&folder, n, &draft, who, action, restores)?;
    // The journal: from here a restart finishes the swap (see `recover`).
    let pending = folder.join(PENDING);
    write_atomic(&pending, n.to_string().as_bytes())?;
    write_live(dir, name, &draft)?;
    remove(&pending)?;
    Ok(Saved {
        before,
        after: (n, draft),
    })
}

fn write_version(
    folder: &Path,
    n: u32,
    pair: &Pair,
    who: &str,
    action: &str,
    restores: Option<u32>,
) -> Result<(), StoreError> {
    write_atomic(&folder.join(format!("{n}{HTML_EXT}")), pair.html.as_bytes())?;
    write_atomic(&folder.join(format!("{n}{TEXT_EXT}")), pair.text.as_bytes())?;
    let meta = Version {
        version: n,
        time: OffsetDateTime::now_utc(),
        who: who.into(),
        action: action.into(),
        restores,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::Io {
        what: "cannot encode",
        path: String::new(),
        source: std::io::Error::other(e),
    })?;
    // Last: a version is listed only once both its files are there.
    write_atomic(&folder.join(format!("{n}.json")), &json)
}

/// Text first, HTML last: `Templates::load` reads whichever is there, each file whole.
fn write_live(dir: &Path, name: &str, pair: &Pair) -> Result<(), StoreError> {
    write_atomic(&dir.join(format!("{name}{TEXT_EXT}")), pair.text.as_bytes())?;
    write_atomic(&dir.join(format!("{name}{HTML_EXT}")), pair.html.as_bytes())
}

/// Write `path` whole or not at all: a temporary file beside it, fsynced, renamed over it,
/// and the folder fsynced so the rename survives a crash.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("x");
    let tmp = folder.join(format!(".{file}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(folder)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("cannot write", path)(e)
    })
}

fn remove(path: &Path) -> Result<(), StoreError> {
    std::fs::remove_file(path).map_err(io("cannot remove", path))?;
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(io("cannot sync", folder))?;
    }
    Ok(())
}
