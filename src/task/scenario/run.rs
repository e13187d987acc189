//! The task that runs a scenario's iterations.
//!
//! Each instance keeps one HTTP/1.1 connection per origin it has talked
//! to, across iterations (as a browser or k6's virtual user does); the
//! cookie jar and the variables are new at each iteration.
//!
//! Timing: the first request is due at the iteration's intended start;
//! each later one at the previous request's end plus the think times
//! between them. A request's latency counts from when it was due, its
//! service time from when it actually started, so a request held up by a
//! slow one before it is never reported as fast. (A think time's timer
//! fires on a 1 ms tick; waking up to 2 ms late counts as thinking.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Uri;
use parking_lot::Mutex;

use super::check::Response;
use super::check::{Check, Source};
use super::compile::{
    GrpcRequest, GrpcStep, PostgresStep, Request, Scenario, Scenarios, Step, TcpStep, Wait,
    WebSocketStep,
};
use super::cookies::Jar;
use super::feeder::Draw;
use super::template::Values;
use crate::metrics::events::EventCounter;
use crate::task::http::client::{Connection, Headers, Kept};
use crate::task::http::http2;
use crate::task::http::tls::TlsTarget;
use crate::task::http::{CaCertificates, Dial, RECONNECTS, send_reusing, serialise};
use crate::task::{
    Context, Task, TaskError, TaskFactory, TaskResult, grpc, postgres, tcp, websocket,
};

/// How late a think time's timer may fire and still count as thinking:
/// tokio's timer has a 1 ms tick.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Where a request goes, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether it is HTTPS.
    pub https: bool,
    /// The host, as in the URL.
    pub host: String,
    /// `host:port` to connect to.
    pub address: String,
    /// The `Host` header's value.
    pub authority: String,
    /// The path and query.
    pub path: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let origin = crate::task::url::Origin::parse(url, crate::task::url::HTTP)?;
        Ok(Self {
            https: origin.secure,
            path: origin.path().to_owned(),
            host: origin.host,
            address: origin.address,
            authority: origin.authority,
        })
    }
}

/// What every instance shares: the scenarios, how to verify servers, and
/// the TLS targets made so far (one per host, built once).
struct Shared {
    scenarios: Arc<Scenarios>,
    peer: String,
    tls_ca: Option<CaCertificates>,
    tls_skip_verify: bool,
    tls: Mutex<HashMap<String, Arc<TlsTarget>>>,
    /// The same for HTTP/2 (ALPN `h2`).
    tls_h2: Mutex<HashMap<String, Arc<TlsTarget>>>,
    /// WebSocket endpoints by URL.
    endpoints: Mutex<HashMap<String, Arc<websocket::Endpoint>>>,
    /// gRPC servers by URL.
    servers: Mutex<HashMap<String, Arc<grpc::Server>>>,
    reconnects: EventCounter,
    rows: EventCounter,
}

impl Shared {
    fn tls_for(&self, host: &str) -> Result<Arc<TlsTarget>, TaskError> {
        cached(&self.tls, host, || {
            TlsTarget::new(host, self.tls_ca.as_ref(), self.tls_skip_verify)
        })
    }

    fn tls_h2_for(&self, host: &str) -> Result<Arc<TlsTarget>, TaskError> {
        cached(&self.tls_h2, host, || {
            TlsTarget::http2(host, self.tls_ca.as_ref(), self.tls_skip_verify)
        })
    }

    fn endpoint_for(&self, url: &str) -> Result<Arc<websocket::Endpoint>, TaskError> {
        cached(&self.endpoints, url, || {
            websocket::Endpoint::parse(url, self.tls_ca.as_ref(), self.tls_skip_verify)
        })
    }

    fn server_for(&self, url: &str) -> Result<Arc<grpc::Server>, TaskError> {
        cached(&self.servers, url, || {
            grpc::Server::parse(url, self.tls_ca.as_ref(), self.tls_skip_verify)
        })
    }
}

