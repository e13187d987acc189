//! The built-in `websocket` task (tokio-tungstenite): a connection kept
//! per instance; each execution sends one message and waits for the reply
//! that matches.
//!
//! `vajra-peer run --task websocket --param url=ws://127.0.0.1:8080/echo \
//!   --param 'send=hello' --param expect=hello`
//!
//! The connect (TCP, TLS for `wss://`, the upgrade) is reported as the
//! step `connect`, and the message's round trip, from the send to the
//! matching reply, as the step `message`: the execution covers both, so a
//! reconnect shows in it, and each part shows on its own. Messages that do
//! not match are read and passed over; pings are answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Bytes;
pub use tokio_tungstenite::tungstenite::Message;

use super::http::CaCertificates;
use super::http::tls::TlsTarget;
use super::{Context, Task, TaskError, TaskResult};
use crate::task::options::param_timeout;

/// A reply's timeout when none is set (connect included).
pub const DEFAULT_WS_TIMEOUT: Duration = Duration::from_secs(10);
/// Most messages read waiting for the one that matches.
pub const MAX_SKIPPED: usize = 10_000;

/// The `websocket` task's `--param` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebSocketOptions {
    /// `ws://host:port/path` or `wss://...`.
    pub url: String,
    /// The message to send.
    #[serde(default, deserialize_with = "crate::task::options::as_text")]
    pub send: String,
    /// Send it as a binary message [default: text].
    #[serde(default)]
    pub binary: bool,
    /// Wait for a reply containing this text [default: the first reply].
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub expect: Option<String>,
    /// Send without waiting for any reply [default: false].
    #[serde(default)]
    pub no_reply: bool,
    /// Connect and get the reply within this [default: 10s].
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub timeout: Option<String>,
}

/// Anything a WebSocket can run over: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket.
pub type Socket = WebSocketStream<Box<dyn Io>>;

/// Where a WebSocket URL points.
#[derive(Debug, Clone)]
pub struct Endpoint {
    url: String,
    address: String,
    tls: Option<Arc<TlsTarget>>,
}

impl Endpoint {
    /// `url` checked: `ws://` or `wss://` (verified against the built-in
    /// roots and `tls_ca`, or not at all with `skip_verify`).
    pub fn parse(
        url: &str,
        tls_ca: Option<&CaCertificates>,
        skip_verify: bool,
    ) -> Result<Self, String> {
        let origin = super::url::Origin::parse(url, super::url::WEBSOCKET)?;
        let tls = origin
            .secure
            .then(|| TlsTarget::new(&origin.host, tls_ca, skip_verify).map(Arc::new))
            .transpose()?;
        Ok(Self {
            url: url.to_owned(),
            address: origin.address,
            tls,
        })
    }

    /// Connects and upgrades.
    pub async fn connect(&self) -> Result<Socket, TaskError> {
        let tcp = TcpStream::connect(&self.address).await.map_err(|e| {
            TaskError::new("connect", format!("connecting to {}: {e}", self.address))
        })?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.tls {
            Some(tls) => Box::new(tls.handshake(tcp).await?),
            None => Box::new(tcp),
        };
        let (socket, _) = tokio_tungstenite::client_async(self.url.as_str(), io)
            .await
            .map_err(|e| TaskError::new("upgrade", format!("WebSocket upgrade: {e}")))?;
        Ok(socket)
    }
}

/// What to do with the replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Await {
    /// Nothing: the exchange ends once the message is sent.
    Nothing,
    /// The first reply.
    First,
    /// The first reply containing this text.
    Containing(String),
}

