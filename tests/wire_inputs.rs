//! Every decoder of bytes from another process, fed a few thousand random
//! and mutated inputs on the stable toolchain (the cargo-fuzz targets in
//! `fuzz/` do the same, guided by coverage, on nightly): none may panic.

use std::panic::{AssertUnwindSafe, catch_unwind};

use vajra::fuzzing::{self, DECODERS};

const RANDOM: usize = 1_500;
const MUTATED: usize = 2_500;

fn random_bytes(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = rng.usize(0..512);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    if rng.bool() && !bytes.is_empty() {
        // JSON-looking and small-tag starts reach further than noise.
        bytes[0] = *rng.choice(b"{[\"0123").unwrap();
    }
    bytes
}

fn mutate(rng: &mut fastrand::Rng, sample: &[u8]) -> Vec<u8> {
    let mut bytes = sample.to_vec();
    for _ in 0..rng.usize(1..8) {
        if bytes.is_empty() {
            bytes.push(rng.u8(..));
            continue;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(..6) {
            0 => bytes[at] ^= 1 << rng.u8(..8),
            1 => bytes[at] = rng.u8(..),
            2 => bytes.truncate(at),
            3 => bytes.insert(at, rng.u8(..)),
            4 => {
                let end = rng.usize(at..bytes.len());
                let chunk = bytes[at..end].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ => {
                // Large numbers where lengths and counts live.
                let digits = b"99999999999999999999";
                bytes.splice(at..at, digits.iter().copied());
            }
        }
    }
    bytes
}

#[test]
fn no_decoder_panics_on_random_or_mutated_input() {
    let mut rng = fastrand::Rng::with_seed(0x7a6a_5e1f);
    for (name, decode) in DECODERS {
        let samples = fuzzing::samples(name);
        assert!(!samples.is_empty(), "{name} has samples");
        for sample in &samples {
            assert!(
                decode(sample),
                "{name}: its valid sample is refused: {:02x?}",
                &sample[..sample.len().min(64)]
            );
        }
        let mut accepted = 0;
        for i in 0..RANDOM + MUTATED {
            let input = if i < RANDOM {
                random_bytes(&mut rng)
            } else {
                mutate(&mut rng, &samples[i % samples.len()])
            };
            match catch_unwind(AssertUnwindSafe(|| decode(&input))) {
                Ok(ok) => accepted += usize::from(ok),
                Err(_) => panic!(
                    "{name} panicked on {} bytes: {:02x?}",
                    input.len(),
                    &input[..input.len().min(256)]
                ),
            }
        }
        eprintln!("{name}: {accepted} of {} inputs accepted", RANDOM + MUTATED);
    }
}

#[test]
fn a_histogram_header_claiming_a_huge_shape_is_refused_before_allocating() {
    use base64::Engine;
    let mut header = vec![0u8; 40];
    header[..4].copy_from_slice(&0x1c84_9303u32.to_be_bytes());
    header[12..16].copy_from_slice(&5u32.to_be_bytes());
    header[16..24].copy_from_slice(&1u64.to_be_bytes());
    header[24..32].copy_from_slice(&(1u64 << 62).to_be_bytes());
    let text = base64::engine::general_purpose::STANDARD.encode(&header);
    let e = vajra::metrics::histogram::decode_v2(&text).unwrap_err();
    assert!(e.to_string().contains("standard range"), "{e}");
    assert!(!fuzzing::histogram(text.as_bytes()));
}
