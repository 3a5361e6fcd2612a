//! `stamp` must never panic, and whatever it returns must be stable: stamping its output
//! again leaves it unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigstamp::stamp::{stamp, Options, Signature, Skip};

fuzz_target!(|data: &[u8]| {
    let sig = Signature {
        html: "<div>José Müller</div>".into(),
        text: "-- \nJosé Müller".into(),
    };
    let opts = Options::default();
    if let Ok(s) = stamp(data, &sig, &opts) {
        assert_eq!(stamp(&s.message, &sig, &opts), Err(Skip::AlreadyStamped));
    }
});
