//! The gateway's session state machine driven by arbitrary input: bytes
//! from the client cut into arbitrary reads (raw, or the valid HELLO and
//! BATCH vectors whole), interleaved with pipeline outcomes, granted budget,
//! clock ticks, end of input, shutdown, replacement and eviction.
//!
//! `awp_gateway::fuzzing::run` reads the script and checks, after every
//! step: no panic; ACK OK only for a batch whose outcome was Stored; never
//! more in flight than the window; nothing sent after ERROR or Close; every
//! BATCH answered or the connection closed.
#![no_main]

use std::sync::LazyLock;

use awp_gateway::fuzzing::{Frames, run};
use libfuzzer_sys::fuzz_target;

static FRAMES: LazyLock<Frames> = LazyLock::new(|| {
    let vectors = awp_testkit::vectors();
    Frames::new(vectors.valid.iter().map(|v| {
        (
            v.name.as_str(),
            v.frame["type"].as_str().unwrap_or(""),
            v.frame["seq"].as_u64(),
            &v.bytes[..],
        )
    }))
});

fuzz_target!(|data: &[u8]| run(&FRAMES, data));
