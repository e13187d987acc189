//! `shop.Catalog`, a gRPC service written without code generation: its
//! messages are derived with prost by hand and served with the codec
//! generated code uses. The example's server, and the one tests/grpc.rs
//! runs against the `grpc` task.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::codegen::{BoxFuture, Service, http};

/// The service's definition, as a user gives it to `--proto`.
pub const SHOP_PROTO: &str = r#"
syntax = "proto3";
package shop;

message ItemRequest {
  int64 id = 1;
  string name = 2;
}

message Item {
  int64 id = 1;
  string name = 2;
  repeated string tags = 3;
}

service Catalog {
  rpc GetItem (ItemRequest) returns (Item);
}
"#;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemRequest {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(string, tag = "2")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, repeated, tag = "3")]
    pub tags: Vec<String>,
}

/// Most distinct requests [`Seen`] keeps apart.
const MOST_DISTINCT: usize = 1000;

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    /// Calls answered, with any status.
    pub calls: AtomicU64,
    /// How many times each distinct request (id, name) came, for the first
    /// [`MOST_DISTINCT`] of them.
    pub requests: Mutex<BTreeMap<(i64, String), u64>>,
    /// Calls whose metadata named a user (`x-user`).
    pub with_user: AtomicU64,
    /// The users they named, the first [`MOST_DISTINCT`] of them.
    pub users: Mutex<Vec<String>>,
}

/// `shop.Catalog`: `GetItem` answers an item for ids above 0, and
/// `NOT_FOUND` for the others.
#[derive(Clone)]
pub struct Catalog(pub Arc<Seen>);

impl tonic::server::NamedService for Catalog {
    const NAME: &'static str = "shop.Catalog";
}

/// The one unary method.
pub struct GetItem(Arc<Seen>);

impl tonic::server::UnaryService<ItemRequest> for GetItem {
    type Response = Item;
    type Future = BoxFuture<tonic::Response<Item>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<ItemRequest>) -> Self::Future {
        let seen = Arc::clone(&self.0);
        Box::pin(async move {
            seen.calls.fetch_add(1, Ordering::Relaxed);
            if let Some(user) = request.metadata().get("x-user") {
                seen.with_user.fetch_add(1, Ordering::Relaxed);
                let mut users = seen.users.lock().unwrap();
                if users.len() < MOST_DISTINCT {
                    users.push(user.to_str().unwrap_or("(not text)").to_owned());
                }
            }
            let request = request.into_inner();
            {
                let mut requests = seen.requests.lock().unwrap();
                let key = (request.id, request.name.clone());
                if requests.len() < MOST_DISTINCT || requests.contains_key(&key) {
                    *requests.entry(key).or_default() += 1;
                }
            }
            if request.id <= 0 {
                return Err(tonic::Status::not_found(format!("no item {}", request.id)));
            }
            Ok(tonic::Response::new(Item {
                id: request.id,
                name: request.name,
                tags: vec!["hot".into(), "small".into()],
            }))
        })
    }
}

impl<B> Service<http::Request<B>> for Catalog
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let seen = Arc::clone(&self.0);
        match request.uri().path() {
            "/shop.Catalog/GetItem" => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<Item, ItemRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(GetItem(seen), request).await)
            }),
            _ => Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) }),
        }
    }
}
