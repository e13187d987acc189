//! HTTP/2 for the `http` task (`--http2`): hyper's HTTP/2 client over our
//! own TCP and TLS streams.
//!
//! `https://` offers only `h2` in ALPN and refuses a server that does not
//! take it; `http://` speaks h2c with prior knowledge (RFC 9113 §3.3, as
//! h2load does), so no upgrade round trip is measured.
//!
//! Instances share connections: [`Pool`] puts up to `--h2-streams`
//! instances on each one, so that many of their requests run at once as
//! multiplexed streams (h2load's `-m`). With the default of 1, each
//! instance has a connection of its own.
//!
//! A shared connection that ends is replaced once, by whichever of its
//! instances notices first (the others take the replacement); every
//! replacement is counted in `http.reconnects`. A request the server never
//! got (hyper handed it back unsent) or refused without processing it (a
//! stream above a `GOAWAY`'s last stream id, or `REFUSED_STREAM`) is sent
//! once more whatever its method, as RFC 9113 §8.7 allows: on a new
//! connection after a `GOAWAY`, on the same one after `REFUSED_STREAM`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::Dial;
use super::client::{Headers, Kept};
use super::tls::TlsTarget;
use crate::task::TaskError;
use crate::task::websocket::Io;

/// How often an HTTP/2 connection with requests open is pinged, and how
/// long an answer may take: a connection whose server went silent (frozen,
/// or cut off without a reset) ends after at most twice this and is
/// replaced, instead of failing its requests as timeouts to the end.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);

/// The request body type every HTTP/2 request is sent with.
pub type Body = Full<Bytes>;

