//! The built-in `grpc` task: unary calls of a method described at run time
//! by a `.proto` file or a compiled descriptor set, over tonic.
//!
//! `vajra-peer run --task grpc --proto shop.proto -p url=http://127.0.0.1:50051 \
//!   -p method=shop.Catalog/GetItem -p 'request={"id": 42}'`
//!
//! The `.proto` file is compiled where the test starts reading it (protox,
//! no `protoc` needed) and carried as text in a cluster's definition, so
//! no peer reads a file. It may import Google's well-known types; a file
//! importing others is given as a descriptor set instead (`protoc
//! --include_imports -o set.pb`, or `buf build -o set.pb`).
//!
//! The request is JSON in the proto3 JSON mapping, checked against the
//! method's input type and encoded once. Each instance keeps an HTTP/2
//! connection (h2c for `http://`, TLS with ALPN `h2` for `https://`,
//! verified like the `http` task's), reported as the step `connect` when
//! opened. A reply is decoded as the method's output type. A call that
//! ends with a status other than OK fails with the status as its kind
//! (`grpc_unavailable`, `grpc_not_found`, ...).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{Buf, BufMut, Bytes};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use serde::{Deserialize, Serialize};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};

use super::http::CaCertificates;
use super::http::tls::TlsTarget;
use super::{Context, Task, TaskError, TaskResult};
use crate::task::options::param_timeout;

/// A call's timeout when none is set (connect included).
pub const DEFAULT_GRPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection with calls open is pinged, and how long an
/// answer may take.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Largest `.proto` file or descriptor set a test carries.
pub const MAX_PROTO_BYTES: usize = 256 * 1024;
/// Longest file name a test carries with it.
pub const MAX_PROTO_NAME: usize = 4096;

/// The `grpc` task's `--param` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrpcOptions {
    /// `http://host:port` (h2c) or `https://host:port`.
    pub url: String,
    /// The method, `package.Service/Method`.
    pub method: String,
    /// The request message as JSON [default: `{}`, every field unset].
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub request: Option<String>,
    /// A call (and a connect) within this [default: 10s].
    #[serde(default, deserialize_with = "crate::task::options::as_some_text")]
    pub timeout: Option<String>,
}

/// The service definitions a test carries: a `.proto` file's text, or a
/// descriptor set's bytes (base64), with the name it was given under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoSource {
    /// The file's name as the user gave it.
    pub name: String,
    /// A `.proto` file's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A descriptor set's bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor_set: Option<String>,
}

impl ProtoSource {
    /// Reads `path` (at most [`MAX_PROTO_BYTES`]): a `.proto` file by its
    /// extension, any other a descriptor set.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read '{name}': {e}"))?;
        if bytes.len() > MAX_PROTO_BYTES {
            return Err(format!(
                "'{name}' holds {} bytes, above the limit of {MAX_PROTO_BYTES}",
                bytes.len()
            ));
        }
        if path.extension().is_some_and(|e| e == "proto") {
            let text = String::from_utf8(bytes).map_err(|_| format!("'{name}' is not UTF-8"))?;
            Ok(Self {
                name,
                text: Some(text),
                descriptor_set: None,
            })
        } else {
            Ok(Self {
                name,
                text: None,
                descriptor_set: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            })
        }
    }

    /// Whether it is within what a definition carries: a name of at most
    /// [`MAX_PROTO_NAME`] bytes and at most [`MAX_PROTO_BYTES`] of file
    /// (as text, or as base64 of the descriptor set).
    pub fn within_limits(&self) -> bool {
        let text = self.text.as_ref().map_or(0, String::len);
        let set = self.descriptor_set.as_ref().map_or(0, String::len);
        self.name.len() <= MAX_PROTO_NAME
            && text <= MAX_PROTO_BYTES
            && set <= MAX_PROTO_BYTES.div_ceil(3) * 4
    }

    /// The service definitions, compiled or decoded.
    pub fn pool(&self) -> Result<DescriptorPool, String> {
        let name = &self.name;
        match (&self.text, &self.descriptor_set) {
            (Some(text), None) => compile(name, text),
            (None, Some(encoded)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| format!("{name}: the descriptor set is not base64: {e}"))?;
                DescriptorPool::decode(bytes.as_slice())
                    .map_err(|e| format!("{name} is not a protobuf descriptor set: {e}"))
            }
            _ => Err(format!(
                "{name}: give either a .proto text or a descriptor set"
            )),
        }
    }
}