/// Most hosts (or URLs) each of [`Shared`]'s caches holds: a URL templated
/// from a feeder may name a new host on every iteration.
const KEPT_TARGETS: usize = 1024;

/// The value for `key` in `cache`, made on first use and kept (another
/// forgotten if the cache holds [`KEPT_TARGETS`]); an error is the kind
/// `tls`: what can fail is building a server's TLS settings.
fn cached<T>(
    cache: &Mutex<HashMap<String, Arc<T>>>,
    key: &str,
    make: impl FnOnce() -> Result<T, String>,
) -> Result<Arc<T>, TaskError> {
    let mut known = cache.lock();
    if let Some(value) = known.get(key) {
        return Ok(Arc::clone(value));
    }
    let value = Arc::new(make().map_err(|e| TaskError::new("tls", e))?);
    if known.len() >= KEPT_TARGETS {
        // Which one goes matters little: a host forgotten is made again.
        if let Some(forgotten) = known.keys().next().cloned() {
            known.remove(&forgotten);
        }
    }
    known.insert(key.to_owned(), Arc::clone(&value));
    Ok(value)
}

/// An open connection to one origin.
struct Open {
    address: String,
    https: bool,
    tls: Option<Arc<TlsTarget>>,
    conn: Option<Connection>,
}

/// An HTTP/2 connection to one origin.
struct Open2 {
    address: String,
    https: bool,
    tls: Option<Arc<TlsTarget>>,
    client: http2::Client,
}

/// One instance of the `scenario` task.
pub struct ScenarioTask {
    shared: Arc<Shared>,
    rng: fastrand::Rng,
    connections: Vec<Open>,
    /// HTTP/2 connections, by origin.
    connections_h2: Vec<Open2>,
    jar: Jar,
    slots: Vec<String>,
    kept: Kept,
    /// TCP connections, by address.
    sockets: Vec<(String, tcp::Connection)>,
    /// PostgreSQL connections, by URL.
    databases: Vec<(String, postgres::Connection)>,
    /// WebSocket connections, by URL.
    websockets: Vec<(String, websocket::Socket)>,
    /// gRPC connections, by URL.
    grpc: Vec<(String, grpc::Client)>,
}

/// The factory behind the registered `scenario` task: `peer` names the
/// node in `${vajra.peer}`; HTTPS requests trust `tls_ca` besides the
/// built-in roots, or nothing if `tls_skip_verify`.
pub fn scenario_factory(
    scenarios: Arc<Scenarios>,
    peer: String,
    (tls_ca, tls_skip_verify): (Option<CaCertificates>, bool),
) -> impl TaskFactory<Task = ScenarioTask> {
    let shared = Arc::new(Shared {
        scenarios,
        peer,
        tls_ca,
        tls_skip_verify,
        tls: Mutex::new(HashMap::new()),
        tls_h2: Mutex::new(HashMap::new()),
        endpoints: Mutex::new(HashMap::new()),
        servers: Mutex::new(HashMap::new()),
        reconnects: EventCounter::named(RECONNECTS),
        rows: EventCounter::named(postgres::ROWS),
    });
    move |instance: usize| {
        let max_body = shared.scenarios.max_body;
        Ok(ScenarioTask {
            shared: Arc::clone(&shared),
            rng: fastrand::Rng::with_seed(fastrand::u64(..) ^ instance as u64),
            connections: Vec::new(),
            connections_h2: Vec::new(),
            jar: Jar::default(),
            slots: Vec::new(),
            kept: Kept::new(max_body),
            sockets: Vec::new(),
            databases: Vec::new(),
            websockets: Vec::new(),
            grpc: Vec::new(),
        })
    }
}

