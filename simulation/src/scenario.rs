//! Scenarios: which faults happen when, drawn from the seed. Times are
//! virtual milliseconds after the test starts; targets are picked when the
//! fault happens (from whoever runs then), with the same seeded RNG.

use std::fmt;

/// A named scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// No faults; one rate update.
    Steady,
    /// Kills (the leader too), restarts, joins and freezes, with loss and
    /// delay, and rate updates.
    Churn,
    /// Majority/minority partitions (the leader in the minority once) and
    /// an asymmetric one, with loss and delay, and a rate update.
    Partition,
    /// A minority that flaps in and out of a partition, and a rate update.
    Flapping,
    /// Churn, partitions and flapping one after another.
    All,
    /// A scale-down: peers leave gracefully one after another, two at
    /// once, the leader among them, one joins meanwhile; and a rate
    /// update, on a clean network, so every hand-over can be checked exact.
    Leaves,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Steady => "steady",
            Self::Churn => "churn",
            Self::Partition => "partition",
            Self::Flapping => "flapping",
            Self::All => "all",
            Self::Leaves => "leaves",
        };
        f.write_str(name)
    }
}

/// One fault or operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Random loss (0..1) and uniform delay (ms) on every message.
    Conditions {
        /// Loss probability.
        loss: f64,
        /// Delay range, milliseconds.
        delay_ms: (u64, u64),
    },
    /// Kill a random peer.
    Kill,
    /// Kill the Raft leader.
    KillLeader,
    /// Restart a killed peer (new generation).
    Restart,
    /// A new peer joins.
    Join,
    /// A random peer leaves gracefully (SIGTERM): it announces it, and goes
    /// once nothing keeps it.
    Leave,
    /// The Raft leader leaves gracefully.
    LeaveLeader,
    /// Freeze a random peer for this long.
    Freeze(u64),
    /// Split off this fraction of the peers (with the leader, if asked).
    Partition {
        /// Fraction on the minority side.
        fraction: f64,
        /// Put the leader in the minority.
        with_leader: bool,
        /// Reuse the previous minority (flapping links).
        sticky: bool,
    },
    /// End the partition.
    Heal,
    /// These many peers cannot send to anyone (but still hear), this long.
    Asymmetric(usize, u64),
    /// Multiply the cluster rate by this factor.
    RateUpdate(f64),
}

/// An action at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Milliseconds after the test starts.
    pub at_ms: u64,
    /// What happens.
    pub action: Action,
}

/// The events of `scenario` with faults inside `window` (ms after the test
/// starts); every fault ends by the window's end.
pub fn events(scenario: Scenario, window: (u64, u64), rng: &mut fastrand::Rng) -> Vec<Event> {
    let (from, to) = window;
    let mut events = match scenario {
        Scenario::Steady => Vec::new(),
        Scenario::Churn => churn((from, to), rng),
        Scenario::Partition => partitions((from, to), rng),
        Scenario::Flapping => flapping((from, to), rng),
        Scenario::All => {
            let third = (to - from) / 3;
            let mut all = churn((from, from + third), rng);
            all.extend(partitions((from + third, from + 2 * third), rng));
            all.extend(flapping((from + 2 * third, to), rng));
            all
        }
        Scenario::Leaves => leaves((from, to)),
    };
    events.push(at((from + to) / 2, Action::RateUpdate(1.5)));
    if !matches!(scenario, Scenario::Steady | Scenario::Leaves) {
        events.push(at(
            from,
            Action::Conditions {
                loss: 0.01,
                delay_ms: (1, 20),
            },
        ));
        events.push(at(from + (to - from) * 3 / 4, Action::RateUpdate(0.8)));
        events.push(at(
            to,
            Action::Conditions {
                loss: 0.0,
                delay_ms: (0, 0),
            },
        ));
    }
    events.sort_by_key(|e| e.at_ms);
    events
}

fn at(at_ms: u64, action: Action) -> Event {
    Event { at_ms, action }
}

fn churn((from, to): (u64, u64), rng: &mut fastrand::Rng) -> Vec<Event> {
    let mut events = vec![at(from + (to - from) / 3, Action::KillLeader)];
    let mut t = from + rng.u64(500..1_500);
    while t + 500 < to {
        let action = match rng.u32(0..100) {
            0..35 => Action::Kill,
            35..55 => Action::Restart,
            55..70 => Action::Join,
            70..80 => Action::Leave,
            _ => Action::Freeze(rng.u64(500..4_000).min(to - t)),
        };
        events.push(at(t, action));
        t += rng.u64(1_000..3_000);
    }
    events
}

fn partitions((from, to): (u64, u64), rng: &mut fastrand::Rng) -> Vec<Event> {
    let span = to - from;
    let asym = (span / 6).min(6_000);
    vec![
        at(
            from,
            Action::Partition {
                fraction: 0.3,
                with_leader: false,
                sticky: false,
            },
        ),
        at(from + span * 3 / 10, Action::Heal),
        at(
            from + span * 4 / 10,
            Action::Partition {
                fraction: 0.2 + rng.f64() * 0.2,
                with_leader: true,
                sticky: false,
            },
        ),
        at(from + span * 7 / 10, Action::Heal),
        at(from + span * 8 / 10, Action::Asymmetric(3, asym)),
    ]
}

fn flapping((from, to): (u64, u64), rng: &mut fastrand::Rng) -> Vec<Event> {
    let mut events = Vec::new();
    let mut t = from;
    while t + 1_000 < to {
        events.push(at(
            t,
            Action::Partition {
                fraction: 0.1,
                with_leader: false,
                sticky: true,
            },
        ));
        t += rng.u64(500..2_500);
        events.push(at(t.min(to), Action::Heal));
        t += rng.u64(500..2_500);
    }
    events
}

fn leaves((from, to): (u64, u64)) -> Vec<Event> {
    let span = to - from;
    vec![
        at(from, Action::Leave),
        at(from + span / 10, Action::Leave),
        at(from + span * 2 / 10, Action::Leave),
        at(from + span * 2 / 10, Action::Leave),
        at(from + span * 4 / 10, Action::Join),
        at(from + span * 6 / 10, Action::LeaveLeader),
        at(from + span * 8 / 10, Action::Leave),
    ]
}
