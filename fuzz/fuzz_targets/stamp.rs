//! `stamp` must never panic, and whatever it returns must be stable: stamping its output
//! again leaves it unchanged. Half the inputs get a signature with an inline image, so the
//! multipart/related shapes are fuzzed too (the first input byte decides).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigstamp::stamp::{stamp, InlineImage, Options, Signature, Skip};

fuzz_target!(|data: &[u8]| {
    let mut sig = Signature::new("<div>José Müller <img src=\"cid:f00d@sigstamp\"></div>", "-- \nJosé Müller");
    if data.first().is_some_and(|b| b & 1 == 1) {
        sig.images.push(InlineImage {
            cid: "f00d@sigstamp".into(),
            content_type: "image/png".into(),
            filename: "logo.png".into(),
            bytes: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3].into(),
        });
    }
    let opts = Options::default();
    if let Ok(s) = stamp(data, &sig, &opts) {
        assert_eq!(stamp(&s.message, &sig, &opts), Err(Skip::AlreadyStamped));
    }
});