impl ScenarioTask {
    /// Fills the iteration's variables from its feeder's next record, if
    /// it has a feeder. `None` when the feeder ran out and the run stops:
    /// the iteration is not run (nothing failed, nothing was sent).
    async fn feed(
        &mut self,
        scenario: &Scenario,
        ctx: &Context<'_>,
    ) -> Option<Result<(), TaskError>> {
        self.jar.clear();
        self.slots.clear();
        self.slots.resize(scenario.slots, String::new());
        let Some(feeding) = &scenario.feeder else {
            return Some(Ok(()));
        };
        let feeder = &self.shared.scenarios.feeders[feeding.feeder];
        let row = match feeder.cursor.draw(&mut self.rng).await {
            Draw::Record(row) => row,
            Draw::Stop => {
                ctx.stop_run(format!("feeder '{}' has no records left", feeder.name));
                return None;
            }
            Draw::Exhausted => return Some(Err(exhausted(&feeder.name))),
            Draw::Unavailable(why) => {
                return Some(Err(TaskError::new(
                    "feeder_unavailable",
                    format!("feeder '{}': {why}", feeder.name),
                )));
            }
        };
        for (slot, value) in feeding.slots.iter().zip(&feeder.records.rows[row]) {
            self.slots[*slot].clone_from(value);
        }
        Some(Ok(()))
    }

    /// Runs `scenario`'s steps, its variables fed; the first failure ends
    /// it.
    async fn iterate(&mut self, scenario: &Scenario, ctx: &Context<'_>) -> Result<(), TaskError> {
        let mut due = ctx.intended_start();
        for step in &scenario.steps {
            match step {
                Step::Think(spec) => {
                    due += spec.pick(&mut self.rng);
                    tokio::time::sleep_until(due.into()).await;
                    // The timer fires on a 1 ms tick, so up to a tick late:
                    // that much is thinking, not the next request's
                    // latency. A later wake (a stalled generator) still
                    // counts against it.
                    due = Instant::now().min(due + TIMER_SLACK);
                }
                step => {
                    let started = Instant::now();
                    let (name, outcome) = self.step(step, scenario, ctx, due).await;
                    ctx.record_step(name, due, started, outcome.as_ref().err());
                    outcome?;
                    due = Instant::now();
                }
            }
        }
        Ok(())
    }

    /// Runs one step that is not a think time, due at `due`: its name and
    /// its outcome (within its timeout), after forgetting a connection the
    /// failure left out of step.
    async fn step(
        &mut self,
        step: &Step,
        scenario: &Scenario,
        ctx: &Context<'_>,
        due: Instant,
    ) -> (&'static str, Result<(), TaskError>) {
        match step {
            Step::Think(_) => unreachable!("think times are waited for by the iteration"),
            Step::Request(request) => (request.name, self.request(request, scenario, ctx).await),
            Step::Tcp(tcp) => {
                let outcome = within(tcp.timeout, self.tcp(tcp, scenario, ctx)).await;
                if outcome.is_err() {
                    // What is left of its reply would be read as the next.
                    self.sockets.retain(|(address, _)| *address != tcp.address);
                }
                (tcp.name, outcome)
            }
            Step::Postgres(pg) => {
                let outcome = within(pg.timeout, self.postgres(pg, scenario, ctx)).await;
                if let Err(e) = &outcome
                    && postgres::drops_connection(e.kind())
                {
                    self.drop_database(&pg.url, e.kind() == "timeout");
                }
                (pg.name, outcome)
            }
            Step::WebSocket(ws) => {
                let sent = self.websocket(ws, scenario, ctx, due);
                let outcome = within(ws.timeout, sent).await;
                if outcome.as_ref().is_err_and(|e| !Check::judged(e.kind())) {
                    // A late reply would be taken for the next message's.
                    self.websockets.retain(|(url, _)| *url != ws.url);
                }
                (ws.name, outcome)
            }
            Step::Grpc(call) => {
                let called = self.grpc(call, scenario, ctx, due);
                let outcome = within(call.timeout, called).await;
                if outcome
                    .as_ref()
                    .is_err_and(|e| grpc::drops_connection(e.kind()))
                {
                    self.grpc.retain(|(url, _)| *url != call.url);
                }
                (call.name, outcome)
            }
        }
    }

