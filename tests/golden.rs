//! Golden fixtures: each `tests/fixtures/NN-name.eml` beside its expected output,
//! `NN-name.expected.eml` (stamped) or `NN-name.expected.txt` (`unchanged: <reason>`).
//! Fixtures are written with LF; every one is also run as CRLF (each LF of input and expected
//! output turned into CRLF), so both line-ending variants are held to the same bytes.
//! `SIGSTAMP_BLESS=1 cargo test --test golden` rewrites the expected files (review the diff!).
//! Fixtures named `NN-img-*` are stamped with a signature carrying two inline images
//! (`support::images::image_signature`), the others with a plain one. Fixtures named
//! `NN-disclaimer-*` also get a template's bottom part (a disclaimer) at the very end of the body.

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

/// A template's bottom part, with non-ASCII text so every encoding path is taken.
fn bottom_for(name: &str) -> Option<Signature> {
    name.contains("-disclaimer-").then(|| Signature {
        html: "<p class=\"disclaimer\">Contoso AG · confidential</p>".into(),
        text: "Contoso AG · confidential: meant for the addressees only.".into(),
        ..Default::default()
    })
}

/// What stamping produced, in the form stored beside the fixture.
fn outcome(name: &str, raw: &[u8]) -> (Vec<u8>, &'static str) {
    let (sig, bottom) = (signature_for(name), bottom_for(name));
    match stamp::stamp_with_bottom(raw, &sig, bottom.as_ref(), &Options::default()) {
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
        if ext == "eml" && bottom_for(&name).is_some() {
            for (input, output) in [
                (raw.clone(), got.clone()),
                (support::crlf(&raw), got_crlf.clone()),
            ] {
                if let Err(e) = bottom_after_quote(&input, &output) {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
        // Two insertions: the one-insertion structure check does not apply.
        if ext == "eml" && sig.images.is_empty() && bottom_for(&name).is_none() {
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

/// In each stamped body, the disclaimer comes once, after the signature and after every byte
/// of the original body (the quoted thread included); a second run changes nothing.
fn bottom_after_quote(raw: &[u8], out: &[u8]) -> Result<(), String> {
    use mail_parser::{MessageParser, PartType};
    let before = MessageParser::new()
        .parse(raw)
        .ok_or("input does not parse")?;
    let after = MessageParser::new()
        .parse(out)
        .ok_or("output does not parse")?;
    // The bodies as written: HTML as HTML, text as text.
    let bodies = |m: &mail_parser::Message<'_>| -> Vec<String> {
        m.parts
            .iter()
            .filter_map(|p| match &p.body {
                PartType::Text(t) | PartType::Html(t) => Some(t.to_string()),
                _ => None,
            })
            .collect()
    };
    let mut checked = 0;
    for (was, now) in bodies(&before).iter().zip(bodies(&after).iter()) {
        let Some(at) = now.find("Contoso AG") else {
            continue;
        };
        checked += 1;
        if now.matches("Contoso AG").count() != 1 {
            return Err(format!("the disclaimer more than once:\n{now}"));
        }
        let sig = now
            .find("Contoso · Sales")
            .or_else(|| now.find("José Müller · Contoso"))
            .or_else(|| now.find("Contoso</div>"));
        if sig.is_none_or(|s| s > at) {
            return Err(format!("the signature is not above the disclaimer:\n{now}"));
        }
        // The original body's last words (the end of the quoted thread) are above it, and
        // nothing but closing tags and white space is below it.
        let tail: Vec<String> = words(was).into_iter().rev().take(3).rev().collect();
        if !words(&now[..at])
            .windows(tail.len())
            .any(|w| w == tail.as_slice())
        {
            return Err(format!("{tail:?} not above the disclaimer:\n{now}"));
        }
        let below = &now[at..];
        let below = below.split_once("</p>").map_or(below, |(_, rest)| rest);
        let rest = below
            .lines()
            .skip(usize::from(!now.contains("<p class")))
            .collect::<String>();
        let rest = rest.replace("</body>", "").replace("</html>", "");
        if !rest.trim().is_empty() {
            return Err(format!("{rest:?} below the disclaimer:\n{now}"));
        }
    }
    if checked == 0 {
        return Err("no body holds the disclaimer".into());
    }
    let again = stamp::stamp_with_bottom(
        out,
        &signature(),
        bottom_for("-disclaimer-").as_ref(),
        &Options::default(),
    );
    if again.is_ok() {
        return Err("stamped twice".into());
    }
    Ok(())
}

/// The words of a body, tags left out.
fn words(body: &str) -> Vec<String> {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}
