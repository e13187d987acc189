//! The JSON API's endpoints (`docs/openapi.json` is their contract): each
//! takes what the request says and this node's handles, and answers a
//! typed value or an [`ApiError`] that names the bad field.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::auth::Role;
use super::live::{Live, LiveTest, ResultSummary};
use crate::cluster::run::control::Controller;
use crate::cluster::run::plan::check_corners;
use crate::cluster::run::protocol::{ControlReply, ControlRequest, Refusal};
use crate::cluster::status::{ClusterStatus, TestPhase};
use crate::config::RunArgs;
use crate::config::definition::resolve_definition;
use crate::engine::LoadModel;
use crate::load::{ArrivalSchedule, MAX_RATE, RatePoint};

/// An answer that is not a success: its HTTP status, what is wrong, and
/// the request field it is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// What is wrong.
    pub message: String,
    /// The request field at fault (`test.tps`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The methods a 405's path takes (its `Allow` header).
    #[serde(skip)]
    pub allow: Option<&'static str>,
}

impl ApiError {
    /// An error of `status` saying `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
            allow: None,
        }
    }

    /// A 405 for a path that takes only `allowed` (e.g. "GET, POST").
    pub fn method_not_allowed(allowed: &'static str) -> Self {
        Self {
            allow: Some(allowed),
            ..Self::new(405, format!("method not allowed here (allowed: {allowed})"))
        }
    }

    /// A 400 about `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(400, message)
        }
    }
}

/// What the endpoints read and drive on this node.
pub struct Api {
    /// The peer's control handler (it forwards to the leader).
    pub controller: Arc<Controller>,
    /// The peer's latest picture of the cluster.
    pub status: watch::Receiver<Arc<ClusterStatus>>,
    /// Live figures and recent results.
    pub live: Arc<Live>,
    /// The run history, on a node that keeps one.
    pub history: Option<super::history::History>,
}

/// How long a command is retried while the cluster has no confirmed
/// leader (it is forming, or electing after a loss).
const LEADERLESS_PATIENCE: Duration = Duration::from_secs(6);

/// Settings an API request may not give: the serving node would write the
/// file, and exporters belong to peers, not tests.
const REFUSED_KEYS: [(&str, &str); 4] = [
    (
        "store",
        "the history store is the serving node's own, never named by a request",
    ),
    (
        "output",
        "report files are not written by the API: download the result instead",
    ),
    (
        "outputs",
        "report files are not written by the API: download the result instead",
    ),
    (
        "config",
        "the API takes the settings themselves, not a file",
    ),
];

/// `POST /api/v1/tests` and `/api/v1/tests/validate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The test: the keys of a config file (`url`, `tps`, `duration`,
    /// `ramp-up`, `threshold`, ...).
    pub test: Map<String, Value>,
    /// How the rate is split [default: equal].
    #[serde(default)]
    pub distribution: Option<String>,
    /// Chosen by the client: a retry with the same id gets the test it
    /// started back instead of a conflict.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `PATCH /api/v1/tests/current`: a new rate until the planned end, or a
/// new pattern for the rest of the test (the keys of a config file's load
/// settings: `pattern`, `tps`, `duration`, `steps`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// New cluster rate per second, until the test's planned end.
    #[serde(default)]
    pub tps: Option<f64>,
    /// A pattern replacing the rest of the test.
    #[serde(default)]
    pub pattern: Option<Map<String, Value>>,
}

/// What a test's settings compile to.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The task that would run.
    pub task: String,
    /// The corners of its rate curve (warmup included).
    pub curve: Vec<RatePoint>,
    /// Its length, seconds.
    pub duration_secs: f64,
    /// Arrivals the curve holds (the executed count of the test).
    pub total_arrivals: u64,
    /// Seconds of warmup.
    pub warmup_secs: f64,
}

/// The answer to a command.
#[derive(Debug, Clone, Serialize)]
pub struct CommandAnswer {
    /// What happened.
    pub message: String,
    /// The test it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_id: Option<String>,
    /// The plan's epoch after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// `GET /api/v1/tests`.
#[derive(Debug, Clone, Serialize)]
pub struct TestList {
    /// The test running now, if any.
    pub running: Option<LiveTest>,
    /// Finished tests this node holds, newest first.
    pub results: Vec<ResultSummary>,
}

/// `GET /api/v1/catalog`: what the start form offers.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// Task names this node's binary runs.
    pub tasks: Vec<String>,
    /// Distribution strategies.
    pub strategies: Vec<String>,
    /// Load patterns.
    pub patterns: Vec<&'static str>,
}

impl Api {
    /// The cluster as this node sees it, with the current test's merged
    /// figures.
    pub async fn cluster(&self) -> ClusterStatus {
        let mut status = (**self.status.borrow()).clone();
        if status.test.is_some() {
            status.figures = self
                .controller
                .answer(ControlRequest::Figures)
                .await
                .figures;
        }
        status
    }