/// Headers RFC 9113 §8.2.2 forbids in an HTTP/2 request: they describe an
/// HTTP/1.1 connection. (`TE` is allowed there with the value `trailers`
/// only, which means nothing to a load test's requests: refused too.)
const CONNECTION_HEADERS: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is a header HTTP/2 forbids in a request.
pub fn is_connection_header(name: &str) -> bool {
    CONNECTION_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// The parts of an HTTP/2 request, checked once: what each send (or send
/// again) builds its request from.
#[derive(Debug, Clone)]
pub struct Parts {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Parts {
    /// `method` `uri` with `headers` and `body`; a `Host` header becomes
    /// the `:authority` (the address dialled stays the URL's). `Err` names
    /// the header that is not valid, or not allowed in HTTP/2.
    pub fn new<'a>(
        method: Method,
        mut uri: Uri,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: Bytes,
    ) -> Result<Self, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("'{name}' is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("'{name}' has an invalid value"))?;
            if is_connection_header(header.as_str()) {
                return Err(format!(
                    "'{name}' is not allowed in HTTP/2 (RFC 9113 §8.2.2)"
                ));
            }
            if header == hyper::header::HOST {
                uri = with_authority(uri, value.to_str().unwrap_or_default())?;
                continue;
            }
            map.append(header, value);
        }
        Ok(Self {
            method,
            uri,
            headers: map,
            body,
        })
    }

    /// The request.
    pub fn request(&self) -> Request<Body> {
        let mut request = Request::new(Body::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// `uri` with its authority replaced by `authority` (a `Host` header).
fn with_authority(uri: Uri, authority: &str) -> Result<Uri, String> {
    let mut parts = uri.into_parts();
    parts.authority = Some(
        authority
            .parse()
            .map_err(|_| format!("'Host: {authority}' is not a valid authority"))?,
    );
    Uri::from_parts(parts).map_err(|e| format!("'Host: {authority}': {e}"))
}

/// The connections of one run, each shared by up to `streams` instances.
#[derive(Debug)]
pub struct Pool {
    streams: usize,
    shared: parking_lot::Mutex<Vec<Arc<Shared>>>,
}

impl Pool {
    /// A pool putting up to `streams` instances (at least 1) on each
    /// connection.
    pub fn new(streams: usize) -> Self {
        Self {
            streams: streams.max(1),
            shared: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// A client for a new instance, on the first connection that has fewer
    /// than `streams` instances (an instance that ended frees its place),
    /// or on a connection of its own.
    pub fn join(&self) -> Client {
        let mut shared = self.shared.lock();
        // Each instance holds one reference; the pool holds one more.
        let free = shared
            .iter()
            .find(|s| Arc::strong_count(s) - 1 < self.streams)
            .cloned();
        let slot = free.unwrap_or_else(|| {
            let slot = Arc::new(Shared::default());
            shared.push(Arc::clone(&slot));
            slot
        });
        Client {
            shared: slot,
            current: None,
            retired: None,
        }
    }
}

/// One connection shared by the instances of a [`Pool`] slot: the latest
/// handle, replaced when the connection ends.
#[derive(Debug, Default)]
struct Shared {
    latest: tokio::sync::Mutex<Option<Handle>>,
}

/// A handle on one connection, and which of the slot's connections it is.
#[derive(Debug, Clone)]
struct Handle {
    sender: SendRequest<Body>,
    generation: u64,
}

/// What one HTTP/2 response was, as far as the task looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes received.
    pub body_len: u64,
}

/// An instance's way onto its shared connection (or its own: see
/// [`Client::alone`]).
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    current: Option<Handle>,
    /// The newest of the slot's connections this instance saw fail: it is
    /// not taken again even before hyper notices it closed (after a
    /// `GOAWAY` it drains its lower streams and looks open until then).
    retired: Option<u64>,
}

impl Client {
    /// A client on a connection of its own, shared with no other instance
    /// (a scenario's, one per origin).
    pub fn alone() -> Self {
        Pool::new(1).join()
    }

    /// Makes sure the shared connection is open (an instance's setup).
    pub(crate) async fn open(&mut self, dial: &Dial<'_>) -> Result<(), TaskError> {
        self.usable(dial).await.map(|_| ())
    }

    /// Sends the request `make` builds and reads the whole response,
    /// keeping what `kept` asks for of it. A request the server never got
    /// or refused unprocessed, or a `replayable` one whose reused
    /// connection failed before its response began, is sent once more, on
    /// a new connection if that one failed.
    pub(crate) async fn send(
        &mut self,
        dial: &Dial<'_>,
        (make, replayable): (impl Fn() -> Request<Body>, bool),
        mut kept: Option<&mut Kept>,
    ) -> Result<Answer, TaskError> {
        let reused = self.current.is_some();
        let sender = self.usable(dial).await?;
        let failed = match exchange(sender, make(), kept.as_deref_mut()).await {
            Ok(answer) => return Ok(answer),
            Err(failed) => failed,
        };
        if failed.connection {
            self.retire();
        }
        let again =
            failed.refused || (replayable && reused && failed.connection && !failed.response_began);
        if !again {
            return Err(failed.error);
        }
        let sender = self.usable(dial).await?;
        let result = exchange(sender, make(), kept).await;
        if result.as_ref().is_err_and(|f| f.connection) {
            self.retire();
        }
        result.map_err(|f| f.error)
    }

    /// Stops using the current connection: it failed.
    fn retire(&mut self) {
        if let Some(handle) = self.current.take() {
            self.retired = self.retired.max(Some(handle.generation));
        }
    }

    /// A sender on an open connection: this instance's own handle while
    /// its connection lives, else the slot's latest, else a new
    /// connection (made by one instance; the others wait for it).
    async fn usable(&mut self, dial: &Dial<'_>) -> Result<&mut SendRequest<Body>, TaskError> {
        if self.current.as_ref().is_some_and(|h| h.sender.is_closed()) {
            self.current = None;
        }
        if self.current.is_none() {
            let mut latest = self.shared.latest.lock().await;
            let retired = self.retired;
            let handle = match latest.as_ref() {
                Some(handle)
                    if !handle.sender.is_closed()
                        && retired.is_none_or(|old| handle.generation > old) =>
                {
                    handle.clone()
                }
                ended => {
                    let generation = ended.map_or(0, |h| h.generation + 1);
                    if generation > 0 {
                        dial.reconnects.add(1);
                    }
                    let sender = connect(dial).await?;
                    latest.insert(Handle { sender, generation }).clone()
                }
            };
            self.current = Some(handle);
        }
        Ok(&mut self.current.as_mut().expect("set above").sender)
    }
}

/// Opens a connection to `dial` and starts its driver task.
async fn connect(dial: &Dial<'_>) -> Result<SendRequest<Body>, TaskError> {
    handshake(open(dial.address, dial.tls).await?).await
}

/// The bytes under an HTTP/2 connection to `address`: TCP, or TLS over it
/// with `h2` agreed in ALPN (the `http` task's and the `grpc` task's).
pub(crate) async fn open(
    address: &str,
    tls: Option<&TlsTarget>,
) -> Result<TokioIo<Box<dyn Io>>, TaskError> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| TaskError::new("connect", format!("connecting to {address}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(target) => {
            let tls = target.handshake(tcp).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(TaskError::new(
                    "tls",
                    format!("{address} did not agree to HTTP/2 in the TLS handshake (ALPN h2)"),
                ));
            }
            Box::new(tls)
        }
    };
    Ok(TokioIo::new(io))
}

/// Runs the HTTP/2 preface and settings exchange over `io`, and spawns the
/// task that drives the connection until it ends.
async fn handshake<T>(io: T) -> Result<SendRequest<Body>, TaskError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .handshake(io)
        .await
        .map_err(|e| classify(&e))?;
    tokio::spawn(async move {
        // The connection's end is seen by its senders (`is_closed`, or a
        // request's error); nothing more to report here.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Why an exchange failed, and what that allows.
struct Failed {
    error: TaskError,
    /// The server never got the request, or refused it without processing
    /// it: it may be sent again whatever its method.
    refused: bool,
    /// The connection itself failed (not only this request's stream).
    connection: bool,
    /// The response's head had arrived (a body cut off).
    response_began: bool,
}

/// Sends `request` and reads its whole response, keeping its headers and
/// body as `kept` says (discarding them without one).
async fn exchange(
    sender: &mut SendRequest<Body>,
    request: Request<Body>,
    mut kept: Option<&mut Kept>,
) -> Result<Answer, Failed> {
    let response: Response<_> = sender
        .try_send_request(request)
        .await
        .map_err(|mut unsent| {
            let mut failed = failed(unsent.error());
            // Handed back: it never went on the wire (the connection had
            // closed, or was going away, before it could be sent).
            failed.refused |= unsent.take_message().is_some();
            failed
        })?;
    let status = response.status().as_u16();
    if let Some(kept) = kept.as_deref_mut() {
        kept.clear();
        let wanted = response
            .headers()
            .iter()
            .filter(|(name, _)| match kept.which {
                Headers::All => true,
                Headers::SetCookie => *name == hyper::header::SET_COOKIE,
            });
        let texts = wanted.map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        });
        kept.headers.extend(texts);
    }
    let mut body = response.into_body();
    let mut body_len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failed {
            response_began: true,
            ..failed(&e)
        })?;
        if let Some(data) = frame.data_ref() {
            body_len += data.len() as u64;
            if let Some(kept) = kept.as_deref_mut() {
                kept.keep_body(data);
            }
        }
    }
    Ok(Answer { status, body_len })
}

