//! A user's own live exporter: every closed second as one JSON line on
//! stdout, registered by name beside the built-in exporters.
//!
//! ```text
//! cargo run --release --example jsonl_exporter -- run --task noop \
//!     --tps 1000 --duration 5s --quiet --export jsonl
//! ```

use std::process::ExitCode;

use vajra::cli::Extensions;
use vajra::engine::TaskRegistry;
use vajra::export::{ExportError, ExportWindow, Exporter, Report, RunInfo};

/// Writes `{"test": .., "second": .., "completed": .., "p99_ms": ..}` lines.
#[derive(Default)]
struct JsonLines {
    test_id: String,
}

#[async_trait::async_trait]
impl Exporter for JsonLines {
    async fn start(&mut self, run: &RunInfo) -> Result<(), ExportError> {
        self.test_id = run.test_id.clone();
        Ok(())
    }

    async fn window(&mut self, w: &ExportWindow) -> Result<(), ExportError> {
        let line = serde_json::json!({
            "test": self.test_id,
            "second": w.summary.second,
            "completed": w.summary.success + w.summary.failure,
            "errors": w.summary.failure,
            "p99_ms": w.summary.latency.p99_us / 1e3,
            "target_rate": w.target_rate,
        });
        println!("{line}");
        Ok(())
    }

    async fn finish(&mut self, report: &Report) -> Result<(), ExportError> {
        println!(
            "{}",
            serde_json::json!({"test": self.test_id, "completed": report.main.completed})
        );
        Ok(())
    }
}

fn main() -> ExitCode {
    let mut extensions = Extensions::new(TaskRegistry::with_builtins());
    extensions
        .exporters
        .register("jsonl", |_| Ok(Box::new(JsonLines::default())));
    vajra::cli::main_with_extensions(extensions)
}
