//! Every message of ../shared/corpus stamped as INDEX.md expects, re-parsed with an independent
//! parser (mail-parser): the signature once per stamped body, strictly decodable; every other
//! part byte-identical; headers kept in order; idempotent; skipped messages byte-identical.

mod support;

use mail_parser::{MessageParser, PartType};
use sigstamp::stamp::{self, Options, Skip};
use support::{check_stamped, corpus_dir, test_signature, MARKER};

struct Case {
    file: String,
    expectation: String,
}

fn cases() -> Option<(std::path::PathBuf, Vec<Case>)> {
    let dir = corpus_dir()?;
    let index = std::fs::read_to_string(dir.join("INDEX.md")).expect("INDEX.md");
    let mut out = Vec::new();
    for line in index.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() > 7 && cols[1].ends_with(".eml") {
            out.push(Case {
                file: cols[1].to_string(),
                expectation: cols[6].to_string(),
            });
        }
    }
    Some((dir, out))
}

#[test]
fn corpus_matches_expectations() {
    let Some((dir, cases)) = cases() else { return };
    assert_eq!(cases.len(), 99, "INDEX.md lists 99 messages");
    let sig = test_signature();
    let mut failures = Vec::new();
    for case in &cases {
        let raw = std::fs::read(dir.join(&case.file)).unwrap();
        let result = stamp::stamp(&raw, &sig, &Options::default());
        let (want_text, want_html) = match case.expectation.as_str() {
            "stamp-html-and-text" => (1, 1),
            "stamp-text" => (1, 0),
            "stamp-html" => (0, 1),
            _ => (0, 0),
        };
        match result {
            Ok(s) if want_text + want_html > 0 => {
                if (s.text_parts, s.html_parts) != (want_text, want_html) {
                    failures.push(format!(
                        "{}: stamped text={} html={}, expected text={want_text} html={want_html}",
                        case.file, s.text_parts, s.html_parts
                    ));
                    continue;
                }
                if let Err(e) = check_stamped(&raw, &s.message, want_text + want_html) {
                    failures.push(format!("{}: {e}", case.file));
                }
                // Idempotent: a second pass leaves it alone.
                let again = stamp::stamp(&s.message, &sig, &Options::default());
                if again != Err(Skip::AlreadyStamped) {
                    failures.push(format!(
                        "{}: second stamping gave {:?}",
                        case.file,
                        again.err()
                    ));
                }
            }
            Ok(_) => failures.push(format!(
                "{}: stamped, expected {}",
                case.file, case.expectation
            )),
            Err(reason) if want_text + want_html > 0 => failures.push(format!(
                "{}: not stamped ({reason}), expected {}",
                case.file, case.expectation
            )),
            Err(reason) => {
                let ok = match case.expectation.as_str() {
                    "skip-signed" => reason == Skip::Signed,
                    "skip-encrypted" => reason == Skip::Encrypted,
                    "skip-report" => matches!(
                        reason,
                        Skip::Report | Skip::NullSender | Skip::AutoSubmitted
                    ),
                    "skip-calendar" => reason == Skip::Calendar,
                    "pass-through-malformed" => matches!(
                        reason,
                        Skip::Malformed(_)
                            | Skip::InvalidContentType
                            | Skip::NoTextBody
                            | Skip::Tnef
                    ),
                    _ => false,
                };
                if !ok {
                    failures.push(format!(
                        "{}: skipped as {reason:?}, expected {}",
                        case.file, case.expectation
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_text_parts_parse_after_stamping() {
    // The marker must be visible to a real parser's text view of the message.
    let Some((dir, cases)) = cases() else { return };
    let sig = test_signature();
    for case in cases.iter().filter(|c| c.expectation.starts_with("stamp-")) {
        let raw = std::fs::read(dir.join(&case.file)).unwrap();
        let Ok(s) = stamp::stamp(&raw, &sig, &Options::default()) else {
            continue;
        };
        let msg = MessageParser::default().parse(&s.message).expect("parses");
        let seen = msg.parts.iter().any(|p| match &p.body {
            PartType::Text(t) | PartType::Html(t) => t.contains(MARKER),
            _ => false,
        });
        assert!(seen, "{}: marker not in any text part", case.file);
    }
}
