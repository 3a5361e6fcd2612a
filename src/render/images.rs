//! Images in templates: `{{image "logo.png"}}` from the images folder, and the sender's photo
//! as the `photo` value.
//!
//! Image files are read once, at load: each `{{image "…"}}` of every template is found in the
//! parsed template (so a missing file is reported with its template file and line), its type
//! is sniffed from its first bytes, and its Content-ID is a hash of its content — stable across
//! restarts and shared by identical files, which keeps the render cache and the recipients'
//! clients happy. Per template, images are either inline parts (`cid`, the default) or links
//! under a base URL (`url`). The helper writes the value for `src`: `cid:<hash>@sigstamp` or
//! the URL. In the text template it writes nothing: text signatures carry no images.

use crate::directory::photo::Photo;
use crate::stamp::{ImageBytes, InlineImage, CID_DOMAIN};
use handlebars::template::{Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, Output, RenderContext, RenderErrorReason, Template,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Larger images are refused at load: a signature image travels with every message.
pub const MAX_IMAGE_BYTES: usize = 1024 * 1024;

/// The value name under which templates find the sender's photo.
pub const PHOTO: &str = "photo";

pub use crate::config::ImageMode;

/// Image settings of a template set (`[templates]` in the config).
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// The images folder; `None`: `images/` inside the template folder.
    pub dir: Option<PathBuf>,
    /// Where the images folder is published, for templates in `url` mode.
    pub base_url: Option<String>,
    /// Template name → mode; templates not named use `cid`.
    pub modes: BTreeMap<String, ImageMode>,
}

impl crate::config::TemplatesConfig {
    /// What `Templates::load_with` needs.
    pub fn image_options(&self) -> ImageOptions {
        ImageOptions {
            dir: self.images.clone(),
            base_url: self.image_url.clone(),
            modes: self.image_mode.clone(),
        }
    }
}

/// One image file, loaded.
#[derive(Debug, Clone)]
pub(super) struct Loaded {
    pub image: InlineImage,
    /// The link used in `url` mode.
    pub url: Option<String>,
}

/// Every image the templates reference, and each template's mode. Shared by the `image`
/// helper and the renderer.
#[derive(Debug, Default)]
pub(super) struct ImageTable {
    /// By the name written in the template.
    pub images: HashMap<String, Loaded>,
    pub modes: BTreeMap<String, ImageMode>,
    /// Template name → the image names its HTML half references, in order.
    pub used: BTreeMap<String, Vec<String>>,
}

impl ImageTable {
    pub fn mode(&self, template: &str) -> ImageMode {
        self.modes.get(template).copied().unwrap_or_default()
    }

    /// The images the rendered HTML of `template` actually references, photo included.
    pub fn referenced(
        &self,
        template: &str,
        html: &str,
        photo: Option<&InlineImage>,
    ) -> Vec<InlineImage> {
        let mut out: Vec<InlineImage> = Vec::new();
        let mut push = |img: &InlineImage| {
            if !out.iter().any(|i| i.cid == img.cid) && html.contains(&format!("cid:{}", img.cid)) {
                out.push(img.clone());
            }
        };
        if self.mode(template) == ImageMode::Cid {
            for name in self.used.get(template).into_iter().flatten() {
                if let Some(l) = self.images.get(name) {
                    push(&l.image);
                }
            }
        }
        if let Some(p) = photo {
            push(p);
        }
        out
    }
}

/// A problem found in a template, with the line it is on.
pub(super) struct Found {
    pub line: usize,
    pub message: String,
}

/// What a scan of one parsed template found.
#[derive(Default)]
pub(super) struct Scan {
    /// `{{image "name"}}` references with their lines.
    pub images: Vec<(String, usize)>,
    /// Whether the template reads `photo`.
    pub photo: bool,
}

