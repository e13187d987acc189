//! A lean HTTP/1.1 client connection: one request at a time, keep-alive.
//!
//! The `http` task's hot path. The request is serialised once per run and
//! written with a single `write`; the response is parsed in place with
//! `httparse` (the parser hyper uses) and its body is read and discarded
//! without allocating. Per request that is one write and usually one read
//! system call, the same as wrk, and no allocation. Measured against hyper's
//! client connection this closed most of the gap to wrk (see
//! docs/benchmarks.md).
//!
//! Over HTTPS the same bytes go through a TLS session ([`super::tls`]).
//!
//! Framing follows RFC 9112: interim 1xx responses are skipped; HEAD, 204
//! and 304 responses have no body; `Transfer-Encoding: chunked` is decoded;
//! otherwise `Content-Length` is read; a response with neither is read to
//! the end of the connection.

use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::TlsTarget;
use crate::task::TaskError;

/// Read buffer size; larger bodies stream through it.
const BUFFER: usize = 16 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 64;
/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What the client needs to know about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes received.
    pub body_len: u64,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// What a response carried besides its status, kept for a caller that
/// looks at it (a scenario's checks and extractions, its cookie jar).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The headers kept (`which`), names in lower case, in the order
    /// received.
    pub headers: Vec<(String, String)>,
    /// Which headers to keep.
    pub which: Headers,
    /// The body, up to `body_limit` bytes.
    pub body: Vec<u8>,
    /// Most body bytes kept; the rest is read and discarded.
    pub body_limit: usize,
    /// Whether the body was longer than `body_limit`.
    pub truncated: bool,
}

/// Which response headers a [`Kept`] keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// Every one.
    #[default]
    All,
    /// Only `Set-Cookie` (for a cookie jar), so the others cost nothing.
    SetCookie,
}

impl Kept {
    /// Empty, keeping up to `body_limit` body bytes (0 keeps headers only).
    pub fn new(body_limit: usize) -> Self {
        Self {
            body_limit,
            ..Self::default()
        }
    }

    /// Forgets the last response.
    pub(crate) fn clear(&mut self) {
        self.headers.clear();
        self.body.clear();
        self.truncated = false;
    }

    /// Keeps `bytes` of a body, up to the limit.
    pub(crate) fn keep_body(&mut self, bytes: &[u8]) {
        let room = self.body_limit.saturating_sub(self.body.len());
        self.truncated |= bytes.len() > room;
        self.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// The bytes under a connection: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Writes all of `bytes`; over TLS the records are flushed to the
    /// socket before returning.
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.write_all(bytes).await,
            Self::Tls(tls) => {
                tls.write_all(bytes).await?;
                tls.flush().await
            }
        }
    }

    async fn receive(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.read(buf).await,
            Self::Tls(tls) => tls.read(buf).await,
        }
    }

    /// Whether the server has closed (or reset) the connection, or sent
    /// unsolicited bytes on a plain one, judged without waiting: a peek at
    /// the socket that returns at once. Over TLS unread bytes are normal
    /// (a session ticket), so only the end of the stream counts there.
    fn closed_by_peer(&self) -> bool {
        let (tcp, tls) = match self {
            Self::Plain(tcp) => (tcp, false),
            Self::Tls(tls) => (tls.get_ref().0, true),
        };
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        match tcp.poll_peek(&mut cx, &mut buf) {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(_)) => !tls,
        }
    }
}

/// One open connection.
pub struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Whether any byte of the current response has arrived.
    response_started: bool,
    /// When the last response ended (or the connection opened).
    idle_since: Instant,
}

/// How the body of a response is delimited.
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn protocol(message: impl Into<String>) -> TaskError {
    TaskError::new("protocol", message)
}

fn closed() -> TaskError {
    TaskError::new(
        "connection_closed",
        "server closed the connection mid-response",
    )
}

impl Connection {
    /// Connects to `address` (`host:port`), over TLS to `tls` if given.
    pub async fn connect(address: &str, tls: Option<&TlsTarget>) -> Result<Self, TaskError> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| TaskError::new("connect", format!("connecting to {address}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(target) => Stream::Tls(Box::new(target.handshake(tcp).await?)),
        };
        Ok(Self {
            stream,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            response_started: false,
            idle_since: Instant::now(),
        })
    }

