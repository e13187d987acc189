//! Configuration: flags over `VAJRA_*` environment over a file over defaults.
//!
//! - [`args`]: the settings struct shared by clap and serde.
//! - [`file`](mod@file): TOML and YAML files.
//! - [`duration`]: human durations (`30s`, `1.5s`, `5m`).
//! - [`resolve`](mod@resolve): validation into a runnable [`RunSettings`].
//! - [`definition`]: a distributed test's self-contained definition.
//! - [`export`]: which live exporters a process runs, and their settings.
//! - [`otlp`]: OTLP's settings, from flags and the `OTEL_*` variables.

pub mod args;
pub mod definition;
pub mod duration;
pub mod export;
pub mod file;
pub mod otlp;
pub mod resolve;

pub use args::RunArgs;
pub use export::{ExportArgs, ExportSettings};
pub use resolve::{
    DEFAULT_DISPATCH_QUANTUM, DEFAULT_MAX_LAG, DEFAULT_RELIABLE_LAG, MAX_DISPATCH_QUANTUM,
    RunSettings, resolve,
};

/// A setting that is missing, malformed or impossible.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A field has a bad value.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The flag / key name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A config file cannot be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong, with the line where known.
        message: String,
    },
}

/// Layers `cli` (flags and environment, as clap parsed them) over the file
/// it names, if any, and resolves the result.
pub fn load(cli: RunArgs) -> Result<RunSettings, ConfigError> {
    let merged = match &cli.config {
        Some(path) => {
            let from_file = file::load(path)?;
            cli.over(from_file)
        }
        None => cli,
    };
    resolve(merged)
}
