//! Signature templates: `<name>.html.hbs` and `<name>.txt.hbs` rendered with handlebars.
//! HTML templates escape values; text templates do not. (TODO: implementation)

use crate::directory::User;
use crate::stamp::Signature;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template error: {0}")]
    Template(String),
    #[error("no template named {0:?}")]
    Missing(String),
}

/// A loaded set of templates.
pub struct Templates {}

impl Templates {
    /// Load every `*.html.hbs` / `*.txt.hbs` pair from `dir`.
    pub fn load(dir: &Path) -> Result<Self, RenderError> {
        let _ = dir;
        Err(RenderError::Template("not implemented".into()))
    }

    /// The templates shipped in `templates/`, compiled into the binary.
    pub fn embedded() -> Self {
        Templates {}
    }

    pub fn has(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// Render template `name` for `user`.
    pub fn render(&self, name: &str, user: &User) -> Result<Signature, RenderError> {
        let _ = user;
        Err(RenderError::Missing(name.into()))
    }
}
