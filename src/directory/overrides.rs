//! Local attribute overrides and custom attributes, layered over the source's values.
//!
//! Kept in one local JSON file (`[directory] overrides`), never sent anywhere:
//! ```json
//! {"users": {"jose.mueller@contoso.example": {"mobilePhone": "+49 151 0000", "pronouns": "he/him"}}}
//! ```
//! A value replaces the source's value (or adds a custom attribute); `null` hides the
//! source's value. The file is written atomically (temp, fsync, rename) by
//! `sigstamp attributes`, and [`watch`] applies changes to a running server.

use super::{normalize_address, AttrValue, Directory, Name, User};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Attributes that decide who a user is (and under which addresses it is indexed): an
/// override must not move a user to another address, so these are refused.
pub const PROTECTED: &[&str] = &["id", "mail", "userPrincipalName", "proxyAddresses"];

/// Graph attributes that are string collections: a value set from the command line or a CSV
/// becomes a one-element array, so `{{#each businessPhones}}` keeps working.
const COLLECTIONS: &[&str] = &["businessPhones", "otherMails", "imAddresses"];

/// How often [`watch`] looks at the file (changes apply within about this long).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    #[error("cannot read overrides file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write overrides file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("overrides file {path} is not valid: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// A CSV problem, with the line (1-based) where its record starts.
    #[error("line {line}: {message}")]
    Csv { line: usize, message: String },
}

/// address (lowercase) → attribute → value. `Value::Null` removes the attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub by_address: HashMap<String, HashMap<String, Value>>,
}

/// The on-disk shape; sorted maps keep the file diff-friendly.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    users: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Overrides {
    /// The user with every override that names one of its addresses applied. When several
    /// of its addresses carry overrides, the one under `mail` wins, then
    /// `userPrincipalName`, then the proxy addresses.
    pub fn apply(&self, user: &User) -> User {
        if self.by_address.is_empty() {
            return user.clone();
        }
        // Collected in order of precedence (later wins), applied in one pass.
        let mut changes = Vec::new();
        for a in user.addresses().iter().rev() {
            let Some(attrs) = self.by_address.get(a) else {
                continue;
            };
            for (k, v) in attrs {
                if !PROTECTED.contains(&k.as_str()) {
                    changes.push((Name::new(k), AttrValue::from(v.clone())));
                }
            }
        }
        user.with_changes(changes)
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// Set `attribute` of `address` to a string value (validated; see [`check`]).
    pub fn set(&mut self, address: &str, attribute: &str, value: &str) -> Result<(), String> {
        let address = check(address, attribute)?;
        let value = if COLLECTIONS.contains(&attribute) {
            Value::Array(vec![Value::String(value.to_string())])
        } else {
            Value::String(value.to_string())
        };
        self.by_address
            .entry(address)
            .or_default()
            .insert(attribute.to_string(), value);
        Ok(())
    }

    /// Remove the override of `attribute` for `address` (the source's value applies again).
    /// Returns whether there was one.
    pub fn unset(&mut self, address: &str, attribute: &str) -> Result<bool, String> {
        let address = check(address, attribute)?;
        let Some(attrs) = self.by_address.get_mut(&address) else {
            return Ok(false);
        };
        let had = attrs.remove(attribute).is_some();
        if attrs.is_empty() {
            self.by_address.remove(&address);
        }
        Ok(had)
    }

    /// Every override as (address, attribute, value), sorted.
    pub fn entries(&self) -> Vec<(&str, &str, &Value)> {
        let mut out: Vec<_> = self
            .by_address
            .iter()
            .flat_map(|(a, attrs)| attrs.iter().map(move |(k, v)| (a.as_str(), k.as_str(), v)))
            .collect();
        out.sort_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
        out
    }

    /// Apply CSV rows in order (a later row wins); a blank value unsets.
    pub fn import(&mut self, rows: &[CsvRow]) -> Result<ImportSummary, OverridesError> {
        let mut summary = ImportSummary::default();
        for row in rows {
            let invalid = |message| OverridesError::Csv {
                line: row.line,
                message,
            };
            match &row.value {
                Some(v) => {
                    self.set(&row.address, &row.attribute, v).map_err(invalid)?;
                    summary.set += 1;
                }
                None => {
                    self.unset(&row.address, &row.attribute).map_err(invalid)?;
                    summary.unset += 1;
                }
            }
        }
        Ok(summary)
    }

    fn from_shape(shape: FileShape) -> Result<Self, String> {
        let mut by_address: HashMap<String, HashMap<String, Value>> = HashMap::new();
        for (addr, attrs) in shape.users {
            let key = normalize_address(&addr).into_owned();
            if !key.contains('@') {
                return Err(format!("{addr:?} is not an email address"));
            }
            by_address.entry(key).or_default().extend(attrs);
        }
        by_address.retain(|_, attrs| !attrs.is_empty());
        Ok(Overrides { by_address })
    }

    fn to_shape(&self) -> FileShape {
        FileShape {
            users: self
                .by_address
                .iter()
                .map(|(a, attrs)| {
                    let sorted = attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    (a.clone(), sorted)
                })
                .collect(),
        }
    }
}

