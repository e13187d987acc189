//! A graceful leave: what a peer sent SIGTERM waits for before it goes.
//!
//! The peer announces it is leaving through gossip
//! ([`LEAVING`](crate::cluster::membership::state::LEAVING)). The leader
//! then hands its share to the others in a new epoch that names it
//! departed (`supervise::duty`), starting [`RESPLIT_DELAY`] later, and
//! takes it out of Raft's voters (`coordinator::decide`). The leaver runs
//! its share up to that epoch's start and there ends its run (`runner`), so
//! no second of the curve goes unsent and none is sent twice; its final
//! report says "completed", and `start --wait` names it as having left,
//! not as lost. It lingers [`LINGER`] more, so clients that poll every
//! 200 ms fetch that report, then shuts down.
//!
//! [`RESPLIT_DELAY`]: crate::cluster::run::supervise::RESPLIT_DELAY

use std::collections::BTreeSet;
use std::time::Duration;

use crate::cluster::run::plan::Plan;
use crate::cluster::status::{ClusterStatus, Liveness};

/// How long a leaving peer stays once it holds nothing, so a client
/// polling every 200 ms fetches its final report.
pub const LINGER: Duration = Duration::from_secs(2);
/// How often a leaving peer looks whether it may go.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a leave waits for the hand-over by default: below
/// Kubernetes' default grace period of 30 s, so the peer goes on its own
/// before it is killed.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(20);

/// What still keeps a leaving peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeps {
    /// It holds a share of the running test (the leader has not handed it
    /// over yet), or runs one up to the epoch that did.
    Share,
    /// It still votes in Raft while others could take its seat.
    Vote,
}

impl std::fmt::Display for Keeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Share => "its share was not handed over",
            Self::Vote => "it still votes in Raft",
        })
    }
}

/// What keeps peer `me` (Raft id `raft_id`) from leaving, if anything:
/// `plan` is the one in force, `share_running` whether this peer's engine
/// still runs a share of it, `voters` Raft's voters and `status` the
/// cluster as gossip shows it.
pub fn keeps(
    me: &str,
    raft_id: u64,
    plan: Option<&Plan>,
    share_running: bool,
    voters: &BTreeSet<u64>,
    status: &ClusterStatus,
) -> Option<Keeps> {
    let staying = |m: &&crate::cluster::status::MemberStatus| {
        m.id != me && m.state == Liveness::Alive && m.info.role.takes_load() && !m.info.leaving
    };
    let mut others = status.members.iter().filter(staying).peekable();
    // With nobody staying, nobody can take the share or the seat: the last
    // peers stop their share when they go.
    others.peek()?;
    if let Some(plan) = plan {
        // A share run past the epoch that handed it over ends by itself
        // at that epoch's start; one that was re-split away earlier (the
        // peer was thought lost) runs at rate zero and owes nothing.
        let ending = share_running && plan.ever_departed(me);
        if plan.shares.contains_key(me) || ending {
            return Some(Keeps::Share);
        }
    }
    let others_may_vote = others.any(|m| m.info.raft_role.is_member());
    (voters.contains(&raft_id) && others_may_vote).then_some(Keeps::Vote)
}

/// How a leave went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// What still kept the peer when its time was up (`None`: it left
    /// with nothing held).
    pub kept: Option<Keeps>,
    /// The members it handed its reports to (see
    /// [`keep`](crate::cluster::run::keep)).
    pub handed_to: Vec<String>,
    /// How long it took, lingering included.
    pub took: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::membership::state::RaftRole;
    use crate::cluster::run::plan::Equal;
    use crate::cluster::run::plan::fixtures::candidates as peers;
    use crate::cluster::status::fixtures::{member, status};

    #[test]
    fn a_leaver_waits_for_its_share_to_be_handed_over_and_its_vote_to_go() {
        use Liveness::*;
        let mut view = status(vec![
            member("a", 1, Alive),
            member("b", 2, Alive),
            member("c", 3, Alive),
        ]);
        for m in &mut view.members {
            m.info.raft_role = RaftRole::Voter;
        }
        view.members[2].info.leaving = true;
        let voters = BTreeSet::from([1, 2, 3]);
        let first =
            Plan::first("t", 0, &Equal, &peers(&["a", "b", "c"]), Default::default()).unwrap();
        assert_eq!(
            keeps("c", 3, Some(&first), true, &voters, &view),
            Some(Keeps::Share)
        );
        let handed = first
            .resplit(5_000, &Equal, &peers(&["a", "b"]))
            .unwrap()
            .with_departed(vec!["c".into()]);
        assert_eq!(
            keeps("c", 3, Some(&handed), true, &voters, &view),
            Some(Keeps::Share),
            "its run goes on to the epoch's start"
        );
        assert_eq!(
            keeps("c", 3, Some(&handed), false, &voters, &view),
            Some(Keeps::Vote)
        );
        let two = BTreeSet::from([1, 2]);
        assert_eq!(keeps("c", 3, Some(&handed), false, &two, &view), None);
        // A share re-split away earlier (thought lost) owes nothing.
        let lost = first.resplit(5_000, &Equal, &peers(&["a", "b"])).unwrap();
        assert_eq!(keeps("c", 3, Some(&lost), true, &two, &view), None);
        // The last peer keeps its share and its seat: nobody could take
        // them, so it does not wait for that.
        for m in &mut view.members[..2] {
            m.state = Dead;
        }
        assert_eq!(keeps("c", 3, Some(&first), true, &voters, &view), None);
    }
}
