//! Tasks by name: how the command line finds built-in and user tasks.
//!
//! A user's load test is a Rust binary that registers its tasks and hands
//! control to [`crate::cli::main_with`], so it gets the very same command line
//! as `vajra-peer`. Registration erases the task type once, at start-up; the
//! engine itself stays generic over the task, so the hot path has no dynamic
//! dispatch.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use super::http::{HttpOptions, http_factory};
use super::noop::Noop;
use super::sleep::{SleepSpec, sleep_factory};
use super::{Task, TaskFactory, ThreadStrategy};
use crate::engine::{
    self, EngineConfig, EngineError, LoadControl, RunObserver, RunOutcome, StopSignal,
};

/// Options a task can be configured with from the command line or a file.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// The registered task name.
    pub name: String,
    /// Options of the built-in `http` task.
    pub http: HttpOptions,
    /// Delay of the built-in `sleep` task.
    pub sleep: Option<SleepSpec>,
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

/// A configured task, ready to be run by the engine.
pub trait RunnableTask: Send {
    /// The task's own thread strategy.
    fn thread_strategy(&self) -> ThreadStrategy;

    /// Runs it with a fixed load.
    fn run<'a>(
        self: Box<Self>,
        config: EngineConfig,
        observer: &'a mut dyn RunObserver,
        stop: StopSignal,
    ) -> Pin<Box<dyn Future<Output = Result<RunOutcome, EngineError>> + Send + 'a>> {
        self.run_controlled(config, observer, stop, LoadControl::new())
    }

    /// Runs it, taking rate updates from `control` while it goes.
    fn run_controlled<'a>(
        self: Box<Self>,
        config: EngineConfig,
        observer: &'a mut dyn RunObserver,
        stop: StopSignal,
        control: LoadControl,
    ) -> Pin<Box<dyn Future<Output = Result<RunOutcome, EngineError>> + Send + 'a>>;
}

struct Runnable<F>(F);

impl<F: TaskFactory> RunnableTask for Runnable<F> {
    fn thread_strategy(&self) -> ThreadStrategy {
        <F::Task as Task>::THREAD_STRATEGY
    }

    fn run_controlled<'a>(
        self: Box<Self>,
        config: EngineConfig,
        observer: &'a mut dyn RunObserver,
        stop: StopSignal,
        control: LoadControl,
    ) -> Pin<Box<dyn Future<Output = Result<RunOutcome, EngineError>> + Send + 'a>> {
        Box::pin(engine::run_controlled(
            self.0, config, observer, stop, control,
        ))
    }
}

type Builder = Box<dyn Fn(&TaskOptions) -> anyhow::Result<Box<dyn RunnableTask>> + Send + Sync>;

/// Task names and how to build each from [`TaskOptions`].
#[derive(Default)]
pub struct TaskRegistry {
    builders: BTreeMap<String, Builder>,
}

/// The requested task is not registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown task '{name}' (available: {available})")]
pub struct UnknownTask {
    /// The name asked for.
    pub name: String,
    /// The registered names, comma-separated.
    pub available: String,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the built-in tasks `http`, `noop` and `sleep`.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry.register("http", |opts| http_factory(&opts.http));
        registry.register("noop", |_| Ok(|_| Ok(Noop)));
        registry.register("sleep", |opts| sleep_factory(opts.sleep));
        registry
    }

    /// Registers `name`; `build` turns the run's options into a factory.
    pub fn register<F, B>(&mut self, name: &str, build: B) -> &mut Self
    where
        F: TaskFactory,
        B: Fn(&TaskOptions) -> anyhow::Result<F> + Send + Sync + 'static,
    {
        self.builders.insert(
            name.to_owned(),
            Box::new(move |opts| Ok(Box::new(Runnable(build(opts)?)) as Box<dyn RunnableTask>)),
        );
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.builders.keys().map(String::as_str).collect()
    }

    /// Looks up `opts.name` and builds it.
    pub fn build(&self, opts: &TaskOptions) -> anyhow::Result<Box<dyn RunnableTask>> {
        let builder = self.builders.get(&opts.name).ok_or_else(|| UnknownTask {
            name: opts.name.clone(),
            available: self.names().join(", "),
        })?;
        builder(opts).map_err(|e| anyhow::anyhow!("task '{}': {e:#}", opts.name))
    }
}
