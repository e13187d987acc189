//! Fuzzes `vajra::fuzzing::definition`: it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vajra::fuzzing::definition(data);
});
