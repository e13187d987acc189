//! Cluster: identical peers that find each other, agree on who is there and
//! run one test together. By concept:
//!
//! - [`endpoint`]: the one QUIC endpoint per peer, its TLS and admission,
//!   stream kinds, send queues, and the clock offsets measured over it.
//! - [`membership`]: chitchat's gossip over the endpoint, mDNS discovery,
//!   the key/values each peer publishes and the liveness derived from them.
//! - [`consensus`]: the Raft log (openraft) plans are committed to, and the
//!   coordinator that keeps Raft's membership in step with gossip.
//! - [`run`]: running a distributed test: plans, control commands,
//!   supervision, the runner of a peer's share, merged figures.
//! - [`status`]: the cluster picture (members, roles, the test) one peer
//!   shows.
//! - [`wall`]: wall-clock time, a seam the simulation replaces.
//! - [`health`]: the liveness and readiness probes a container platform
//!   asks, without the cluster secret.
//! - [`leave`]: a graceful leave (SIGTERM): what a leaving peer waits for.
//! - [`peer`]: a running peer, which starts all of the above and the loops
//!   that drive them.
//!
//! The command line of `join`, `status`, `start`, `update` and `stop` is
//! [`crate::cli::cluster`].

pub mod consensus;
pub mod endpoint;
pub mod health;
pub mod leave;
pub mod membership;
pub mod peer;
pub mod run;
pub mod status;
pub mod wall;

pub use endpoint::auth::{Admission, MtlsIdentity};
pub use peer::{Peer, PeerConfig};
pub use status::{ClusterStatus, Liveness};
