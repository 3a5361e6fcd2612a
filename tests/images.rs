//! Signatures with inline images: the stamped HTML ends up in a multipart/related with the
//! image parts, every other byte keeps the core's guarantees. Checked by our own checks over
//! the golden fixtures and the corpus, and by Python's email package (tests/check_related.py).

mod support;

use sigstamp::stamp::{self, ImagesDropped, InlineImage, Options, Skip};
use std::path::{Path, PathBuf};
use support::images::{check_images, image_signature, LOGO_CID, PNG};
use support::{corpus_dir, crlf, test_signature, MARKER};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The image fixtures that get images (not the skipped or text-only ones).
fn image_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.contains("-img-") && n.ends_with(".eml") && !n.contains(".expected.")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let Some(dir) = corpus_dir() else {
        return Vec::new();
    };
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Images never change what gets stamped: same outcome and same parts as without images;
/// whenever the HTML is stamped, the images are there, and the checks hold.
#[test]
fn corpus_and_fixtures_with_images_keep_the_guarantees() {
    let with = image_signature(MARKER);
    let without = test_signature();
    let opts = Options::default();
    let mut messages = corpus();
    for (name, raw) in image_fixtures() {
        messages.push((format!("{name} (CRLF)"), crlf(&raw)));
        messages.push((name, raw));
    }
    let mut failures = Vec::new();
    let mut with_images = 0;
    for (name, raw) in &messages {
        let a = stamp::stamp(raw, &without, &opts);
        let b = stamp::stamp(raw, &with, &opts);
        match (&a, &b) {
            (Err(x), Err(y)) if x == y => continue,
            (Ok(x), Ok(y)) if (x.html_parts, x.text_parts) == (y.html_parts, y.text_parts) => {
                if y.html_parts == 0 {
                    if y.images != 0 {
                        failures.push(format!("{name}: images without an HTML part"));
                    }
                    continue;
                }
                if y.images != 2 || y.images_dropped.is_some() {
                    failures.push(format!(
                        "{name}: {} images, dropped {:?}",
                        y.images, y.images_dropped
                    ));
                    continue;
                }
                with_images += 1;
                if let Err(e) = check_images(raw, &y.message, &with, MARKER) {
                    failures.push(format!("{name}: {e}"));
                }
                if stamp::stamp(&y.message, &with, &opts) != Err(Skip::AlreadyStamped) {
                    failures.push(format!("{name}: stamped twice"));
                }
            }
            _ => failures.push(format!("{name}: without images {a:?}, with {b:?}")),
        }
    }
    assert!(with_images >= 5, "only {with_images} messages got images");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checks above can fail: a stamped message with its image part taken out, or with the
/// image's bytes changed, is caught.
#[test]
fn the_image_check_catches_missing_and_damaged_images() {
    let raw = std::fs::read(fixtures_dir().join("44-img-alternative.eml")).unwrap();
    let sig = image_signature(MARKER);
    let out = stamp::stamp(&raw, &sig, &Options::default())
        .unwrap()
        .message;
    check_images(&raw, &out, &sig, MARKER).unwrap();
    let text = String::from_utf8(out).unwrap();
    let logo = format!("Content-ID: <{LOGO_CID}>");
    let damaged = text.replacen(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ",
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSK",
        1,
    );
    assert!(check_images(&raw, damaged.as_bytes(), &sig, MARKER).is_err());
    let renamed = text.replacen(&logo, "Content-ID: <other@x>", 1);
    assert!(check_images(&raw, renamed.as_bytes(), &sig, MARKER).is_err());
}

/// The new boundary avoids whatever the content holds, and the enclosing boundaries.
#[test]
fn wrapping_picks_a_boundary_the_content_does_not_hold() {
    let raw = b"From: a@contoso.com\nMIME-Version: 1.0\n\
        Content-Type: multipart/alternative; boundary=\"=_sigstamp_rel\"\n\n\
        --=_sigstamp_rel\nContent-Type: text/plain\n\ntext\n\
        --=_sigstamp_rel\nContent-Type: text/html\n\n\
        <p>--=_sigstamp_rel_0 and _=sigstamp_rel_0</p>\n--=_sigstamp_rel--\n";
    let sig = image_signature(MARKER);
    let s = stamp::stamp(raw, &sig, &Options::default()).unwrap();
    let out = String::from_utf8(s.message.clone()).unwrap();
    // `=_sigstamp_rel_0` is in the HTML and `_=sigstamp_rel_0` too; the next family's first.
    assert!(out.contains("boundary=\"sigstamp=_rel_0\""), "{out}");
    check_images(raw, &s.message, &sig, MARKER).unwrap();
}

/// Bad image metadata leaves the images out, never the signature.
#[test]
fn invalid_images_are_dropped_not_the_signature() {
    let raw = std::fs::read(fixtures_dir().join("47-img-mixed-html-attachment.eml")).unwrap();
    let mut sig = image_signature(MARKER);
    sig.images.push(InlineImage {
        cid: "bad cid\r\nBcc: x@y".into(),
        content_type: "image/png".into(),
        filename: "x.png".into(),
        bytes: PNG.to_vec().into(),
    });
    let s = stamp::stamp(&raw, &sig, &Options::default()).unwrap();
    assert_eq!(s.images_dropped, Some(ImagesDropped::InvalidImage));
    assert_eq!((s.html_parts, s.images), (1, 0));
    let plain = stamp::stamp(&raw, &sig_without_images(&sig), &Options::default()).unwrap();
    assert_eq!(s.message, plain.message);
}

fn sig_without_images(sig: &stamp::Signature) -> stamp::Signature {
    stamp::Signature::new(sig.html.clone(), sig.text.clone())
}

/// Without images the output is what it always was (the golden fixtures hold the bytes);
/// with them, a text-only message is stamped exactly as without.
#[test]
fn text_only_messages_never_get_images() {
    let raw = std::fs::read(fixtures_dir().join("49-img-text-only.eml")).unwrap();
    let sig = image_signature(MARKER);
    let s = stamp::stamp(&raw, &sig, &Options::default()).unwrap();
    assert_eq!((s.text_parts, s.html_parts, s.images), (1, 0, 0));
    let plain = stamp::stamp(&raw, &sig_without_images(&sig), &Options::default()).unwrap();
    assert_eq!(s.message, plain.message);
}

/// Python's email package parses every stamped message and finds the images where the HTML
/// points (see tests/check_related.py).
#[test]
fn python_email_package_resolves_the_images() {
    if !sigstamp_testkit::require_tool("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sig = image_signature(MARKER);
    let mut images = Vec::new();
    for img in &sig.images {
        let path = dir.path().join(&img.filename);
        std::fs::write(&path, &*img.bytes).unwrap();
        images.push(serde_json::json!({
            "cid": img.cid, "content_type": img.content_type, "path": path,
        }));
    }
    let mut messages = corpus();
    for (name, raw) in image_fixtures() {
        messages.push((format!("crlf-{name}"), crlf(&raw)));
        messages.push((name, raw));
    }
    let mut cases = Vec::new();
    for (i, (name, raw)) in messages.iter().enumerate() {
        let Ok(s) = stamp::stamp(raw, &sig, &Options::default()) else {
            continue;
        };
        if s.images == 0 {
            continue;
        }
        let original = dir.path().join(format!("{i}.eml"));
        let stamped = dir.path().join(format!("{i}.stamped.eml"));
        std::fs::write(&original, raw).unwrap();
        std::fs::write(&stamped, &s.message).unwrap();
        cases.push(serde_json::json!({
            "name": name, "original": original, "stamped": stamped,
            "marker": MARKER, "images": images,
        }));
    }
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_related.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&manifest)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    let skipped = report.matches(": skipped,").count();
    assert!(skipped <= 2, "{report}");
    let checked = cases.len() - skipped;
    assert!(report.contains(&format!("checked {checked} messages, 0 failed")));
}

/// The example template set (a logo, and the photo when there is one) renders for every
/// example user and stamps the sample reply with its logo inline.
#[test]
fn example_templates_with_images_stamp_the_logo() {
    use sigstamp::directory::file;
    use sigstamp::directory::photo::{Photo, PhotoSource};
    use sigstamp::render::Templates;
    use std::sync::Arc;

    struct OnePhoto;
    impl PhotoSource for OnePhoto {
        fn photo(&self, _: &str) -> Option<Arc<Photo>> {
            Some(Arc::new(Photo {
                content_type: "image/jpeg".into(),
                bytes: support::images::photo_bytes(),
            }))
        }
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let users = file::load(&root.join("examples/directory.json")).unwrap();
    let t = Templates::load(&root.join("examples/templates-with-images")).unwrap();
    let raw = std::fs::read(root.join("examples/reply-gmail.eml")).unwrap();
    for u in &users {
        let sig = t.render("default", u).unwrap();
        let logo = sig.images.iter().find(|i| i.filename == "logo.png");
        if u.str("companyName").is_some() {
            let logo = logo.expect("the logo");
            assert_eq!(logo.content_type, "image/png");
            assert!(!sig.text.contains("cid:"));
        }
    }
    let jose = users
        .iter()
        .find(|u| u.str("mail") == Some("jose.mueller@lumen-optics.example"))
        .unwrap();
    let t = t.with_photos(Arc::new(OnePhoto));
    let sig = t.render("default", jose).unwrap();
    assert_eq!(sig.images.len(), 2, "logo and photo");
    let s = stamp::stamp(&raw, &sig, &Options::default()).unwrap();
    assert_eq!((s.html_parts, s.text_parts, s.images), (1, 1, 2));
    let marker = format!("cid:{}", sig.images[0].cid);
    check_images(&raw, &s.message, &sig, &marker).unwrap();
}

/// Through the pipeline every edge calls: the example templates' logo reaches the message.
#[test]
fn the_pipeline_carries_the_images() {
    use sigstamp::directory::{file, Directory, Source};
    use sigstamp::pipeline::{Envelope, Stamper, Verdict};
    use sigstamp::render::Templates;
    use std::sync::Arc;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let directory = Arc::new(Directory::new());
    directory.replace_users(
        file::load(&root.join("examples/directory.json")).unwrap(),
        Source::File,
    );
    let templates = Templates::load(&root.join("examples/templates-with-images")).unwrap();
    let stamper = Stamper::new(directory, templates);
    let raw = std::fs::read(root.join("examples/reply-gmail.eml")).unwrap();
    let rcpt = ["zoe.obrien@lumen-optics.example".to_string()];
    let env = Envelope {
        mail_from: Some("jose.mueller@lumen-optics.example"),
        rcpt_to: &rcpt,
    };
    let Verdict::Stamped { message, .. } = stamper.process(&raw, &env) else {
        panic!("not stamped");
    };
    let text = String::from_utf8_lossy(&message);
    assert!(text.contains("Content-Type: multipart/related; type=\"text/html\";"));
    assert!(text.contains("Content-Disposition: inline; filename=\"logo.png\""));
}