    fn values<'v>(&'v mut self, scenario: &'v Scenario, ctx: &Context<'_>) -> Values<'v> {
        Values {
            slots: &self.slots,
            iteration: ctx.iteration(),
            instance: ctx.instance(),
            peer: &self.shared.peer,
            scenario: scenario.name,
            rng: &mut self.rng,
        }
    }

    /// Drops the connection to `url`, cancelling its statement first if it
    /// was cut off by a timeout.
    fn drop_database(&mut self, url: &str, cancel: bool) {
        if let Some(index) = self.databases.iter().position(|(u, _)| u == url) {
            let (_, connection) = self.databases.swap_remove(index);
            if cancel {
                connection.cancel_in_background();
            }
        }
    }

    /// Sends a TCP step's bytes on the instance's connection to its
    /// address and checks the reply.
    async fn tcp(
        &mut self,
        step: &TcpStep,
        scenario: &Scenario,
        ctx: &Context<'_>,
    ) -> Result<(), TaskError> {
        let bytes = step.send.render(&mut self.values(scenario, ctx));
        let opening = tcp::Connection::open(&step.address);
        let connection = kept_open(&mut self.sockets, &step.address, None, opening).await?;
        let reply = connection.exchange(bytes.as_bytes(), &step.reply).await?;
        tcp::check_reply(&reply, step.expect.as_deref())
    }

    /// Sends a WebSocket step's message on the instance's connection to its
    /// URL (opened first if there is none, reported as the step's connect,
    /// timed from `due`) and judges the reply.
    async fn websocket(
        &mut self,
        step: &WebSocketStep,
        scenario: &Scenario,
        ctx: &Context<'_>,
        due: Instant,
    ) -> Result<(), TaskError> {
        let mut values = self.values(scenario, ctx);
        let text = step.send.render(&mut values);
        let message = if step.binary {
            websocket::Message::Binary(text.into_bytes().into())
        } else {
            websocket::Message::text(text)
        };
        let wait = match &step.wait {
            Wait::Nothing => websocket::Await::Nothing,
            Wait::First => websocket::Await::First,
            Wait::Containing(text) => websocket::Await::Containing(text.render(&mut values)),
        };
        let shared = &self.shared;
        let opening = async { shared.endpoint_for(&step.url)?.connect().await };
        let reported = Some((ctx, step.connect_name, due));
        let socket = kept_open(&mut self.websockets, &step.url, reported, opening).await?;
        let reply = websocket::exchange(socket, message, &wait).await?;
        match reply {
            Some(reply) => self.judge(&reply.into_data(), &step.checks, &step.extract),
            None => Ok(()),
        }
    }

    /// Makes a gRPC step's call on the instance's connection to its server
    /// (opened first if there is none, reported as the step's connect,
    /// timed from `due`) and judges the reply.
    async fn grpc(
        &mut self,
        step: &GrpcStep,
        scenario: &Scenario,
        ctx: &Context<'_>,
        due: Instant,
    ) -> Result<(), TaskError> {
        let mut values = self.values(scenario, ctx);
        let request = match &step.request {
            GrpcRequest::Encoded(bytes) => bytes.clone(),
            GrpcRequest::Json(json) => step
                .method
                .encode(&json.render(&mut values))
                .map_err(|e| TaskError::new("grpc_request", e))?,
        };
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (key, value) in &step.metadata {
            let text = value.render(&mut values);
            let value = text.parse().map_err(|_| {
                TaskError::new(
                    "grpc_metadata",
                    format!("metadata '{key}': '{text}' is not a valid value"),
                )
            })?;
            metadata.insert(key.clone(), value);
        }
        let shared = &self.shared;
        let opening = async { shared.server_for(&step.url)?.connect().await };
        let reported = Some((ctx, step.connect_name, due));
        let client = kept_open(&mut self.grpc, &step.url, reported, opening).await?;
        let reply = grpc::call(client, &step.method, request, (metadata, step.timeout)).await?;
        if step.checks.is_empty() && step.extract.is_empty() {
            return Ok(());
        }
        let json = grpc::reply_json(&reply).map_err(|e| TaskError::new("grpc_bad_reply", e))?;
        self.judge(&json, &step.checks, &step.extract)
    }

    /// Applies `checks` to a message's `body` (kept up to the file's
    /// `max_body`) and sets the variables `extract` takes from it.
    fn judge(
        &mut self,
        body: &[u8],
        checks: &[Check],
        extract: &[(usize, Source)],
    ) -> Result<(), TaskError> {
        let limit = self.shared.scenarios.max_body;
        self.kept.headers.clear();
        self.kept.body.clear();
        self.kept
            .body
            .extend_from_slice(&body[..body.len().min(limit)]);
        self.kept.truncated = body.len() > limit;
        let mut seen = Response::new(0, &self.kept);
        for check in checks {
            check.verify(&mut seen)?;
        }
        for (slot, source) in extract {
            self.slots[*slot] = source.extract(&mut seen)?;
        }
        Ok(())
    }

    /// Runs a PostgreSQL step's statement on the instance's connection to
    /// its database and checks the rows.
    async fn postgres(
        &mut self,
        step: &PostgresStep,
        scenario: &Scenario,
        ctx: &Context<'_>,
    ) -> Result<(), TaskError> {
        let mut values = self.values(scenario, ctx);
        let args: Vec<String> = step.args.iter().map(|a| a.render(&mut values)).collect();
        let opening = postgres::Connection::open(&step.url);
        let connection = kept_open(&mut self.databases, &step.url, None, opening).await?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let rows = connection.run(&step.query, &args).await?;
        self.shared.rows.add(rows);
        postgres::check_rows(rows, step.rows)
    }

    /// Sends one request and applies its checks and extractions.
    async fn request(
        &mut self,
        request: &Request,
        scenario: &Scenario,
        ctx: &Context<'_>,
    ) -> Result<(), TaskError> {
        let shared = Arc::clone(&self.shared);
        let mut values = Values {
            slots: &self.slots,
            iteration: ctx.iteration(),
            instance: ctx.instance(),
            peer: &shared.peer,
            scenario: scenario.name,
            rng: &mut self.rng,
        };
        let rendered;
        let target = match &request.target {
            Some(target) => target,
            None => {
                let url = request.url.render(&mut values);
                rendered = Target::parse(&url).map_err(|e| TaskError::new("url", e))?;
                &rendered
            }
        };
        let cookies = shared.scenarios.cookies;
        let cookie = cookies
            .then(|| {
                self.jar
                    .header_for(&target.host, &target.path, target.https)
            })
            .flatten();
        let head = request.method == hyper::Method::HEAD;
        let replayable = request.method.is_idempotent();
        let keep = cookies || !request.checks.is_empty() || !request.extract.is_empty();
        self.kept.body_limit = if request.needs_body {
            shared.scenarios.max_body
        } else {
            0
        };
        self.kept.which = if request.needs_headers {
            Headers::All
        } else {
            Headers::SetCookie
        };
        let status = if request.http2 {
            let parts = h2_parts(request, target, cookie, &mut values)?;
            self.send_h2(
                &shared,
                target,
                (&parts, replayable),
                (request.timeout, keep),
            )
            .await?
        } else {
            let bytes = match (&request.serialised, cookie) {
                (Some(fixed), None) => std::borrow::Cow::Borrowed(fixed.as_slice()),
                (_, cookie) => {
                    let mut headers = rendered_headers(request, &mut values);
                    headers.extend(cookie.map(|c| ("Cookie".to_owned(), c)));
                    let body = rendered_body(request, &mut values);
                    let (path, authority) = (&target.path, &target.authority);
                    serialise(&request.method, path, authority, &headers, body.as_bytes())
                        .map(std::borrow::Cow::Owned)
                        .map_err(|e| TaskError::new("request", format!("{e:#}")))?
                }
            };
            self.send_h1(
                &shared,
                target,
                (&bytes, head, replayable),
                (request.timeout, keep),
            )
            .await?
        };
        if !keep {
            return default_status(status);
        }
        if cookies {
            for (name, value) in &self.kept.headers {
                if name == "set-cookie" {
                    self.jar.store(value, &target.host, &target.path);
                }
            }
        }
        let mut seen = Response::new(status, &self.kept);
        if !request.checks.iter().any(|c| matches!(c, Check::Status(_))) {
            default_status(status)?;
        }
        for check in &request.checks {
            check.verify(&mut seen)?;
        }
        for (slot, source) in &request.extract {
            self.slots[*slot] = source.extract(&mut seen)?;
        }
        Ok(())
    }

    /// Sends an HTTP/1.1 request's bytes (`head` for a HEAD request's,
    /// `replayable` if it may be sent again on a new connection) on the
    /// instance's connection to `target`, keeping what [`Kept`] asks for
    /// if `keep`: the response's status.
    async fn send_h1(
        &mut self,
        shared: &Shared,
        target: &Target,
        (bytes, head, replayable): (&[u8], bool, bool),
        (timeout, keep): (Duration, bool),
    ) -> Result<u16, TaskError> {
        // Connecting counts against the request's timeout too: a target
        // that never answers the handshake is a timeout, not a long wait.
        let opened = tokio::time::timeout(timeout, open(&mut self.connections, shared, target));
        let open = opened.await.map_err(|_| {
            TaskError::new("timeout", format!("no connection within {timeout:?}"))
        })??;
        let dial = Dial {
            address: &open.address,
            tls: open.tls.as_deref(),
            reconnects: &shared.reconnects,
        };
        let kept = keep.then_some(&mut self.kept);
        let sent = send_reusing(&mut open.conn, &dial, (bytes, head, replayable), kept);
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(response)) => Ok(response.status),
            Ok(Err(e)) => {
                open.conn = None;
                Err(e)
            }
            Err(_) => {
                open.conn = None;
                Err(TaskError::new(
                    "timeout",
                    format!("no response within {timeout:?}"),
                ))
            }
        }
    }

    /// Sends an HTTP/2 request on the instance's connection to `target`'s
    /// origin (its client replaces a connection that ended, and sends
    /// again what RFC 9113 allows), keeping what [`Kept`] asks for if
    /// `keep`: the response's status.
    async fn send_h2(
        &mut self,
        shared: &Shared,
        target: &Target,
        (parts, replayable): (&http2::Parts, bool),
        (timeout, keep): (Duration, bool),
    ) -> Result<u16, TaskError> {
        let found = most_recent(&mut self.connections_h2, |o| {
            o.address == target.address && o.https == target.https
        });
        let index = match found {
            Some(index) => index,
            None => {
                let tls = if target.https {
                    Some(shared.tls_h2_for(&target.host)?)
                } else {
                    None
                };
                self.connections_h2.push(Open2 {
                    address: target.address.clone(),
                    https: target.https,
                    tls,
                    client: http2::Client::alone(),
                });
                self.connections_h2.len() - 1
            }
        };
        let open = &mut self.connections_h2[index];
        let dial = Dial {
            address: &open.address,
            tls: open.tls.as_deref(),
            reconnects: &shared.reconnects,
        };
        let kept = keep.then_some(&mut self.kept);
        let sent = open
            .client
            .send(&dial, (|| parts.request(), replayable), kept);
        // Connecting is inside the send, so inside the timeout.
        match tokio::time::timeout(timeout, sent).await {
            Ok(answer) => Ok(answer?.status),
            Err(_) => Err(TaskError::new(
                "timeout",
                format!("no response within {timeout:?}"),
            )),
        }
    }
}

