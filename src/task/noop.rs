//! The `noop` task: does nothing, so a run measures the framework's own cost.

use super::{Task, TaskResult};

/// A task whose execution succeeds immediately.
#[derive(Debug, Default, Clone, Copy)]
pub struct Noop;

impl Task for Noop {
    async fn execute(&mut self) -> TaskResult {
        TaskResult::success()
    }
}
