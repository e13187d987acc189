//! Cluster simulation: Vajra's real membership (chitchat), Raft (openraft
//! with the project's log store and state machine), coordinator decisions,
//! plans and the leader's re-split duty, run with hundreds of peers in one
//! process on tokio's paused clock, under faults drawn from a seed, with
//! invariants checked as it runs.
//!
//! - [`clock`]: virtual time.
//! - [`entropy`]: the process's randomness, from the seed.
//! - [`net`]: the fault model (partitions, cuts, isolation, loss, delay).
//! - [`gossip`]: chitchat's channel transport behind the fault model.
//! - [`raft_net`]: the in-memory Raft network.
//! - [`peer`]: one peer, running the real loops over the simulation's seams.
//! - [`shares`]: the engine model behind the real runner, and plan checks.
//! - [`freeze`]: freezing a peer as SIGSTOP does.
//! - [`ledger`]: epochs held and intended counts.
//! - [`invariants`]: checks and violations.
//! - [`world`]: the cluster and the operations on it.
//! - [`scenario`]: faults from the seed.
//! - [`measure`]: detection, re-split and convergence timings.
//! - [`run`](mod@run): one run, start to end.
//! - [`finish`]: the end-of-run checks.
//! - [`report`]: the printed summary.

pub mod clock;
pub mod entropy;
pub mod finish;
pub mod freeze;
pub mod gossip;
pub mod invariants;
pub mod ledger;
pub mod measure;
pub mod net;
pub mod peer;
pub mod raft_net;
pub mod report;
pub mod run;
pub mod scenario;
pub mod shares;
pub mod world;

pub use run::{Config, Summary, run};
pub use scenario::Scenario;
