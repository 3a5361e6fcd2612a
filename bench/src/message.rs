//! The messages sent: loaded once, prepared once in their wire form (CRLF, dot-stuffed,
//! with the terminating `.`), so the load loop only copies bytes.

use std::path::Path;
use std::sync::Arc;

/// The built-in load: José's ~40 KB multipart/alternative reply (see `messages/generate.py`).
pub const SAMPLE: &[u8] = include_bytes!("../messages/alternative-40k.eml");

/// The sender used when a message has no From address.
pub const SAMPLE_SENDER: &str = "jose.mueller@lumen-optics.example";

#[derive(Debug, Clone)]
pub struct Prepared {
    /// The envelope sender.
    pub from: String,
    /// The message's size as stored (what MB/s counts).
    pub size: u64,
    /// CRLF line ends, dot-stuffed, ending in CRLF `.` CRLF.
    pub wire: Arc<[u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no .eml files in this folder")]
    Empty(String),
}

/// One file, or every `.eml` of a folder in name order; `None` → the built-in sample.
pub fn load(path: Option<&Path>) -> Result<Vec<Vec<u8>>, LoadError> {
    let Some(path) = path else {
        return Ok(vec![SAMPLE.to_vec()]);
    };
    let io = |source| LoadError::Io {
        path: path.display().to_string(),
        source,
    };
    if !path.is_dir() {
        return Ok(vec![std::fs::read(path).map_err(io)?]);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("eml")) && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::Empty(path.display().to_string()));
    }
    files
        .iter()
        .map(|f| {
            std::fs::read(f).map_err(|source| LoadError::Io {
                path: f.display().to_string(),
                source,
            })
        })
        .collect()
}

/// Prepare `raw` for sending from `from`, or from its own From address.
pub fn prepare(raw: &[u8], from: Option<&str>) -> Prepared {
    let from = from
        .map(str::to_string)
        .or_else(|| sigstamp::stamp::from_address(raw))
        .unwrap_or_else(|| SAMPLE_SENDER.to_string());
    Prepared {
        from,
        size: raw.len() as u64,
        wire: to_wire(raw).into(),
    }
}

/// CRLF line ends (bare LF and bare CR become CRLF), a leading `.` doubled on every line,
/// and the end-of-data marker.
pub fn to_wire(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 5);
    let mut at_line_start = true;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if raw.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        assert_eq!(to_wire(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(to_wire(b"a\n.\nc"), b"a\r\n..\r\nc\r\n.\r\n");
        assert_eq!(to_wire(b".x\rb\r\n"), b"..x\r\nb\r\n.\r\n");
        assert_eq!(to_wire(b""), b".\r\n");
    }

    #[test]
    fn the_sample_is_a_40k_alternative_from_a_directory_user() {
        assert!((35_000..45_000).contains(&SAMPLE.len()));
        let text = String::from_utf8_lossy(SAMPLE);
        assert!(text.contains("multipart/alternative"));
        let p = prepare(SAMPLE, None);
        assert_eq!(p.from, SAMPLE_SENDER);
        let dir = include_str!("../../examples/directory.json");
        assert!(dir.contains(&format!("\"mail\": \"{SAMPLE_SENDER}\"")));
        // Already CRLF with no leading dots: only the end marker is added.
        assert_eq!(p.wire.len(), SAMPLE.len() + 3);
        assert_eq!(
            prepare(b"Subject: x\r\n\r\nhi\r\n", None).from,
            SAMPLE_SENDER
        );
        assert_eq!(prepare(SAMPLE, Some("a@b.example")).from, "a@b.example");
    }

    #[test]
    fn loads_a_file_or_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.eml"), b"B").unwrap();
        std::fs::write(dir.path().join("a.EML"), b"A").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"N").unwrap();
        assert_eq!(
            load(Some(dir.path())).unwrap(),
            [b"A".to_vec(), b"B".to_vec()]
        );
        assert_eq!(
            load(Some(&dir.path().join("b.eml"))).unwrap(),
            [b"B".to_vec()]
        );
        assert_eq!(load(None).unwrap(), [SAMPLE.to_vec()]);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(load(Some(empty.path())), Err(LoadError::Empty(_))));
        assert!(load(Some(&dir.path().join("missing.eml"))).is_err());
    }
}
