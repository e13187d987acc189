//! From a file to scenarios ready to run, checked before any load is sent:
//! every template parses and every name it uses is set before it is used,
//! every regex compiles, every header is valid, every weight is positive.
//! An error names the file, the line and the field.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use hyper::header::HeaderName;
use regex::Regex;

use super::check::{Check, Compare, Source};
use super::feeder::{self, Cursor, MAX_FEEDER_NAME, Mode, OnExhausted, Records};
use super::file::{
    self, CheckDef, ExtractDef, GrpcDef, OneOrMany, PostgresDef, RequestDef, ScenarioDef, StepDef,
    TcpDef, WebSocketDef,
};
use super::lease::RecordLeases;
use super::locate::{Lines, Path};
use super::run::Target;
use super::template::{Binding, Builtin, Parsed, Template};
use super::{ScenarioError, ScenarioSource};
use crate::metrics::stats::intern;
use crate::task::grpc;
use crate::task::http::{DEFAULT_TIMEOUT, serialise};
use crate::task::sleep::SleepSpec;
use crate::task::tcp::{MAX_REPLY, Reply, check_address};
use crate::task::websocket;

/// Longest think time: far beyond any journey's, and far from the clock's
/// limits.
pub const MAX_THINK: Duration = Duration::from_secs(24 * 3600);

/// Default largest response body kept for checks and extraction.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// A file's scenarios, checked and ready to run.
#[derive(Debug)]
pub struct Scenarios {
    /// The scenarios, in file order.
    pub list: Vec<Scenario>,
    /// Running sums of the weights, to pick one.
    cumulative: Vec<u64>,
    /// Whether iterations keep a cookie jar.
    pub cookies: bool,
    /// Largest response body kept.
    pub max_body: usize,
    /// The file's feeders, in name order.
    pub feeders: Vec<Feeder>,
}

/// A feeder's records and where the run is in them.
#[derive(Debug)]
pub struct Feeder {
    /// Its name in the file.
    pub name: String,
    /// Its records.
    pub records: Records,
    /// Hands them out.
    pub cursor: Cursor,
}

/// A scenario's feeder: which one, and the slot of each of its columns.
#[derive(Debug)]
pub struct FeederUse {
    /// Index into [`Scenarios::feeders`].
    pub feeder: usize,
    /// The slot each column's value goes to, in column order.
    pub slots: Vec<usize>,
}

/// One scenario.
#[derive(Debug)]
pub struct Scenario {
    /// The tag its iterations report under.
    pub name: &'static str,
    /// Its steps.
    pub steps: Vec<Step>,
    /// Variables its iteration sets, by slot.
    pub slots: usize,
    /// The feeder it takes a record from each iteration.
    pub feeder: Option<FeederUse>,
}

/// One step.
#[derive(Debug)]
pub enum Step {
    /// An HTTP request.
    Request(Box<Request>),
    /// A TCP exchange.
    Tcp(Box<TcpStep>),
    /// A PostgreSQL statement.
    Postgres(Box<PostgresStep>),
    /// A WebSocket message and its reply.
    WebSocket(Box<WebSocketStep>),
    /// A gRPC unary call.
    Grpc(Box<GrpcStep>),
    /// A pause.
    Think(SleepSpec),
}

/// A request step.
#[derive(Debug)]
pub struct Request {
    /// The step's name.
    pub name: &'static str,
    /// Its method.
    pub method: Method,
    /// Its URL.
    pub url: Template,
    /// Its headers (names checked), defaults first.
    pub headers: Vec<(String, Template)>,
    /// Its body.
    pub body: Option<Template>,
    /// Its timeout.
    pub timeout: Duration,
    /// What the response must satisfy.
    pub checks: Vec<Check>,
    /// Variables set from the response: slot and source.
    pub extract: Vec<(usize, Source)>,
    /// Whether the body is needed (a body or JSON check or extraction).
    pub needs_body: bool,
    /// Whether headers beyond `Set-Cookie` are needed (a header check, a
    /// header or cookie extraction).
    pub needs_headers: bool,
    /// Whether it speaks HTTP/2.
    pub http2: bool,
    /// Where it goes, if its URL has no variable.
    pub target: Option<Target>,
    /// The whole request serialised, if nothing in it varies (sent as is
    /// when the jar has no cookie for it).
    pub serialised: Option<Vec<u8>>,
}