/// Walk a parsed template (and its blocks) for `image` calls and `photo` reads.
pub(super) fn scan(t: &Template, out: &mut Scan) -> Result<(), Found> {
    for (i, e) in t.elements.iter().enumerate() {
        let line = t.mapping.get(i).map_or(0, |m| m.0);
        match e {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => {
                call(&h.name, &h.params, line, out)?;
                for p in h.hash.values() {
                    param(p, line, out)?;
                }
                for sub in [&h.template, &h.inverse].into_iter().flatten() {
                    scan(sub, out)?;
                }
            }
            TemplateElement::DecoratorBlock(d) | TemplateElement::PartialBlock(d) => {
                if let Some(sub) = &d.template {
                    scan(sub, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn call(name: &Parameter, params: &[Parameter], line: usize, out: &mut Scan) -> Result<(), Found> {
    let helper = match name {
        Parameter::Name(n) => Some(n.as_str()),
        Parameter::Path(handlebars::Path::Relative((_, raw))) => Some(raw.as_str()),
        _ => None,
    };
    if helper == Some("image") {
        match params {
            [Parameter::Literal(serde_json::Value::String(file))] => {
                out.images.push((file.clone(), line));
            }
            _ => {
                return Err(Found {
                    line,
                    message: "{{image}} takes one file name in quotes, e.g. {{image \"logo.png\"}}"
                        .into(),
                })
            }
        }
    }
    if helper.is_some_and(is_photo) {
        out.photo = true;
    }
    params.iter().try_for_each(|p| param(p, line, out))
}

fn param(p: &Parameter, line: usize, out: &mut Scan) -> Result<(), Found> {
    match p {
        Parameter::Path(handlebars::Path::Relative((_, raw))) if is_photo(raw) => {
            out.photo = true;
            Ok(())
        }
        Parameter::Subexpression(s) => match s.as_element() {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                call(&h.name, &h.params, line, out)
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn is_photo(path: &str) -> bool {
    let p = path.trim_start_matches("this.").trim_start_matches("./");
    p == PHOTO || p.starts_with("photo.")
}

/// Read and check one image named in a template.
pub(super) fn load_image(dir: &Path, name: &str, base_url: Option<&str>) -> Result<Loaded, String> {
    let rel = Path::new(name);
    let plain = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "image {name:?}: give a file name inside the images folder (no \"..\", not absolute)"
        ));
    }
    let path = dir.join(rel);
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("image {name:?}: cannot read {}: {e}", path.display()))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "image {name:?} is {} bytes; signature images are limited to {MAX_IMAGE_BYTES} \
             (it goes into every message)",
            bytes.len()
        ));
    }
    let content_type = sniff(&bytes, name).ok_or_else(|| {
        format!(
            "image {name:?} ({}) is not a PNG, JPEG, GIF, WebP or SVG image",
            path.display()
        )
    })?;
    let filename = rel
        .file_name()
        .map_or_else(|| name.to_string(), |f| f.to_string_lossy().into_owned());
    Ok(Loaded {
        image: InlineImage {
            cid: cid_for(&bytes),
            content_type: content_type.into(),
            filename,
            bytes: bytes.into(),
        },
        url: base_url.map(|b| url_for(b, name)),
    })
}

/// The content type from the first bytes (SVG, being text, by its name and an `<svg` tag).
pub(super) fn sniff(bytes: &[u8], name: &str) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xFF\xD8\xFF") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if name.to_ascii_lowercase().ends_with(".svg")
        && memchr::memmem::find(&bytes[..bytes.len().min(4096)], b"<svg").is_some()
    {
        Some("image/svg+xml")
    } else {
        None
    }
}

/// A Content-ID from the content: the same bytes always get the same one.
pub(super) fn cid_for(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}@{CID_DOMAIN}")
}

/// `base` + the name, each path segment percent-encoded.
pub(super) fn url_for(base: &str, name: &str) -> String {
    let mut url = base.to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    let segments: Vec<String> = name
        .split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        })
        .collect();
    url.push_str(&segments.join("/"));
    url
}