fn failed(error: &hyper::Error) -> Failed {
    let h2 = h2_error(error);
    let refused = h2.is_some_and(|e| {
        (e.is_go_away() && e.is_remote()) || e.reason() == Some(h2::Reason::REFUSED_STREAM)
    });
    let connection =
        error.is_closed() || error.is_canceled() || h2.is_some_and(|e| e.is_io() || e.is_go_away());
    Failed {
        error: classify(error),
        refused,
        connection,
        response_began: false,
    }
}

/// The h2 error under a hyper error, if there is one.
fn h2_error(error: &hyper::Error) -> Option<&h2::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        source = e.source();
    }
    None
}

/// The error kind of a failed HTTP/2 exchange: `h2_` and the RFC 9113
/// error code when the peer or the protocol gave one (`h2_refused_stream`,
/// `h2_protocol_error`), `connection_closed` when the connection ended,
/// else `http2`.
fn classify(error: &hyper::Error) -> TaskError {
    let message = format!("HTTP/2: {error}");
    if let Some(reason) = h2_error(error).and_then(h2::Error::reason) {
        return TaskError::new(reason_kind(reason), message);
    }
    let io = h2_error(error).is_some_and(h2::Error::is_io);
    if error.is_closed() || error.is_canceled() || error.is_incomplete_message() || io {
        return TaskError::new("connection_closed", message);
    }
    TaskError::new("http2", message)
}

/// The error kind of an RFC 9113 error code: one of the fourteen it
/// defines, or `h2_unknown_error` (so a server cannot grow the set of
/// kinds).
fn reason_kind(reason: h2::Reason) -> &'static str {
    const KINDS: [&str; 14] = [
        "h2_no_error",
        "h2_protocol_error",
        "h2_internal_error",
        "h2_flow_control_error",
        "h2_settings_timeout",
        "h2_stream_closed",
        "h2_frame_size_error",
        "h2_refused_stream",
        "h2_cancel",
        "h2_compression_error",
        "h2_connect_error",
        "h2_enhance_your_calm",
        "h2_inadequate_security",
        "h2_http_1_1_required",
    ];
    KINDS
        .get(u32::from(reason) as usize)
        .copied()
        .unwrap_or("h2_unknown_error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_become_bounded_kinds() {
        assert_eq!(reason_kind(h2::Reason::REFUSED_STREAM), "h2_refused_stream");
        assert_eq!(
            reason_kind(h2::Reason::HTTP_1_1_REQUIRED),
            "h2_http_1_1_required"
        );
        assert_eq!(reason_kind(h2::Reason::from(0xdead)), "h2_unknown_error");
    }

    #[test]
    fn the_pool_puts_at_most_streams_instances_on_a_connection() {
        let pool = Pool::new(3);
        let mut clients: Vec<Client> = (0..7).map(|_| pool.join()).collect();
        let connections = || pool.shared.lock().len();
        assert_eq!(connections(), 3, "7 instances, 3 on a connection");
        drop(clients.remove(1));
        clients.push(pool.join());
        assert_eq!(
            connections(),
            3,
            "the place an ended instance freed is taken"
        );
        clients.push(pool.join());
        clients.push(pool.join());
        assert_eq!(connections(), 3, "the third connection fills up");
        clients.push(pool.join());
        assert_eq!(connections(), 4);
    }
}
