//! Property test of the inbound SMTP session (issue 11): arbitrary client byte streams —
//! SMTP-shaped ones from a grammar, and plain random bytes — split at arbitrary points,
//! against the in-process sink as next hop. No panic, the session ends when the input does,
//! every reply line is well formed, and without BDAT every message relayed is one the client
//! sent in DATA and ended with CRLF.CRLF, unstuffed exactly (see `harness::check`).
//!
//! A bounded number of cases runs in `cargo test`; longer runs: the cargo-fuzz target
//! `smtp_session` (see fuzz/README.md), or `PROPTEST_CASES=5000 cargo test --test
//! prop_smtp_session`.

use proptest::prelude::*;
use sigstamp::smtp::inbound::harness::{check, run};

fn token() -> impl Strategy<Value = Vec<u8>> {
    let fixed = |s: &'static [u8]| Just(s.to_vec());
    prop_oneof![
        // A whole envelope, so that most streams carry messages.
        3 => fixed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"),
        3 => fixed(b"EHLO c\r\n"),
        3 => fixed(b"MAIL FROM:<a@b.example>\r\n"),
        3 => fixed(b"RCPT TO:<c@d.example>\r\n"),
        4 => fixed(b"DATA\r\n"),
        4 => fixed(b".\r\n"),
        2 => fixed(b"..\r\n"),
        2 => fixed(b"..x\r\n"),
        2 => fixed(b".x\r\n"),
        3 => fixed(b"line\r\n"),
        2 => fixed(b"\r\n"),
        1 => fixed(b"\n"),
        1 => fixed(b"\r"),
        1 => fixed(b"."),
        1 => fixed(b"\n.\r\n"),
        1 => fixed(b"RSET\r\n"),
        1 => fixed(b"NOOP\r\n"),
        1 => fixed(b"BDAT 3\r\n"),
        1 => fixed(b"BDAT 2 LAST\r\n"),
        1 => fixed(b"BDAT 184467440737095516150005 LAST\r\n"),
        1 => fixed(b"MAIL FROM:<j\xf6rg@b.example>\r\n"),
        1 => Just(vec![b'x'; 5000]),
        1 => Just(vec![b'y'; 1500]),
        2 => proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()],
            0..12
        ),
    ]
}

/// `bytes` cut at the given points (taken modulo its length).
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn smtp_shaped_streams(
        tokens in proptest::collection::vec(token(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        let input: Vec<u8> = tokens.concat();
        let outcome = run(&split(&input, &cuts));
        check(&input, &outcome);
    }

    #[test]
    fn random_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let outcome = run(&split(&input, &cuts));
        check(&input, &outcome);
    }
}