/// Validate an (address, attribute) pair; returns the normalised address.
pub fn check(address: &str, attribute: &str) -> Result<String, String> {
    let addr = normalize_address(address);
    if !addr.contains('@') || addr.contains(char::is_whitespace) {
        return Err(format!("{address:?} is not an email address"));
    }
    let mut chars = attribute.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!(
            "attribute {attribute:?} is not a valid name (letters, digits, _ and -; \
             it is used in templates as {{{{name}}}})"
        ));
    }
    if PROTECTED.contains(&attribute) {
        return Err(format!(
            "attribute {attribute:?} identifies the user and cannot be overridden"
        ));
    }
    Ok(addr.into_owned())
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub set: usize,
    pub unset: usize,
}

/// Read the overrides file. A missing file is an empty set of overrides.
pub fn load(path: &Path) -> Result<Overrides, OverridesError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Overrides::default()),
        Err(source) => {
            return Err(OverridesError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let shape: FileShape =
        serde_json::from_slice(&bytes).map_err(|source| OverridesError::Json {
            path: path.display().to_string(),
            source,
        })?;
    Overrides::from_shape(shape)
        .map_err(|m| OverridesError::Invalid(format!("overrides file {}: {m}", path.display())))
}

/// Write the overrides file atomically: a temp file beside it, fsync, rename, fsync the
/// directory. A reader (or [`watch`]) sees the old or the new file, never half of one.
pub fn save(path: &Path, ov: &Overrides) -> Result<(), OverridesError> {
    let err = |source| OverridesError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut json = serde_json::to_vec_pretty(&ov.to_shape()).expect("JSON values serialise");
    json.push(b'\n');
    let (dir, _) = dir_and_name(path);
    super::snapshot::create_private_dir(&dir).map_err(err)?;
    // 0o666 less the umask, as a plain create would give: the file is not secret.
    super::snapshot::write_atomic(path, &json, 0o666).map_err(err)
}

/// The file's folder (`.` for a bare name) and its file name: where the temporary file and
/// the lock file go.
fn dir_and_name(path: &Path) -> (PathBuf, String) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "overrides".into(), |n| n.to_string_lossy().into_owned());
    (dir, name)
}

/// Held while a command reads, edits and saves the overrides file, so two edits running at
/// once cannot lose one another (each would otherwise save its own copy over the other's).
/// An exclusive lock on `.<name>.lock` beside the file; released when dropped.
pub struct EditLock(#[allow(dead_code)] std::fs::File);

pub fn lock_for_edit(path: &Path) -> Result<EditLock, OverridesError> {
    let err = |source| OverridesError::Write {
        path: path.display().to_string(),
        source,
    };
    let (dir, name) = dir_and_name(path);
    super::snapshot::create_private_dir(&dir).map_err(err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!(".{name}.lock")))
        .map_err(err)?;
    file.lock().map_err(err)?;
    Ok(EditLock(file))
}

/// One CSV record: `address,attribute,value`; `value` is `None` when blank (unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    /// The line the record starts on (1-based).
    pub line: usize,
    pub address: String,
    pub attribute: String,
    pub value: Option<String>,
}

/// Parse `address,attribute,value` CSV (RFC 4180 quoting: `"a, b"`, `"say ""hi"""`, line
/// breaks inside quotes). An optional header line `address,attribute,value`, a UTF-8 BOM,
/// CRLF or LF and blank lines are accepted. Unquoted fields are trimmed; quoted ones are
/// taken exactly. Every row is validated, so an import is all or nothing.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRow>, OverridesError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut first = true;
    for (line, fields) in csv_records(text)? {
        if fields.len() == 1 && fields[0].is_empty() {
            continue; // blank line
        }
        let err = |message: String| OverridesError::Csv { line, message };
        if std::mem::take(&mut first) && is_header(&fields) {
            continue;
        }
        let [address, attribute, value]: [String; 3] = fields.try_into().map_err(|f: Vec<_>| {
            err(format!(
                "expected 3 fields (address,attribute,value), found {}",
                f.len()
            ))
        })?;
        check(&address, &attribute).map_err(err)?;
        rows.push(CsvRow {
            line,
            address,
            attribute,
            value: (!value.is_empty()).then_some(value),
        });
    }
    Ok(rows)
}

