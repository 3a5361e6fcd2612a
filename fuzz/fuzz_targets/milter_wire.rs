//! The milter packet reader and decoder on arbitrary bytes: no panic, whatever the length
//! prefix (the reader allocates as bytes arrive; tests/prop_milter_wire.rs measures it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigstamp::milter::wire::{decode, read_command, ReadLimits};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data.to_vec());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limits = ReadLimits {
        wait: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        deadline: Duration::from_secs(1),
    };
    let mut r: &[u8] = data;
    rt.block_on(async {
        while let Ok(Some(_)) = read_command(&mut r, limits, None).await {}
    });
});
