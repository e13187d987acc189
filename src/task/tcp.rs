//! The built-in `tcp` task, and the exchange the scenario's `tcp` step
//! uses: send bytes on a connection kept per instance, then read a reply up
//! to a delimiter or of a fixed length, and check it holds some text.
//!
//! `vajra-peer run --task tcp --param address=127.0.0.1:6379 \
//!   --param 'send=PING\r\n' --param 'until=\r\n' --param expect=PONG`
//!
//! A connection that fails or is closed is dropped; the next execution
//! opens another. Its connect is reported as the step `connect` (from when
//! the execution was due), so connect time shows apart from the exchange.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Context, Task, TaskError, TaskResult};
use crate::task::options::param_timeout;

/// Most bytes a reply may have before its delimiter.
pub const MAX_REPLY: usize = 1 << 20;
/// A reply's timeout when none is set (connect included).
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `tcp` task's `--param` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TcpOptions {
    /// `host:port` to connect to.
    pub address: String,
    /// Bytes to send, with escapes `\n`, `\r`, `\t`, `\0`, `\\`, `\xHH`.
    #[serde(default, deserialize_with = "crate::task::options::as_text")]
    pub send: String,
    /// Read the reply up to and including this delimiter (escapes too).
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub until: Option<String>,
    /// Or read a reply of exactly this many bytes.
    pub read: Option<usize>,
    /// The reply must contain this text (escapes too).
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub expect: Option<String>,
    /// Connect and exchange within this [default: 10s].
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub timeout: Option<String>,
    /// Open a new connection for every execution [default: false].
    #[serde(default)]
    pub reconnect: bool,
}

/// How much of the peer's answer makes a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nothing is read: the exchange ends once the bytes are sent.
    Nothing,
    /// Up to and including this delimiter.
    Until(Vec<u8>),
    /// Exactly this many bytes.
    Length(usize),
}

/// A connection and the bytes read past the last reply.
pub struct Connection {
    stream: TcpStream,
    unread: Vec<u8>,
}

impl Connection {
    /// Connects to `address` (host:port).
    pub async fn open(address: &str) -> Result<Self, TaskError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| TaskError::new("connect", format!("connecting to {address}: {e}")))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            unread: Vec::new(),
        })
    }

    /// Sends `bytes` and reads `reply`: the reply's bytes.
    pub async fn exchange(&mut self, bytes: &[u8], reply: &Reply) -> Result<Vec<u8>, TaskError> {
        self.stream.write_all(bytes).await?;
        match reply {
            Reply::Nothing => Ok(Vec::new()),
            Reply::Length(length) => {
                while self.unread.len() < *length {
                    self.fill().await?;
                }
                let rest = self.unread.split_off(*length);
                Ok(std::mem::replace(&mut self.unread, rest))
            }
            Reply::Until(delimiter) => {
                let mut searched = 0;
                loop {
                    if let Some(at) = find(&self.unread[searched..], delimiter) {
                        let end = searched + at + delimiter.len();
                        let rest = self.unread.split_off(end);
                        return Ok(std::mem::replace(&mut self.unread, rest));
                    }
                    if self.unread.len() > MAX_REPLY {
                        return Err(TaskError::new(
                            "reply_too_long",
                            format!("no delimiter in the first {MAX_REPLY} bytes"),
                        ));
                    }
                    searched = self.unread.len().saturating_sub(delimiter.len() - 1);
                    self.fill().await?;
                }
            }
        }
    }

    async fn fill(&mut self) -> Result<(), TaskError> {
        let mut chunk = [0u8; 8192];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(TaskError::new(
                "connection_closed",
                "the server closed the connection before the reply was whole",
            ));
        }
        self.unread.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `address` is `host:port`; `Err` says it is not.
pub fn check_address(address: &str) -> Result<(), String> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("'{address}' is not host:port")),
    }
}

/// `text` with its escapes (`\n`, `\r`, `\t`, `\0`, `\\`, `\xHH`) made
/// bytes; `Err` names a bad one.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut utf8 = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => bytes.push(b'\n'),
            Some('r') => bytes.push(b'\r'),
            Some('t') => bytes.push(b'\t'),
            Some('0') => bytes.push(0),
            Some('\\') => bytes.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)
                    .ok_or_else(|| format!("'\\x{hex}' is not a byte (two hex digits)"))?;
                bytes.push(byte);
            }
            Some(other) => return Err(format!("unknown escape '\\{other}'")),
            None => return Err("a lone '\\' at the end".into()),
        }
    }
    Ok(bytes)
}

/// The `tcp` task's options, checked: what every instance sends and reads.
#[derive(Debug)]
pub struct TcpPlan {
    address: String,
    send: Vec<u8>,
    reply: Reply,
    expect: Option<Vec<u8>>,
    timeout: Duration,
    reconnect: bool,
}