/// The user's photo as an inline image; `None` when it is not an image.
pub(super) fn photo_image(photo: Arc<Photo>) -> Option<InlineImage> {
    let declared = photo
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let content_type = match sniff(&photo.bytes, "") {
        Some(t) => t.to_string(),
        // Graph serves JPEG almost always; trust a declared image type sniffing cannot name.
        None if declared.starts_with("image/") && !declared.contains(['\r', '\n', ' ']) => declared,
        None => return None,
    };
    let ext = match content_type.as_str() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => "img",
    };
    Some(InlineImage {
        cid: cid_for(&photo.bytes),
        content_type,
        filename: format!("photo.{ext}"),
        bytes: ImageBytes::shared(Arc::new(PhotoBytes(photo))),
    })
}

/// A photo's bytes, shared with the photo store instead of copied.
struct PhotoBytes(Arc<Photo>);

impl AsRef<[u8]> for PhotoBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// `{{image "name"}}`: the `src` value for the image in the template being rendered.
pub(super) struct ImageHelper {
    pub table: Arc<ImageTable>,
    /// The text registry's helper writes nothing.
    pub html: bool,
}

impl HelperDef for ImageHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> handlebars::HelperResult {
        let name = h.param(0).and_then(|p| p.value().as_str()).ok_or_else(|| {
            RenderErrorReason::ParamTypeMismatchForName("image", "0".into(), "string".into())
        })?;
        if !self.html {
            return Ok(());
        }
        // Every literal name was loaded with the templates; anything else is a defect.
        let loaded =
            self.table.images.get(name).ok_or_else(|| {
                RenderErrorReason::Other(format!("image {name:?} was not loaded"))
            })?;
        let template = rc.get_root_template_name().map_or("", String::as_str);
        let src = match (self.table.mode(template), &loaded.url) {
            (ImageMode::Url, Some(url)) => url.clone(),
            _ => format!("cid:{}", loaded.image.cid),
        };
        out.write(&handlebars::html_escape(&src))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest", "x"), Some("image/png"));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0", "x"), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a..", "x"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", "x"), Some("image/webp"));
        assert_eq!(
            sniff(b"<?xml?><svg xmlns=''/>", "a.SVG"),
            Some("image/svg+xml")
        );
        assert_eq!(sniff(b"<svg/>", "a.png"), None);
        assert_eq!(sniff(b"%PDF-1.7", "a.png"), None);
    }

    #[test]
    fn cids_are_stable_per_content() {
        assert_eq!(cid_for(b"abc"), cid_for(b"abc"));
        assert_ne!(cid_for(b"abc"), cid_for(b"abd"));
        assert!(cid_for(b"abc").ends_with("@sigstamp"));
        assert_eq!(cid_for(b"abc").len(), 32 + 1 + CID_DOMAIN.len());
    }

    #[test]
    fn urls() {
        assert_eq!(
            url_for("https://x.example/sig", "logo.png"),
            "https://x.example/sig/logo.png"
        );
        assert_eq!(
            url_for("https://x.example/sig/", "brand/new logo&.png"),
            "https://x.example/sig/brand/new%20logo%26.png"
        );
    }

    #[test]
    fn photos_are_sniffed_or_trusted_when_declared_an_image() {
        let p = |ct: &str, b: &[u8]| {
            photo_image(Arc::new(Photo {
                content_type: ct.into(),
                bytes: b.to_vec(),
            }))
        };
        let jpeg = p("image/jpeg", b"\xFF\xD8\xFFdata").unwrap();
        assert_eq!(
            (jpeg.content_type.as_str(), jpeg.filename.as_str()),
            ("image/jpeg", "photo.jpg")
        );
        assert_eq!(&*jpeg.bytes, b"\xFF\xD8\xFFdata");
        assert_eq!(p("image/bmp", b"BMdata").unwrap().content_type, "image/bmp");
        assert!(p("text/html", b"<html>").is_none());
    }
}