impl Scenarios {
    /// Parses and checks `source`.
    pub fn compile(source: &ScenarioSource) -> Result<Self, ScenarioError> {
        let parsed = file::parse(&source.text, source.format).map_err(|message| ScenarioError {
            file: source.name.clone(),
            line: None,
            field: String::new(),
            message,
        })?;
        let lines = match source.format {
            file::Format::Yaml => Lines::of_yaml(&source.text),
            file::Format::Toml => Lines::of_toml(&source.text),
        };
        let at = Locator {
            file: &source.name,
            lines: &lines,
        };
        compile_file(parsed, source, &at)
    }

    /// The scenario a uniform draw `roll` in `0..total weight` picks.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> &Scenario {
        let total = *self.cumulative.last().expect("at least one scenario");
        let roll = rng.u64(0..total);
        let index = self.cumulative.partition_point(|&sum| sum <= roll);
        &self.list[index]
    }

    /// Has every `sequential` and `unique` feeder draw from positions
    /// `leases` hands out (a cluster's peer: peers then walk disjoint
    /// slices of each file). Call it before the first draw.
    pub fn lease_feeders(&self, leases: &Arc<dyn RecordLeases>) {
        for feeder in &self.feeders {
            feeder.cursor.lease_from(Arc::clone(leases), &feeder.name);
        }
    }

    /// Whether a cluster's peer needs leases to run these scenarios (some
    /// feeder is `sequential` or `unique`).
    pub fn needs_leases(&self) -> bool {
        self.feeders.iter().any(|f| f.cursor.needs_leases())
    }
}

/// Turns a path and a message into an error naming the line.
struct Locator<'a> {
    file: &'a str,
    lines: &'a Lines,
}

impl Locator<'_> {
    fn error(&self, path: &Path, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.file.to_owned(),
            line: self.lines.line_of(path),
            field: path.to_string(),
            message: message.into(),
        }
    }
}

fn compile_file(
    parsed: file::ScenarioFile,
    source: &ScenarioSource,
    at: &Locator<'_>,
) -> Result<Scenarios, ScenarioError> {
    let root = Path::root();
    let mut feeders = Vec::new();
    for (name, def) in &parsed.feeders {
        let path = root.key("feeders").key(name);
        feeders.push(compile_feeder(name, def, &source.files, &path, at)?);
    }
    if parsed.scenarios.is_empty() {
        return Err(at.error(&root.key("scenarios"), "needs at least one scenario"));
    }
    for name in parsed.variables.keys() {
        if Builtin::named(name).is_some() || !is_name(name) {
            return Err(at.error(
                &root.key("variables").key(name),
                format!("'{name}' cannot be a variable's name"),
            ));
        }
    }
    let defaults = &parsed.defaults;
    let mut default_headers = Vec::new();
    for (name, value) in &defaults.headers {
        let path = root.key("defaults").key("headers").key(name);
        check_header_name(name).map_err(|m| at.error(&path, m))?;
        default_headers.push((name.clone(), value.clone()));
    }
    let common = Common {
        variables: &parsed.variables,
        headers: default_headers,
        timeout: defaults.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        http2: defaults.http2.unwrap_or(false),
        // Each file compiled once, however many steps call it.
        pools: source
            .protos
            .iter()
            .map(|(name, proto)| (name.as_str(), proto.pool()))
            .collect(),
    };
    let mut list = Vec::new();
    let mut cumulative = Vec::new();
    let mut total = 0u64;
    for (i, def) in parsed.scenarios.iter().enumerate() {
        let path = root.key("scenarios").index(i);
        if list.iter().any(|s: &Scenario| s.name == def.name) {
            return Err(at.error(
                &path.key("name"),
                format!("a second scenario named '{}'", def.name),
            ));
        }
        let weight = def.weight.unwrap_or(1);
        if weight == 0 {
            return Err(at.error(
                &path.key("weight"),
                "a weight of 0 would never run this scenario (leave it out of the file instead)",
            ));
        }
        total = total
            .checked_add(weight)
            .ok_or_else(|| at.error(&path.key("weight"), "the weights add up to too much"))?;
        cumulative.push(total);
        list.push(compile_scenario(def, &path, (&common, &feeders), at)?);
    }
    Ok(Scenarios {
        list,
        cumulative,
        cookies: defaults.cookies.unwrap_or(true),
        max_body: defaults.max_body.unwrap_or(DEFAULT_MAX_BODY),
        feeders,
    })
}