/// A request's headers, rendered.
fn rendered_headers(request: &Request, values: &mut Values<'_>) -> Vec<(String, String)> {
    request
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.render(values)))
        .collect()
}

/// A request's body, rendered (empty without one).
fn rendered_body(request: &Request, values: &mut Values<'_>) -> String {
    request
        .body
        .as_ref()
        .map(|b| b.render(values))
        .unwrap_or_default()
}

/// An HTTP/2 request's parts for `target`, with the jar's `cookie`.
fn h2_parts(
    request: &Request,
    target: &Target,
    cookie: Option<String>,
    values: &mut Values<'_>,
) -> Result<http2::Parts, TaskError> {
    let scheme = if target.https { "https" } else { "http" };
    let uri: Uri = format!("{scheme}://{}{}", target.authority, target.path)
        .parse()
        .map_err(|e| TaskError::new("url", format!("{e}")))?;
    let mut headers = rendered_headers(request, values);
    headers.extend(cookie.map(|c| ("cookie".to_owned(), c)));
    let body = rendered_body(request, values);
    let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    http2::Parts::new(
        request.method.clone(),
        uri,
        headers,
        body.into_bytes().into(),
    )
    .map_err(|e| TaskError::new("request", format!("header {e}")))
}

/// Most origins an instance keeps a connection to. A URL templated from a
/// feeder may name a new host on every iteration; without a bound each
/// instance would keep a socket open to every host it ever reached.
const KEPT_ORIGINS: usize = 16;

