//! Tests of the stamping core as a whole (each part of it has its own beside its code).

use super::checks::is_null_path;
use super::insert::{with_line_ending, Change};
use super::reencode::makes_overlong_line;
use super::*;

/// Found by `cargo fuzz`: a message without a header got its MIME fields ahead of the trace
/// header and the trace header ended up in the body, so a second pass stamped again.
#[test]
fn headerless_messages_are_stamped_once() {
    let sig = Signature::new("<p>sig</p>", "-- \nJosé");
    for raw in [&b""[..], b"\n", b"just a body line\n", b"\r\nbody\r\n"] {
        let Ok(s) = stamp(raw, &sig, &Options::default()) else {
            continue;
        };
        assert!(s.message.starts_with(b"X-Sigstamp: stamped"), "{raw:?}");
        assert_eq!(
            stamp(&s.message, &sig, &Options::default()),
            Err(Skip::AlreadyStamped),
            "{raw:?}"
        );
    }
}

mod line_ending_tests {
    use super::*;

    /// Issue 11, finding 9: a bounce is recognised whatever its line endings and however
    /// its null path is written; a CR-only message is read line by line (over SMTP it still
    /// ends in CRLF).
    #[test]
    fn null_reverse_path_is_always_recognised() {
        let bounces: &[&[u8]] = &[
            b"Return-Path: <>\rFrom: a@b.example\r\rbody\r",
            b"Return-Path: <>\rFrom: a@b.example\r\rbody\r\n",
            b"From: a@b.example\r\nReturn-Path:\r\n <>\r\n\r\nbody\r\n",
            b"Return-Path: < > (bounce)\nFrom: a@b.example\n\nbody\n",
            b"\xEF\xBB\xBFReturn-Path:<>\n\nbody\n",
        ];
        let sig = Signature::new("<p>s</p>", "-- \ns");
        for raw in bounces {
            assert_eq!(
                precheck(raw, &Options::default()),
                Err(Skip::NullSender),
                "{raw:?}"
            );
            assert_eq!(stamp(raw, &sig, &Options::default()), Err(Skip::NullSender));
        }
        assert_eq!(
            precheck(b"Return-Path: <a@b>\r\n\r\nx\r\n", &Options::default()),
            Ok(())
        );
        assert!(!is_null_path(b" <x> "));
        let raw = b"From: Ann <ann@b.example>\rSubject: s\r\rHi\r\n";
        assert_eq!(from_address(raw).as_deref(), Some("ann@b.example"));
        let out = stamp(raw, &sig, &Options::default()).unwrap().message;
        assert!(out.starts_with(
            b"X-Sigstamp: stamped\r\nFrom: Ann <ann@b.example>\r\nSubject: s\r\n\r\nHi\r\n"
        ));
    }

    /// Issue 11, finding 2: the signature takes the part's line ending, whatever breaks the
    /// template or a value brought (LF, CRLF, lone CR).
    #[test]
    fn signature_takes_the_parts_line_ending() {
        let sig = Signature::new("<p>a</p>\n<p>b</p>\r<p>c</p>\r\n", "-- \rA\nB\r\nC\n");
        for eol in ["\n", "\r\n"] {
            for ct in ["text/plain", "text/html"] {
                let raw = format!("Content-Type: {ct}{eol}{eol}line one{eol}<body>x</body>{eol}");
                let out = stamp(raw.as_bytes(), &sig, &Options::default())
                    .unwrap()
                    .message;
                let lines = out.split(|b| *b == b'\n').count();
                let breaks = if eol == "\n" {
                    assert!(!out.contains(&b'\r'), "{ct} {eol:?}: CR in LF message");
                    lines
                } else {
                    let crlf = out.windows(2).filter(|w| w == b"\r\n").count();
                    assert_eq!(
                        out.iter().filter(|b| **b == b'\r').count(),
                        crlf,
                        "{ct}: bare CR"
                    );
                    crlf + 1
                };
                assert_eq!(breaks, lines, "{ct} {eol:?}: bare LF");
            }
        }
        assert_eq!(
            with_line_ending("a\rb\r\nc\nd\r", "\r\n"),
            "a\r\nb\r\nc\r\nd\r\n"
        );
    }
}