fn compile_feeder(
    name: &str,
    def: &file::FeederDef,
    files: &BTreeMap<String, String>,
    path: &Path,
    at: &Locator<'_>,
) -> Result<Feeder, ScenarioError> {
    if name.len() > MAX_FEEDER_NAME {
        return Err(at.error(
            path,
            format!("a feeder's name is at most {MAX_FEEDER_NAME} bytes"),
        ));
    }
    let json_lines = def
        .json_lines()
        .map_err(|m| at.error(&path.key("file"), m))?;
    let text = files.get(&def.file).ok_or_else(|| {
        at.error(
            &path.key("file"),
            format!("'{}' was not read with the scenario", def.file),
        )
    })?;
    let records = feeder::parse(text, json_lines)
        .map_err(|m| at.error(&path.key("file"), format!("'{}': {m}", def.file)))?;
    for column in &records.columns {
        if !is_name(column) || Builtin::named(column).is_some() {
            return Err(at.error(
                &path.key("file"),
                format!(
                    "'{}': column '{column}' cannot be a variable's name",
                    def.file
                ),
            ));
        }
    }
    let mode = def.mode.unwrap_or_default();
    let on_exhausted = def.on_exhausted.unwrap_or(match mode {
        Mode::Unique => OnExhausted::Stop,
        _ => OnExhausted::Recycle,
    });
    if mode == Mode::Unique && on_exhausted == OnExhausted::Recycle {
        return Err(at.error(
            &path.key("on_exhausted"),
            "a unique feeder cannot recycle its records (use stop or fail)",
        ));
    }
    let cursor = Cursor::new(mode, on_exhausted, records.rows.len());
    Ok(Feeder {
        name: name.to_owned(),
        records,
        cursor,
    })
}

/// What every scenario of a file starts from.
struct Common<'a> {
    variables: &'a BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    timeout: Duration,
    /// Whether requests speak HTTP/2 unless they say otherwise.
    http2: bool,
    /// The service definitions its gRPC steps name, read with it, by
    /// name: compiled, or why not.
    pools: BTreeMap<&'a str, Result<prost_reflect::DescriptorPool, String>>,
}

/// The names a scenario has set so far, and their slots.
struct Scope<'a> {
    constants: &'a BTreeMap<String, String>,
    slots: HashMap<String, usize>,
}

impl Scope<'_> {
    fn bind(&self, name: &str) -> Option<Binding> {
        if let Some(builtin) = Builtin::named(name) {
            return Some(Binding::Builtin(builtin));
        }
        if let Some(slot) = self.slots.get(name) {
            return Some(Binding::Slot(*slot));
        }
        self.constants.get(name).cloned().map(Binding::Constant)
    }

    /// The slot of variable `name`, new if it has none yet.
    fn slot_of(&mut self, name: &str) -> usize {
        let next = self.slots.len();
        *self.slots.entry(name.to_owned()).or_insert(next)
    }

    fn template(
        &self,
        text: &str,
        path: &Path,
        at: &Locator<'_>,
    ) -> Result<Template, ScenarioError> {
        let parsed = Parsed::parse(text).map_err(|m| at.error(path, m))?;
        parsed.bind(|name| self.bind(name)).map_err(|name| {
            at.error(
                path,
                format!(
                    "variable '{name}' is used but never set before this step \
                     (set it in `variables`, a feeder's column, or `extract` it in an earlier step)"
                ),
            )
        })
    }
}

fn is_name(name: &str) -> bool {
    Parsed::parse(&format!("${{{name}}}")).is_ok_and(|p| p.names().count() == 1)
}

fn check_header_name(name: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("'{name}' is not a valid header name"))
}

