//! Open-model pacing, measured end to end through the binary's JSON report.

mod common;

use std::time::Duration;

use common::{TestTarget, run};
use vajra::metrics::Phase;
use vajra::target::TargetBehaviour;

/// Each one-second window's count must be within ±2 % (or ±1) of its target.
fn assert_window(second: u64, actual: u64, expected: f64) {
    let tolerance = (expected * 0.02).max(1.0);
    assert!(
        (actual as f64 - expected).abs() <= tolerance,
        "second {second}: {actual} dispatched, expected {expected} ± {tolerance}"
    );
}

#[test]
fn step_pattern_hits_every_window_and_the_total() {
    let r = run(&["--task", "noop", "--steps", "50:10s,150:10s,300:10s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    let full: Vec<_> = report.series.iter().filter(|w| w.second < 30).collect();
    assert_eq!(full.len(), 30);
    for w in &full {
        let expected = [50.0, 150.0, 300.0][(w.second / 10) as usize];
        assert_window(w.second, w.dispatched, expected);
        assert_window(w.second, w.success, expected);
    }
    let expected_total = 10.0 * (50.0 + 150.0 + 300.0);
    assert_eq!(report.planned, Some(5000));
    let completed = report.main.completed as f64;
    assert!(
        (completed - expected_total).abs() <= expected_total * 0.005,
        "total {completed}"
    );
    assert_eq!(report.main.dropped, 0);
}

#[test]
fn linear_ramp_executes_its_integral() {
    let r = run(&[
        "--task",
        "noop",
        "--tps",
        "1000",
        "--ramp-up",
        "10s",
        "--duration",
        "10s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    let completed = report.main.completed as f64;
    assert!(
        (completed - 5000.0).abs() <= 25.0,
        "ramp executed {completed}, expected 5000 ± 0.5 %"
    );
    // No over-delivery early on: the first second of a 0→1000/s ramp holds 50.
    assert_window(0, report.series[0].dispatched, 50.0);
    assert_window(9, report.series[9].dispatched, 950.0);
}

#[test]
fn rate_drop_has_no_stall_and_rise_has_no_burst() {
    let r = run(&["--task", "noop", "--steps", "400:2s,20:2s,400:2s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    let rates = [400.0, 400.0, 20.0, 20.0, 400.0, 400.0];
    for w in report.series.iter().filter(|w| w.second < 6) {
        let second = w.second as usize;
        // Windows count arrivals when they were dispatched: those due just
        // before a boundary and dispatched just after it (the generator's
        // own lag, measured) move into the next window. At most the lag
        // the window measured, and never more than 20 ms of it: a stall
        // that long would be a burst.
        let before = if second == 0 { 0.0 } else { rates[second - 1] };
        let lag_s = (w.lag_p99_us / 1e6).min(0.020);
        let moved = before * lag_s;
        let expected = rates[second];
        let tolerance = (expected * 0.02).max(1.0) + moved;
        assert!(
            (w.dispatched as f64 - expected).abs() <= tolerance,
            "second {second}: {} dispatched, expected {expected} ± {tolerance:.1} (lag p99 {} µs)",
            w.dispatched,
            w.lag_p99_us
        );
    }
    assert_eq!(report.planned, Some(1640));
    assert_eq!(report.main.completed, 1640, "the curve's integral, exactly");
}

#[test]
fn intended_start_latency_shows_a_stall_that_service_time_hides() {
    let target = TestTarget::start(TargetBehaviour {
        stall_every: Some(Duration::from_secs(3)),
        stall_for: Duration::from_secs(1),
        ..TargetBehaviour::default()
    });
    // One connection paced at 100/s, like wrk2 -c1 -R100: during a stall the
    // schedule keeps running and the queued arrivals are measured from when
    // they were due.
    let r = run(&[
        "--url",
        &target.url(),
        "--tps",
        "100",
        "--concurrency",
        "1",
        "--duration",
        "9s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    let latency_p99_ms = report.main.latency.p99_us / 1e3;
    let service_p99_ms = report.main.service.p99_us / 1e3;
    assert!(
        latency_p99_ms > 500.0,
        "intended-start p99 {latency_p99_ms}ms hides the 1s stalls"
    );
    assert!(
        service_p99_ms < 100.0,
        "service-time p99 {service_p99_ms}ms should not show the stalls"
    );
    assert!(
        report.main.service.max_us / 1e3 > 500.0,
        "the stalled requests themselves are still recorded"
    );
    assert_eq!(report.main.completed, 900);
    assert_eq!(
        target.target.requests(),
        900,
        "every request the target served was recorded"
    );
}

#[test]
fn warmup_is_reported_apart() {
    let r = run(&[
        "--task",
        "noop",
        "--tps",
        "200",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--warmup-tps",
        "100",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    let warmup = report.warmup.expect("warmup reported");
    assert_eq!(warmup.completed, 100);
    assert_eq!(report.main.completed, 400);
    assert_eq!(report.series[0].phase, Phase::Warmup);
    assert_eq!(report.series[1].phase, Phase::Main);
}

#[test]
fn saturation_drops_are_counted_not_hidden() {
    // 200/s of 100 ms sleeps needs ~20 in flight; allow 5.
    let r = run(&[
        "--task",
        "sleep",
        "--sleep",
        "100ms",
        "--tps",
        "200",
        "--duration",
        "2s",
        "--max-in-flight",
        "5",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert!(report.main.dropped > 250, "dropped {}", report.main.dropped);
    assert_eq!(
        report.main.dispatched + report.main.dropped,
        400,
        "every arrival is dispatched or dropped"
    );
    assert_eq!(report.main.completed, report.main.dispatched);
}

#[test]
fn a_zero_rate_stretch_does_not_end_the_run() {
    let r = run(&["--task", "noop", "--steps", "100:1s,0:2s,50:1s,0:1s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed, 150);
    assert!(
        report.load_secs >= 4.99,
        "run ended after {}s of a 5s curve",
        report.load_secs
    );
    let dispatched: Vec<u64> = report.series.iter().take(5).map(|w| w.dispatched).collect();
    assert_eq!(dispatched, [100, 0, 0, 50, 0]);
}

/// A generator frozen for 3 s (SIGSTOP, as a paused VM or a swapped-out
/// process would be) does not burst its backlog at the target when it
/// wakes: what it reaches later than --max-lag is counted as missed and the
/// self-check names the stall; what is less late is sent, measured from its
/// intended start; the run still ends on time.
#[test]
fn a_frozen_generator_misses_what_is_too_late_instead_of_bursting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let mut child = common::binary()
        .args(["run", "--task", "noop", "--tps", "1000", "--duration", "6s"])
        .args(["--max-lag", "500ms", "--quiet", "--output"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    std::thread::sleep(Duration::from_millis(1_500));
    // SAFETY: signalling our own child process by its pid.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(child.wait().unwrap().success());
    let report: vajra::export::Report =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let main = &report.main;
    assert_eq!(
        main.dispatched + main.dropped + main.missed,
        6_000,
        "every arrival is sent, dropped or missed"
    );
    // 3 s frozen, the last 0.5 s of it still sent late: ~2 500 missed.
    assert!(
        (2_200..=2_800).contains(&main.missed),
        "missed {}",
        main.missed
    );
    let burst = report.series.iter().map(|w| w.dispatched).max().unwrap();
    assert!(
        burst <= 1_700,
        "{burst} sent in one second of a 1000/s test"
    );
    // Only what was already handed to a worker when the process froze (a
    // few arrivals at most) waited out the freeze; nothing dispatched after
    // it records the stall as latency.
    assert!(
        report.main.latency.p999_us < 700_000.0,
        "latency p99.9 {} µs: the stall beyond max-lag is not the target's",
        report.main.latency.p999_us
    );
    assert!(!report.self_check.reliable);
    assert!(
        report
            .self_check
            .reasons
            .iter()
            .any(|r| r.contains("missed")),
        "{:?}",
        report.self_check.reasons
    );
    assert!(report.load_secs < 7.0, "ran {} s", report.load_secs);
}