impl TcpPlan {
    /// Checks `options`; `Err` names the bad parameter.
    pub fn new(options: &TcpOptions) -> anyhow::Result<Self> {
        let field = |name: &str, text: &str| {
            unescape(text).map_err(|e| anyhow::anyhow!("--param {name}: {e}"))
        };
        check_address(&options.address).map_err(|e| anyhow::anyhow!("--param address: {e}"))?;
        let reply = match (&options.until, options.read) {
            (Some(_), Some(_)) => anyhow::bail!("--param until and read: give one of them"),
            (Some(until), None) => {
                let delimiter = field("until", until)?;
                if delimiter.is_empty() {
                    anyhow::bail!("--param until: an empty delimiter");
                }
                Reply::Until(delimiter)
            }
            (None, Some(length)) if length == 0 || length > MAX_REPLY => {
                anyhow::bail!("--param read: 1 to {MAX_REPLY} bytes")
            }
            (None, Some(length)) => Reply::Length(length),
            (None, None) => Reply::Nothing,
        };
        let expect = options
            .expect
            .as_deref()
            .map(|e| field("expect", e))
            .transpose()?;
        if expect.as_ref().is_some_and(Vec::is_empty) {
            anyhow::bail!("--param expect: an empty text (leave it out to check nothing)");
        }
        if expect.is_some() && reply == Reply::Nothing {
            anyhow::bail!("--param expect: needs a reply to check (until or read)");
        }
        let timeout = param_timeout(options.timeout.as_deref(), DEFAULT_TCP_TIMEOUT)?;
        Ok(Self {
            address: options.address.clone(),
            send: field("send", &options.send)?,
            reply,
            expect,
            timeout,
            reconnect: options.reconnect,
        })
    }
}

/// Checks a reply against the text it must contain.
pub fn check_reply(reply: &[u8], expect: Option<&[u8]>) -> Result<(), TaskError> {
    match expect {
        Some(text) if find(reply, text).is_none() => Err(TaskError::new(
            "unexpected_reply",
            format!(
                "the reply does not contain {:?}: {:?}",
                String::from_utf8_lossy(text),
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            ),
        )),
        _ => Ok(()),
    }
}

/// One instance of the `tcp` task.
pub struct TcpTask {
    plan: Arc<TcpPlan>,
    connection: Option<Connection>,
}

impl TcpTask {
    /// An instance sending and reading as `plan` says.
    pub fn new(plan: Arc<TcpPlan>) -> Self {
        Self {
            plan,
            connection: None,
        }
    }

    async fn exchange(&mut self, ctx: &Context<'_>) -> Result<(), TaskError> {
        let plan = Arc::clone(&self.plan);
        if plan.reconnect {
            self.connection = None;
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let started = std::time::Instant::now();
                let opened = Connection::open(&plan.address).await;
                ctx.record_step(
                    "connect",
                    ctx.intended_start(),
                    started,
                    opened.as_ref().err(),
                );
                self.connection.insert(opened?)
            }
        };
        let reply = connection.exchange(&plan.send, &plan.reply).await?;
        check_reply(&reply, plan.expect.as_deref())
    }
}

impl Task for TcpTask {
    async fn execute(&mut self, ctx: &mut Context<'_>) -> TaskResult {
        let timeout = self.plan.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(ctx)).await {
            Ok(result) => result,
            Err(_) => Err(TaskError::new(
                "timeout",
                format!("no whole reply within {timeout:?}"),
            )),
        };
        if result.is_err() {
            // Whatever is left of its reply would be read as the next one.
            self.connection = None;
        }
        result.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_bytes_and_bad_ones_are_named() {
        assert_eq!(
            unescape(r"PING\r\n\x00\\é").unwrap(),
            b"PING\r\n\0\\\xc3\xa9"
        );
        assert!(unescape(r"\q").unwrap_err().contains("'\\q'"));
        assert!(unescape(r"\x4").unwrap_err().contains("two hex digits"));
        assert!(unescape("a\\").unwrap_err().contains("lone"));
    }

    fn options(pairs: &[(&str, &str)]) -> anyhow::Result<TcpPlan> {
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| {
                let value = v.parse::<usize>().map_or(
                    serde_json::Value::String((*v).to_owned()),
                    serde_json::Value::from,
                );
                ((*k).to_owned(), value)
            })
            .collect();
        TcpPlan::new(&serde_json::from_value(map.into())?)
    }

    #[test]
    fn bad_options_are_named() {
        let e = |pairs: &[(&str, &str)]| options(pairs).unwrap_err().to_string();
        assert!(e(&[("address", "nowhere")]).contains("--param address"));
        assert!(e(&[("address", "h:1"), ("until", "x"), ("read", "3")]).contains("one of them"));
        assert!(e(&[("address", "h:1"), ("expect", "x")]).contains("needs a reply"));
        assert!(e(&[("address", "h:1"), ("until", "x"), ("expect", "")]).contains("empty text"));
        assert_eq!(check_reply(b"abc", Some(b"")), Ok(()), "never a panic");
        assert!(e(&[("address", "h:1"), ("timeout", "soon")]).contains("--param timeout"));
        assert!(options(&[("address", "h:1"), ("until", r"\n")]).is_ok());
    }

    #[tokio::test]
    async fn replies_split_at_the_delimiter_or_length_across_reads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = socket.read(&mut buf).await.unwrap();
            // Two replies and a half, in pieces.
            for piece in [&b"one;tw"[..], b"o;abc", b"def"] {
                socket.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut connection = Connection::open(&address).await.unwrap();
        let until = Reply::Until(b";".to_vec());
        assert_eq!(connection.exchange(b"go", &until).await.unwrap(), b"one;");
        assert_eq!(connection.exchange(b"", &until).await.unwrap(), b"two;");
        let six = Reply::Length(6);
        assert_eq!(connection.exchange(b"", &six).await.unwrap(), b"abcdef");
        let closed = connection.exchange(b"", &until).await.unwrap_err();
        assert_eq!(closed.kind(), "connection_closed");
    }
}