fn compile_scenario(
    def: &ScenarioDef,
    path: &Path,
    (common, feeders): (&Common<'_>, &[Feeder]),
    at: &Locator<'_>,
) -> Result<Scenario, ScenarioError> {
    if def.steps.is_empty() {
        return Err(at.error(&path.key("steps"), "needs at least one step"));
    }
    let mut scope = Scope {
        constants: common.variables,
        slots: HashMap::new(),
    };
    let feeder = match &def.feeder {
        None => None,
        Some(name) => {
            let index = feeders
                .iter()
                .position(|f| f.name == *name)
                .ok_or_else(|| {
                    at.error(
                        &path.key("feeder"),
                        format!("no feeder named '{name}' in `feeders`"),
                    )
                })?;
            let mut slots = Vec::new();
            for column in &feeders[index].records.columns {
                if common.variables.contains_key(column) {
                    return Err(at.error(
                        &path.key("feeder"),
                        format!(
                            "feeder '{name}' has a column '{column}', already one of `variables`"
                        ),
                    ));
                }
                slots.push(scope.slot_of(column));
            }
            Some(FeederUse {
                feeder: index,
                slots,
            })
        }
    };
    let mut steps = Vec::new();
    for (i, step) in def.steps.iter().enumerate() {
        let path = path.key("steps").index(i);
        steps.push(match step {
            StepDef::Think(spec) => {
                let think: SleepSpec = spec
                    .parse()
                    .map_err(|m: String| at.error(&path.key("think"), m))?;
                if think.longest() > MAX_THINK {
                    return Err(at.error(
                        &path.key("think"),
                        format!(
                            "'{spec}' is longer than the most a think time may be, {MAX_THINK:?}"
                        ),
                    ));
                }
                Step::Think(think)
            }
            StepDef::Request(request) => Step::Request(Box::new(compile_request(
                request,
                &path.key("request"),
                common,
                &mut scope,
                at,
            )?)),
            StepDef::Tcp(tcp) => Step::Tcp(Box::new(compile_tcp(
                tcp,
                &path.key("tcp"),
                common,
                &scope,
                at,
            )?)),
            StepDef::Postgres(pg) => Step::Postgres(Box::new(compile_postgres(
                pg,
                &path.key("postgres"),
                common,
                &scope,
                at,
            )?)),
            StepDef::Websocket(ws) => Step::WebSocket(Box::new(compile_websocket(
                ws,
                &path.key("websocket"),
                common,
                &mut scope,
                at,
            )?)),
            StepDef::Grpc(call) => Step::Grpc(Box::new(compile_grpc(
                call,
                &path.key("grpc"),
                common,
                &mut scope,
                at,
            )?)),
        });
    }
    if steps.iter().all(|s| matches!(s, Step::Think(_))) {
        return Err(at.error(
            &path.key("steps"),
            "needs at least one step besides think times",
        ));
    }
    Ok(Scenario {
        name: intern(&def.name),
        steps,
        slots: scope.slots.len(),
        feeder,
    })
}

fn compile_request(
    def: &RequestDef,
    path: &Path,
    common: &Common<'_>,
    scope: &mut Scope<'_>,
    at: &Locator<'_>,
) -> Result<Request, ScenarioError> {
    let method_name = def.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let method = Method::from_bytes(method_name.as_bytes()).map_err(|_| {
        at.error(
            &path.key("method"),
            format!("'{method_name}' is not an HTTP method"),
        )
    })?;
    let url = scope.template(&def.url, &path.key("url"), at)?;
    let target = url
        .as_literal()
        .map(|literal| Target::parse(literal).map_err(|m| at.error(&path.key("url"), m)))
        .transpose()?;
    let mut headers = Vec::new();
    let own = def
        .headers
        .keys()
        .map(|n| n.to_ascii_lowercase())
        .collect::<Vec<_>>();
    let http2 = def.http2.unwrap_or(common.http2);
    let h2_header = |name: &str, path: &Path| {
        if http2 && crate::task::http::http2::is_connection_header(name) {
            Err(at.error(
                path,
                format!("'{name}' is not allowed in HTTP/2 (RFC 9113 §8.2.2)"),
            ))
        } else {
            Ok(())
        }
    };
    for (name, value) in &common.headers {
        if !own.contains(&name.to_ascii_lowercase()) {
            let path = Path::root().key("defaults").key("headers").key(name);
            h2_header(name, &path)?;
            headers.push((name.clone(), scope.template(value, &path, at)?));
        }
    }
    for (name, value) in &def.headers {
        let path = path.key("headers").key(name);
        check_header_name(name).map_err(|m| at.error(&path, m))?;
        h2_header(name, &path)?;
        headers.push((name.clone(), scope.template(value, &path, at)?));
    }
    let body = def
        .body
        .as_deref()
        .map(|b| scope.template(b, &path.key("body"), at))
        .transpose()?;
    let Judged { checks, extract } = compile_judging(
        (&def.check, &def.extract),
        Answer::Response,
        path,
        common,
        scope,
        at,
    )?;
    let needs_headers = checks.iter().any(|c| matches!(c, Check::Header(..)))
        || extract
            .iter()
            .any(|(_, s)| matches!(s, Source::Header(_) | Source::Cookie(_)));
    let serialised = fixed_request(&method, target.as_ref(), &headers, body.as_ref())
        .transpose()
        .map_err(|m| at.error(path, m))?
        .filter(|_| !http2);
    let needs_body = checks.iter().any(|c| {
        matches!(
            c,
            Check::BodyContains(_) | Check::BodyMatches(_) | Check::Json(..)
        )
    }) || extract
        .iter()
        .any(|(_, s)| matches!(s, Source::Json(_) | Source::Regex(..)));
    Ok(Request {
        name: intern(
            def.name
                .as_deref()
                .unwrap_or(&format!("{method} {}", def.url)),
        ),
        method,
        url,
        headers,
        body,
        timeout: def.timeout.map_or(common.timeout, |t| t.0),
        checks,
        extract,
        needs_body,
        needs_headers,
        http2,
        target,
        serialised,
    })
}

/// What a step's answer offers checks and extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// An HTTP response: a status, headers and a body.
    Response,
    /// A message (a WebSocket reply, a gRPC reply as JSON): a body only.
    Message,
}

