//! A scenario file as written: YAML or TOML, read with serde, every key
//! known (an unknown one is an error naming it and its line).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::feeder::{Mode, OnExhausted};
use crate::config::duration::HumanDuration;

/// Which syntax a scenario file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `.yaml` or `.yml`.
    Yaml,
    /// `.toml`.
    Toml,
}

impl Format {
    /// The format a file's name says, if it says one.
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Self::Yaml),
            "toml" => Some(Self::Toml),
            _ => None,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Constants templates may use, folded in when the file is compiled.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// What every request gets unless it says otherwise.
    #[serde(default)]
    pub defaults: Defaults,
    /// Data feeders by name: records a scenario's iterations take one each.
    #[serde(default)]
    pub feeders: BTreeMap<String, FeederDef>,
    /// The scenarios; each iteration runs one, picked by weight.
    pub scenarios: Vec<ScenarioDef>,
}

/// Settings every request of the file starts from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Headers sent with every request (a request's own win).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout [default: 30s].
    pub timeout: Option<HumanDuration>,
    /// Whether each iteration keeps a cookie jar [default: true].
    pub cookies: Option<bool>,
    /// Whether requests speak HTTP/2 [default: false, HTTP/1.1].
    pub http2: Option<bool>,
    /// Largest response body kept for checks and extraction [default:
    /// 1 MiB]; the rest is read and discarded.
    pub max_body: Option<usize>,
}

/// One named scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioDef {
    /// Its name: the tag its iterations are reported under.
    pub name: String,
    /// Its share of the iterations, relative to the others' [default: 1].
    pub weight: Option<u64>,
    /// The feeder each iteration takes a record from; its columns are
    /// variables.
    pub feeder: Option<String>,
    /// What an iteration does, in order. Each step is a mapping with one
    /// key, its kind (`request:`, `think:`), in YAML as in TOML.
    #[serde(with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub steps: Vec<StepDef>,
}

/// A data feeder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeederDef {
    /// Its file, relative to the scenario file: `.csv` (with a header
    /// line), or `.jsonl` / `.ndjson` (a JSON object per line).
    pub file: String,
    /// How records are handed out [default: sequential].
    pub mode: Option<Mode>,
    /// What happens once every record was given [default: recycle, and
    /// stop for unique].
    pub on_exhausted: Option<OnExhausted>,
}

impl FeederDef {
    /// Whether its file is JSON lines (else CSV), by its extension.
    pub fn json_lines(&self) -> Result<bool, String> {
        match std::path::Path::new(&self.file)
            .extension()
            .and_then(|e| e.to_str())
        {
            Some("csv") => Ok(false),
            Some("jsonl" | "ndjson") => Ok(true),
            _ => Err(format!(
                "'{}' must end in .csv, .jsonl or .ndjson",
                self.file
            )),
        }
    }
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum StepDef {
    /// An HTTP request.
    Request(RequestDef),
    /// Bytes sent on a TCP connection and a reply read.
    Tcp(TcpDef),
    /// A PostgreSQL statement.
    Postgres(PostgresDef),
    /// A WebSocket message and its reply.
    Websocket(WebSocketDef),
    /// A gRPC unary call.
    Grpc(GrpcDef),
    /// A pause before the next step: `500ms`, or a uniform range
    /// `200ms..2s`.
    Think(String),
}

/// An HTTP request step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    /// The name the step reports under [default: METHOD and URL as
    /// written].
    pub name: Option<String>,
    /// HTTP method [default: GET].
    pub method: Option<String>,
    /// The URL (a template).
    pub url: String,
    /// Headers (values are templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body (a template).
    pub body: Option<String>,
    /// Per-request timeout [default: the file's, or 30s].
    pub timeout: Option<HumanDuration>,
    /// Whether it speaks HTTP/2 (TLS with ALPN `h2` for `https://`, h2c
    /// for `http://`) [default: the file's, or HTTP/1.1].
    pub http2: Option<bool>,
    /// What the response must satisfy; with no status check, a status
    /// below 400.
    #[serde(default)]
    pub check: Vec<CheckDef>,
    /// Variables set from the response, by name.
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractDef>,
}

/// A TCP step: send, then read a reply to a delimiter or of a length.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpDef {
    /// The name the step reports under [default: `tcp ADDRESS`].
    pub name: Option<String>,
    /// `host:port` (no variables: a connection is kept per address).
    pub address: String,
    /// What to send (a template; the file's own escapes make bytes).
    #[serde(default)]
    pub send: String,
    /// Read the reply up to and including this delimiter.
    pub until: Option<String>,
    /// Or read exactly this many bytes.
    pub read: Option<usize>,
    /// The reply must contain this text.
    pub expect: Option<String>,
    /// Connect and exchange within this [default: the file's, or 30s].
    pub timeout: Option<HumanDuration>,
}

