//! A test's feeder records leased from the leader: the cluster's side of
//! [`RecordLeases`]. A peer asks its own control handler, which forwards
//! the request to the leader; the leader commits the lease through Raft,
//! so every position is handed out once, whoever leads next.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::cluster::consensus::RecordLease;
use crate::cluster::run::control::Controller;
use crate::cluster::run::protocol::{ControlRequest, Refusal};
use crate::task::scenario::lease::RecordLeases;

/// How long a lease request keeps trying while no leader answers (an
/// election, a leader lost mid-test) before the draw fails.
pub const LEASE_PATIENCE: Duration = Duration::from_secs(10);
/// The pause between two tries.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Leases of one test's feeders, through this peer's control handler.
pub struct TestLeases {
    control: Arc<Controller>,
    test_id: String,
}

impl TestLeases {
    /// Leases of test `test_id`'s feeders, asked through `control`.
    pub fn new(control: Arc<Controller>, test_id: &str) -> Self {
        Self {
            control,
            test_id: test_id.to_owned(),
        }
    }
}

impl RecordLeases for TestLeases {
    fn lease(
        &self,
        feeder: &str,
        total: u64,
        wrap: bool,
        count: u64,
    ) -> BoxFuture<'_, Result<Range<u64>, String>> {
        let request = RecordLease {
            test_id: self.test_id.clone(),
            feeder: feeder.to_owned(),
            total,
            wrap,
            count,
        };
        Box::pin(async move {
            let give_up = Instant::now() + LEASE_PATIENCE;
            loop {
                // One try may wait on a forward and a commit: the patience
                // bounds the whole, not only the pauses between tries.
                let asked = self.control.answer(ControlRequest::Lease(request.clone()));
                let Ok(reply) = tokio::time::timeout_at(give_up, asked).await else {
                    return Err(format!(
                        "no lease from the leader within {LEASE_PATIENCE:?}"
                    ));
                };
                match (reply.ok, reply.leased) {
                    (true, Some(range)) => return Ok(range),
                    (true, None) => return Err("the leader answered without a lease".into()),
                    _ => {}
                }
                // An uncertain answer may have leased positions nobody will
                // use: asking again skips them, and never repeats one.
                let again = matches!(reply.refusal, Some(Refusal::Retry | Refusal::Uncertain));
                if !again || Instant::now() >= give_up {
                    return Err(format!("no lease from the leader: {}", reply.message));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        })
    }
}