/// Compiles one `.proto` file's `text` (imports: Google's well-known types
/// only).
fn compile(name: &str, text: &str) -> Result<DescriptorPool, String> {
    use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

    /// Serves the one file the test carries, under a fixed name.
    struct OneFile(String);
    impl FileResolver for OneFile {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            if name == ONE_FILE {
                File::from_source(name, &self.0)
            } else {
                Err(protox::Error::file_not_found(name))
            }
        }
    }
    const ONE_FILE: &str = "carried.proto";
    let mut resolver = ChainFileResolver::new();
    resolver.add(OneFile(text.to_owned()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file(ONE_FILE).map_err(|e| {
        let message = e.to_string().replace(ONE_FILE, name);
        let line = miette::Diagnostic::labels(&e)
            .and_then(|mut labels| labels.next())
            .and_then(|label| text.get(..label.offset()))
            .map(|before| before.matches('\n').count() + 1);
        let message = match line {
            Some(line) => format!("{name} line {line}: {message}"),
            None => format!("{name}: {message}"),
        };
        if e.is_file_not_found() {
            format!(
                "{message} (a .proto file may import only Google's well-known types; give the others \
                 as a descriptor set: protoc --include_imports -o set.pb)"
            )
        } else {
            message
        }
    })?;
    Ok(compiler.descriptor_pool())
}

/// The gRPC status codes as error kinds, by their number.
const STATUS_KINDS: [&str; 17] = [
    "grpc_ok",
    "grpc_cancelled",
    "grpc_unknown",
    "grpc_invalid_argument",
    "grpc_deadline_exceeded",
    "grpc_not_found",
    "grpc_already_exists",
    "grpc_permission_denied",
    "grpc_resource_exhausted",
    "grpc_failed_precondition",
    "grpc_aborted",
    "grpc_out_of_range",
    "grpc_unimplemented",
    "grpc_internal",
    "grpc_unavailable",
    "grpc_data_loss",
    "grpc_unauthenticated",
];

/// A reply that is not the method's output type (the source of the status
/// the decoder fails with, so it is told apart from a server's INTERNAL).
#[derive(Debug, thiserror::Error)]
#[error("the reply is not the method's output type")]
struct BadReply;

/// A failed call's error: its status code as the kind, or `grpc_bad_reply`
/// for a reply that did not decode.
fn status_error(status: &tonic::Status) -> TaskError {
    let bad_reply = std::error::Error::source(status).is_some_and(|s| s.is::<BadReply>());
    if bad_reply {
        return TaskError::new("grpc_bad_reply", status.message().to_owned());
    }
    let kind = STATUS_KINDS
        .get(status.code() as usize)
        .copied()
        .unwrap_or("grpc_unknown");
    TaskError::new(
        kind,
        format!("gRPC status {:?}: {}", status.code(), status.message()),
    )
}

/// A unary method: the path its calls go to, and its message types.
#[derive(Debug, Clone)]
pub struct Method {
    path: PathAndQuery,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

impl Method {
    /// The unary method `name` (`package.Service/Method`) in `pool`.
    pub fn find(pool: &DescriptorPool, name: &str) -> Result<Self, String> {
        let method = find_method(pool, name)?;
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        Ok(Self {
            path: PathAndQuery::try_from(path).map_err(|e| e.to_string())?,
            input: method.input(),
            output: method.output(),
        })
    }

    /// `json` (the proto3 JSON mapping) as the method's input message,
    /// encoded.
    pub fn encode(&self, json: &str) -> Result<Bytes, String> {
        use prost::Message;
        let mut reader = serde_json::Deserializer::from_str(json);
        let message = DynamicMessage::deserialize(self.input.clone(), &mut reader)
            .and_then(|m| reader.end().map(|()| m))
            .map_err(|e| format!("not a {} in JSON: {e}", self.input.full_name()))?;
        Ok(Bytes::from(message.encode_to_vec()))
    }
}

/// A gRPC server: the URI its calls name, the `host:port` to dial, and
/// TLS for `https://`.
#[derive(Debug, Clone)]
pub struct Server {
    uri: Uri,
    address: String,
    tls: Option<TlsTarget>,
}

/// A connection to a [`Server`], ready for calls.
pub type Client = tonic::client::Grpc<Channel>;

impl Server {
    /// `url` checked: `http://host:port` (h2c) or `https://host:port`
    /// (verified against the built-in roots and `tls_ca`, or not at all
    /// with `skip_verify`; both mean nothing to an `http://` one).
    pub fn parse(
        url: &str,
        tls_ca: Option<&CaCertificates>,
        skip_verify: bool,
    ) -> Result<Self, String> {
        let origin = super::url::Origin::parse(url, super::url::HTTP)?;
        let tls = origin
            .secure
            .then(|| TlsTarget::http2(&origin.host, tls_ca, skip_verify))
            .transpose()?;
        Ok(Self {
            uri: origin.uri,
            address: origin.address,
            tls,
        })
    }

    /// Opens a connection (h2c, or TLS with ALPN `h2`).
    pub async fn connect(&self) -> Result<Client, TaskError> {
        let connector = Connector {
            address: self.address.clone(),
            tls: self.tls.clone(),
        };
        // tonic does TLS itself for an https:// endpoint (and refuses one
        // without its own TLS settings). Ours is done in the connector,
        // so tonic is given the plain scheme to dial and the real URI as
        // the origin its requests name.
        let mut dialled = self.uri.clone().into_parts();
        dialled.scheme = Some(tonic::codegen::http::uri::Scheme::HTTP);
        let dialled =
            Uri::from_parts(dialled).map_err(|e| TaskError::new("connect", e.to_string()))?;
        let channel = Endpoint::from(dialled)
            .origin(self.uri.clone())
            // A server gone silent (frozen, cut off without a reset) ends
            // the connection within twice this, and the next call dials
            // again, as the http task's HTTP/2 client does.
            .http2_keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE)
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                let mut message = format!("connecting to {}: {e}", self.address);
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                TaskError::new("connect", message)
            })?;
        Ok(tonic::client::Grpc::new(channel))
    }
}

