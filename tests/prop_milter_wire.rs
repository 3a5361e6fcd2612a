//! Property test of the milter packet reader and decoder (issue 11): for any bytes — any
//! length prefix, command byte and payload, whole or cut short — no panic, and the memory
//! allocated follows the bytes that arrived, not the length announced. A counting allocator
//! measures it; this file holds one test so nothing else allocates meanwhile.
//!
//! Longer runs: the cargo-fuzz target `milter_wire` (see fuzz/README.md).

use proptest::prelude::*;
use sigstamp::milter::wire::{decode, read_command, ReadLimits};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = NOW.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const LIMITS: ReadLimits = ReadLimits {
    wait: Duration::from_secs(1),
    timeout: Duration::from_secs(1),
    deadline: Duration::from_secs(1),
};

/// Packets as an MTA (or an attacker) might send them: a length that may or may not match.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let packet = (
        prop_oneof![any::<u32>(), 0u32..64, Just(1 << 20), Just((1 << 20) + 1)],
        prop_oneof![
            Just(b'O'),
            Just(b'D'),
            Just(b'M'),
            Just(b'R'),
            Just(b'L'),
            Just(b'B'),
            Just(b'E'),
            Just(b'C'),
            Just(b'H'),
            Just(b'T'),
            Just(b'N'),
            Just(b'A'),
            Just(b'Q'),
            Just(b'K'),
            Just(b'U'),
            any::<u8>()
        ],
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(len, code, payload)| {
            let mut p = len.to_be_bytes().to_vec();
            p.push(code);
            p.extend_from_slice(&payload);
            p
        });
    prop_oneof![
        proptest::collection::vec(packet, 1..4).prop_map(|ps| ps.concat()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn reader_and_decoder_take_any_bytes_in_bounded_memory(input in stream()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _ = decode(input.clone());
        let _ = decode(Vec::new());
        let base = NOW.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let mut r: &[u8] = &input;
        rt.block_on(async {
            for _ in 0..8 {
                match read_command(&mut r, LIMITS, None).await {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        });
        let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        // The read buffer grows 64 KiB at a time; a length prefix alone buys no more.
        prop_assert!(used <= 160 * 1024 + 8 * input.len(), "{used} bytes for {} input bytes", input.len());
    }
}
