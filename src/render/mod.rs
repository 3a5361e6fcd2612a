//! Signature templates: `<name>.html.hbs` and `<name>.txt.hbs` rendered with handlebars.
//! A template may have a second part, `<name>.bottom.html.hbs` + `<name>.bottom.txt.hbs`,
//! that goes at the very end of the body, after the quoted thread (disclaimers, banners).
//!
//! Two registries: the HTML one escapes every value, the text one escapes nothing. Templates
//! are parsed once at load; a render is a walk over the parsed tree (it runs per message).
//! Non-strict mode: a missing attribute renders as nothing, so `{{#if mobilePhone}}` is all a
//! template needs to leave a line out.
//!
//! Images: `{{image "logo.png"}}` and the sender's `photo` (see `images.rs`); the rendered
//! [`Signature`] carries the images its HTML references.

mod cache;
mod helpers;
pub(crate) mod images;

pub use images::{ImageMode, ImageOptions, MAX_IMAGE_BYTES};

use crate::directory::photo::{NoPhotos, Photo, PhotoSource};
use crate::directory::User;
use crate::stamp::Signature;
use handlebars::Handlebars;
use images::{ImageHelper, ImageTable, PHOTO};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const HTML_EXT: &str = ".html.hbs";
const TEXT_EXT: &str = ".txt.hbs";
/// `<name>.bottom` is the bottom part of template `<name>`, never a template of its own.
const BOTTOM: &str = ".bottom";

/// The template a bottom part belongs to.
fn bottom_of(name: &str) -> Option<&str> {
    name.strip_suffix(BOTTOM).filter(|n| !n.is_empty())
}

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
    /// `templates/x.html.hbs:12: …` (`column`: 0 when unknown; the admin editor shows it).
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// One half of a pair is missing.
    #[error("template {present} has no matching {missing}")]
    Unpaired { present: String, missing: String },
    #[error("no templates (<name>.html.hbs + <name>.txt.hbs) in {0}")]
    Empty(String),
    /// An image setting that does not fit the templates (`templates.image_mode.x`, …).
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
}

