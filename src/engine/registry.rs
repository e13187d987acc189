//! Tasks by name, and the engine's type-erased handle on each.
//!
//! A user's load test is a Rust binary that registers its tasks and hands
//! control to [`crate::cli::main_with`], so it gets the very same command
//! line as `vajra-peer`. Registration erases the task type once, at
//! start-up ([`RunnableTask`]); the engine itself stays generic over the
//! task, so the hot path has no dynamic dispatch. This lives beside the
//! engine, not in [`crate::task`]: a task author implements the SDK there
//! and never meets an engine type.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{EngineConfig, EngineError, LoadControl, RunObserver, RunOutcome, StopSignal};
use crate::task::grpc::{GrpcOptions, GrpcPlan, GrpcTask};
use crate::task::http::http_factory;
use crate::task::noop::Noop;
use crate::task::postgres::{PostgresOptions, PostgresPlan, PostgresTask};
use crate::task::scenario::scenario_factory;
use crate::task::sleep::sleep_factory;
use crate::task::tcp::{TcpOptions, TcpPlan, TcpTask};
use crate::task::websocket::{WebSocketOptions, WebSocketPlan, WebSocketTask};
use crate::task::{Task, TaskFactory, TaskOptions, ThreadStrategy};

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
        Box::pin(super::run_controlled(
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

    /// A registry holding the built-in tasks `http`, `scenario`, `tcp`,
    /// `postgres`, `websocket`, `grpc`, `noop` and `sleep`.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry.register("http", |opts| http_factory(&opts.http));
        registry.register("noop", |_| Ok(|_| Ok(Noop)));
        registry.register("sleep", |opts| sleep_factory(opts.sleep));
        registry.register("postgres", |opts| {
            let plan = Arc::new(PostgresPlan::new(&opts.typed::<PostgresOptions>()?)?);
            Ok(move |_| Ok(PostgresTask::new(Arc::clone(&plan))))
        });
        registry.register("websocket", |opts| {
            let tls = (opts.http.tls_ca.as_ref(), opts.http.tls_skip_verify);
            let plan = WebSocketPlan::new(&opts.typed::<WebSocketOptions>()?, tls)?;
            let plan = Arc::new(plan);
            Ok(move |_| Ok(WebSocketTask::new(Arc::clone(&plan))))
        });
        registry.register("grpc", |opts| {
            let tls = (opts.http.tls_ca.as_ref(), opts.http.tls_skip_verify);
            let options = opts.typed::<GrpcOptions>()?;
            let plan = Arc::new(GrpcPlan::new(&options, opts.proto.as_deref(), tls)?);
            Ok(move |_| Ok(GrpcTask::new(Arc::clone(&plan))))
        });
        registry.register("tcp", |opts| {
            let plan = Arc::new(TcpPlan::new(&opts.typed::<TcpOptions>()?)?);
            Ok(move |_| Ok(TcpTask::new(Arc::clone(&plan))))
        });
        registry.register("scenario", |opts| {
            let scenarios = opts.scenario.clone().ok_or_else(|| {
                anyhow::anyhow!("needs --scenario FILE (a YAML or TOML scenario file)")
            })?;
            let peer = opts.peer.clone().unwrap_or_else(|| "standalone".into());
            let tls = (opts.http.tls_ca.clone(), opts.http.tls_skip_verify);
            Ok(scenario_factory(scenarios, peer, tls))
        });
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

    /// Registers `name` with options of the task's own type `O`, read once
    /// per run from the `--param key=value` pairs
    /// ([`TaskOptions::typed`]), and one closure that makes instance
    /// number `instance` from them.
    pub fn register_task<O, T, B>(&mut self, name: &str, build: B) -> &mut Self
    where
        O: serde::de::DeserializeOwned + Send + Sync + 'static,
        T: Task,
        B: Fn(&Arc<O>, usize) -> anyhow::Result<T> + Send + Sync + 'static,
    {
        let build = Arc::new(build);
        self.register(name, move |opts| {
            let options = Arc::new(opts.typed::<O>()?);
            let build = Arc::clone(&build);
            Ok(move |instance: usize| build(&options, instance))
        })
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
