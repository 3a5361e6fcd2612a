//! The file source: a JSON array of users in Graph's user shape (or `{"value": [...]}`).

use super::{Attributes, User};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read directory file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("directory file {path} is not a JSON array of users: {source}")]
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
    #[serde(untagged)]
    enum Shape {
        List(Vec<Attributes>),
        Page { value: Vec<Attributes> },
    }
    let shape: Shape = serde_json::from_slice(bytes)?;
    let list = match shape {
        Shape::List(l) => l,
        Shape::Page { value } => value,
    };
    Ok(list.into_iter().map(User::new).collect())
}