/// A loaded set of templates, parsed once.
pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    /// Template name → the (HTML, text) files it came from, for error messages.
    names: BTreeMap<String, (String, String)>,
    cache: cache::Cache,
    images: Arc<ImageTable>,
    /// Templates whose HTML reads `photo`: only their renders look a photo up.
    photo_templates: BTreeSet<String>,
    photos: Arc<dyn PhotoSource>,
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
    /// Load every `<name>.html.hbs` + `<name>.txt.hbs` pair from `dir`; images from
    /// `dir/images`, all templates in `cid` mode.
    pub fn load(dir: &Path) -> Result<Self, RenderError> {
        Self::load_with(dir, &ImageOptions::default())
    }

    /// [`Templates::load`] with image settings.
    pub fn load_with(dir: &Path, opts: &ImageOptions) -> Result<Self, RenderError> {
        Self::load_overlaid(dir, opts, &BTreeMap::new())
    }

    /// [`Templates::load_with`], with the sources of the templates in `drafts` (name →
    /// (HTML, text)) taken from there instead of their files: the admin editor checks and
    /// previews a draft exactly as the folder would load once it is saved.
    pub fn load_overlaid(
        dir: &Path,
        opts: &ImageOptions,
        drafts: &BTreeMap<String, (String, String)>,
    ) -> Result<Self, RenderError> {
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
        if html.iter().all(|n| bottom_of(n).is_some()) {
            return Err(RenderError::Empty(dir.display().to_string()));
        }
        if let Some((n, main)) = html
            .iter()
            .find_map(|n| bottom_of(n).filter(|m| !html.contains(*m)).map(|m| (n, m)))
        {
            return Err(RenderError::Unpaired {
                present: shown(n, HTML_EXT),
                missing: shown(main, HTML_EXT),
            });
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
            let (html, text) = match drafts.get(&name) {
                Some((h, t)) => (
                    (shown(&name, HTML_EXT), h.clone()),
                    (shown(&name, TEXT_EXT), t.clone()),
                ),
                None => (read(shown(&name, HTML_EXT))?, read(shown(&name, TEXT_EXT))?),
            };
            pairs.push(Pair { html, text, name });
        }
        let images_dir = opts.dir.clone().unwrap_or_else(|| default_images_dir(dir));
        Self::build(pairs, opts, &images_dir)
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
        Self::build(
            pairs,
            &ImageOptions::default(),
            Path::new("templates/images"),
        )
        .expect("the embedded templates are valid")
    }

    /// Photos for `{{photo}}`, by the user's Graph id (none until this is called).
    pub fn with_photos(mut self, photos: Arc<dyn PhotoSource>) -> Self {
        self.photos = photos;
        self
    }

    fn build(
        pairs: Vec<Pair>,
        opts: &ImageOptions,
        images_dir: &Path,
    ) -> Result<Self, RenderError> {
        let mut html = Handlebars::new();
        let mut text = Handlebars::new();
        text.register_escape_fn(handlebars::no_escape);
        html.register_escape_fn(escape_html);
        for reg in [&mut html, &mut text] {
            reg.set_strict_mode(false);
            helpers::register(reg);
        }
        let mut names = BTreeMap::new();
        // A bottom part links its images as its template does.
        let mut opts = opts.clone();
        for pair in &pairs {
            let mode = bottom_of(&pair.name).and_then(|main| opts.modes.get(main).copied());
            if let Some(mode) = mode {
                opts.modes.entry(pair.name.clone()).or_insert(mode);
            }
        }
        let opts = &opts;
        for pair in pairs {
            register(&mut html, &pair.name, &pair.html)?;
            register(&mut text, &pair.name, &pair.text)?;
            names.insert(pair.name, (pair.html.0, pair.text.0));
        }
        let (table, photo_templates) = load_images(&html, &text, &names, opts, images_dir)?;
        let table = Arc::new(table);
        for (reg, is_html) in [(&mut html, true), (&mut text, false)] {
            let helper = ImageHelper {
                table: table.clone(),
                html: is_html,
            };
            reg.register_helper("image", Box::new(helper));
        }
        let t = Templates {
            html,
            text,
            names,
            cache: cache::Cache::default(),
            images: table,
            photo_templates,
            photos: Arc::new(NoPhotos),
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
            PHOTO: "cid:trial@sigstamp",
        });
        for data in [json!({}), full] {
            for (name, (html_file, text_file)) in &self.names {
                for (reg, file) in [(&self.html, html_file), (&self.text, text_file)] {
                    reg.render(name, &data).map_err(|e| RenderError::Syntax {
                        file: file.clone(),
                        line: e.line_no.unwrap_or(0),
                        column: e.column_no.unwrap_or(0),
                        message: e.reason().to_string(),
                    })?;
                }
            }
        }
        Ok(())
    }

    pub fn has(&self, name: &str) -> bool {
        bottom_of(name).is_none() && self.names.contains_key(name)
    }

    /// The template names, sorted (bottom parts are not templates of their own).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names
            .keys()
            .map(String::as_str)
            .filter(|n| bottom_of(n).is_none())
    }

    /// Whether template `name` has a bottom part.
    pub fn has_bottom(&self, name: &str) -> bool {
        self.has(name) && self.names.contains_key(&format!("{name}{BOTTOM}"))
    }

    /// Render the bottom part of template `name` for `user`; `None` when it has none.
    pub fn render_bottom(&self, name: &str, user: &User) -> Result<Option<Signature>, RenderError> {
        if !self.has_bottom(name) {
            return Ok(None);
        }
        self.render_part(&format!("{name}{BOTTOM}"), user).map(Some)
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
        self.render_part(name, user)
    }

    /// A main or a bottom part, by its key in the registries.
    fn render_part(&self, name: &str, user: &User) -> Result<Signature, RenderError> {
        let photo = if self.photo_templates.contains(name) {
            user.id().and_then(|id| self.photos.photo(id))
        } else {
            None
        };
        if let Some(sig) = self.cache.get(name, user, photo.as_ref()) {
            return Ok(sig);
        }
        let sig = self.render_uncached(name, user, photo.clone())?;
        self.cache.put(name, user, photo, &sig);
        Ok(sig)
    }

    fn render_uncached(
        &self,
        name: &str,
        user: &User,
        photo: Option<Arc<Photo>>,
    ) -> Result<Signature, RenderError> {
        let photo = photo.and_then(images::photo_image);
        // One conversion to handlebars' context serves both renders.
        let mut data = Value::Object(user.to_json());
        if let Value::Object(m) = &mut data {
            // `photo` is ours: the photo's `src`, or nothing (never a same-named attribute).
            match &photo {
                Some(p) => m.insert(PHOTO.into(), Value::String(format!("cid:{}", p.cid))),
                None => m.remove(PHOTO),
            };
        }
        let mut ctx = handlebars::Context::from(data);
        let fail = |e: handlebars::RenderError| RenderError::Template(e.to_string());
        let html = self.html.render_with_context(name, &ctx).map_err(fail)?;
        // Text signatures carry no images.
        if let Value::Object(m) = ctx.data_mut() {
            m.remove(PHOTO);
        }
        let mut text = self.text.render_with_context(name, &ctx).map_err(fail)?;
        let html = html.trim().to_string();
        text.truncate(text.trim_end().len());
        text.push('\n');
        let images = self.images.referenced(name, &html, photo.as_ref());
        Ok(Signature { html, text, images })
    }

    /// The template's image mode.
    pub fn image_mode(&self, name: &str) -> ImageMode {
        self.images.mode(name)
    }
}

/// HTML escaping of a value, with its line breaks (CRLF, LF, lone CR) as spaces: a
/// directory value is one piece of text in HTML, and a break in it could only end up as
/// a raw line break of the message.
fn escape_html(value: &str) -> String {
    let escaped = handlebars::html_escape(value);
    if !escaped.contains(['\r', '\n']) {
        return escaped;
    }
    escaped.replace("\r\n", " ").replace(['\r', '\n'], " ")
}