    /// The start form's choices.
    pub fn catalog(&self) -> Catalog {
        Catalog {
            tasks: self
                .controller
                .registry
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            strategies: self
                .controller
                .strategies
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            patterns: vec!["constant", "ramp", "step", "spike", "sine", "custom"],
        }
    }

    /// What `test` compiles to, or the field that is wrong.
    pub fn validate(&self, request: &StartRequest) -> Result<Validation, ApiError> {
        self.compile(request).map(|(_, validation)| validation)
    }

    /// `test`'s settings and what they compile to, or the field that is
    /// wrong.
    fn compile(&self, request: &StartRequest) -> Result<(RunArgs, Validation), ApiError> {
        let args = test_args(&request.test, "test")?;
        let settings = resolve_definition(args.clone()).map_err(|e| config_error(e, "test"))?;
        if let Err(e) = self.controller.registry.build(&settings.task) {
            return Err(ApiError::field("test.task", format!("{e:#}")));
        }
        if let Some(name) = &request.distribution {
            self.controller
                .strategies
                .named(name)
                .map_err(|e| ApiError::field("distribution", e))?;
        }
        let LoadModel::Open { profile, .. } = &settings.engine.load else {
            return Err(ApiError::field(
                "test.tps",
                "a distributed test needs a target rate (tps or a pattern)",
            ));
        };
        check_corners(profile.curve.points().len())
            .map_err(|why| ApiError::field("test.pattern", why))?;
        let validation = Validation {
            task: settings.task.name.clone(),
            curve: profile.curve.points().to_vec(),
            duration_secs: profile.curve.duration(),
            total_arrivals: ArrivalSchedule::new(profile.curve.clone()).total_arrivals(),
            warmup_secs: profile.warmup_secs,
        };
        Ok((args, validation))
    }

    /// Starts a test.
    pub async fn start(
        &self,
        request: StartRequest,
        started_by: &str,
    ) -> Result<CommandAnswer, ApiError> {
        let (run, _) = self.compile(&request)?;
        let command = ControlRequest::Start {
            run: Box::new(run),
            distribution: request.distribution.unwrap_or_else(|| "equal".into()),
            request_id: request
                .request_id
                .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..))),
            started_by: started_by.to_owned(),
        };
        let reply = self.command(command).await?;
        Ok(CommandAnswer {
            message: reply.message,
            test_id: reply.plan.as_ref().map(|p| p.test_id.clone()),
            epoch: reply.plan.as_ref().map(|p| p.epoch),
        })
    }

    /// Changes the running test's rate or pattern.
    pub async fn update(&self, request: UpdateRequest) -> Result<CommandAnswer, ApiError> {
        let command = match (request.tps, request.pattern) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "tps",
                    "give tps or pattern (with its own tps), not both",
                ));
            }
            (None, None) => return Err(ApiError::field("tps", "give tps or pattern")),
            (Some(tps), None) if !(tps.is_finite() && (0.0..=MAX_RATE).contains(&tps)) => {
                return Err(ApiError::field(
                    "tps",
                    format!("must be a rate from 0 to {MAX_RATE} per second"),
                ));
            }
            (Some(tps), None) => ControlRequest::Update(tps),
            (None, Some(pattern)) => ControlRequest::UpdatePattern(pattern_curve(&pattern)?),
        };
        let reply = self.command(command).await?;
        Ok(CommandAnswer {
            message: reply.message,
            test_id: reply.plan.as_ref().map(|p| p.test_id.clone()),
            epoch: reply.plan.as_ref().map(|p| p.epoch),
        })
    }

    /// Stops the running test.
    pub async fn stop(&self) -> Result<CommandAnswer, ApiError> {
        let reply = self.command(ControlRequest::Stop).await?;
        Ok(CommandAnswer {
            message: reply.message,
            test_id: reply.plan.as_ref().map(|p| p.test_id.clone()),
            epoch: None,
        })
    }

    /// The running test and the finished ones this node holds.
    pub fn tests(&self) -> TestList {
        let running = self
            .live
            .snapshot()
            .and_then(|f| f.test)
            .filter(|t| {
                matches!(
                    t.phase,
                    TestPhase::Created
                        | TestPhase::Distributing
                        | TestPhase::Running
                        | TestPhase::Stopping
                )
            })
            .map(|mut t| {
                t.points.clear();
                t
            });
        TestList {
            running,
            results: self.live.results(),
        }
    }

    /// Sends `command` through this peer (to the leader), asking again
    /// while there is no confirmed leader.
    async fn command(&self, command: ControlRequest) -> Result<ControlReply, ApiError> {
        let patience = tokio::time::Instant::now() + LEADERLESS_PATIENCE;
        loop {
            let reply = self.controller.answer(command.clone()).await;
            if reply.ok {
                return Ok(reply);
            }
            if reply.worth_retrying(&command) && tokio::time::Instant::now() < patience {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let status = match reply.refusal {
                Some(Refusal::Retry | Refusal::Uncertain) => 503,
                Some(Refusal::Invalid) => 400,
                Some(Refusal::Conflict) => 409,
                Some(Refusal::Unavailable) | None => 409,
            };
            return Err(ApiError::new(status, reply.message));
        }
    }
}