/// Index of the entry of `list` that `is`, moved to the end as the most
/// recently used; or `None`, after making room for one more by dropping
/// the least recently used (the first) if `list` holds [`KEPT_ORIGINS`].
fn most_recent<T>(list: &mut Vec<T>, is: impl Fn(&T) -> bool) -> Option<usize> {
    match list.iter().position(is) {
        Some(index) => {
            // A no-op for the usual single origin, already last.
            list[index..].rotate_left(1);
            Some(list.len() - 1)
        }
        None => {
            if list.len() >= KEPT_ORIGINS {
                list.remove(0);
            }
            None
        }
    }
}

/// The connection to `target`'s origin among `connections`, opened on
/// first use (the least recently used one closed if there are
/// [`KEPT_ORIGINS`]).
async fn open<'a>(
    connections: &'a mut Vec<Open>,
    shared: &Shared,
    target: &Target,
) -> Result<&'a mut Open, TaskError> {
    let found = most_recent(connections, |o| {
        o.address == target.address && o.https == target.https
    });
    let index = match found {
        Some(index) => index,
        None => {
            let tls = if target.https {
                Some(shared.tls_for(&target.host)?)
            } else {
                None
            };
            let dial = Dial {
                address: &target.address,
                tls: tls.as_deref(),
                reconnects: &shared.reconnects,
            };
            let conn = Some(dial.connect().await?);
            connections.push(Open {
                address: target.address.clone(),
                https: target.https,
                tls,
                conn,
            });
            connections.len() - 1
        }
    };
    Ok(&mut connections[index])
}

