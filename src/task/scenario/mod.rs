//! The built-in `scenario` task: user journeys from a YAML or TOML file,
//! no Rust needed.
//!
//! A file holds named scenarios with weights; each execution (an arrival
//! of the open model, a loop of the closed one) runs one iteration of one
//! scenario, picked by weight. A scenario's steps are HTTP requests, with
//! templates, checks and extractions into variables, and think times; each
//! iteration has its own cookie jar. The iteration reports under the
//! scenario's name, each request as a step under its own name, timed from
//! when it was due (see [`crate::task::context`]). `docs/scenarios.md` is
//! the user's guide.
//!
//! - [`file`](mod@file): the file as written (serde).
//! - [`locate`]: the line of every field, for errors found after parsing.
//! - [`template`]: `${name}` templates, parsed once and bound to slots.
//! - [`compile`]: the checked, ready-to-run scenarios.
//! - [`check`]: checks on a response, and extraction from it.
//! - [`cookies`]: an iteration's cookie jar.
//! - [`feeder`]: records from CSV or JSON-lines files, one per iteration.
//! - [`lease`]: a feeder's records shared out by a cluster's leader.
//! - [`run`]: the task that runs iterations.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod check;
pub mod compile;
mod cookie_date;
pub mod cookies;
pub mod feeder;
pub mod file;
pub mod lease;
pub mod locate;
pub mod run;
pub mod template;

pub use compile::Scenarios;
pub use file::Format;
pub use run::scenario_factory;

/// Largest scenario file read (it rides in a test's definition).
pub const MAX_SCENARIO_BYTES: usize = 256 * 1024;

/// A scenario file's text, with its name (for errors) and syntax: what a
/// test's definition carries, so no peer reads the file itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioSource {
    /// The file's name as the user gave it.
    pub name: String,
    /// Its syntax.
    pub format: Format,
    /// Its text.
    pub text: String,
    /// The feeder files it names, read beside it: name as written, text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// The `.proto` files (or descriptor sets) its gRPC steps name, read
    /// beside it: name as written, contents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub protos: BTreeMap<String, crate::task::grpc::ProtoSource>,
}

impl ScenarioSource {
    /// Reads `path` (at most [`MAX_SCENARIO_BYTES`]); the syntax comes from
    /// its extension.
    pub fn read(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let name = path.display().to_string();
        let error = |message: String| ScenarioError {
            file: name.clone(),
            line: None,
            field: String::new(),
            message,
        };
        let format = Format::of_path(path)
            .ok_or_else(|| error("the file's name must end in .yaml, .yml or .toml".into()))?;
        let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
        if bytes.len() > MAX_SCENARIO_BYTES {
            return Err(error(format!(
                "{} bytes, above the limit of {MAX_SCENARIO_BYTES}",
                bytes.len()
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| error("it is not UTF-8 text".into()))?;
        // Its feeders' files and its gRPC steps' service definitions are
        // read here too; a file that does not parse reads none, and
        // compiling it says what is wrong.
        let mut files = BTreeMap::new();
        let mut protos = BTreeMap::new();
        if let Ok(parsed) = file::parse(&text, format) {
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            for (feeder, def) in &parsed.feeders {
                let at = dir.join(&def.file);
                let bytes = std::fs::read(&at).map_err(|e| {
                    error(format!(
                        "feeder '{feeder}': cannot read '{}': {e}",
                        at.display()
                    ))
                })?;
                if bytes.len() > feeder::MAX_FEEDER_BYTES {
                    return Err(error(format!(
                        "feeder '{feeder}': '{}' holds {} bytes, above the limit of {}",
                        at.display(),
                        bytes.len(),
                        feeder::MAX_FEEDER_BYTES
                    )));
                }
                let text = String::from_utf8(bytes).map_err(|_| {
                    error(format!(
                        "feeder '{feeder}': '{}' is not UTF-8 text",
                        at.display()
                    ))
                })?;
                files.insert(def.file.clone(), text);
            }
            let steps = parsed.scenarios.iter().flat_map(|s| &s.steps);
            for step in steps {
                if let file::StepDef::Grpc(call) = step
                    && !protos.contains_key(&call.proto)
                {
                    let mut proto = crate::task::grpc::ProtoSource::read(&dir.join(&call.proto))
                        .map_err(|e| error(format!("gRPC step: {e}")))?;
                    proto.name.clone_from(&call.proto);
                    protos.insert(call.proto.clone(), proto);
                }
            }
        }
        Ok(Self {
            name,
            format,
            text,
            files,
            protos,
        })
    }
}

/// What is wrong with a scenario file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// The line, when known (serde's own errors carry it in the message).
    pub line: Option<usize>,
    /// The field's path, e.g. `scenarios[0].steps[2].request.url`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}
