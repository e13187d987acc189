//! A gRPC server to try the `grpc` task on, and the one
//! docs/benchmarks.md measures it against: `shop.Catalog/GetItem` answers
//! an item for ids above 0 and `NOT_FOUND` for the others.
//!
//! ```sh
//! cargo run --release --example grpc_catalog -- 127.0.0.1:50051 shop.proto
//! vajra-peer run --task grpc --proto shop.proto -p url=http://127.0.0.1:50051 \
//!   -p method=shop.Catalog/GetItem -p 'request={"id": 42, "name": "espresso"}' --tps 1000
//! ```
//!
//! The second argument, if given, is where it writes its `.proto` file.

mod service;

use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:50051".into());
    if let Some(path) = args.next() {
        std::fs::write(&path, service::SHOP_PROTO)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("shop.Catalog on {}", listener.local_addr()?);
        let catalog = service::Catalog(Arc::new(service::Seen::default()));
        tonic::transport::Server::builder()
            .add_service(catalog)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await?;
        Ok(())
    })
}
