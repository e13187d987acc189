//! Fuzzes `vajra::fuzzing::status`: it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vajra::fuzzing::status(data);
});