    /// How long the connection has waited since its last response.
    pub fn idle_for(&self) -> Duration {
        self.idle_since.elapsed()
    }

    /// Whether the server already closed this idle connection, or sent
    /// bytes nobody asked for: sending on it would fail, or misread them
    /// as the next response.
    pub fn closed_by_peer(&self) -> bool {
        self.start != self.end || self.stream.closed_by_peer()
    }

    /// Whether the last [`round_trip`](Self::round_trip) received any byte
    /// of a response: a failure before the first byte means the server
    /// never answered (it closed an idle connection just as the request
    /// went out), so an idempotent request may be sent again.
    pub fn response_started(&self) -> bool {
        self.response_started
    }

    /// Sends `request` (a complete serialised request) and reads the whole
    /// response. `head` says the request was a HEAD (its response has no
    /// body whatever its headers say).
    pub async fn round_trip(&mut self, request: &[u8], head: bool) -> Result<Response, TaskError> {
        self.exchange(request, head, None).await
    }

    /// Like [`round_trip`](Self::round_trip), keeping the response's
    /// headers and (up to its limit) body in `kept` if given (cleared
    /// first).
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head: bool,
        mut kept: Option<&mut Kept>,
    ) -> Result<Response, TaskError> {
        if let Some(kept) = kept.as_deref_mut() {
            kept.clear();
        }
        self.response_started = false;
        self.stream.send(request).await?;
        loop {
            let (status, framing, keep_alive) = self.read_head(head, kept.as_deref_mut()).await?;
            if (100..200).contains(&status) && status != 101 {
                continue; // interim response (100 Continue, 103 Early Hints)
            }
            let body = kept.as_deref_mut();
            let body_len = match framing {
                Framing::Empty => 0,
                Framing::Length(n) => self.skip_exact(n, body).await?,
                Framing::Chunked => self.skip_chunked(body).await?,
                Framing::UntilClose => self.skip_to_close(body).await?,
            };
            let keep_alive = keep_alive && !matches!(framing, Framing::UntilClose);
            if self.start != self.end {
                return Err(protocol("unexpected bytes after the response"));
            }
            self.idle_since = Instant::now();
            return Ok(Response {
                status,
                body_len,
                keep_alive,
            });
        }
    }

    /// Reads more bytes into the buffer, compacting it first; returns how
    /// many arrived (0 at end of stream).
    async fn fill(&mut self) -> Result<usize, TaskError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                if self.buf.len() >= MAX_HEAD {
                    return Err(protocol("response head too large"));
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.receive(&mut self.buf[self.end..]).await?;
        self.end += n;
        self.response_started |= n > 0;
        Ok(n)
    }

    /// Parses the status line and headers, reading as needed; the headers
    /// go into `kept` if given.
    async fn read_head(
        &mut self,
        head: bool,
        kept: Option<&mut Kept>,
    ) -> Result<(u16, Framing, bool), TaskError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(len)) => {
                    let parsed = interpret(&response, head)?;
                    if let Some(kept) = kept {
                        kept.headers.clear();
                        let wanted = response.headers.iter().filter(|h| match kept.which {
                            Headers::All => true,
                            Headers::SetCookie => h.name.eq_ignore_ascii_case("set-cookie"),
                        });
                        kept.headers.extend(wanted.map(|h| {
                            let value = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_ascii_lowercase(), value)
                        }));
                    }
                    self.start += len;
                    return Ok(parsed);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill().await? == 0 {
                        return Err(if self.start == self.end {
                            TaskError::new("connection_closed", "server closed the connection")
                        } else {
                            closed()
                        });
                    }
                }
                Err(e) => return Err(protocol(format!("invalid response: {e}"))),
            }
        }
    }

    /// Consumes exactly `n` body bytes, kept in `kept` if given.
    async fn skip_exact(&mut self, n: u64, mut kept: Option<&mut Kept>) -> Result<u64, TaskError> {
        let mut left = n;
        loop {
            let take = left.min((self.end - self.start) as u64);
            if let Some(kept) = kept.as_deref_mut() {
                kept.keep_body(&self.buf[self.start..self.start + take as usize]);
            }
            self.start += take as usize;
            left -= take;
            if left == 0 {
                return Ok(n);
            }
            if self.fill().await? == 0 {
                return Err(closed());
            }
        }
    }

    /// Consumes a chunked body and its trailers, the body kept in `kept`
    /// if given.
    async fn skip_chunked(&mut self, mut kept: Option<&mut Kept>) -> Result<u64, TaskError> {
        let mut total = 0;
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.start += len;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.fill().await? == 0 {
                            return Err(closed());
                        }
                    }
                    Err(_) => return Err(protocol("invalid chunk size")),
                }
            };
            if size == 0 {
                self.skip_trailers().await?;
                return Ok(total);
            }
            total += size;
            self.skip_exact(size, kept.as_deref_mut()).await?;
            self.expect_crlf().await?;
        }
    }

    async fn expect_crlf(&mut self) -> Result<(), TaskError> {
        while self.end - self.start < 2 {
            if self.fill().await? == 0 {
                return Err(closed());
            }
        }
        if &self.buf[self.start..self.start + 2] != b"\r\n" {
            return Err(protocol("chunk not followed by CRLF"));
        }
        self.start += 2;
        Ok(())
    }

    /// Skips trailer lines up to and including the empty line.
    async fn skip_trailers(&mut self) -> Result<(), TaskError> {
        loop {
            match self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                Some(0) => {
                    self.start += 2;
                    return Ok(());
                }
                Some(line) => self.start += line + 2,
                None => {
                    if self.fill().await? == 0 {
                        return Err(closed());
                    }
                }
            }
        }
    }

    async fn skip_to_close(&mut self, mut kept: Option<&mut Kept>) -> Result<u64, TaskError> {
        let mut total = (self.end - self.start) as u64;
        if let Some(kept) = kept.as_deref_mut() {
            kept.keep_body(&self.buf[self.start..self.end]);
        }
        self.start = self.end;
        loop {
            let n = self.fill().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            if let Some(kept) = kept.as_deref_mut() {
                kept.keep_body(&self.buf[self.start..self.end]);
            }
            self.start = self.end;
        }
    }
}

