//! Cluster: identical peers that find each other and agree on who is there.
//!
//! - [`network`]: the one QUIC endpoint per peer, admission, stream kinds,
//!   non-blocking per-peer send queues, refusal counters.
//! - [`tls`]: TLS 1.3 configuration of the endpoint.
//! - [`auth`]: the cluster-secret challenge bound to the TLS session.
//! - [`clock`]: clock offsets between peers, measured over the endpoint.
//! - [`gossip`]: chitchat's transport over the endpoint.
//! - [`discovery`]: finding peers by mDNS (seeds are chitchat's own).
//! - [`cli`]: the `join` and `status` subcommands.
//! - [`coordinator`]: keeps Raft membership in step with gossip.
//! - [`raft`]: the replicated log (openraft) that plans are committed to.
//! - [`state`]: the typed key/values each peer publishes.
//! - [`membership`]: a running peer: chitchat, state refresh, liveness.
//! - [`status`]: the cluster picture `vajra-peer status` prints.
//! - [`plan`]: splitting a rate across peers (strategies, epochs, rate
//!   updates), the plans Raft replicates.
//! - [`control`]: start, stop, update and results from any node.
//! - [`figures`]: a test's exact cluster-wide figures, merged on request.
//! - [`supervise`]: the leader's pure decision to re-split or end a test.
//! - [`runner`]: runs this peer's share of the committed plan.
//! - [`collect`]: what `start --wait` gathers from each peer incarnation.

pub mod auth;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod control;
pub mod coordinator;
pub mod discovery;
pub mod figures;
pub mod gossip;
pub mod membership;
pub mod network;
pub mod plan;
pub mod raft;
pub mod runner;
pub mod state;
pub mod status;
pub mod supervise;
pub mod tls;

pub use auth::{Admission, MtlsIdentity};
pub use membership::{Peer, PeerConfig};
pub use status::{ClusterStatus, Liveness};