/// A step's checks and extractions, compiled.
struct Judged {
    checks: Vec<Check>,
    extract: Vec<(usize, Source)>,
}

/// Compiles a step's checks and extractions. Call it after the step's own
/// templates are bound: the names it extracts are set once the step's
/// answer is in, so only the later steps can use them.
fn compile_judging(
    (check_defs, extract_defs): (&[CheckDef], &BTreeMap<String, ExtractDef>),
    answer: Answer,
    path: &Path,
    common: &Common<'_>,
    scope: &mut Scope<'_>,
    at: &Locator<'_>,
) -> Result<Judged, ScenarioError> {
    const BODY_ONLY: &str =
        "a message has no status or headers: check it with body_contains, body_matches or json";
    let mut checks = Vec::new();
    for (i, check) in check_defs.iter().enumerate() {
        let path = path.key("check").index(i);
        let check = compile_check(check, &path, at)?;
        if answer == Answer::Message && matches!(check, Check::Status(_) | Check::Header(..)) {
            return Err(at.error(&path, BODY_ONLY));
        }
        checks.push(check);
    }
    let mut extract = Vec::new();
    for (name, source) in extract_defs {
        let path = path.key("extract").key(name);
        if !is_name(name) || Builtin::named(name).is_some() {
            return Err(at.error(&path, format!("'{name}' cannot be a variable's name")));
        }
        if common.variables.contains_key(name) {
            return Err(at.error(
                &path,
                format!("'{name}' is already one of the file's `variables`"),
            ));
        }
        let source = compile_source(source, &path, at)?;
        if answer == Answer::Message && matches!(source, Source::Header(_) | Source::Cookie(_)) {
            return Err(at.error(
                &path,
                "a message has no headers or cookies: extract with json or regex",
            ));
        }
        extract.push((scope.slot_of(name), source));
    }
    Ok(Judged { checks, extract })
}

/// A WebSocket step.
#[derive(Debug)]
pub struct WebSocketStep {
    /// The step's name.
    pub name: &'static str,
    /// The name its connects report under: `NAME connect`.
    pub connect_name: &'static str,
    /// `ws://` or `wss://`.
    pub url: String,
    /// The message.
    pub send: Template,
    /// Whether it is sent as a binary message.
    pub binary: bool,
    /// Which reply it waits for.
    pub wait: Wait,
    /// What the reply must satisfy.
    pub checks: Vec<Check>,
    /// Variables set from the reply: slot and source.
    pub extract: Vec<(usize, Source)>,
    /// Its timeout, connect included.
    pub timeout: Duration,
}

