//! The async runtime Raft runs on: tokio, with election timeouts drawn from
//! a generator a replaying harness can reach.
//!
//! openraft's own [`TokioRuntime`] seeds its timeouts from rand 0.8's
//! thread generator, which reads the kernel with a raw `getrandom` system
//! call that nothing in the process can intercept. [`RaftRuntime`] seeds
//! each draw through the `getrandom` crate's `fill` instead, which calls the
//! C library's `getrandom` function (as std's hash-map keys and chitchat's
//! generator do): the simulation replaces that function with a seeded
//! stream, and a seed then replays the same elections. In a real peer it is
//! the kernel's entropy either way.

use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Tokio for everything, with [`RaftRuntime::thread_rng`] seeded through
/// the C library's `getrandom`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RaftRuntime;

type Tokio = TokioRuntime;

impl AsyncRuntime for RaftRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    /// A generator seeded from 32 bytes of `getrandom`. openraft asks for
    /// one per election timeout, a few times a second at most, so seeding
    /// each costs nothing that matters.
    fn thread_rng() -> Self::ThreadLocalRng {
        let mut seed = [0u8; 32];
        // The C library's getrandom does not fail on Linux 3.17+; should it
        // fail, a timeout from a zero seed is still within the range.
        let _ = getrandom::fill(&mut seed);
        StdRng::from_seed(seed)
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn timeouts_differ_between_draws() {
        let draws: Vec<u64> = (0..8)
            .map(|_| RaftRuntime::thread_rng().gen_range(0..u64::MAX))
            .collect();
        let first = draws[0];
        assert!(draws.iter().any(|d| *d != first), "{draws:?}");
    }
}