/// A PostgreSQL step: one statement with its arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDef {
    /// The name the step reports under [default: the statement].
    pub name: Option<String>,
    /// The connection URL (no variables: a connection is kept per URL).
    pub url: String,
    /// The statement, with `$1`, `$2` ... placeholders.
    pub query: String,
    /// The placeholders' values (templates), converted to their types.
    #[serde(default)]
    pub args: Vec<String>,
    /// The statement must return exactly this many rows.
    pub rows: Option<u64>,
    /// Connect and run within this [default: the file's, or 30s].
    pub timeout: Option<HumanDuration>,
}

/// A WebSocket step: a message sent on the instance's connection to
/// `url`, and the reply waited for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketDef {
    /// The name the step reports under [default: `websocket URL`].
    pub name: Option<String>,
    /// `ws://` or `wss://` (no variables: a connection is kept per URL).
    pub url: String,
    /// The message (a template).
    #[serde(default)]
    pub send: String,
    /// Send it as a binary message [default: text].
    #[serde(default)]
    pub binary: bool,
    /// Wait for the first reply containing this text (a template)
    /// [default: the first reply].
    pub expect: Option<String>,
    /// Send without waiting for a reply.
    #[serde(default)]
    pub no_reply: bool,
    /// Connect and get the reply within this [default: the file's, or 30s].
    pub timeout: Option<HumanDuration>,
    /// What the reply must satisfy (`body_contains`, `body_matches`,
    /// `json`).
    #[serde(default)]
    pub check: Vec<CheckDef>,
    /// Variables set from the reply (`json`, `regex`).
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractDef>,
}

/// A gRPC step: a unary call of a method a `.proto` file describes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcDef {
    /// The name the step reports under [default: the method].
    pub name: Option<String>,
    /// `http://host:port` (h2c) or `https://host:port` (no variables: a
    /// connection is kept per URL).
    pub url: String,
    /// The `.proto` file (or a descriptor set), beside the scenario file.
    pub proto: String,
    /// `package.Service/Method`.
    pub method: String,
    /// The request in the proto3 JSON mapping (a template) [default: `{}`].
    pub request: Option<String>,
    /// The call's metadata (values are templates).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Connect and call within this [default: the file's, or 30s].
    pub timeout: Option<HumanDuration>,
    /// What the reply must satisfy (`json`, `body_contains`,
    /// `body_matches`, on the reply as JSON).
    #[serde(default)]
    pub check: Vec<CheckDef>,
    /// Variables set from the reply as JSON (`json`, `regex`).
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractDef>,
}

/// One check on a response: one subject (`status`, `body_contains`,
/// `body_matches`, `header` or `json`), and for `header` and `json` at most
/// one comparison (`equals`, `contains`, `matches`); without one, the
/// header or JSON value must be present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDef {
    /// The status must be this one, or one of these.
    pub status: Option<OneOrMany>,
    /// The body must contain this text.
    pub body_contains: Option<String>,
    /// The body must match this regular expression.
    pub body_matches: Option<String>,
    /// This header (any case).
    pub header: Option<String>,
    /// The JSON value at this pointer (RFC 6901: `/data/0/id`).
    pub json: Option<String>,
    /// ... must equal this (a JSON value for `json`, text for `header`).
    pub equals: Option<serde_json::Value>,
    /// ... must contain this text.
    pub contains: Option<String>,
    /// ... must match this regular expression.
    pub matches: Option<String>,
}

/// A status or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One status.
    One(u16),
    /// Any of these.
    Many(Vec<u16>),
}

/// Where a variable's value comes from: exactly one source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractDef {
    /// The JSON value at this pointer (text as is, anything else as JSON).
    pub json: Option<String>,
    /// The first match of this regular expression in the body: its
    /// capture group `group` [default: 1 if it has a group, else the match].
    pub regex: Option<String>,
    /// The capture group of `regex` to take.
    pub group: Option<usize>,
    /// This response header's value (any case).
    pub header: Option<String>,
    /// The value of this cookie the response set.
    pub cookie: Option<String>,
}

/// Parses `text` as `format`; the error is serde's, with its line.
pub fn parse(text: &str, format: Format) -> Result<ScenarioFile, String> {
    match format {
        Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| e.to_string()),
        Format::Toml => toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned()),
    }
}
