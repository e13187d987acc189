//! A user's own load test: implement `Task`, register it by name, and hand
//! control to the standard `vajra-peer` command line.
//!
//! ```text
//! cargo run --release --example custom_task -- run --task checksum \
//!     --param size=4096 --tps 2000 --duration 10s --threshold "p99<5ms"
//! ```
//!
//! Its options are a typed struct read from the `--param` pairs, and it
//! counts the bytes it checksummed in a custom counter.
//!
//! `checksum` is CPU-bound, so it asks for the blocking thread strategy
//! (a dedicated OS-thread pool); `--thread-strategy async` overrides it.
//!
//! It also registers a distribution strategy of its own for cluster runs:
//! peers started from this binary split a test with
//! `start --distribution spare-cores` (see `SpareCores`).

use std::process::ExitCode;
use std::sync::Arc;

use vajra::cluster::run::plan::{Candidate, DistributionStrategy, Strategies};
use vajra::engine::TaskRegistry;
use vajra::metrics::events::EventCounter;
use vajra::task::{Context, Task, TaskError, TaskResult, ThreadStrategy};

/// The task's own options, typed: `--param size=4096 --param fail-every=500`
/// (or `param = ["size=4096"]` in a config file). An unknown or malformed
/// parameter is an error naming it before the run starts.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ChecksumOptions {
    /// Bytes checksummed per execution.
    #[serde(default = "default_size")]
    size: usize,
    /// Every Nth execution "fails", to show error classification.
    #[serde(default = "default_fail_every")]
    fail_every: u64,
}

fn default_size() -> usize {
    1024
}

fn default_fail_every() -> u64 {
    1000
}

/// Checksums a payload with a per-instance seed.
struct Checksum {
    options: Arc<ChecksumOptions>,
    payload: Vec<u8>,
    seed: u64,
    executions: u64,
    /// A custom counter: it shows in the summary's `events:` line and the
    /// report's `counters`, summed over a cluster's peers.
    bytes: EventCounter,
}

impl Task for Checksum {
    const THREAD_STRATEGY: ThreadStrategy = ThreadStrategy::Blocking;

    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        self.executions += 1;
        let mut hash = self.seed ^ 0xcbf2_9ce4_8422_2325;
        for &b in &self.payload {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        std::hint::black_box(hash);
        self.bytes.add(self.payload.len() as u64);
        if self
            .executions
            .is_multiple_of(self.options.fail_every.max(1))
        {
            return TaskResult::failure(TaskError::new("checksum_mismatch", "simulated"))
                .tagged("verify");
        }
        TaskResult::success().tagged("verify")
    }
}

/// Shares by spare cores, favouring idle peers more strongly than the
/// built-in `capacity` does: cores × idle², so a half-busy peer gets a
/// quarter of an idle one's share per core.
struct SpareCores;

impl DistributionStrategy for SpareCores {
    fn name(&self) -> &str {
        "spare-cores"
    }

    fn weights(&self, peers: &[Candidate]) -> Vec<f64> {
        peers
            .iter()
            .map(|p| {
                let idle = (1.0 - p.cpu_percent / 100.0).clamp(0.05, 1.0);
                f64::from(p.cores.max(1)) * idle * idle
            })
            .collect()
    }
}

fn main() -> ExitCode {
    let mut registry = TaskRegistry::with_builtins();
    registry.register_task("checksum", |options: &Arc<ChecksumOptions>, instance| {
        Ok(Checksum {
            payload: (0..options.size).map(|i| i as u8).collect(),
            options: Arc::clone(options),
            seed: instance as u64,
            executions: 0,
            bytes: EventCounter::named("checksum.bytes"),
        })
    });
    let mut strategies = Strategies::with_builtins();
    strategies.register(SpareCores);
    vajra::cli::main_with_strategies(registry, strategies)
}
