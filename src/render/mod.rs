//! Signature templates: `<name>.html.hbs` and `<name>.txt.hbs` rendered with handlebars.
//!
//! Two registries: the HTML one escapes every value, the text one escapes nothing. Templates
//! are parsed once at load; a render is a walk over the parsed tree (it runs per message).
//! Non-strict mode: a missing attribute renders as nothing, so `{{#if mobilePhone}}` is all a
//! template needs to leave a line out.

mod cache;
mod helpers;

use crate::directory::User;
use crate::stamp::Signature;
use handlebars::Handlebars;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const HTML_EXT: &str = ".html.hbs";
const TEXT_EXT: &str = ".txt.hbs";

/// The shipped templates, compiled into the binary.
const EMBEDDED: &[(&str, &str, &str)] = &[(
    "default",
    include_str!("../../templates/default.html.hbs"),
    include_str!("../../templates/default.txt.hbs"),
)];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A render failed (an unknown helper, a helper given the wrong type, …).
    #[error("template error: {0}")]
    Template(String),
    #[error("no template named {0:?}")]
    Missing(String),
    #[error("cannot read template directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A template that does not parse (or fails on a trial render), with its file and line:
    /// `templates/x.html.hbs:12: …`.
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// One half of a pair is missing.
    #[error("template {present} has no matching {missing}")]
    Unpaired { present: String, missing: String },
    #[error("no templates (<name>.html.hbs + <name>.txt.hbs) in {0}")]
    Empty(String),
}

/// A loaded set of templates, parsed once.
pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    /// Template name → the (HTML, text) files it came from, for error messages.
    names: BTreeMap<String, (String, String)>,
    cache: cache::Cache,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &self.names)
            .finish()
    }
}

/// One template pair before parsing: its name and each half's (shown path, source).
struct Pair {
    name: String,
    html: (String, String),
    text: (String, String),
}