/// The connection kept under `key` among `open`, opened by `opening` if
/// there is none (a future does nothing until awaited, so it is not run
/// otherwise); an opening is reported as the step `reported` names, timed
/// from when that step was due.
async fn kept_open<'a, C>(
    open: &'a mut Vec<(String, C)>,
    key: &str,
    reported: Option<(&Context<'_>, &'static str, Instant)>,
    opening: impl std::future::Future<Output = Result<C, TaskError>>,
) -> Result<&'a mut C, TaskError> {
    // Found first: a borrow of the list held across the await below would
    // need the connections to be `Sync`.
    let found = open.iter().position(|(k, _)| k == key);
    let index = match found {
        Some(index) => index,
        None => {
            let started = Instant::now();
            let opened = opening.await;
            if let Some((ctx, name, due)) = reported {
                ctx.record_step(name, due, started, opened.as_ref().err());
            }
            open.push((key.to_owned(), opened?));
            open.len() - 1
        }
    };
    Ok(&mut open[index].1)
}

/// `step`'s outcome, or a timeout after `limit`.
async fn within(
    limit: Duration,
    step: impl std::future::Future<Output = Result<(), TaskError>>,
) -> Result<(), TaskError> {
    tokio::time::timeout(limit, step).await.unwrap_or_else(|_| {
        Err(TaskError::new(
            "timeout",
            format!("no whole answer within {limit:?}"),
        ))
    })
}