/// Which reply a WebSocket step waits for.
#[derive(Debug)]
pub enum Wait {
    /// None.
    Nothing,
    /// The first.
    First,
    /// The first containing this text.
    Containing(Template),
}

fn compile_websocket(
    def: &WebSocketDef,
    path: &Path,
    common: &Common<'_>,
    scope: &mut Scope<'_>,
    at: &Locator<'_>,
) -> Result<WebSocketStep, ScenarioError> {
    websocket::Endpoint::parse(&def.url, None, true).map_err(|m| at.error(&path.key("url"), m))?;
    let send = scope.template(&def.send, &path.key("send"), at)?;
    let wait = match (&def.expect, def.no_reply) {
        (Some(_), true) => return Err(at.error(path, "give one of expect and no_reply")),
        (Some(text), false) if text.is_empty() => {
            return Err(at.error(
                &path.key("expect"),
                "an empty text (leave it out to take the first reply)",
            ));
        }
        (Some(text), false) => Wait::Containing(scope.template(text, &path.key("expect"), at)?),
        (None, false) => Wait::First,
        (None, true) => Wait::Nothing,
    };
    if def.no_reply && (!def.check.is_empty() || !def.extract.is_empty()) {
        return Err(at.error(
            &path.key("no_reply"),
            "checks and extractions need a reply to look at",
        ));
    }
    let Judged { checks, extract } = compile_judging(
        (&def.check, &def.extract),
        Answer::Message,
        path,
        common,
        scope,
        at,
    )?;
    let name = def
        .name
        .clone()
        .unwrap_or_else(|| format!("websocket {}", def.url));
    Ok(WebSocketStep {
        name: intern(&name),
        connect_name: intern(&format!("{name} connect")),
        url: def.url.clone(),
        send,
        binary: def.binary,
        wait,
        checks,
        extract,
        timeout: def.timeout.map_or(common.timeout, |t| t.0),
    })
}

/// A gRPC step.
#[derive(Debug)]
pub struct GrpcStep {
    /// The step's name.
    pub name: &'static str,
    /// The name its connects report under: `NAME connect`.
    pub connect_name: &'static str,
    /// `http://` or `https://` server.
    pub url: String,
    /// The method.
    pub method: grpc::Method,
    /// The request.
    pub request: GrpcRequest,
    /// The call's metadata.
    pub metadata: Vec<(tonic::metadata::AsciiMetadataKey, Template)>,
    /// What the reply must satisfy.
    pub checks: Vec<Check>,
    /// Variables set from the reply: slot and source.
    pub extract: Vec<(usize, Source)>,
    /// Its timeout, connect included.
    pub timeout: Duration,
}

/// A gRPC step's request.
#[derive(Debug)]
pub enum GrpcRequest {
    /// Encoded once: nothing in it varies.
    Encoded(bytes::Bytes),
    /// JSON rendered and encoded at each call.
    Json(Template),
}

fn compile_grpc(
    def: &GrpcDef,
    path: &Path,
    common: &Common<'_>,
    scope: &mut Scope<'_>,
    at: &Locator<'_>,
) -> Result<GrpcStep, ScenarioError> {
    grpc::Server::parse(&def.url, None, false).map_err(|m| at.error(&path.key("url"), m))?;
    let pool = common
        .pools
        .get(def.proto.as_str())
        .ok_or_else(|| format!("'{}' was not read with the scenario", def.proto))
        .and_then(|compiled| compiled.clone())
        .map_err(|m| at.error(&path.key("proto"), m))?;
    let method =
        grpc::Method::find(&pool, &def.method).map_err(|m| at.error(&path.key("method"), m))?;
    let json = scope.template(
        def.request.as_deref().unwrap_or("{}"),
        &path.key("request"),
        at,
    )?;
    let request = match json.as_literal() {
        Some(literal) => GrpcRequest::Encoded(
            method
                .encode(literal)
                .map_err(|m| at.error(&path.key("request"), m))?,
        ),
        None => GrpcRequest::Json(json),
    };
    let mut metadata = Vec::new();
    for (name, value) in &def.metadata {
        let path = path.key("metadata").key(name);
        let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes())
            .ok()
            .filter(|_| !name.ends_with("-bin"))
            .ok_or_else(|| {
                at.error(
                    &path,
                    format!("'{name}' is not a text metadata key (lower case, no -bin suffix)"),
                )
            })?;
        metadata.push((key, scope.template(value, &path, at)?));
    }
    let Judged { checks, extract } = compile_judging(
        (&def.check, &def.extract),
        Answer::Message,
        path,
        common,
        scope,
        at,
    )?;
    let name = def.name.as_deref().unwrap_or(&def.method);
    Ok(GrpcStep {
        name: intern(name),
        connect_name: intern(&format!("{name} connect")),
        url: def.url.clone(),
        method,
        request,
        metadata,
        checks,
        extract,
        timeout: def.timeout.map_or(common.timeout, |t| t.0),
    })
}

