//! A user's own load test: implement `Task`, register it by name, and hand
//! control to the standard `vajra-peer` command line.
//!
//! ```text
//! cargo run --release --example custom_task -- run --task checksum \
//!     --param size=4096 --tps 2000 --duration 10s --threshold "p99<5ms"
//! ```
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
use vajra::task::{Context, Task, TaskError, TaskResult, ThreadStrategy};

/// Data shared read-only by every instance, built once by the factory.
struct Payload {
    bytes: Vec<u8>,
}

/// Checksums the shared payload with a per-instance seed; every 1000th
/// execution "fails" to show error classification.
struct Checksum {
    payload: Arc<Payload>,
    seed: u64,
    executions: u64,
}

impl Task for Checksum {
    const THREAD_STRATEGY: ThreadStrategy = ThreadStrategy::Blocking;

    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        self.executions += 1;
        let mut hash = self.seed ^ 0xcbf2_9ce4_8422_2325;
        for &b in &self.payload.bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        std::hint::black_box(hash);
        if self.executions.is_multiple_of(1000) {
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
    registry.register("checksum", |opts| {
        let size: usize = opts.param("size").unwrap_or("1024").parse()?;
        let payload = Arc::new(Payload {
            bytes: (0..size).map(|i| i as u8).collect(),
        });
        Ok(move |instance: usize| {
            Ok(Checksum {
                payload: Arc::clone(&payload),
                seed: instance as u64,
                executions: 0,
            })
        })
    });
    let mut strategies = Strategies::with_builtins();
    strategies.register(SpareCores);
    vajra::cli::main_with_strategies(registry, strategies)
}
