//! The `noop` task: does nothing, so a run measures the framework's own cost.

use super::{Context, Task, TaskResult};

/// A task whose execution succeeds immediately.
#[derive(Debug, Default, Clone, Copy)]
pub struct Noop;

impl Task for Noop {
    async fn execute(&mut self, _ctx: &mut Context<'_>) -> TaskResult {
        TaskResult::success()
    }
}
