//! The file source: a JSON array of users in Graph's user shape (or `{"value": [...]}`).

use super::User;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read directory file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "directory file {path} is not a JSON array of users nor a Graph page \
         {{\"value\": [...]}}: {source}"
    )]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

/// Load users from a JSON file.
pub fn load(path: &Path) -> Result<Vec<User>, FileError> {
    let bytes = std::fs::read(path).map_err(|source| FileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes).map_err(|source| FileError::Json {
        path: path.display().to_string(),
        source,
    })
}

/// Parse a JSON array of users, or a Graph page object with a `value` array.
pub fn parse(bytes: &[u8]) -> Result<Vec<User>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Page {
        value: Vec<User>,
    }
    // Pick the shape by the first byte (rather than an untagged enum) so that a mistake
    // deep inside is reported with its line and column.
    let list = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<Page>(bytes)?.value,
        _ => serde_json::from_slice::<Vec<User>>(bytes)?,
    };
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_and_graph_page_shapes() {
        let array = br#"[{"displayName": "A", "mail": "a@x.example"}, {"displayName": "B"}]"#;
        let page = br#"{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
                        "value": [{"displayName": "A", "mail": "a@x.example"}, {"displayName": "B"}]}"#;
        for bytes in [&array[..], &page[..]] {
            let users = parse(bytes).unwrap();
            assert_eq!(users.len(), 2);
            assert_eq!(users[0].str("mail"), Some("a@x.example"));
            assert_eq!(users[1].str("displayName"), Some("B"));
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        std::fs::write(&path, br#"{"users": []}"#).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("users.json") && err.contains("value"), "{err}");
        std::fs::write(&path, br#"[1, 2]"#).unwrap();
        assert!(load(&path).is_err());
        let err = load(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }
}