mod limit_tests {
    use super::*;

    fn multipart(parts: usize) -> Vec<u8> {
        let mut m =
            b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        m.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\nHi\r\n");
        for _ in 1..parts {
            m.extend_from_slice(b"--b\r\n");
        }
        m.extend_from_slice(b"--b--\r\n");
        m
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut m = b"From: a@b.example\r\n".to_vec();
        for d in 0..depth {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{d}\r\n\r\n--b{d}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nHi\r\n");
        for d in (0..depth).rev() {
            m.extend_from_slice(format!("--b{d}--\r\n").as_bytes());
        }
        m
    }

    fn fields(n: usize) -> Vec<u8> {
        let mut m = b"From: a@b.example\r\n".to_vec();
        for i in 1..n {
            m.extend_from_slice(format!("X-F{i}: v\r\n").as_bytes());
        }
        m.extend_from_slice(b"\r\nHi\r\n");
        m
    }

    /// Issue 11, finding 8: the limits, at and one past each.
    #[test]
    fn past_a_limit_the_message_is_too_complex() {
        let sig = Signature::new("<p>s</p>", "-- \ns");
        let run = |raw: Vec<u8>| stamp(&raw, &sig, &Options::default()).map(|_| ());
        // The message itself and its parts: 10,000 in all.
        assert_eq!(run(multipart(mime::MAX_PARTS - 1)), Ok(()));
        assert_eq!(run(multipart(mime::MAX_PARTS)), Err(Skip::TooComplex));
        assert_eq!(run(multipart(4_000_000 / 100)), Err(Skip::TooComplex));
        assert_eq!(run(nested(mime::MAX_DEPTH)), Ok(()));
        assert_eq!(run(nested(mime::MAX_DEPTH + 1)), Err(Skip::TooComplex));
        assert_eq!(run(fields(mime::MAX_FIELDS)), Ok(()));
        assert_eq!(run(fields(mime::MAX_FIELDS + 1)), Err(Skip::TooComplex));
        assert_eq!(Skip::TooComplex.label(), "too_complex");
    }
}

mod flowed_tests {
    use super::*;

    /// A format=flowed body: the signature's lines are fixed lines (a template's trailing
    /// spaces would join them), "-- " stays, and a line starting with ">" is space-stuffed.
    #[test]
    fn signature_lines_stay_fixed_in_flowed_text() {
        let sig = Signature::new("", "-- \nAna Silva  \n> Contoso \nFrom Lisbon");
        for params in ["format=flowed", "format=\"Flowed\"; delsp=yes"] {
            let raw = format!(
                "Content-Type: text/plain; charset=us-ascii; {params}\n\nA line that \nflows on.\n"
            );
            let out = stamp(raw.as_bytes(), &sig, &Options::default()).unwrap();
            let body = String::from_utf8(out.message).unwrap();
            let body = body.split_once("\n\n").unwrap().1;
            assert_eq!(
                body, "A line that \nflows on.\n\n-- \nAna Silva\n > Contoso\n From Lisbon\n",
                "{params}"
            );
        }
        // Not flowed: the text goes in as written.
        let raw = b"Content-Type: text/plain\n\nHi\n";
        let out = stamp(raw, &sig, &Options::default()).unwrap();
        assert!(String::from_utf8(out.message)
            .unwrap()
            .ends_with("Ana Silva  \n> Contoso \nFrom Lisbon\n"));
    }
}

mod line_length_tests {
    use super::*;

