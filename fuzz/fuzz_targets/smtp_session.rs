//! The inbound SMTP session on arbitrary client bytes, against the in-process sink: no
//! panic, and the properties of `sigstamp::smtp::inbound::harness::check` (every relayed
//! message was sent in DATA and ended with CRLF.CRLF, unstuffed exactly). The first byte
//! chooses where the stream is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigstamp::smtp::inbound::harness::{check, run};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let mut chunks = Vec::new();
    let mut rest = input;
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = (1 + (usize::from(seed) + i * 7) % 64).min(rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
        i += 1;
    }
    check(input, &run(&chunks));
});