/// A TCP step.
#[derive(Debug)]
pub struct TcpStep {
    /// The step's name.
    pub name: &'static str,
    /// `host:port`.
    pub address: String,
    /// What it sends.
    pub send: Template,
    /// How much it reads.
    pub reply: Reply,
    /// What the reply must contain.
    pub expect: Option<Vec<u8>>,
    /// Its timeout, connect included.
    pub timeout: Duration,
}

/// A PostgreSQL step.
#[derive(Debug)]
pub struct PostgresStep {
    /// The step's name.
    pub name: &'static str,
    /// The connection URL.
    pub url: String,
    /// The statement.
    pub query: String,
    /// Its arguments.
    pub args: Vec<Template>,
    /// The rows it must return.
    pub rows: Option<u64>,
    /// Its timeout, connect included.
    pub timeout: Duration,
}

fn compile_tcp(
    def: &TcpDef,
    path: &Path,
    common: &Common<'_>,
    scope: &Scope<'_>,
    at: &Locator<'_>,
) -> Result<TcpStep, ScenarioError> {
    check_address(&def.address).map_err(|m| at.error(&path.key("address"), m))?;
    let reply = match (&def.until, def.read) {
        (Some(_), Some(_)) => return Err(at.error(path, "give one of until and read")),
        (Some(until), None) if until.is_empty() => {
            return Err(at.error(&path.key("until"), "an empty delimiter"));
        }
        (Some(until), None) => Reply::Until(until.as_bytes().to_vec()),
        (None, Some(length)) if length == 0 || length > MAX_REPLY => {
            return Err(at.error(&path.key("read"), format!("1 to {MAX_REPLY} bytes")));
        }
        (None, Some(length)) => Reply::Length(length),
        (None, None) => Reply::Nothing,
    };
    if def.expect.as_deref() == Some("") {
        return Err(at.error(
            &path.key("expect"),
            "an empty text (leave it out to check nothing)",
        ));
    }
    if def.expect.is_some() && reply == Reply::Nothing {
        return Err(at.error(
            &path.key("expect"),
            "needs a reply to check (until or read)",
        ));
    }
    Ok(TcpStep {
        name: intern(
            def.name
                .as_deref()
                .unwrap_or(&format!("tcp {}", def.address)),
        ),
        address: def.address.clone(),
        send: scope.template(&def.send, &path.key("send"), at)?,
        reply,
        expect: def.expect.as_ref().map(|e| e.as_bytes().to_vec()),
        timeout: def.timeout.map_or(common.timeout, |t| t.0),
    })
}

fn compile_postgres(
    def: &PostgresDef,
    path: &Path,
    common: &Common<'_>,
    scope: &Scope<'_>,
    at: &Locator<'_>,
) -> Result<PostgresStep, ScenarioError> {
    def.url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| at.error(&path.key("url"), format!("not a PostgreSQL URL: {e}")))?;
    if def.query.trim().is_empty() {
        return Err(at.error(&path.key("query"), "an empty statement"));
    }
    let mut args = Vec::new();
    for (i, arg) in def.args.iter().enumerate() {
        args.push(scope.template(arg, &path.key("args").index(i), at)?);
    }
    Ok(PostgresStep {
        name: intern(def.name.as_deref().unwrap_or(&def.query)),
        url: def.url.clone(),
        query: def.query.clone(),
        args,
        rows: def.rows,
        timeout: def.timeout.map_or(common.timeout, |t| t.0),
    })
}

