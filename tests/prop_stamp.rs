//! Property tests over generated MIME trees: stamping never panics, touches only the body
//! parts it reports, keeps every other part byte-identical, and is idempotent.

mod support;

use proptest::prelude::*;
use sigstamp::stamp::{self, Options, Signature, Skip};
use support::images::{check_images, image_signature};
use support::{check_stamped, test_signature, MARKER};

#[derive(Debug, Clone)]
enum Node {
    Leaf {
        ctype: &'static str,
        charset: &'static str,
        cte: &'static str,
        attachment: bool,
        body: String,
    },
    Multi {
        subtype: &'static str,
        children: Vec<Node>,
    },
}

fn body_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "[a-zA-Z0-9 ,.!?=]{0,90}",
        Just("On Mon, 2 Mar 2026, Bob <bob@example.com> wrote:".to_string()),
        Just("> quoted line".to_string()),
        Just("-----Original Message-----".to_string()),
        Just("<div class=\"gmail_quote\">quote</div>".to_string()),
        Just("</body></html>".to_string()),
        Just("Grüße aus Köln".to_string()),
        Just("--".to_string()),
        // What the inline-image wrapping would pick first as its boundary.
        Just("--=_sigstamp_rel_0".to_string()),
    ];
    prop::collection::vec(line, 0..8).prop_map(|l| l.join("\n"))
}

fn leaf() -> impl Strategy<Value = Node> {
    (
        prop::sample::select(vec![
            "text/plain",
            "text/html",
            "image/png",
            "application/pdf",
        ]),
        prop::sample::select(vec!["utf-8", "us-ascii", "iso-8859-1", "windows-1252"]),
        prop::sample::select(vec!["7bit", "8bit", "quoted-printable", "base64", ""]),
        prop::bool::weighted(0.2),
        body_text(),
    )
        .prop_map(|(ctype, charset, cte, attachment, body)| Node::Leaf {
            ctype,
            charset,
            cte,
            attachment,
            body,
        })
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(3, 12, 4, |inner| {
        (
            prop::sample::select(vec!["mixed", "alternative", "related", "digest"]),
            prop::collection::vec(inner, 1..4),
        )
            .prop_map(|(subtype, children)| Node::Multi { subtype, children })
    })
}

fn encode_body(cte: &str, charset: &str, text: &str) -> Vec<u8> {
    let bytes: Vec<u8> = match charset {
        "utf-8" => text.as_bytes().to_vec(),
        "us-ascii" => text
            .chars()
            .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
            .collect(),
        _ => encoding_rs::WINDOWS_1252.encode(text).0.into_owned(),
    };
    match cte {
        "quoted-printable" => sigstamp::stamp::transfer::qp_encode(&bytes, b"\n"),
        "base64" => sigstamp::stamp::transfer::base64_encode(&bytes, 76, b"\n", true),
        "7bit" | "" => bytes
            .iter()
            .map(|b| if *b < 0x80 { *b } else { b'?' })
            .collect(),
        _ => bytes,
    }
}

fn render(node: &Node, out: &mut Vec<u8>, depth: usize, counter: &mut usize) {
    match node {
        Node::Leaf {
            ctype,
            charset,
            cte,
            attachment,
            body,
        } => {
            out.extend_from_slice(format!("Content-Type: {ctype}; charset={charset}\n").as_bytes());
            if !cte.is_empty() {
                out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\n").as_bytes());
            }
            if *attachment {
                out.extend_from_slice(b"Content-Disposition: attachment; filename=\"a.bin\"\n");
            }
            out.extend_from_slice(b"\n");
            out.extend_from_slice(&encode_body(cte, charset, body));
        }
        Node::Multi { subtype, children } => {
            *counter += 1;
            let b = format!("=_b{depth}_{counter}");
            out.extend_from_slice(
                format!("Content-Type: multipart/{subtype}; boundary=\"{b}\"\n\npreamble\n")
                    .as_bytes(),
            );
            for c in children {
                out.extend_from_slice(format!("--{b}\n").as_bytes());
                render(c, out, depth + 1, counter);
                out.extend_from_slice(b"\n");
            }
            out.extend_from_slice(format!("--{b}--\nepilogue\n").as_bytes());
        }
    }
}

fn message(node: &Node, crlf: bool) -> Vec<u8> {
    let mut out =
        b"From: Jose <jose@contoso.com>\nTo: bob@example.com\nSubject: t\nMIME-Version: 1.0\n"
            .to_vec();
    render(node, &mut out, 0, &mut 0);
    if crlf {
        let mut c = Vec::with_capacity(out.len() * 11 / 10);
        for b in out {
            if b == b'\n' {
                c.push(b'\r');
            }
            c.push(b);
        }
        c
    } else {
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn stamps_only_what_it_reports(node in tree(), crlf in any::<bool>()) {
        let raw = message(&node, crlf);
        let sig = test_signature();
        if let Ok(s) = stamp::stamp(&raw, &sig, &Options::default()) {
            let n = s.text_parts + s.html_parts;
            prop_assert!(n >= 1);
            if let Err(e) = check_stamped(&raw, &s.message, n) {
                prop_assert!(false, "{e}\n{}", String::from_utf8_lossy(&raw));
            }
            prop_assert_eq!(stamp::stamp(&s.message, &sig, &Options::default()), Err(Skip::AlreadyStamped));
            // The line ending of every line stays the message's.
            if crlf {
                prop_assert!(!s.message.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF in CRLF message");
            } else {
                prop_assert!(!s.message.contains(&b'\r'), "CR in LF message");
            }
        }
    }

    #[test]
    fn images_go_beside_the_html_and_change_nothing_else(node in tree(), crlf in any::<bool>()) {
        let raw = message(&node, crlf);
        let sig = image_signature(MARKER);
        let plain = Signature::new(sig.html.clone(), sig.text.clone());
        let opts = Options::default();
        match (stamp::stamp(&raw, &plain, &opts), stamp::stamp(&raw, &sig, &opts)) {
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (Ok(a), Ok(b)) => {
                prop_assert_eq!((a.html_parts, a.text_parts), (b.html_parts, b.text_parts));
                if b.html_parts == 0 {
                    prop_assert_eq!(&a.message, &b.message);
                } else {
                    prop_assert_eq!((b.images, b.images_dropped), (2, None));
                    if let Err(e) = check_images(&raw, &b.message, &sig, MARKER) {
                        prop_assert!(false, "{e}\n{}", String::from_utf8_lossy(&b.message));
                    }
                }
                prop_assert_eq!(stamp::stamp(&b.message, &sig, &opts), Err(Skip::AlreadyStamped));
                if crlf {
                    prop_assert!(!b.message.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF in CRLF message");
                } else {
                    prop_assert!(!b.message.contains(&b'\r'), "CR in LF message");
                }
            }
            (a, b) => prop_assert!(false, "without images {a:?}, with {b:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_with_images_never_panic_and_stamp_once(raw in prop::collection::vec(any::<u8>(), 0..2000)) {
        let sig = image_signature(MARKER);
        if let Ok(s) = stamp::stamp(&raw, &sig, &Options::default()) {
            prop_assert_eq!(stamp::stamp(&s.message, &sig, &Options::default()), Err(Skip::AlreadyStamped));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stamp_once(raw in prop::collection::vec(any::<u8>(), 0..2000)) {
        let sig = test_signature();
        if let Ok(s) = stamp::stamp(&raw, &sig, &Options::default()) {
            prop_assert_eq!(stamp::stamp(&s.message, &sig, &Options::default()), Err(Skip::AlreadyStamped));
        }
    }
}
