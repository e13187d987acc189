//! Running a distributed test: the plan that splits its rate, the commands
//! that start, change and stop it, the leader's supervision, the runner of
//! each peer's share, and the figures merged from every peer.
//!
//! - [`plan`]: splitting a rate across peers (strategies, epochs, rate
//!   updates), the plans Raft replicates.
//! - [`protocol`]: the control messages clients and peers exchange.
//! - [`control`]: start, stop, update and results from any node.
//! - [`supervise`]: the leader's pure decision to re-split or end a test.
//! - [`runner`]: follows the committed plan and steers this peer's share.
//! - [`share`]: a share as the standalone engine runs it (the seam the
//!   simulation replaces), and the reports it keeps.
//! - [`figures`]: a test's exact cluster-wide figures, merged.
//! - [`collect`]: what a follower gathers from each peer incarnation.
//! - [`follow`]: following a test to its merged report (`start --wait`,
//!   the web API).
//! - [`leases`]: feeder records leased from the leader, so peers walk
//!   disjoint slices of a file.
//! - [`ledger`]: the tests a peer saw end, with their last plans (what an
//!   orchestrator back from a restart records).
//! - [`keep`]: the reports a peer that left handed to the staying ones.

pub mod collect;
pub mod control;
pub mod figures;
pub mod follow;
pub mod keep;
pub mod leases;
pub mod ledger;
pub mod plan;
pub mod protocol;
pub mod runner;
pub mod share;
pub mod supervise;
