//! A load test run from Rust code, without the command line: the
//! `LoadTest` builder gives the same report `vajra-peer run` writes.
//!
//! ```text
//! cargo run --release --example from_code
//! ```

use std::time::Duration;

use vajra::load_test::LoadTest;
use vajra::task::{Context, Task, TaskResult};

/// Sleeps a millisecond, like a fast service.
struct FastService;

impl Task for FastService {
    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        tokio::time::sleep(Duration::from_millis(1)).await;
        TaskResult::success()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let report = LoadTest::new("fast-service", |_instance: usize| Ok(FastService))
        .rate(500.0)
        .duration(Duration::from_secs(3))
        .threshold("p99<50ms")
        .threshold("error_rate<1%")
        .run()
        .await?;
    println!(
        "{} executions, p99 {:.2} ms",
        report.main.completed,
        report.main.latency.p99_us / 1e3
    );
    for verdict in &report.thresholds {
        println!(
            "{} {}",
            if verdict.passed { "pass" } else { "FAIL" },
            verdict.threshold
        );
    }
    let passed = report.thresholds.iter().all(|t| t.passed);
    std::process::exit(if passed { 0 } else { 3 });
}
