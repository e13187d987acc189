//! Fuzzes `vajra::fuzzing::raft_reply`: it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vajra::fuzzing::raft_reply(data);
});
