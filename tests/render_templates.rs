//! Templates: escaping, missing attributes, arrays, load errors with file:line, and the
//! shipped default rendering every example user.

use serde_json::{json, Value};
use sigstamp::directory::{file, User};
use sigstamp::render::{RenderError, Templates};
use std::path::Path;

fn user(v: Value) -> User {
    User::new(v.as_object().expect("an object").clone())
}

/// A template folder holding `default` with the given halves.
fn dir_with(html: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.html.hbs"), html).unwrap();
    std::fs::write(dir.path().join("default.txt.hbs"), text).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match Templates::load(dir) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn html_is_escaped_and_text_is_not() {
    let dir = dir_with("<b>{{displayName}}</b>", "{{displayName}}");
    let t = Templates::load(dir.path()).unwrap();
    let sig = t
        .render(
            "default",
            &user(json!({"displayName": r#"<i>"A&B" O'Neil</i>"#})),
        )
        .unwrap();
    assert_eq!(
        sig.html,
        "<b>&lt;i&gt;&quot;A&amp;B&quot; O&#x27;Neil&lt;/i&gt;</b>"
    );
    assert_eq!(sig.text, "<i>\"A&B\" O'Neil</i>\n");
}

#[test]
fn missing_attributes_are_easy_to_leave_out() {
    let html =
        "<p>{{displayName}}</p>{{#if mobilePhone}}<p>M {{mobilePhone}}</p>{{/if}}[{{faxNumber}}]";
    let text =
        "{{displayName}}\n{{#if mobilePhone}}\nM {{mobilePhone}}\n{{/if}}\n[{{faxNumber}}]\n";
    let dir = dir_with(html, text);
    let t = Templates::load(dir.path()).unwrap();

    let without = t
        .render(
            "default",
            &user(json!({"displayName": "Ann", "mobilePhone": null})),
        )
        .unwrap();
    assert_eq!(without.html, "<p>Ann</p>[]");
    assert_eq!(without.text, "Ann\n[]\n");

    let with = t
        .render(
            "default",
            &user(json!({"displayName": "Ann", "mobilePhone": "+1 555"})),
        )
        .unwrap();
    assert_eq!(with.html, "<p>Ann</p><p>M +1 555</p>[]");
    assert_eq!(with.text, "Ann\nM +1 555\n[]\n");
}

#[test]
fn arrays_and_helpers() {
    let tpl = "{{#each businessPhones}}<{{this}}>{{/each}}|{{first businessPhones}}|\
               {{join businessPhones mobilePhone sep=\"; \"}}|{{tel mobilePhone}}|\
               {{join postalCode city sep=\" \"}}|{{first mail}}";
    let dir = dir_with(tpl, tpl);
    let t = Templates::load(dir.path()).unwrap();
    let u = user(json!({
        "businessPhones": ["+49 30 1234-0", "+49 30 1234-9"],
        "mobilePhone": "+49 (151) 234 567",
        "city": "Berlin",
        "mail": "a@b.example",
    }));
    let sig = t.render("default", &u).unwrap();
    assert_eq!(
        sig.text,
        "<+49 30 1234-0><+49 30 1234-9>|+49 30 1234-0|+49 30 1234-0; +49 30 1234-9; \
         +49 (151) 234 567|+49151234567|Berlin|a@b.example\n"
    );
    // Empty and absent arrays render nothing and are falsy.
    let t2 = Templates::load(
        dir_with(
            "{{#if (first businessPhones)}}T{{/if}}{{#each businessPhones}}x{{/each}}[{{first businessPhones}}]",
            "-",
        )
        .path(),
    )
    .unwrap();
    for u in [json!({"businessPhones": []}), json!({})] {
        assert_eq!(t2.render("default", &user(u)).unwrap().html, "[]");
    }
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = dir_with(
        "<table>\n<tr>\n<td>{{displayName}}</td>\n{{#if mail}}\n{{mail}}\n{{/each}}\n</tr>\n",
        "{{displayName}}\n",
    );
    let err = load_err(dir.path());
    let file = dir.path().join("default.html.hbs").display().to_string();
    assert!(err.starts_with(&format!("{file}:6: ")), "{err}");

    let dir = dir_with("{{displayName}}", "-- \n{{displayName}}\n{{mail}\n");
    let err = load_err(dir.path());
    let file = dir.path().join("default.txt.hbs").display().to_string();
    assert!(err.starts_with(&format!("{file}:3: ")), "{err}");
}

#[test]
fn unknown_helper_is_reported_at_load_with_file_and_line() {
    let dir = dir_with("<p>\n{{#if jobTitle}}{{shout jobTitle}}{{/if}}</p>", "x");
    let err = load_err(dir.path());
    let file = dir.path().join("default.html.hbs").display().to_string();
    assert!(err.starts_with(&format!("{file}:2: ")), "{err}");
    assert!(err.contains("shout"), "{err}");
}

#[test]
fn pairs_are_required() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sales.html.hbs"), "x").unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("sales.txt.hbs"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README.md"), "not a template").unwrap();
    assert!(matches!(
        Templates::load(empty.path()),
        Err(RenderError::Empty(_))
    ));

    let missing = load_err(&empty.path().join("nope"));
    assert!(missing.contains("nope"), "{missing}");
}

#[test]
fn several_templates_and_names() {
    let dir = dir_with("D {{displayName}}", "d");
    std::fs::write(dir.path().join("sales.html.hbs"), "S {{displayName}}").unwrap();
    std::fs::write(dir.path().join("sales.txt.hbs"), "s\r\nline\r\n").unwrap();
    let t = Templates::load(dir.path()).unwrap();
    assert!(t.has("default") && t.has("sales") && !t.has("other"));
    assert_eq!(t.names().collect::<Vec<_>>(), ["default", "sales"]);
    let u = user(json!({"displayName": "Ann"}));
    let sig = t.render("sales", &u).unwrap();
    assert_eq!(sig.html, "S Ann");
    // CRLF in a template file comes out as LF: the core picks the message's line ending.
    assert_eq!(sig.text, "s\nline\n");
    assert!(matches!(
        t.render("other", &u),
        Err(RenderError::Missing(n)) if n == "other"
    ));
}

#[test]
fn embedded_default_renders_every_example_user() {
    let users = file::load(Path::new("examples/directory.json")).unwrap();
    assert!(users.len() >= 3);
    let t = Templates::embedded();
    assert!(t.has("default"));
    for u in &users {
        let name = u.str("displayName").unwrap();
        let sig = t.render("default", u).unwrap();
        assert!(sig.text.starts_with("-- \n"), "{name}: {:?}", sig.text);
        assert!(sig.text.contains(name), "{name}");
        assert!(sig.text.contains(u.str("mail").unwrap()), "{name}");
        assert!(sig.text.contains(u.str("jobTitle").unwrap()), "{name}");
        assert!(sig.html.starts_with("<table"), "{name}");
        assert!(sig.html.ends_with("</table>"), "{name}");
        assert!(sig.html.contains(&html_escape(name)), "{name}");
        assert!(sig
            .html
            .contains(&format!("mailto:{}", u.str("mail").unwrap())));
        // No external resources and no leftover template syntax.
        for bad in ["<img", "src=", "<link", "<style", "{{", "}}"] {
            assert!(!sig.html.contains(bad), "{name}: {bad}");
            assert!(!sig.text.contains(bad), "{name}: {bad}");
        }
        // No blank lines left behind by missing attributes.
        assert!(!sig.text.contains("\n\n"), "{name}: {:?}", sig.text);
        match u.str("mobilePhone") {
            Some(m) => assert!(sig.text.contains(&format!("M {m}\n")), "{name}"),
            None => assert!(!sig.text.contains("\nM "), "{name}"),
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

// ---- Images and photos -------------------------------------------------------------------

use sigstamp::config::Config;
use sigstamp::directory::photo::{Photo, PhotoSource};
use sigstamp::render::{preview_html, ImageMode, ImageOptions};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-not-a-real-png-but-sniffed-as-one";

/// Photos by Graph user id; replaceable, like a store that fetched a new one.
#[derive(Default)]
struct FakePhotos(Mutex<HashMap<String, Arc<Photo>>>);

impl FakePhotos {
    fn set(&self, id: &str, bytes: &[u8]) {
        let photo = Photo {
            content_type: "image/jpeg".into(),
            bytes: bytes.to_vec(),
        };
        self.0.lock().unwrap().insert(id.into(), Arc::new(photo));
    }
}

impl PhotoSource for FakePhotos {
    fn photo(&self, user_id: &str) -> Option<Arc<Photo>> {
        self.0.lock().unwrap().get(user_id).cloned()
    }
}

/// `default` with the given halves and `images/<name>` files beside it.
fn dir_with_images(html: &str, text: &str, images: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = dir_with(html, text);
    std::fs::create_dir(dir.path().join("images")).unwrap();
    for (name, bytes) in images {
        std::fs::write(dir.path().join("images").join(name), bytes).unwrap();
    }
    dir
}

fn cid_of(html: &str) -> &str {
    let start = html.find("cid:").expect("a cid: reference") + 4;
    let end = start + html[start..].find('"').unwrap();
    &html[start..end]
}

#[test]
fn image_helper_gives_a_cid_and_the_signature_carries_the_image() {
    let dir = dir_with_images(
        "<img src=\"{{image \"logo.png\"}}\" alt=\"Contoso\">{{#if mobilePhone}}<img src=\"{{image \"phone.gif\"}}\">{{/if}}",
        "{{displayName}}[{{image \"logo.png\"}}]",
        &[("logo.png", PNG), ("phone.gif", b"GIF89a-tiny")],
    );
    let t = Templates::load(dir.path()).unwrap();
    assert_eq!(t.image_mode("default"), ImageMode::Cid);
    let sig = t
        .render(
            "default",
            &user(json!({"mail": "a@x.example", "displayName": "Ann"})),
        )
        .unwrap();
    let cid = cid_of(&sig.html);
    assert!(cid.ends_with("@sigstamp"), "{cid}");
    assert_eq!(sig.html, format!("<img src=\"cid:{cid}\" alt=\"Contoso\">"));
    // Only the images the rendered HTML references; none in the text.
    assert_eq!(sig.images.len(), 1);
    let img = &sig.images[0];
    assert_eq!(
        (img.cid.as_str(), img.content_type.as_str()),
        (cid, "image/png")
    );
    assert_eq!((img.filename.as_str(), &*img.bytes), ("logo.png", PNG));
    assert_eq!(sig.text, "Ann[]\n");

    let with_phone = t
        .render(
            "default",
            &user(json!({"mail": "b@x.example", "mobilePhone": "1"})),
        )
        .unwrap();
    assert_eq!(with_phone.images.len(), 2);
    assert_eq!(with_phone.images[1].content_type, "image/gif");

    // The Content-ID comes from the content: loading again gives the same one.
    let again = Templates::load(dir.path()).unwrap();
    let sig2 = again
        .render(
            "default",
            &user(json!({"mail": "a@x.example", "displayName": "Ann"})),
        )
        .unwrap();
    assert_eq!(sig2, sig);
    // A preview shows the image without the message around it.
    let preview = preview_html(&sig);
    assert!(
        preview.starts_with("<img src=\"data:image/png;base64,iVBORw0KGgo"),
        "{preview}"
    );
}

#[test]
fn identical_files_share_one_image() {
    let dir = dir_with_images(
        "<img src=\"{{image \"a.png\"}}\"><img src=\"{{image \"b.png\"}}\">",
        "-",
        &[("a.png", PNG), ("b.png", PNG)],
    );
    let t = Templates::load(dir.path()).unwrap();
    let sig = t
        .render("default", &user(json!({"mail": "a@x.example"})))
        .unwrap();
    assert_eq!(sig.images.len(), 1);
}

#[test]
fn image_errors_name_the_template_file_line_and_image() {
    let file = |d: &tempfile::TempDir| d.path().join("default.html.hbs").display().to_string();
    // Missing file, inside a block that a trial render would not reach.
    let dir = dir_with_images(
        "<p>\n{{#if extensionAttribute9}}\n<img src=\"{{image \"nope.png\"}}\">{{/if}}</p>",
        "-",
        &[],
    );
    let err = load_err(dir.path());
    assert!(err.starts_with(&format!("{}:3: ", file(&dir))), "{err}");
    assert!(err.contains("\"nope.png\""), "{err}");

    for (tpl, want) in [
        ("\n{{image logoName}}", "takes one file name in quotes"),
        ("\n{{image \"../secret.png\"}}", "inside the images folder"),
        ("\n{{image \"/etc/passwd\"}}", "inside the images folder"),
        (
            "\n{{image \"notes.png\"}}",
            "not a PNG, JPEG, GIF, WebP or SVG",
        ),
    ] {
        let dir = dir_with_images(tpl, "-", &[("notes.png", b"just text")]);
        let err = load_err(dir.path());
        assert!(
            err.starts_with(&format!("{}:2: ", file(&dir))),
            "{tpl}: {err}"
        );
        assert!(err.contains(want), "{tpl}: {err}");
    }

    // The text half is checked too.
    let dir = dir_with_images("-", "a\nb\n{{image \"gone.png\"}}", &[]);
    let err = load_err(dir.path());
    let text_file = dir.path().join("default.txt.hbs").display().to_string();
    assert!(err.starts_with(&format!("{text_file}:3: ")), "{err}");

    // Too large for a signature.
    let mut big = PNG.to_vec();
    big.resize(sigstamp::render::MAX_IMAGE_BYTES + 1, 0);
    let dir = dir_with_images("{{image \"big.png\"}}", "-", &[("big.png", &big)]);
    assert!(load_err(dir.path()).contains("limited to"));
}

#[test]
fn url_mode_links_images_under_the_base_url() {
    let dir = dir_with_images(
        "<img src=\"{{image \"brand logo.png\"}}\">{{#if photo}}<img src=\"{{photo}}\">{{/if}}",
        "-",
        &[("brand logo.png", PNG)],
    );
    std::fs::write(
        dir.path().join("sales.html.hbs"),
        "<img src=\"{{image \"brand logo.png\"}}\">",
    )
    .unwrap();
    std::fs::write(dir.path().join("sales.txt.hbs"), "-").unwrap();
    let opts = ImageOptions {
        dir: None,
        base_url: Some("https://cdn.contoso.example/sig".into()),
        modes: BTreeMap::from([("default".to_string(), ImageMode::Url)]),
    };
    let photos = Arc::new(FakePhotos::default());
    photos.set("u1", b"\xFF\xD8\xFFjpeg");
    let t = Templates::load_with(dir.path(), &opts)
        .unwrap()
        .with_photos(photos.clone());
    let u = user(json!({"id": "u1", "mail": "a@x.example"}));
    let sig = t.render("default", &u).unwrap();
    // The image by URL; the photo has no public URL, so it stays an inline part.
    assert!(
        sig.html
            .starts_with("<img src=\"https://cdn.contoso.example/sig/brand%20logo.png\">"),
        "{}",
        sig.html
    );
    assert_eq!(sig.images.len(), 1);
    assert_eq!(sig.images[0].filename, "photo.jpg");
    // Other templates keep the default, cid.
    let sales = t.render("sales", &u).unwrap();
    assert!(sales.html.contains("cid:"), "{}", sales.html);
    assert_eq!(sales.images.len(), 1);

    // Url mode without a base URL, or a mode for a template that does not exist.
    let no_url = ImageOptions {
        base_url: None,
        ..opts.clone()
    };
    let err = Templates::load_with(dir.path(), &no_url)
        .unwrap_err()
        .to_string();
    assert!(err.contains("templates.image_url"), "{err}");
    let unknown = ImageOptions {
        modes: BTreeMap::from([("marketing".to_string(), ImageMode::Cid)]),
        ..opts
    };
    let err = Templates::load_with(dir.path(), &unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("templates.image_mode.marketing"), "{err}");
}

#[test]
fn images_folder_can_live_elsewhere() {
    let dir = dir_with("<img src=\"{{image \"logo.png\"}}\">", "-");
    let images = tempfile::tempdir().unwrap();
    std::fs::write(images.path().join("logo.png"), PNG).unwrap();
    assert!(load_err(dir.path()).contains("logo.png"));
    let opts = ImageOptions {
        dir: Some(images.path().to_path_buf()),
        ..ImageOptions::default()
    };
    let t = Templates::load_with(dir.path(), &opts).unwrap();
    let sig = t
        .render("default", &user(json!({"mail": "a@x.example"})))
        .unwrap();
    assert_eq!(sig.images.len(), 1);
}

#[test]
fn photo_is_there_when_the_user_has_one() {
    let dir = dir_with(
        "{{#if photo}}<img src=\"{{photo}}\" width=\"64\">{{else}}<span>no photo</span>{{/if}}",
        "{{displayName}}[{{photo}}]",
    );
    let photos = Arc::new(FakePhotos::default());
    photos.set("id-ann", b"\xFF\xD8\xFFann-v1");
    let t = Templates::load(dir.path())
        .unwrap()
        .with_photos(photos.clone());

    // A user attribute named `photo` does not pose as one.
    let bob = user(json!({"id": "id-bob", "mail": "bob@x.example", "photo": "http://evil/"}));
    let sig = t.render("default", &bob).unwrap();
    assert_eq!(sig.html, "<span>no photo</span>");
    assert!(sig.images.is_empty());

    let ann = user(json!({"id": "id-ann", "mail": "ann@x.example", "displayName": "Ann"}));
    let first = t.render("default", &ann).unwrap();
    let cid = cid_of(&first.html).to_string();
    assert_eq!(first.html, format!("<img src=\"cid:{cid}\" width=\"64\">"));
    assert_eq!(first.images.len(), 1);
    assert_eq!(&*first.images[0].bytes, b"\xFF\xD8\xFFann-v1");
    assert_eq!(first.images[0].content_type, "image/jpeg");
    // Text signatures carry no images.
    assert_eq!(first.text, "Ann[]\n");

    // A new photo is picked up at once, although the attributes (the cache key) are the same.
    photos.set("id-ann", b"\xFF\xD8\xFFann-v2");
    let second = t.render("default", &ann).unwrap();
    assert_ne!(cid_of(&second.html), cid);
    assert_eq!(&*second.images[0].bytes, b"\xFF\xD8\xFFann-v2");

    // Without a photo source (or for a user without an id) there is simply none.
    let plain = Templates::load(dir.path()).unwrap();
    assert_eq!(
        plain.render("default", &ann).unwrap().html,
        "<span>no photo</span>"
    );
}

#[test]
fn image_config_keys_are_validated_at_start() {
    let ok = Config::parse(
        "[templates]\nimages = \"img\"\nimage_url = \"https://cdn.example/sig/\"\n\
         [templates.image_mode]\nsales = \"url\"\ndefault = \"cid\"\n",
    )
    .unwrap();
    let opts = ok.templates.image_options();
    assert_eq!(opts.modes["sales"], ImageMode::Url);
    assert_eq!(opts.dir.as_deref(), Some(Path::new("img")));

    let err = Config::parse("[templates.image_mode]\nsales = \"url\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("templates.image_url"), "{err}");
    let err = Config::parse("[templates]\nimage_url = \"ftp://x/\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("templates.image_url"), "{err}");
    let err = Config::parse("[templates.image_mode]\nsales = \"inline\"\n")
        .unwrap_err()
        .to_string();
    // toml's error shows the line (`sales = "inline"`) and what is allowed.
    assert!(
        err.contains("sales = \"inline\"") && err.contains("`cid` or `url`"),
        "{err}"
    );
}

/// The image keys shown (commented out) in sigstamp.example.toml parse and validate.
#[test]
fn example_config_image_keys_are_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sigstamp.example.toml"
    ))
    .unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| {
            let keys = [
                "# images =",
                "# image_url =",
                "# [templates.image_mode]",
                "# marketing =",
            ];
            if keys.iter().any(|k| l.starts_with(k)) {
                &l[2..]
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let value: toml::Table = toml::from_str(&uncommented).unwrap();
    let templates: sigstamp::config::TemplatesConfig =
        value["templates"].clone().try_into().unwrap();
    templates.validate().unwrap();
    let opts = templates.image_options();
    assert_eq!(opts.modes["marketing"], ImageMode::Url);
    assert!(opts.base_url.unwrap().starts_with("https://"));
}

/// `<name>.bottom.*.hbs`: the second part of template `<name>`, rendered apart, never a
/// template of its own; its images link as its template's do.
#[test]
fn bottom_parts() {
    let dir = dir_with_images("D {{displayName}}", "d", &[("banner.png", PNG)]);
    let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
    write(
        "default.bottom.html.hbs",
        "<p>{{companyName}} legal <img src=\"{{image \"banner.png\"}}\"></p>",
    );
    write("default.bottom.txt.hbs", "{{companyName}} legal\r\n");
    write("short.html.hbs", "S");
    write("short.txt.hbs", "s");
    let opts = ImageOptions {
        dir: None,
        base_url: Some("https://cdn.contoso.example/sig".into()),
        modes: BTreeMap::from([("default".to_string(), ImageMode::Url)]),
    };
    let t = Templates::load_with(dir.path(), &opts).unwrap();
    assert_eq!(t.names().collect::<Vec<_>>(), ["default", "short"]);
    assert!(t.has("default") && !t.has("default.bottom"));
    assert!(t.has_bottom("default") && !t.has_bottom("short") && !t.has_bottom("nope"));
    let u = user(json!({"displayName": "Ann", "companyName": "Contoso"}));
    let b = t
        .render_bottom("default", &u)
        .unwrap()
        .expect("a bottom part");
    assert_eq!(
        b.html,
        "<p>Contoso legal <img src=\"https://cdn.contoso.example/sig/banner.png\"></p>"
    );
    assert_eq!(b.text, "Contoso legal\n");
    assert!(b.images.is_empty(), "url mode, as its template");
    assert_eq!(t.render("default", &u).unwrap().html, "D Ann");
    assert!(t.render_bottom("short", &u).unwrap().is_none());
    assert!(matches!(
        t.render("default.bottom", &u),
        Err(RenderError::Missing(_))
    ));
    // A rule cannot name a bottom part as its template.
    let rules = sigstamp::rules::RuleSet::compile(
        &[sigstamp::rules::RuleConfig {
            template: Some("default.bottom".into()),
            ..Default::default()
        }],
        &Default::default(),
    )
    .unwrap();
    let err = rules
        .check_templates("default", |n| t.has(n))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rules[1].template") && err.contains("default.bottom"),
        "{err}"
    );

    // In cid mode the bottom part carries its image.
    let t = Templates::load(dir.path()).unwrap();
    let b = t.render_bottom("default", &u).unwrap().unwrap();
    assert_eq!(b.images.len(), 1);
    assert!(
        b.html.contains(&format!("cid:{}", b.images[0].cid)),
        "{}",
        b.html
    );

    // A bottom part needs its template, and both halves.
    write("sales.bottom.html.hbs", "x");
    write("sales.bottom.txt.hbs", "x");
    let err = load_err(dir.path());
    assert!(
        err.contains("sales.bottom.html.hbs") && err.contains("sales.html.hbs"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("sales.bottom.txt.hbs")).unwrap();
    write("sales.html.hbs", "S");
    write("sales.txt.hbs", "s");
    let err = load_err(dir.path());
    assert!(err.contains("sales.bottom.txt.hbs"), "{err}");
    // Bottom parts alone are no templates.
    let only = tempfile::tempdir().unwrap();
    std::fs::write(only.path().join("x.bottom.html.hbs"), "x").unwrap();
    std::fs::write(only.path().join("x.bottom.txt.hbs"), "x").unwrap();
    assert!(matches!(
        Templates::load(only.path()),
        Err(RenderError::Empty(_))
    ));
}