/// Sends `message` on `socket` and waits as `wait` says: the reply waited
/// for, if any.
pub async fn exchange(
    socket: &mut Socket,
    message: Message,
    wait: &Await,
) -> Result<Option<Message>, TaskError> {
    socket.send(message).await.map_err(ws_error)?;
    if *wait == Await::Nothing {
        return Ok(None);
    }
    for _ in 0..MAX_SKIPPED {
        let reply = match socket.next().await {
            Some(reply) => reply.map_err(ws_error)?,
            None => return Err(closed()),
        };
        let text: std::borrow::Cow<'_, str> = match &reply {
            Message::Text(text) => text.as_str().into(),
            Message::Binary(bytes) => String::from_utf8_lossy(bytes),
            Message::Close(_) => return Err(closed()),
            // Pings are answered by the next read or write.
            _ => continue,
        };
        match wait {
            Await::Containing(want) if !text.contains(want.as_str()) => continue,
            _ => return Ok(Some(reply)),
        }
    }
    Err(TaskError::new(
        "unexpected_reply",
        format!("no matching reply among {MAX_SKIPPED} messages"),
    ))
}

fn closed() -> TaskError {
    TaskError::new("connection_closed", "the server closed the WebSocket")
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> TaskError {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::ConnectionClosed | Error::AlreadyClosed => closed(),
        Error::Io(io) => io.into(),
        other => TaskError::new("websocket", other.to_string()),
    }
}

/// The `websocket` task's options, checked.
#[derive(Debug)]
pub struct WebSocketPlan {
    endpoint: Endpoint,
    message: Message,
    wait: Await,
    timeout: Duration,
}

impl WebSocketPlan {
    /// Checks `options`; `Err` names the bad parameter. `wss://` trusts
    /// `tls_ca` besides the built-in roots, or anything with `skip_verify`.
    pub fn new(
        options: &WebSocketOptions,
        (tls_ca, skip_verify): (Option<&CaCertificates>, bool),
    ) -> anyhow::Result<Self> {
        let endpoint = Endpoint::parse(&options.url, tls_ca, skip_verify)
            .map_err(|e| anyhow::anyhow!("--param url: {e}"))?;
        let wait = match (&options.expect, options.no_reply) {
            (Some(_), true) => anyhow::bail!("--param expect and no-reply: give one of them"),
            (Some(text), false) => Await::Containing(text.clone()),
            (None, false) => Await::First,
            (None, true) => Await::Nothing,
        };
        let message = if options.binary {
            Message::Binary(Bytes::from(options.send.clone().into_bytes()))
        } else {
            Message::text(options.send.clone())
        };
        let timeout = param_timeout(options.timeout.as_deref(), DEFAULT_WS_TIMEOUT)?;
        Ok(Self {
            endpoint,
            message,
            wait,
            timeout,
        })
    }
}

/// One instance of the `websocket` task.
pub struct WebSocketTask {
    plan: Arc<WebSocketPlan>,
    socket: Option<Socket>,
}

impl WebSocketTask {
    /// An instance sending `plan`'s message.
    pub fn new(plan: Arc<WebSocketPlan>) -> Self {
        Self { plan, socket: None }
    }

    async fn round_trip(&mut self, ctx: &Context<'_>) -> Result<(), TaskError> {
        let plan = Arc::clone(&self.plan);
        let socket = match &mut self.socket {
            Some(socket) => socket,
            None => {
                let started = Instant::now();
                let opened = plan.endpoint.connect().await;
                ctx.record_step(
                    "connect",
                    ctx.intended_start(),
                    started,
                    opened.as_ref().err(),
                );
                self.socket.insert(opened?)
            }
        };
        let sent = Instant::now();
        let outcome = exchange(socket, plan.message.clone(), &plan.wait)
            .await
            .map(drop);
        ctx.record_step("message", sent, sent, outcome.as_ref().err());
        outcome
    }
}

impl Task for WebSocketTask {
    async fn execute(&mut self, ctx: &mut Context<'_>) -> TaskResult {
        let timeout = self.plan.timeout;
        let result = match tokio::time::timeout(timeout, self.round_trip(ctx)).await {
            Ok(result) => result,
            Err(_) => Err(TaskError::new(
                "timeout",
                format!("no matching reply within {timeout:?}"),
            )),
        };
        if result.is_err() {
            // A late reply would be taken for the next message's.
            self.socket = None;
        }
        result.into()
    }

    async fn cleanup(&mut self) -> anyhow::Result<()> {
        if let Some(mut socket) = self.socket.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), socket.close(None)).await;
        }
        Ok(())
    }
}
