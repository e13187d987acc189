//! The smallest user task, as shown in the README.
//!
//! ```text
//! cargo run --release --example minimal_task -- run --task ping --tps 100 --duration 5s
//! ```

use vajra::engine::TaskRegistry;
use vajra::task::{Context, Task, TaskResult};

struct Ping;

impl Task for Ping {
    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        // ... one operation; the engine takes the timestamps ...
        TaskResult::success()
    }
}

fn main() -> std::process::ExitCode {
    let mut registry = TaskRegistry::with_builtins();
    registry.register("ping", |_opts| Ok(|_instance| Ok(Ping)));
    vajra::cli::main_with(registry)
}