/// One unary call of `method` on `client`: `request` is the encoded input
/// message, `metadata` the call's headers; the reply decoded as the
/// method's output type, or the failure (`grpc_*` by status).
pub async fn call(
    client: &mut Client,
    method: &Method,
    request: Bytes,
    (metadata, timeout): (tonic::metadata::MetadataMap, Duration),
) -> Result<DynamicMessage, TaskError> {
    client
        .ready()
        .await
        .map_err(|e| TaskError::new("connection_closed", format!("gRPC channel: {e}")))?;
    let mut request = tonic::Request::from_parts(metadata, Default::default(), request);
    request.set_timeout(timeout);
    let codec = Prepared {
        output: method.output.clone(),
    };
    client
        .unary(request, method.path.clone(), codec)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| status_error(&status))
}

/// Whether a call that failed with `kind` leaves its connection unusable,
/// so the next call opens another. (A server's UNAVAILABLE is an answer,
/// and tonic's channel re-dials a transport that failed by itself.)
pub fn drops_connection(kind: &str) -> bool {
    matches!(kind, "connect" | "connection_closed")
}

/// A reply as JSON for checks and extraction: every field present
/// (defaults included) and 64-bit integers as numbers, so `equals: 0` or
/// `equals: 42` compares as written.
pub fn reply_json(reply: &DynamicMessage) -> Result<Vec<u8>, String> {
    let options = prost_reflect::SerializeOptions::new()
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut bytes);
    reply
        .serialize_with_options(&mut serializer, &options)
        .map_err(|e| format!("the reply as JSON: {e}"))?;
    Ok(bytes)
}

/// The `grpc` task's options, checked: the method, the request encoded
/// once, and how to reach the server.
#[derive(Debug)]
pub struct GrpcPlan {
    method: Method,
    request: Bytes,
    server: Server,
    timeout: Duration,
}