/// Status, body framing and keep-alive from a parsed response head.
fn interpret(
    response: &httparse::Response<'_, '_>,
    head: bool,
) -> Result<(u16, Framing, bool), TaskError> {
    let status = response.code.ok_or_else(|| protocol("no status code"))?;
    let mut keep_alive = response.version == Some(1);
    let mut chunked = false;
    let mut length = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).map_err(|_| protocol("bad content-length"))?;
            let n: u64 = text
                .trim()
                .parse()
                .map_err(|_| protocol(format!("bad content-length '{text}'")))?;
            if length.is_some_and(|l| l != n) {
                return Err(protocol("conflicting content-length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if head || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok((status, framing, keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves `reply` (raw bytes, possibly in several writes) to one request.
    async fn serve_once(parts: Vec<&'static [u8]>, close: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await.unwrap();
            for part in parts {
                s.write_all(part).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            if !close {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        addr
    }

    async fn get(parts: Vec<&'static [u8]>, close: bool) -> Result<Response, TaskError> {
        let addr = serve_once(parts, close).await;
        let mut conn = Connection::connect(&addr, None).await?;
        conn.round_trip(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)
            .await
    }

    #[tokio::test]
    async fn content_length_split_across_reads() {
        let r = get(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Le",
                b"ngth: 5\r\n\r\nhe",
                b"llo",
            ],
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            r,
            Response {
                status: 200,
                body_len: 5,
                keep_alive: true
            }
        );
    }

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let r = get(
            vec![
                b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n",
                b"2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
            ],
            false,
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (201, 5, true));
    }

    #[tokio::test]
    async fn interim_responses_are_skipped_and_close_is_honoured() {
        let r = get(vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"], false)
            .await
            .unwrap();
        assert_eq!((r.status, r.keep_alive), (204, false));
    }

    #[tokio::test]
    async fn body_until_close_for_http_1_0() {
        let r = get(vec![b"HTTP/1.0 200 OK\r\n\r\nsome body"], true)
            .await
            .unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (200, 9, false));
    }

    #[tokio::test]
    async fn garbage_and_truncation_are_errors() {
        let e = get(vec![b"SMTP ready\r\n\r\n"], true).await.unwrap_err();
        assert_eq!(e.kind(), "protocol");
        let e = get(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), "connection_closed");
        let e = get(vec![b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"], true)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "protocol");
    }
}