/// The overrides (of one address, or all) as CSV that [`parse_csv`] reads back: a header,
/// then `address,attribute,value` rows sorted by address and attribute.
pub fn write_csv(ov: &Overrides, address: Option<&str>) -> String {
    let wanted = address.map(normalize_address);
    let mut out = String::from("address,attribute,value\n");
    for (a, k, v) in ov.entries() {
        if wanted.as_deref().is_some_and(|w| w != a) {
            continue;
        }
        let line = [a, k, &value_text(v)].map(csv_field).join(",");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// An override's value as text: a string as is, a one-string collection (as [`Overrides::set`]
/// stores `businessPhones`) as its string, anything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn is_header(fields: &[String]) -> bool {
    let want = ["address", "attribute", "value"];
    fields.len() == 3
        && fields
            .iter()
            .zip(want)
            .all(|(f, w)| f.eq_ignore_ascii_case(w))
}

/// Split CSV text into records of fields, each with its starting line.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, OverridesError> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        loop {
            // One field.
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err(OverridesError::Csv {
                                line: start,
                                message: "unterminated quoted field".into(),
                            })
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        // A line break inside quotes is kept as a plain \n.
                        Some('\r') if chars.peek() == Some(&'\n') => {}
                        Some(c) => {
                            line += usize::from(c == '\n');
                            field.push(c);
                        }
                    }
                }
                while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                    chars.next();
                }
                if !matches!(chars.peek(), None | Some(',' | '\r' | '\n')) {
                    return Err(OverridesError::Csv {
                        line,
                        message: "unexpected text after a closing quote".into(),
                    });
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if matches!(c, ',' | '\r' | '\n') {
                        break;
                    }
                    field.push(c);
                    chars.next();
                }
                field.truncate(field.trim_end().len());
            }
            fields.push(field);
            match chars.next() {
                Some(',') => continue,
                // End of record: "\n", "\r\n" or the end of the text.
                Some('\r') => _ = chars.next_if_eq(&'\n'),
                _ => {}
            }
            line += 1;
            break;
        }
        records.push((start, fields));
    }
    Ok(records)
}

/// What identifies one version of the file: its length, mtime and (on Unix) inode, which a
/// rename always changes. `None` when the file does not exist.
type FileStamp = Option<(u64, Option<SystemTime>, u64)>;

fn file_stamp(path: &Path) -> std::io::Result<FileStamp> {
    match std::fs::metadata(path) {
        Ok(m) => {
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            Ok(Some((m.len(), m.modified().ok(), ino)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Load the file into `dir` if it differs from what `dir` holds. A broken file is reported
/// and the last good overrides stay in force.
fn reload(path: &Path, dir: &Directory) {
    match load(path) {
        Ok(ov) if *dir.overrides() == ov => {}
        Ok(ov) => {
            let n = ov.by_address.len();
            dir.set_overrides(ov);
            tracing::info!(path = %path.display(), addresses = n, "attribute overrides applied");
        }
        Err(e) => tracing::warn!("{e}; keeping the previous overrides"),
    }
}

/// Poll `path` every [`POLL_INTERVAL`] and apply each new version to `dir` until `cancel`
/// fires. Loads at once on start. A deleted file means no overrides.
pub async fn watch(path: PathBuf, dir: Arc<Directory>, cancel: CancellationToken) {
    let mut last: Option<FileStamp> = None;
    let mut stat_failing = false;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stamp = match file_stamp(&path) {
            Ok(s) => s,
            Err(e) => {
                if !stat_failing {
                    tracing::warn!(path = %path.display(), "cannot stat overrides file: {e}");
                    stat_failing = true;
                }
                continue;
            }
        };
        stat_failing = false;
        if last == Some(stamp) {
            continue;
        }
        last = Some(stamp);
        // Rebuilding the index of a large tenant takes a while: keep it off the reactor.
        let (p, d) = (path.clone(), dir.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || reload(&p, &d)).await {
            tracing::warn!("overrides reload failed: {e}");
        }
    }
}
