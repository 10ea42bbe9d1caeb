//! The agent library's session state machine fed arbitrary gateway frames,
//! ACKs and time: no panic, no resend with changed bytes, no seq twice in
//! flight, the window held, nothing new after GOAWAY
//! (`awp_client::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    awp_client::fuzzing::run(data);
});
