//! A seed replays exactly: two processes given one seed print the same
//! report, down to the fingerprint of every leader, plan and timing, and
//! another seed plays out differently.
//!
//! Processes, not two runs in one test: the code under test keys its hash
//! maps and seeds its generators once per process (or thread), so only a
//! fresh process starts from the seed alone, which is what replaying a
//! failing seed from the command line does.

use std::process::Command;

/// Runs the simulation binary and returns its report without the line's
/// wall-clock part (the only figure that is not the simulation's).
fn report(seed: u64, scenario: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_vajra-simulation"))
        .args(["--peers", "12", "--duration", "35", "--scenario", scenario])
        .args(["--seed", &seed.to_string()])
        .env("RUST_LOG", "off")
        .output()
        .expect("the simulation binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "seed {seed}: {stdout}");
    stdout
        .lines()
        .map(|line| line.split(" in ").next().unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

fn fingerprint(report: &str) -> &str {
    report
        .lines()
        .find_map(|l| l.strip_prefix("replay fingerprint: "))
        .expect("the report has a fingerprint")
}

#[test]
fn one_seed_replays_the_same_run_and_another_seed_does_not() {
    let first = report(11, "churn");
    let again = report(11, "churn");
    assert_eq!(first, again, "two runs of seed 11 differ");
    let other = report(12, "churn");
    assert_ne!(fingerprint(&first), fingerprint(&other), "{other}");
}

#[test]
fn partitions_replay_too() {
    assert_eq!(report(5, "partition"), report(5, "partition"));
}