impl GrpcPlan {
    /// Checks `options` against the services of `proto`; `Err` names what
    /// is wrong. `https://` trusts `tls_ca` besides the built-in roots, or
    /// anything with `skip_verify`.
    pub fn new(
        options: &GrpcOptions,
        proto: Option<&ProtoSource>,
        (tls_ca, skip_verify): (Option<&CaCertificates>, bool),
    ) -> anyhow::Result<Self> {
        let proto = proto.ok_or_else(|| {
            anyhow::anyhow!("needs --proto FILE (a .proto file or a descriptor set)")
        })?;
        let pool = proto.pool().map_err(|e| anyhow::anyhow!("--proto {e}"))?;
        let method = Method::find(&pool, &options.method)
            .map_err(|e| anyhow::anyhow!("--param method: {e}"))?;
        let request = method
            .encode(options.request.as_deref().unwrap_or("{}"))
            .map_err(|e| anyhow::anyhow!("--param request: {e}"))?;
        let server = Server::parse(&options.url, tls_ca, skip_verify)
            .map_err(|e| anyhow::anyhow!("--param url: {e}"))?;
        // The task has one server: HTTPS settings beside an h2c one are a
        // mistake to name.
        if server.tls.is_none() && (tls_ca.is_some() || skip_verify) {
            anyhow::bail!("--https-ca and --https-skip-verify need an https:// URL");
        }
        Ok(Self {
            method,
            request,
            server,
            timeout: param_timeout(options.timeout.as_deref(), DEFAULT_GRPC_TIMEOUT)?,
        })
    }
}

/// The unary method `name` (`package.Service/Method`) in `pool`.
fn find_method(pool: &DescriptorPool, name: &str) -> Result<MethodDescriptor, String> {
    let (service, method) = name
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| format!("'{name}' must look like package.Service/Method"))?;
    let found = pool
        .get_service_by_name(service)
        .ok_or_else(|| {
            let known: Vec<String> = pool.services().map(|s| s.full_name().to_owned()).collect();
            format!(
                "no service '{service}' (the file has: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })?
        .methods()
        .find(|m| m.name() == method)
        .ok_or_else(|| format!("service '{service}' has no method '{method}'"))?;
    if found.is_client_streaming() || found.is_server_streaming() {
        return Err(format!(
            "'{name}' streams; only unary methods are supported"
        ));
    }
    Ok(found)
}

/// Dials the server for tonic: TCP, then TLS when the target has it.
#[derive(Clone)]
struct Connector {
    address: String,
    tls: Option<TlsTarget>,
}

/// What a [`Connector`] hands tonic: TCP, or TLS over TCP.
type Io = hyper_util::rt::TokioIo<Box<dyn super::websocket::Io>>;

impl tonic::codegen::Service<Uri> for Connector {
    type Response = Io;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = tonic::codegen::BoxFuture<Io, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (address, tls) = (self.address.clone(), self.tls.clone());
        Box::pin(async move {
            super::http::http2::open(&address, tls.as_ref())
                .await
                .map_err(|e| e.message().to_owned().into())
        })
    }
}

/// Sends a request encoded once as it is, and decodes the reply as the
/// method's output type.
struct Prepared {
    output: MessageDescriptor,
}

impl Codec for Prepared {
    type Encode = Bytes;
    type Decode = DynamicMessage;
    type Encoder = Verbatim;
    type Decoder = Reply;

    fn encoder(&mut self) -> Verbatim {
        Verbatim
    }

    fn decoder(&mut self) -> Reply {
        Reply(self.output.clone())
    }
}

/// Writes already encoded bytes.
struct Verbatim;

impl Encoder for Verbatim {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

/// Decodes a reply as its message type.
struct Reply(MessageDescriptor);

impl Decoder for Reply {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        DynamicMessage::decode(self.0.clone(), bytes)
            .map(Some)
            .map_err(|e| {
                let message = format!("the reply is not a {}: {e}", self.0.full_name());
                let mut status = tonic::Status::internal(message);
                status.set_source(Arc::new(BadReply));
                status
            })
    }
}

/// One instance of the `grpc` task.
pub struct GrpcTask {
    plan: Arc<GrpcPlan>,
    client: Option<Client>,
}

impl GrpcTask {
    /// An instance making `plan`'s call.
    pub fn new(plan: Arc<GrpcPlan>) -> Self {
        Self { plan, client: None }
    }

    async fn call(&mut self, ctx: &Context<'_>) -> Result<(), TaskError> {
        let plan = Arc::clone(&self.plan);
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let started = Instant::now();
                let opened = plan.server.connect().await;
                ctx.record_step(
                    "connect",
                    ctx.intended_start(),
                    started,
                    opened.as_ref().err(),
                );
                self.client.insert(opened?)
            }
        };
        let metadata = tonic::metadata::MetadataMap::new();
        call(
            client,
            &plan.method,
            plan.request.clone(),
            (metadata, plan.timeout),
        )
        .await
        .map(|_| ())
    }
}