    /// An unencoded HTML part whose last line is close to the limit: the signature would make
    /// it longer than 998 octets, so the part goes quoted-printable (lines ≤ 76) instead.
    #[test]
    fn insertion_never_creates_overlong_lines() {
        let sig = Signature::new(format!("<div>{}</div>", "x".repeat(60)), "-- \nA");
        for (cte, width, want_qp) in [
            ("7bit", 950, true),
            ("8bit", 950, true),
            ("7bit", 100, false),
        ] {
            let raw = format!(
                "Content-Type: text/html\nContent-Transfer-Encoding: {cte}\n\n<html><body><p>{}</p></body></html>\n",
                "y".repeat(width)
            );
            let out = stamp(raw.as_bytes(), &sig, &Options::default()).unwrap();
            let text = String::from_utf8(out.message).unwrap();
            assert_eq!(
                text.contains("Content-Transfer-Encoding: quoted-printable"),
                want_qp,
                "{cte} {width}"
            );
            assert!(text.lines().all(|l| l.len() <= 998), "{cte} {width}");
            let body = text.split_once("\n\n").unwrap().1;
            let decoded = if want_qp {
                transfer::qp_decode(body.as_bytes())
            } else {
                body.as_bytes().to_vec()
            };
            assert!(String::from_utf8(decoded).unwrap().contains(&format!(
                "{}</p><div>{}</div></body>",
                "y".repeat(width),
                "x".repeat(60)
            )));
        }
    }

    /// Issue 11, finding 11: an HTML signature of exactly two lines (one line break) made
    /// the overlong-line check slice `first + 1..last` with first == last + … and panic on
    /// every 8bit HTML part. Any line structure of the signature, at any width, must stamp.
    #[test]
    fn signatures_of_any_line_structure_never_panic() {
        let shapes = [
            "<p>a</p>",
            "<p>a</p>\n<p>b</p>",
            "<p>a</p>\r\n<p>b</p>",
            "\n",
            "\n\n",
            "<p>a</p>\n",
            "\n<p>a</p>",
            "<p>a</p>\n\n<p>b</p>\n<p>c</p>",
            "\r",
            "",
        ];
        for html in shapes {
            for cte in ["7bit", "8bit", "binary"] {
                for width in [0, 10, 990, 1200] {
                    for eol in ["\n", "\r\n"] {
                        let raw = format!(
                            "Content-Type: text/html; charset=utf-8{eol}Content-Transfer-Encoding: {cte}{eol}{eol}<p>{}\u{e9}</p>{eol}",
                            "y".repeat(width)
                        );
                        let sig = Signature::new(html, "-- \nA");
                        let out = stamp(raw.as_bytes(), &sig, &Options::default());
                        assert!(out.is_ok(), "{html:?} {cte} {width}: {out:?}");
                    }
                }
            }
        }
        let change = |at, bytes: &[u8]| Change::Insert {
            at,
            bytes: bytes.to_vec(),
        };
        assert!(!makes_overlong_line(b"ab\ncd", &change(3, b"x\ny")));
        assert!(makes_overlong_line(&[b'a'; 990], &change(990, &[b'b'; 20])));
        assert!(!makes_overlong_line(&[b'a'; 990], &change(990, b"\nbb")));
        // Already overlong before: not made so by the insertion.
        assert!(!makes_overlong_line(&[b'a'; 1000], &change(0, b"x\n")));
    }
}

mod header_only_tests {
    use super::*;