fn exhausted(feeder: &str) -> TaskError {
    TaskError::new(
        "feeder_exhausted",
        format!("feeder '{feeder}' has no records left"),
    )
}

/// A response's status judged without a status check: below 400 passes.
fn default_status(status: u16) -> Result<(), TaskError> {
    if status < 400 {
        Ok(())
    } else {
        Err(TaskError::new(
            format!("status_{status}"),
            format!("HTTP status {status}"),
        ))
    }
}

impl Task for ScenarioTask {
    async fn execute(&mut self, ctx: &mut Context<'_>) -> TaskResult {
        let scenarios = Arc::clone(&self.shared.scenarios);
        let scenario = scenarios.pick(&mut self.rng);
        let result: TaskResult = match self.feed(scenario, ctx).await {
            None => return TaskResult::NotRun,
            Some(Err(error)) => TaskResult::failure(error),
            Some(Ok(())) => self.iterate(scenario, ctx).await.into(),
        };
        result.tagged(scenario.name)
    }

    async fn cleanup(&mut self) -> anyhow::Result<()> {
        self.connections.clear();
        self.connections_h2.clear();
        self.sockets.clear();
        self.databases.clear();
        self.grpc.clear();
        for (_, mut socket) in self.websockets.drain(..) {
            let _ = tokio::time::timeout(Duration::from_millis(200), socket.close(None)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_keeps_its_recent_origins_and_closes_the_least_recent() {
        let mut open: Vec<u32> = Vec::new();
        for origin in 0..KEPT_ORIGINS as u32 {
            assert_eq!(most_recent(&mut open, |&o| o == origin), None);
            open.push(origin);
        }
        // Origin 0, used again, is the most recent; 1 is now the least.
        assert_eq!(most_recent(&mut open, |&o| o == 0), Some(KEPT_ORIGINS - 1));
        assert_eq!(open.last(), Some(&0));
        // A new origin makes room by dropping 1, not the 0 just used.
        assert_eq!(most_recent(&mut open, |&o| o == 100), None);
        open.push(100);
        assert_eq!(open.len(), KEPT_ORIGINS);
        assert!(!open.contains(&1) && open.contains(&0), "{open:?}");
        // The one in use stays where it is: last.
        assert_eq!(
            most_recent(&mut open, |&o| o == 100),
            Some(KEPT_ORIGINS - 1)
        );
        assert_eq!(open.len(), KEPT_ORIGINS);
    }

    #[test]
    fn a_cache_of_targets_stays_bounded() {
        let cache = Mutex::new(HashMap::new());
        for host in 0..KEPT_TARGETS + 10 {
            let made = cached(&cache, &format!("h{host}"), || Ok(host)).unwrap();
            assert_eq!(*made, host);
        }
        assert_eq!(cache.lock().len(), KEPT_TARGETS);
        let last = format!("h{}", KEPT_TARGETS + 9);
        let again = cached(&cache, &last, || Ok(0)).unwrap();
        assert_eq!(*again, KEPT_TARGETS + 9, "a recent host is found, not made");
    }
}