/// The request's bytes, if nothing in it varies; an error if they cannot
/// be made (a header value that is not valid).
fn fixed_request(
    method: &Method,
    target: Option<&Target>,
    headers: &[(String, Template)],
    body: Option<&Template>,
) -> Option<Result<Vec<u8>, String>> {
    let target = target?;
    let headers = headers
        .iter()
        .map(|(name, value)| Some((name.clone(), value.as_literal()?.to_owned())))
        .collect::<Option<Vec<_>>>()?;
    let body = match body {
        Some(body) => body.as_literal()?,
        None => "",
    };
    Some(
        serialise(
            method,
            &target.path,
            &target.authority,
            &headers,
            body.as_bytes(),
        )
        .map_err(|e| format!("{e:#}")),
    )
}

fn regex(text: &str, path: &Path, at: &Locator<'_>) -> Result<Regex, ScenarioError> {
    Regex::new(text).map_err(|e| at.error(path, format!("not a valid regular expression: {e}")))
}

fn pointer(text: &str, path: &Path, at: &Locator<'_>) -> Result<String, ScenarioError> {
    if text.is_empty() || text.starts_with('/') {
        Ok(text.to_owned())
    } else {
        Err(at.error(
            path,
            format!("'{text}' is not a JSON pointer (they start with '/': /data/0/id)"),
        ))
    }
}

fn compile_check(def: &CheckDef, path: &Path, at: &Locator<'_>) -> Result<Check, ScenarioError> {
    let subjects = [
        def.status.is_some(),
        def.body_contains.is_some(),
        def.body_matches.is_some(),
        def.header.is_some(),
        def.json.is_some(),
    ];
    if subjects.iter().filter(|s| **s).count() != 1 {
        return Err(at.error(
            path,
            "a check needs exactly one of status, body_contains, body_matches, header and json",
        ));
    }
    let comparisons = [
        def.equals.is_some(),
        def.contains.is_some(),
        def.matches.is_some(),
    ];
    let compared = comparisons.iter().filter(|c| **c).count();
    if compared > 1 {
        return Err(at.error(
            path,
            "a check takes at most one of equals, contains and matches",
        ));
    }
    if compared == 1 && def.header.is_none() && def.json.is_none() {
        return Err(at.error(path, "equals, contains and matches go with header or json"));
    }
    let compare = if let Some(value) = &def.equals {
        Compare::Equals(value.clone())
    } else if let Some(text) = &def.contains {
        Compare::Contains(text.clone())
    } else if let Some(text) = &def.matches {
        Compare::Matches(regex(text, &path.key("matches"), at)?)
    } else {
        Compare::Present
    };
    Ok(if let Some(status) = &def.status {
        Check::Status(match status {
            OneOrMany::One(s) => vec![*s],
            OneOrMany::Many(list) => list.clone(),
        })
    } else if let Some(text) = &def.body_contains {
        Check::BodyContains(text.clone())
    } else if let Some(text) = &def.body_matches {
        Check::BodyMatches(regex(text, &path.key("body_matches"), at)?)
    } else if let Some(name) = &def.header {
        check_header_name(name).map_err(|m| at.error(&path.key("header"), m))?;
        Check::Header(name.clone(), compare)
    } else {
        let json = def.json.as_deref().unwrap_or_default();
        Check::Json(pointer(json, &path.key("json"), at)?, compare)
    })
}

fn compile_source(
    def: &ExtractDef,
    path: &Path,
    at: &Locator<'_>,
) -> Result<Source, ScenarioError> {
    let given = [
        def.json.is_some(),
        def.regex.is_some(),
        def.header.is_some(),
        def.cookie.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(at.error(path, "needs exactly one of json, regex, header and cookie"));
    }
    if def.group.is_some() && def.regex.is_none() {
        return Err(at.error(&path.key("group"), "goes with regex"));
    }
    Ok(if let Some(text) = &def.json {
        Source::Json(pointer(text, &path.key("json"), at)?)
    } else if let Some(text) = &def.regex {
        let re = regex(text, &path.key("regex"), at)?;
        let groups = re.captures_len() - 1;
        let group = def.group.unwrap_or(usize::from(groups > 0));
        if group > groups {
            return Err(at.error(
                &path.key("group"),
                format!("the expression has {groups} capture group(s), not {group}"),
            ));
        }
        Source::Regex(re, group)
    } else if let Some(name) = &def.header {
        Source::Header(name.clone())
    } else {
        Source::Cookie(def.cookie.clone().unwrap_or_default())
    })
}
