//! The web API and UI any peer can serve (`join --http ADDR`): cluster
//! status, starting, changing and stopping tests, live figures pushed to
//! the browser, and finished tests' reports as JSON, CSV and HTML.
//!
//! - [`auth`]: the authentication seam, API tokens and the two roles.
//! - [`oidc`]: OIDC bearer tokens verified against the issuer's keys.
//! - [`tls`]: HTTPS, and client certificates as credentials.
//! - [`api`]: the endpoints, on this peer's control handler.
//! - [`live`]: the watcher that follows every test the cluster runs and
//!   publishes a frame a second; the results this node keeps.
//! - [`history`]: the run history of a node that keeps one (an
//!   orchestrator): runs, one run, a comparison, a trend.
//! - [`server`]: HTTP, routing, server-sent events, static files.
//! - [`plain`]: the unauthenticated one-answer endpoints beside it
//!   (Prometheus's `/metrics`, the health probes).
//! - [`assets`]: the UI's files, embedded in the binary.
//!
//! No node is required to serve it: every peer can, and what one shows is
//! the cluster's (merged from every peer), not its own share.

pub mod api;
pub mod assets;
pub mod auth;
pub mod history;
pub mod live;
pub mod oidc;
pub mod plain;
pub mod server;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::run::control::Controller;
use crate::cluster::status::ClusterStatus;
use crate::history::recorder::Recorder;

pub use server::WebServer;

/// Starts the web API on `listen` with `auth` (over HTTPS with `tls`), and
/// the watcher that feeds it, on the current runtime; both stop when the
/// server is dropped. With `history` (an orchestrator's), it also serves
/// the runs recorded there.
pub async fn serve(
    listen: SocketAddr,
    auth: auth::Providers,
    tls: Option<Arc<rustls::ServerConfig>>,
    controller: Arc<Controller>,
    status: watch::Receiver<Arc<ClusterStatus>>,
    history: Option<Arc<Recorder>>,
) -> std::io::Result<WebServer> {
    let listener = TcpListener::bind(listen).await?;
    let live = Arc::new(live::Live::default());
    let watcher = tokio::spawn(live::watch(
        Arc::clone(&live),
        Arc::clone(&controller),
        status.clone(),
    ));
    let api = Arc::new(api::Api {
        controller,
        status,
        live,
        history: history.map(history::History::new),
    });
    WebServer::start(listener, api, Arc::new(auth), tls, watcher)
}