    /// A part that is all header (no empty line, often no final line break) gets its fields,
    /// then the empty line, then the body: in that order, inside the part.
    #[test]
    fn header_only_parts_get_header_then_body() {
        let sig = Signature::new("<p>sig</p>", "-- \nJosé");
        let cases: &[&[u8]] = &[
            b"",
            b"Content-Type: text/html",
            b"From: a@b\nContent-Type: text/plain",
            b"From: a@b\nContent-Type: text/plain\n",
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b--\n",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n--b--\r\n",
        ];
        for raw in cases {
            let s = stamp(raw, &sig, &Options::default()).unwrap();
            let shown = String::from_utf8_lossy(&s.message).into_owned();
            let out = &s.message;
            let tree = Tree::parse(out, 0).unwrap();
            let bodies = select(out, &tree, 0);
            for (idx, kind) in [(bodies.text, Kind::Text), (bodies.html, Kind::Html)] {
                let Some(idx) = idx else { continue };
                let part = &tree.parts[idx];
                assert!(part.has_separator, "{shown}");
                let body = &out[part.body.clone()];
                let cte = mime::find_field(out, &part.fields, "content-transfer-encoding")
                    .map(|f| mime::simple_value(out, f.value.clone()));
                let decoded = match cte.as_deref() {
                    Some("quoted-printable") => transfer::qp_decode(body),
                    _ => body.to_vec(),
                };
                let want: &[u8] = match kind {
                    Kind::Text => "José".as_bytes(),
                    Kind::Html => b"<p>sig</p>",
                };
                assert!(place::find_ci(&decoded, want, 0).is_some(), "{shown}");
                // Every header line of the part is a field: nothing spilled into the header.
                let header = &out[part.start..part.header_end];
                for line in header.split(|b| *b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    assert!(line.is_empty() || line.contains(&b':'), "{shown}");
                }
            }
        }
    }
}

mod image_tests {
    use super::*;

    fn sig() -> Signature {
        let mut s = Signature::new("<img src=\"cid:ab@sigstamp\">", "-- \nx");
        s.images.push(InlineImage {
            cid: "ab@sigstamp".into(),
            content_type: "image/png".into(),
            filename: "a.png".into(),
            bytes: b"\x89PNG\r\n\x1a\n".to_vec().into(),
        });
        s
    }

    /// Odd single-part HTML messages: each is stamped once, with its image in a related that
    /// our own scanner parses back, or without images and the reason.
    #[test]
    fn odd_single_part_html_messages() {
        let cases: &[(&[u8], bool)] = &[
            (b"Content-Type: text/html\n\n<p>x</p>", true),
            (b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n", true),
            (b"From: a@b\nContent-Type: text/html", true),
            (b"From a@b Mon Jan 1 00:00:00 2026\nContent-Type: text/html\n\n<p>x</p>\n", true),
            (b"\xEF\xBB\xBFContent-Type: text/html\nContent-Transfer-Encoding: 8bit\n\n\xC3\xA9\n", true),
            (b"Subject: s\nContent-type: TEXT/HTML; charset=us-ascii\nX-After: 1\n\n<p>x</p>\n", true),
        ];
        for (raw, images) in cases {
            let s = stamp(raw, &sig(), &Options::default()).unwrap();
            let shown = String::from_utf8_lossy(&s.message).into_owned();
            assert_eq!(s.html_parts, 1, "{shown}");
            assert_eq!(
                (s.images == 1, s.images_dropped.is_none()),
                (*images, *images),
                "{shown}"
            );
            assert_eq!(
                stamp(&s.message, &sig(), &Options::default()),
                Err(Skip::AlreadyStamped)
            );
            // The result is a related holding the HTML and the image.
            let start = bom_len(&s.message);
            let tree = Tree::parse(&s.message, start).unwrap();
            let top = &tree.parts[0];
            assert_eq!(
                (top.ctype.mtype.as_str(), top.ctype.subtype.as_str()),
                ("multipart", "related"),
                "{shown}"
            );
            let kids: Vec<_> = top
                .children
                .iter()
                .map(|&c| tree.parts[c].ctype.subtype.as_str())
                .collect();
            assert_eq!(kids, ["html", "png"], "{shown}");
            // 8bit content keeps an 8bit label on the related too.
            if raw.windows(4).any(|w| w == b"8bit") {
                assert!(shown.contains("multipart/related; type=\"text/html\";\n\tboundary=\"=_sigstamp_rel_0\"\nContent-Transfer-Encoding: 8bit\n"), "{shown}");
            }
        }
    }
}
