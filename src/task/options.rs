//! What a task is configured with: the run's task options, from the
//! command line or a file, handed to the task's builder.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::http::HttpOptions;
use super::scenario::Scenarios;
use super::sleep::SleepSpec;

/// Options a task can be configured with from the command line or a file.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// The registered task name.
    pub name: String,
    /// Options of the built-in `http` task.
    pub http: HttpOptions,
    /// Delay of the built-in `sleep` task.
    pub sleep: Option<SleepSpec>,
    /// The scenarios of the built-in `scenario` task, compiled.
    pub scenario: Option<Arc<Scenarios>>,
    /// The node running the task (a cluster peer's name), if any.
    pub peer: Option<String>,
    /// Free-form `key=value` parameters for user tasks.
    pub params: BTreeMap<String, String>,
}

impl TaskOptions {
    /// A parameter given with `--param key=value`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// A required parameter, or an error naming it.
    pub fn require(&self, key: &str) -> anyhow::Result<&str> {
        self.param(key)
            .ok_or_else(|| anyhow::anyhow!("task '{}' needs --param {key}=...", self.name))
    }
}
