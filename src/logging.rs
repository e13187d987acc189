//! Log output: `VAJRA_LOG` (an `EnvFilter`, default `warn`) to stderr, with
//! openraft's reports of expected events put at the level they deserve.
//!
//! openraft logs at ERROR (or WARN) what a cluster under faults does by
//! design: replicating to a peer that just died, asking a dead peer for its
//! vote, confirming leadership while a follower is gone, a membership change
//! forwarded to the leader. Users read ERROR as "something is broken", so
//! these are treated as the debug detail they are: left out of the output
//! unless `VAJRA_LOG` names openraft (`VAJRA_LOG=warn,openraft=debug`),
//! which shows openraft's output unchanged. Real faults (storage errors, a
//! fatal core error) keep their level. (Logging them again at DEBUG from
//! inside the filter is not possible reliably: tracing drops events emitted
//! while an event is being dispatched on a scoped dispatcher.)
//!
//! Warnings and errors can also be tapped ([`tap`]) while a run exports
//! them (OTLP logs): a bounded queue that drops what it cannot hold.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// openraft messages that report an expected event of a cluster under
/// faults: (level it uses, start of its message).
const EXPECTED: &[(Level, &str)] = &[
    // replication to a follower that died or is partitioned away
    (Level::ERROR, "RPCError"),
    (Level::WARN, "error replication to target="),
    // an election while some voters are dead
    (Level::ERROR, "timeout"),
    (Level::ERROR, "while requesting vote"),
    // a linearizable read while a follower is gone
    (Level::ERROR, "timeout while confirming leadership"),
    // a membership change asked of a follower, or while one is under way
    (Level::ERROR, "the first step error"),
    (Level::ERROR, "the second step error"),
    // the same faults, as openraft also reports them at WARN
    (Level::WARN, "openraft::replication::ReplicationCore"),
    (Level::WARN, "update progress error"),
    (Level::WARN, "heartbeat error"),
    // replies that arrive after a membership or vote change (the
    // coordinator changes membership as peers come and go)
    (Level::WARN, "membership_log_id changed"),
    (
        Level::WARN,
        "A message will be ignored because vote changed",
    ),
];

/// Starts logging to stderr as `VAJRA_LOG` says (default `warn`).
pub fn init() {
    let spec = std::env::var("VAJRA_LOG").ok();
    let filter = spec
        .as_deref()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let raw_openraft = spec.as_deref().is_some_and(|s| s.contains("openraft"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(DemoteExpected {
            enabled: !raw_openraft,
        })
        .with_filter(filter);
    let tapped = Tap
        .with_filter(DemoteExpected { enabled: true })
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(tapped)
        .try_init();
}

/// A warning or error the process logged.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// When.
    pub time: std::time::SystemTime,
    /// WARN or ERROR.
    pub level: Level,
    /// The module that logged it.
    pub target: String,
    /// The message.
    pub message: String,
}

/// Where tapped lines go, if anywhere.
static TAPPED: parking_lot::Mutex<Option<tokio::sync::mpsc::Sender<LogLine>>> =
    parking_lot::Mutex::new(None);

/// Sends the process's warnings and errors, from now until [`untap`], to
/// the receiver returned (at most `capacity` waiting; more are dropped).
/// A second tap replaces the first.
pub fn tap(capacity: usize) -> tokio::sync::mpsc::Receiver<LogLine> {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    *TAPPED.lock() = Some(tx);
    rx
}

/// Ends the tap (its receiver then sees the end).
pub fn untap() {
    TAPPED.lock().take();
}

/// The layer feeding the tap.
struct Tap;

impl<S: Subscriber> Layer<S> for Tap {
    fn on_event(&self, event: &Event<'_>, _cx: tracing_subscriber::layer::Context<'_, S>) {
        let tapped = TAPPED.lock();
        let Some(tx) = tapped.as_ref() else {
            return;
        };
        let mut text = EventText::default();
        event.record(&mut text);
        let meta = event.metadata();
        let _ = tx.try_send(LogLine {
            time: std::time::SystemTime::now(),
            level: *meta.level(),
            target: meta.target().to_owned(),
            message: text.message,
        });
    }
}

/// Drops openraft's expected-event reports from the output.
struct DemoteExpected {
    enabled: bool,
}

impl<S: Subscriber> Filter<S> for DemoteExpected {
    fn enabled(&self, _meta: &tracing::Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        if !self.enabled {
            return true;
        }
        !expected(event)
    }
}

/// Whether `event` is one of openraft's [`EXPECTED`] reports.
fn expected(event: &Event<'_>) -> bool {
    let meta = event.metadata();
    if !meta.target().starts_with("openraft") {
        return false;
    }
    let mut text = EventText::default();
    event.record(&mut text);
    let level = *meta.level();
    EXPECTED
        .iter()
        .any(|(l, start)| *l == level && text.message.starts_with(start))
}

/// An event's message.
#[derive(Default)]
struct EventText {
    message: String,
}

impl Visit for EventText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what reaches the output, as (target, level, text).
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(String, Level, String)>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _cx: tracing_subscriber::layer::Context<'_, S>) {
            let mut text = EventText::default();
            event.record(&mut text);
            let meta = event.metadata();
            self.0
                .lock()
                .unwrap()
                .push((meta.target().to_owned(), *meta.level(), text.message));
        }
    }

    fn log_with(enabled: bool) -> Vec<(String, Level, String)> {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(
            seen.clone()
                .with_filter(DemoteExpected { enabled })
                .with_filter(EnvFilter::new("debug")),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "openraft::replication", err = "Unreachable node 3", "RPCError");
            tracing::error!(target: "openraft::core::raft_core", "quit RaftCore::main on error");
            tracing::error!(target: "vajra::cluster", "RPCError of our own");
        });
        seen.0.lock().unwrap().clone()
    }

    #[test]
    fn expected_raft_reports_are_left_out_and_real_faults_stay_errors() {
        let seen = log_with(true);
        assert!(
            !seen
                .iter()
                .any(|(t, l, _)| t.starts_with("openraft::replication") && *l == Level::ERROR),
            "{seen:?}"
        );
        assert!(
            seen.iter().any(|(t, l, m)| t.starts_with("openraft::core")
                && *l == Level::ERROR
                && m.starts_with("quit")),
            "a fatal error keeps its level: {seen:?}"
        );
        assert!(
            seen.iter().any(|(t, _, _)| t == "vajra::cluster"),
            "only openraft's reports are touched: {seen:?}"
        );
        let raw = log_with(false);
        assert_eq!(raw.len(), 3, "asked for openraft, shown unchanged: {raw:?}");
    }
}
