//! Golden fixtures: each `tests/fixtures/NN-name.eml` beside its expected output,
//! `NN-name.expected.eml` (stamped) or `NN-name.expected.txt` (`unchanged: <reason>`).
//! Fixtures are written with LF; every one is also run as CRLF (each LF of input and expected
//! output turned into CRLF), so both line-ending variants are held to the same bytes.
//! `SIGSTAMP_BLESS=1 cargo test --test golden` rewrites the expected files (review the diff!).
//! Fixtures named `NN-img-*` are stamped with a signature carrying two inline images
//! (`support::images::image_signature`), the others with a plain one.

mod support;

use sigstamp::stamp::{self, Options, Signature};
use std::path::{Path, PathBuf};

fn signature() -> Signature {
    Signature {
        html: "<div class=\"signature\">José Müller · Contoso</div>".into(),
        text: "-- \nJosé Müller\nContoso · Sales\n+1 555 0100".into(),
        ..Default::default()
    }
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".eml") && !n.contains(".expected.")
        })
        .collect();
    v.sort();
    v
}

const IMAGE_MARK: &str = "Contoso";

fn signature_for(name: &str) -> Signature {
    if name.contains("-img-") {
        support::images::image_signature(IMAGE_MARK)
    } else {
        signature()
    }
}

/// What stamping produced, in the form stored beside the fixture.
fn outcome(name: &str, raw: &[u8]) -> (Vec<u8>, &'static str) {
    match stamp::stamp(raw, &signature_for(name), &Options::default()) {
        Ok(s) => (s.message, "eml"),
        Err(skip) => (format!("unchanged: {}\n", skip.label()).into_bytes(), "txt"),
    }
}

#[test]
fn golden_fixtures() {
    let bless = std::env::var_os("SIGSTAMP_BLESS").is_some();
    let all = fixtures();
    assert!(all.len() >= 40, "fixtures missing");
    let mut failures = Vec::new();
    for path in &all {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let raw = std::fs::read(path).unwrap();
        let (got, ext) = outcome(&name, &raw);
        let expected_path = path.with_file_name(format!("{name}.expected.{ext}"));
        if bless {
            for other in ["eml", "txt"] {
                let _ =
                    std::fs::remove_file(path.with_file_name(format!("{name}.expected.{other}")));
            }
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let Ok(expected) = std::fs::read(&expected_path) else {
            failures.push(format!("{name}: no {}", expected_path.display()));
            continue;
        };
        if got != expected {
            failures.push(format!(
                "{name} (LF): output differs from {}",
                expected_path.display()
            ));
        }
        // The same message with CRLF line endings.
        let (got_crlf, _) = outcome(&name, &support::crlf(&raw));
        let want_crlf = if ext == "eml" {
            support::crlf(&expected)
        } else {
            expected.clone()
        };
        if got_crlf != want_crlf {
            failures.push(format!("{name} (CRLF): output differs"));
        }
        let sig = signature_for(&name);
        if ext == "eml" && sig.images.is_empty() {
            // A message of CR-only lines is read (and stamped) as CRLF lines.
            let read_as = if raw.contains(&b'\n') {
                raw.clone()
            } else {
                raw.iter()
                    .flat_map(|&b| {
                        if b == b'\r' {
                            vec![b'\r', b'\n']
                        } else {
                            vec![b]
                        }
                    })
                    .collect()
            };
            if let Err(e) = support::check_structure(&read_as, &got) {
                failures.push(format!("{name}: {e}"));
            }
        }
        if ext == "eml" && !sig.images.is_empty() && got.windows(4).any(|w| w == b"<img") {
            for (input, output) in [
                (raw.clone(), got.clone()),
                (support::crlf(&raw), got_crlf.clone()),
            ] {
                if let Err(e) = support::images::check_images(&input, &output, &sig, IMAGE_MARK) {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
