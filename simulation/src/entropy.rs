//! The process's randomness, from the run's seed.
//!
//! A seed fixes the simulation's own choices (faults, losses, delays), but
//! the code under test draws randomness of its own: chitchat picks gossip
//! partners, openraft picks election timeouts, std keys hash maps, tokio
//! picks which ready `select!` branch runs first. All of it comes from the C
//! library's `getrandom` function (Vajra's Raft runtime takes care that
//! openraft's does too). The `vajra-simulation` binary replaces that function
//! with [`fill`], a stream derived from the seed, so two runs of one seed
//! take the same decisions and replay exactly.
//!
//! Until [`seed`] is called (while arguments are parsed), the stream starts
//! from a fixed value, which is as deterministic.

use std::sync::atomic::{AtomicU64, Ordering};

/// The stream's position: every 8 bytes handed out advance it by one step.
static STATE: AtomicU64 = AtomicU64::new(0x5eed_0f0f_7a1a);

/// Golden-ratio increment of splitmix64.
const STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Restarts the stream from `seed`.
pub fn seed(seed: u64) {
    STATE.store(seed ^ 0x7a1a_5eed, Ordering::SeqCst);
}

/// Fills `buf` with the stream's next bytes.
pub fn fill(buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        let word = mix(STATE.fetch_add(STEP, Ordering::SeqCst).wrapping_add(STEP));
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
}

/// splitmix64's output function: a well-spread word from a counter.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test only: the stream is process-wide, and tests run in parallel.
    #[test]
    fn a_seed_restarts_the_same_stream_and_seeds_differ() {
        let draw = |s: u64| {
            seed(s);
            let mut buf = [0u8; 21];
            fill(&mut buf);
            buf
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        assert_ne!(a, draw(43));
        assert!(a.iter().any(|b| *b != a[0]), "{a:?}");
    }
}
