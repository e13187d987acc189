//! The control protocol: what a client (or a peer) asks a peer on a
//! control stream, and what it answers. Messages are JSON, one per stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::cluster::consensus::RecordLease;
use crate::cluster::run::figures::TestFigures;
use crate::cluster::run::keep::Handover;
use crate::cluster::run::plan::Plan;
use crate::config::RunArgs;
use crate::export::Report;
use crate::load::RatePoint;

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Start a test with these settings, split by the named strategy
    /// ("equal", "weighted" or "capacity").
    Start {
        /// The test's definition (self-contained, see
        /// [`crate::config::definition`]).
        run: Box<RunArgs>,
        /// The distribution strategy.
        distribution: String,
        /// Chosen by the client once per command: a retry after a lost
        /// reply carries the same id and gets the test it started, not a
        /// refusal.
        #[serde(default)]
        request_id: String,
        /// Who asks (`start:USER@HOST`, `api:PROVIDER ROLE`), kept with the
        /// test in its history.
        #[serde(default)]
        started_by: String,
    },
    /// Stop the running test.
    Stop,
    /// Lease this peer the next positions of a feeder of the running test
    /// (forwarded to the leader): the reply's `leased`.
    Lease(RecordLease),
    /// Change the running test's cluster rate until its planned end.
    Update(f64),
    /// Replace the rest of the running test with this pattern (a rate
    /// curve whose time 0 is a fraction of a second from now).
    UpdatePattern(Vec<RatePoint>),
    /// This peer's report of a test (figures so far while it runs), its
    /// series without the first `skip` windows: a client polling a long
    /// test asks only for the windows it has not seen (closed windows never
    /// change).
    Results {
        /// The test.
        test_id: String,
        /// Windows of the series the client already has.
        skip: usize,
        /// The incarnation (generation) those windows came from: a peer
        /// restarted since answers its whole series instead.
        #[serde(default)]
        generation: Option<u64>,
        /// Whose report: another peer's, one that left and handed its
        /// report to the peer asked (see [`crate::cluster::run::keep`]);
        /// `None` for the peer's own.
        #[serde(default)]
        of: Option<String>,
    },
    /// Keep this page of a leaving peer's report for whoever asks after it
    /// has gone (not forwarded).
    Keep(Box<Handover>),
    /// The plan the leader has committed (forwarded to the leader).
    CurrentPlan,
    /// The current or last test's cluster-wide figures, merged by the peer
    /// asked (not forwarded).
    Figures,
    /// The tests this peer saw end (not forwarded): an orchestrator back
    /// from a restart records those it missed. Without a test id, each
    /// one's id and last epoch; with one, that test's last plan (one plan
    /// per answer keeps answers within the message limit).
    Ended {
        /// The test whose plan to send.
        #[serde(default)]
        test_id: Option<String>,
    },
}

/// A test a peer saw end, as [`ControlRequest::Ended`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedTest {
    /// Its id.
    pub test_id: String,
    /// The last epoch the peer saw.
    pub epoch: u64,
}

/// Why a control request was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// No leader is known or confirmed right now: nothing was done, and
    /// the same request may be sent again in a moment.
    Retry,
    /// The leader could not be heard back from, or a commit did not finish
    /// in time: the command may or may not have been done. Only a request
    /// safe to repeat (a start, with its request id) should be sent again.
    Uncertain,
    /// The request itself is wrong (bad settings, unknown strategy).
    Invalid,
    /// It does not fit the cluster's state (a test already running, none
    /// running).
    Conflict,
    /// This peer has nothing to give (no report yet, its run failed).
    Unavailable,
}

/// The answer to a control request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlReply {
    /// Whether it was done.
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
    /// The plan committed by a start.
    pub plan: Option<Plan>,
    /// Peers taking part: node id → endpoint address.
    pub peers: BTreeMap<String, SocketAddr>,
    /// A report, for `Results`.
    pub report: Option<Report>,
    /// Merged figures, for `Figures`.
    #[serde(default)]
    pub figures: Option<TestFigures>,
    /// Why not, when it was not done.
    #[serde(default)]
    pub refusal: Option<Refusal>,
    /// The answering peer's incarnation (its generation), for `Results`:
    /// a peer restarted under its old name answers with a new one, and its
    /// figures are another incarnation's, kept apart from the first's.
    #[serde(default)]
    pub generation: Option<u64>,
    /// The tests that ended, for `Ended` without a test id, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<EndedTest>,
    /// The positions leased, for `Lease` (empty when none is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased: Option<std::ops::Range<u64>>,
    /// For `Results`: the report's series goes on past this answer; ask
    /// again from its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

impl ControlRequest {
    /// Whether sending it again after an uncertain outcome cannot do it
    /// twice: a start carries its request id, reads change nothing.
    pub fn is_repeatable(&self) -> bool {
        // A lease repeated leases more, which is safe (positions are never
        // handed out twice) but skips the ones the lost answer held.
        // A page kept again is acknowledged again: pages say where they go.
        !matches!(
            self,
            Self::Stop | Self::Update(_) | Self::UpdatePattern(_) | Self::Lease(_)
        )
    }
}

impl ControlReply {
    /// Whether `request`, refused with this reply, may be sent again.
    pub fn worth_retrying(&self, request: &ControlRequest) -> bool {
        match self.refusal {
            Some(Refusal::Retry) => true,
            Some(Refusal::Uncertain) => request.is_repeatable(),
            _ => false,
        }
    }

    /// A reply saying the request was not done, and why.
    pub fn refused(refusal: Refusal, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            refusal: Some(refusal),
            ..Self::default()
        }
    }
}
