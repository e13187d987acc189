//! Exporters by name: the built-in ones and those a user binary registers,
//! as it registers its tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::blazemeter::{BLAZEMETER, BlazeMeterExporter};
use super::exporter::{Exporter, RunInfo};
use super::otlp::{OTLP, OtlpExporter};
use super::pipeline::ExportPipeline;
use super::prometheus::{MetricsServer, PrometheusExporter};
use crate::config::ExportSettings;
use crate::config::export::PROMETHEUS;

/// Makes one run's exporter from the process's export settings.
pub type ExporterBuilder =
    dyn Fn(&ExportSettings) -> anyhow::Result<Box<dyn Exporter>> + Send + Sync;

/// A name `--export` gave that no exporter has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown exporter '{name}' (known: {known})")]
pub struct UnknownExporter {
    /// The name asked for.
    pub name: String,
    /// The names registered, comma-separated.
    pub known: String,
}

/// Exporters by name.
#[derive(Clone, Default)]
pub struct ExporterRegistry {
    builders: BTreeMap<String, Arc<ExporterBuilder>>,
}

impl ExporterRegistry {
    /// A registry with no exporters.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the built-in exporters. `prometheus` serves from
    /// the process, which registers the real one when it listens
    /// ([`Exports::serve_metrics`]); until then it stands for its name.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry.register(PROMETHEUS, |_| {
            anyhow::bail!("prometheus exports through --metrics-listen ADDR")
        });
        registry.register(OTLP, |settings| Ok(Box::new(OtlpExporter::new(settings)?)));
        registry.register(BLAZEMETER, |settings| {
            Ok(Box::new(BlazeMeterExporter::new(settings)?))
        });
        registry
    }

    /// Registers `build` as the exporter `name` (replacing one of that
    /// name): `--export NAME` then runs it, with a fresh instance per run
    /// (per test, on a peer).
    pub fn register<F>(&mut self, name: &str, build: F) -> &mut Self
    where
        F: Fn(&ExportSettings) -> anyhow::Result<Box<dyn Exporter>> + Send + Sync + 'static,
    {
        self.builders.insert(name.to_owned(), Arc::new(build));
        self
    }

    /// The registered names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.builders.keys().map(String::as_str).collect()
    }

    /// Checks that every exporter `settings` names is registered.
    pub fn check(&self, settings: &ExportSettings) -> Result<(), UnknownExporter> {
        match settings
            .exporters
            .iter()
            .find(|name| !self.builders.contains_key(*name))
        {
            Some(name) => Err(UnknownExporter {
                name: name.clone(),
                known: self.names().join(", "),
            }),
            None => Ok(()),
        }
    }

    /// Builds the exporters `settings` names, for one run.
    pub fn build(
        &self,
        settings: &ExportSettings,
    ) -> anyhow::Result<Vec<(String, Box<dyn Exporter>)>> {
        self.check(settings)?;
        settings
            .exporters
            .iter()
            .map(|name| {
                let exporter = (self.builders[name])(settings)
                    .map_err(|e| anyhow::anyhow!("exporter {name}: {e:#}"))?;
                Ok((name.clone(), exporter))
            })
            .collect()
    }
}

/// A process's exporters: which ones, with their settings, ready to start
/// for each run (each cluster test, on a peer).
#[derive(Clone, Default)]
pub struct Exports {
    /// The exporters this binary knows.
    pub registry: ExporterRegistry,
    /// Which of them to run, and their settings.
    pub settings: ExportSettings,
}

impl Exports {
    /// Serves `/metrics` if the settings ask for it, registering the
    /// `prometheus` exporter on the endpoint; `linger` makes a run's end
    /// wait for a scrape of its final figures (a standalone run, whose
    /// endpoint ends with it).
    pub async fn serve_metrics(
        &mut self,
        linger: bool,
    ) -> anyhow::Result<Option<Arc<MetricsServer>>> {
        let Some(addr) = self.settings.metrics_listen else {
            return Ok(None);
        };
        let server = MetricsServer::start(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
        let linger = linger.then(|| self.settings.flush_timeout.mul_f64(0.9));
        let shared = Arc::clone(&server);
        self.registry.register(PROMETHEUS, move |_| {
            Ok(Box::new(PrometheusExporter::new(
                Arc::clone(&shared),
                linger,
            )))
        });
        Ok(Some(server))
    }

    /// Starts this process's exporters for `run` (none: an empty
    /// pipeline). Fails if one cannot be built.
    pub fn start(&self, run: RunInfo) -> anyhow::Result<ExportPipeline> {
        if self.settings.exporters.is_empty() {
            return Ok(ExportPipeline::none());
        }
        let exporters = self.registry.build(&self.settings)?;
        Ok(ExportPipeline::start(
            exporters,
            run,
            self.settings.queue,
            self.settings.flush_timeout,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{ExportError, ExportWindow};

    struct Nothing;

    #[async_trait::async_trait]
    impl Exporter for Nothing {
        async fn window(&mut self, _: &ExportWindow) -> Result<(), ExportError> {
            Ok(())
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let mut registry = ExporterRegistry::new();
        registry.register("nothing", |_| Ok(Box::new(Nothing)));
        let settings = ExportSettings {
            exporters: vec!["nothing".into(), "otlpp".into()],
            ..ExportSettings::default()
        };
        let e = registry.check(&settings).unwrap_err();
        assert_eq!(e.to_string(), "unknown exporter 'otlpp' (known: nothing)");
        let settings = ExportSettings {
            exporters: vec!["nothing".into()],
            ..ExportSettings::default()
        };
        assert_eq!(registry.build(&settings).unwrap().len(), 1);
    }
}