/// Whether `role` may do what needs `needed`, as an error if not.
pub fn allow(role: Role, needed: Role) -> Result<(), ApiError> {
    if role >= needed {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            format!("this needs the {needed} role; the credentials given are a {role}'s"),
        ))
    }
}

/// The settings `test` (a config file's keys) gives, checked one key at a
/// time so an error names its key (`prefix.key`).
fn test_args(test: &Map<String, Value>, prefix: &str) -> Result<RunArgs, ApiError> {
    let known = crate::config::file::file_keys();
    let inlined = ["body-base64", "https-ca-pem"];
    for (key, value) in test {
        let field = format!("{prefix}.{key}");
        if let Some((_, why)) = REFUSED_KEYS.iter().find(|(k, _)| k == key) {
            return Err(ApiError::field(field, *why));
        }
        if !known.iter().any(|k| k == key) && !inlined.contains(&key.as_str()) {
            return Err(ApiError::field(field, format!("unknown setting `{key}`")));
        }
        let alone = Value::Object(Map::from_iter([(key.clone(), value.clone())]));
        if let Err(e) = serde_json::from_value::<RunArgs>(alone) {
            return Err(ApiError::field(field, e.to_string()));
        }
    }
    serde_json::from_value(Value::Object(test.clone()))
        .map_err(|e| ApiError::field(prefix, e.to_string()))
}

/// A configuration error as the API names it: its field under `prefix`.
fn config_error(error: crate::config::ConfigError, prefix: &str) -> ApiError {
    match error {
        crate::config::ConfigError::Invalid { field, message } => {
            ApiError::field(format!("{prefix}.{field}"), message)
        }
        other => ApiError::field(prefix, other.to_string()),
    }
}

/// The rate curve of an update's pattern (its time 0 is when it applies).
fn pattern_curve(pattern: &Map<String, Value>) -> Result<Vec<RatePoint>, ApiError> {
    let load_keys = [
        "tps",
        "pattern",
        "duration",
        "ramp-up",
        "ramp-down",
        "steps",
        "spike-tps",
        "spike-every",
        "spike-duration",
        "amplitude",
        "period",
        "points",
    ];
    if let Some(key) = pattern.keys().find(|k| !load_keys.contains(&k.as_str())) {
        return Err(ApiError::field(
            format!("pattern.{key}"),
            format!("not a load setting (one of {})", load_keys.join(", ")),
        ));
    }
    let mut args = test_args(pattern, "pattern")?;
    args.task = Some("noop".into());
    let settings = resolve_definition(args).map_err(|e| config_error(e, "pattern"))?;
    match settings.engine.load {
        LoadModel::Open { profile, .. } => Ok(profile.curve.points().to_vec()),
        LoadModel::Closed { .. } => Err(ApiError::field("pattern.tps", "a pattern needs a rate")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_bad_setting_is_named_by_its_key() {
        let e = test_args(&object(r#"{"url": "http://x/", "tps": "many"}"#), "test").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("test.tps"));
        let e = test_args(&object(r#"{"speed": 3}"#), "test").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("test.speed"));
        assert!(e.message.contains("unknown setting"), "{}", e.message);
        let e = test_args(&object(r#"{"output": ["/etc/passwd"]}"#), "test").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("test.output"));
    }

    #[test]
    fn a_file_named_over_the_api_is_refused_at_its_field() {
        let args = test_args(
            &object(
                r#"{"url": "http://x/", "tps": 5, "duration": "2s", "body-file": "/etc/passwd"}"#,
            ),
            "test",
        )
        .unwrap();
        let e = config_error(resolve_definition(args).unwrap_err(), "test");
        assert_eq!(e.field.as_deref(), Some("test.body-file"));
    }

    #[test]
    fn a_pattern_compiles_to_its_curve() {
        let points = pattern_curve(&object(
            r#"{"tps": 100, "duration": "10s", "ramp-up": "5s"}"#,
        ))
        .unwrap();
        assert_eq!(points.first().map(|p| p.rate), Some(0.0));
        assert_eq!(points.last().map(|p| p.at), Some(10.0));
        let e = pattern_curve(&object(r#"{"url": "http://x/"}"#)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("pattern.url"));
    }

    #[test]
    fn a_viewer_may_not_operate() {
        assert!(allow(Role::Operator, Role::Operator).is_ok());
        assert!(allow(Role::Operator, Role::Viewer).is_ok());
        assert_eq!(allow(Role::Viewer, Role::Operator).unwrap_err().status, 403);
    }
}