/// Find every `{{image}}` and `photo` in the parsed templates, load the images, check the
/// per-template modes. Errors name the template file and line, or the config key.
fn load_images(
    html: &Handlebars<'static>,
    text: &Handlebars<'static>,
    names: &BTreeMap<String, (String, String)>,
    opts: &ImageOptions,
    dir: &Path,
) -> Result<(ImageTable, BTreeSet<String>), RenderError> {
    for (name, mode) in &opts.modes {
        if !names.contains_key(name) {
            return Err(RenderError::Config {
                key: format!("templates.image_mode.{name}"),
                message: format!("there is no template named {name:?}"),
            });
        }
        if *mode == ImageMode::Url && opts.base_url.is_none() {
            return Err(RenderError::Config {
                key: "templates.image_url".into(),
                message: format!("required: template {name:?} links its images by URL"),
            });
        }
    }
    let mut images: HashMap<String, images::Loaded> = HashMap::new();
    let mut used = BTreeMap::new();
    let mut photo_templates = BTreeSet::new();
    for (name, (html_file, text_file)) in names {
        for (reg, file, is_html) in [(html, html_file, true), (text, text_file, false)] {
            let Some(t) = reg.get_template(name) else {
                continue;
            };
            let at = |line: usize, message: String| RenderError::Syntax {
                file: file.clone(),
                line,
                column: 0,
                message,
            };
            let mut scan = images::Scan::default();
            images::scan(t, &mut scan).map_err(|f| at(f.line, f.message))?;
            for (image, line) in &scan.images {
                if !images.contains_key(image) {
                    let loaded = images::load_image(dir, image, opts.base_url.as_deref())
                        .map_err(|m| at(*line, m))?;
                    images.insert(image.clone(), loaded);
                }
            }
            if is_html {
                used.insert(
                    name.clone(),
                    scan.images.into_iter().map(|(n, _)| n).collect(),
                );
                if scan.photo {
                    photo_templates.insert(name.clone());
                }
            }
        }
    }
    let table = ImageTable {
        images,
        modes: opts.modes.clone(),
        used,
    };
    Ok((table, photo_templates))
}

/// The HTML with each `cid:` image replaced by a `data:` URL, for showing a signature outside
/// a message (previews: a browser shows them as a mail client would, with no request
/// anywhere). Only plain `image/<subtype>` types are written into the URL; anything else (a
/// photo type from Graph is not ours to trust) stays a `cid:` reference.
pub fn preview_html(sig: &Signature) -> String {
    use base64::Engine;
    let mut html = sig.html.clone();
    for img in &sig.images {
        let safe_type = img.content_type.strip_prefix("image/").is_some_and(|sub| {
            !sub.is_empty()
                && sub
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
        });
        if !safe_type {
            continue;
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&*img.bytes);
        html = html.replace(
            &format!("cid:{}", img.cid),
            &format!("data:{};base64,{data}", img.content_type),
        );
    }
    html
}

/// Where `Templates::load` looks for images when no folder is configured.
pub fn default_images_dir(templates_dir: &Path) -> PathBuf {
    templates_dir.join("images")
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
            column: e.pos().map_or(0, |(_, column)| column),
            message: e.reason().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::preview_html;
    use crate::stamp::{InlineImage, Signature};

    fn preview(html: &str, images: Vec<InlineImage>) -> String {
        let mut sig = Signature::new(html.to_string(), String::new());
        sig.images = images;
        preview_html(&sig)
    }

    #[test]
    fn inline_images_become_data_uris() {
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        let img = |cid: &str, ct: &str| InlineImage {
            cid: cid.into(),
            content_type: ct.into(),
            filename: "logo.png".into(),
            bytes: png.clone().into(),
        };
        let html = r#"<img src="cid:a@sigstamp"> <img src="cid:b@sigstamp"> <img src="cid:c@x">"#;
        let out = preview(
            html,
            vec![
                img("a@sigstamp", "image/png"),
                img("b@sigstamp", "text/html"),
            ],
        );
        assert_eq!(
            out,
            r#"<img src="data:image/png;base64,iVBORw0KGgpyZXN0"> <img src="cid:b@sigstamp"> <img src="cid:c@x">"#,
            "only image types become data: URIs; unknown cids stay"
        );
        assert_eq!(
            preview(html, vec![img("a@sigstamp", "image/svg+xml\"><x")]),
            html
        );
    }

    #[test]
    fn line_breaks_in_values_are_spaces_in_html() {
        let table = [
            ("a\nb", "a b"),
            ("a\r\nb", "a b"),
            ("a\rb", "a b"),
            ("a\n.\nMAIL FROM:<x>", "a . MAIL FROM:&lt;x&gt;"),
            ("plain", "plain"),
        ];
        for (value, want) in table {
            assert_eq!(super::escape_html(value), want, "{value:?}");
        }
    }
}