impl Templates {
    /// Load every `<name>.html.hbs` + `<name>.txt.hbs` pair from `dir`.
    pub fn load(dir: &Path) -> Result<Self, RenderError> {
        let io = |source| RenderError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut html = BTreeSet::new();
        let mut text = BTreeSet::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let file = entry.map_err(io)?.file_name();
            let Some(file) = file.to_str() else { continue };
            if let Some(name) = file.strip_suffix(HTML_EXT) {
                html.insert(name.to_string());
            } else if let Some(name) = file.strip_suffix(TEXT_EXT) {
                text.insert(name.to_string());
            }
        }
        let shown = |name: &str, ext: &str| dir.join(format!("{name}{ext}")).display().to_string();
        if let Some(n) = html.symmetric_difference(&text).next() {
            let (present, missing) = if html.contains(n) {
                (shown(n, HTML_EXT), shown(n, TEXT_EXT))
            } else {
                (shown(n, TEXT_EXT), shown(n, HTML_EXT))
            };
            return Err(RenderError::Unpaired { present, missing });
        }
        if html.is_empty() {
            return Err(RenderError::Empty(dir.display().to_string()));
        }
        let read = |path: String| -> Result<(String, String), RenderError> {
            let src = std::fs::read_to_string(&path).map_err(|source| RenderError::Io {
                path: path.clone(),
                source,
            })?;
            Ok((path, src))
        };
        let mut pairs = Vec::with_capacity(html.len());
        for name in html {
            pairs.push(Pair {
                html: read(shown(&name, HTML_EXT))?,
                text: read(shown(&name, TEXT_EXT))?,
                name,
            });
        }
        Self::build(pairs)
    }

    /// The templates shipped in `templates/`, compiled into the binary.
    pub fn embedded() -> Self {
        let pairs = EMBEDDED
            .iter()
            .map(|(name, html, text)| Pair {
                name: name.to_string(),
                html: (format!("templates/{name}{HTML_EXT}"), html.to_string()),
                text: (format!("templates/{name}{TEXT_EXT}"), text.to_string()),
            })
            .collect();
        // A test renders every example user with these; a failure here is a build defect.
        Self::build(pairs).expect("the embedded templates are valid")
    }

    fn build(pairs: Vec<Pair>) -> Result<Self, RenderError> {
        let mut html = Handlebars::new();
        let mut text = Handlebars::new();
        text.register_escape_fn(handlebars::no_escape);
        for reg in [&mut html, &mut text] {
            reg.set_strict_mode(false);
            helpers::register(reg);
        }
        let mut names = BTreeMap::new();
        for pair in pairs {
            register(&mut html, &pair.name, &pair.html)?;
            register(&mut text, &pair.name, &pair.text)?;
            names.insert(pair.name, (pair.html.0, pair.text.0));
        }
        let t = Templates {
            html,
            text,
            names,
            cache: cache::Cache::default(),
        };
        t.trial_render()?;
        Ok(t)
    }

    /// Render each template for an empty and a fully populated user, so an unknown helper or
    /// a helper misuse is reported at load (with file and line), not on the first message.
    fn trial_render(&self) -> Result<(), RenderError> {
        let full = json!({
            "displayName": "A", "givenName": "A", "surname": "A", "jobTitle": "A",
            "department": "A", "companyName": "A", "officeLocation": "A",
            "businessPhones": ["+1 555 0100"], "mobilePhone": "+1 555 0101",
            "faxNumber": "+1 555 0102", "mail": "a@example.com",
            "userPrincipalName": "a@example.com", "streetAddress": "A", "city": "A",
            "state": "A", "country": "A", "postalCode": "1",
            "onPremisesExtensionAttributes": {"extensionAttribute1": "A"},
        });
        for data in [json!({}), full] {
            for (name, (html_file, text_file)) in &self.names {
                for (reg, file) in [(&self.html, html_file), (&self.text, text_file)] {
                    reg.render(name, &data).map_err(|e| RenderError::Syntax {
                        file: file.clone(),
                        line: e.line_no.unwrap_or(0),
                        message: e.reason().to_string(),
                    })?;
                }
            }
        }
        Ok(())
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The template names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// Render template `name` for `user`.
    ///
    /// The HTML is trimmed of surrounding whitespace; the text ends with exactly one `\n`.
    /// Both use `\n` line endings: the stamping core adapts them to the message.
    /// Recent results are cached (see `cache.rs`): a repeat sender costs a map probe.
    pub fn render(&self, name: &str, user: &User) -> Result<Signature, RenderError> {
        if !self.has(name) {
            return Err(RenderError::Missing(name.into()));
        }
        if let Some(sig) = self.cache.get(name, user) {
            return Ok(sig);
        }
        let sig = self.render_uncached(name, user)?;
        self.cache.put(name, user, &sig);
        Ok(sig)
    }

    fn render_uncached(&self, name: &str, user: &User) -> Result<Signature, RenderError> {
        // One conversion to handlebars' context serves both renders.
        let ctx = handlebars::Context::from(Value::Object(user.to_json()));
        let fail = |e: handlebars::RenderError| RenderError::Template(e.to_string());
        let html = self.html.render_with_context(name, &ctx).map_err(fail)?;
        let mut text = self.text.render_with_context(name, &ctx).map_err(fail)?;
        let html = html.trim().to_string();
        text.truncate(text.trim_end().len());
        text.push('\n');
        Ok(Signature { html, text })
    }
}

/// Parse one template; a syntax error becomes `file:line: reason`.
fn register(
    reg: &mut Handlebars<'static>,
    name: &str,
    (file, src): &(String, String),
) -> Result<(), RenderError> {
    // Templates edited on Windows: keep the rendered signature's line endings uniform.
    let src = src.replace("\r\n", "\n");
    reg.register_template_string(name, src)
        .map_err(|e| RenderError::Syntax {
            file: file.clone(),
            line: e.pos().map_or(0, |(line, _)| line),
            message: e.reason().to_string(),
        })
}