impl Task for GrpcTask {
    async fn execute(&mut self, ctx: &mut Context<'_>) -> TaskResult {
        let timeout = self.plan.timeout;
        let result = match tokio::time::timeout(timeout, self.call(ctx)).await {
            Ok(result) => result,
            Err(_) => Err(TaskError::new(
                "timeout",
                format!("no reply within {timeout:?}"),
            )),
        };
        if let Err(error) = &result
            && drops_connection(error.kind())
        {
            self.client = None;
        }
        result.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        message ItemRequest { int64 id = 1; string name = 2; google.protobuf.Timestamp at = 3; }
        message Item { int64 id = 1; string name = 2; }
        service Catalog {
          rpc GetItem (ItemRequest) returns (Item);
          rpc Watch (ItemRequest) returns (stream Item);
        }
    "#;

    fn source(text: &str) -> ProtoSource {
        ProtoSource {
            name: "shop.proto".into(),
            text: Some(text.into()),
            descriptor_set: None,
        }
    }

    fn options(method: &str, request: &str) -> GrpcOptions {
        GrpcOptions {
            url: "http://127.0.0.1:9".into(),
            method: method.into(),
            request: Some(request.into()),
            timeout: None,
        }
    }

    fn plan(method: &str, request: &str) -> anyhow::Result<GrpcPlan> {
        GrpcPlan::new(
            &options(method, request),
            Some(&source(SHOP)),
            (None, false),
        )
    }

    #[test]
    fn a_request_is_encoded_once_from_json_with_well_known_types() {
        let plan = plan(
            "shop.Catalog/GetItem",
            r#"{"id": "42", "at": "2026-12-03T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(plan.method.path.as_str(), "/shop.Catalog/GetItem");
        assert_eq!(plan.method.output.full_name(), "shop.Item");
        // Field 1 (varint) 42, then field 3 (a message).
        assert_eq!(&plan.request[..2], &[0x08, 42]);
    }

    #[test]
    fn bad_methods_requests_and_files_are_named() {
        for (method, request, needle) in [
            ("shop.Catalog", "{}", "package.Service/Method"),
            ("shop.Nope/GetItem", "{}", "the file has: shop.Catalog"),
            ("shop.Catalog/Nope", "{}", "no method 'Nope'"),
            ("shop.Catalog/Watch", "{}", "only unary"),
            (
                "shop.Catalog/GetItem",
                r#"{"idd": 1}"#,
                "not a shop.ItemRequest",
            ),
            ("shop.Catalog/GetItem", "{", "not a shop.ItemRequest"),
        ] {
            let e = plan(method, request).unwrap_err().to_string();
            assert!(e.contains(needle), "{method} {request}: {e}");
        }
        let broken = "syntax = \"proto3\";\nmessage {";
        let e = GrpcPlan::new(
            &options("a.B/C", "{}"),
            Some(&source(broken)),
            (None, false),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("shop.proto line 2"), "{e}");
        let imports = "syntax = \"proto3\"; import \"other.proto\";";
        let e = GrpcPlan::new(
            &options("a.B/C", "{}"),
            Some(&source(imports)),
            (None, false),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("descriptor set"), "{e}");
        let e = GrpcPlan::new(&options("a.B/C", "{}"), None, (None, false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--proto"), "{e}");
    }

    #[test]
    fn a_descriptor_set_serves_like_the_file() {
        let pool = source(SHOP).pool().unwrap();
        let set = ProtoSource {
            name: "shop.pb".into(),
            text: None,
            descriptor_set: Some(
                base64::engine::general_purpose::STANDARD.encode(pool.encode_to_vec()),
            ),
        };
        let plan = GrpcPlan::new(
            &options("shop.Catalog/GetItem", "{}"),
            Some(&set),
            (None, false),
        )
        .unwrap();
        assert!(plan.request.is_empty(), "every field unset");
        let garbage = ProtoSource {
            descriptor_set: Some("AAECAw==".into()),
            ..set
        };
        assert!(
            garbage
                .pool()
                .unwrap_err()
                .contains("not a protobuf descriptor set")
        );
    }

    #[test]
    fn statuses_become_bounded_kinds() {
        let e = status_error(&tonic::Status::not_found("no item"));
        assert_eq!(e.kind(), "grpc_not_found");
        assert_eq!(
            status_error(&tonic::Status::unauthenticated("")).kind(),
            "grpc_unauthenticated"
        );
    }
}
