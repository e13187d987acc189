//! The command line: exit codes, thresholds, configuration layering and
//! errors, reports, interruption.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{TestTarget, binary, finish, raw, run, run_with_env};
use vajra::metrics::histogram::decode_v2;
use vajra::target::TargetBehaviour;

#[test]
fn thresholds_flip_the_exit_code() {
    let pass = run(&[
        "--task",
        "noop",
        "--tps",
        "100",
        "--duration",
        "1s",
        "--threshold",
        "p99<1s",
        "--threshold",
        "error_rate<1%",
    ]);
    assert_eq!(pass.code, 0, "{}", pass.stdout);
    assert!(pass.stdout.contains("pass  p99<1s"), "{}", pass.stdout);
    let fail = run(&[
        "--task",
        "noop",
        "--tps",
        "100",
        "--duration",
        "1s",
        "--threshold",
        "count>1000000",
    ]);
    assert_eq!(fail.code, 3, "{}", fail.stdout);
    assert!(
        fail.stdout.contains("FAIL  count>1000000"),
        "{}",
        fail.stdout
    );
    let report = fail.report.unwrap();
    assert!(!report.thresholds[0].passed);
}

#[test]
fn abort_on_fail_stops_early() {
    let r = run(&[
        "--task",
        "sleep",
        "--sleep",
        "50ms",
        "--tps",
        "20",
        "--duration",
        "20s",
        "--threshold",
        "p50<1ms",
        "--abort-on-fail",
    ]);
    assert_eq!(r.code, 3);
    let report = r.report.unwrap();
    assert_eq!(report.outcome, "aborted");
    assert!(
        report.load_secs < 5.0,
        "aborted after {}s",
        report.load_secs
    );
    assert!(report.abort_reason.unwrap().contains("p50<1ms"));
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--task", "noop", "--tps", "abc", "--duration", "1s"],
            "--tps",
        ),
        (
            &["run", "--task", "noop", "--tps", "10", "--duration", "10"],
            "needs a unit",
        ),
        (
            &[
                "run",
                "--task",
                "noop",
                "--pattern",
                "zigzag",
                "--tps",
                "1",
                "--duration",
                "1s",
            ],
            "zigzag",
        ),
        (
            &["run", "--task", "nope", "--tps", "1", "--duration", "1s"],
            "unknown task 'nope'",
        ),
        (
            &["run", "--task", "noop", "--duration", "1s"],
            "no load given",
        ),
        (
            &[
                "run",
                "--task",
                "noop",
                "--tps",
                "10",
                "--amplitude",
                "20",
                "--period",
                "1s",
                "--duration",
                "1s",
            ],
            "negative",
        ),
        (
            &["run", "--task", "http", "--tps", "1", "--duration", "1s"],
            "needs --url",
        ),
        (
            &[
                "run",
                "--task",
                "noop",
                "--tps",
                "1",
                "--duration",
                "1s",
                "--threshold",
                "p99<",
            ],
            "threshold",
        ),
        (
            &[
                "run",
                "--task",
                "noop",
                "--tps",
                "1",
                "--duration",
                "1s",
                "--on-saturation",
                "maybe",
            ],
            "maybe",
        ),
        (
            &["run", "--config", "/nonexistent/vajra.toml"],
            "cannot read",
        ),
        (
            &[
                "run",
                "--task",
                "noop",
                "--tps",
                "1",
                "--duration",
                "1s",
                "--export",
                "otlpp",
            ],
            "unknown exporter 'otlpp' (known: blazemeter, otlp, prometheus)",
        ),
        (
            &[
                "run",
                "--task",
                "noop",
                "--tps",
                "1",
                "--duration",
                "1s",
                "--label",
                "a b=c",
            ],
            "invalid `label`",
        ),
    ];
    for (args, needle) in cases {
        let r = raw(args);
        assert_eq!(r.code, 2, "{args:?} exited {}: {}", r.code, r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{args:?}: expected '{needle}' in:\n{}",
            r.stderr
        );
    }
}

#[test]
fn start_leaves_export_settings_to_the_peers() {
    // The shell that starts tests may hold the peers' VAJRA_EXPORT.
    let out = binary()
        .args([
            "start",
            "--insecure",
            "--task",
            "noop",
            "--tps",
            "1",
            "--duration",
            "1s",
        ])
        .args(["--peer", "127.0.0.1:1"])
        .env("VAJRA_EXPORT", "otlp")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ignoring the export settings"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unreachable_target_fails_setup_with_a_message() {
    let r = run(&[
        "--url",
        "http://127.0.0.1:1/",
        "--tps",
        "10",
        "--duration",
        "1s",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("127.0.0.1:1"), "{}", r.stderr);
}

fn write_config(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let shown = path.to_str().unwrap().to_owned();
    (dir, shown)
}

#[test]
fn config_file_env_and_flags_layer_in_order() {
    let (_dir, path) = write_config(
        "vajra.toml",
        "task = \"noop\"\ntps = 50\nduration = \"1s\"\n",
    );
    let from_file = run(&["--config", &path]);
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    assert_eq!(from_file.report.unwrap().main.completed, 50);

    let env_over_file = run_with_env(&["--config", &path], &[("VAJRA_TPS", "80")]);
    assert_eq!(env_over_file.report.unwrap().main.completed, 80);

    let flag_over_env = run_with_env(&["--config", &path, "--tps", "30"], &[("VAJRA_TPS", "80")]);
    assert_eq!(flag_over_env.report.unwrap().main.completed, 30);
}

#[test]
fn yaml_config_is_accepted_and_bad_files_name_the_line() {
    let (_dir, path) = write_config("vajra.yaml", "task: noop\ntps: 40\nduration: 1s\n");
    let ok = run(&["--config", &path]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.report.unwrap().main.completed, 40);

    let (_dir, path) = write_config("bad.toml", "task = \"noop\"\ntps = 40\nramp_upp = \"1s\"\n");
    let bad = raw(&["run", "--config", &path]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("ramp_upp") && bad.stderr.contains("line 3"),
        "{}",
        bad.stderr
    );
}

#[test]
fn json_report_carries_mergeable_histograms_and_a_consistent_series() {
    let r = run(&[
        "--task",
        "sleep",
        "--sleep",
        "1ms..3ms",
        "--tps",
        "300",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    let latency = decode_v2(&report.histograms.latency).unwrap();
    assert_eq!(latency.len(), report.main.completed);
    assert_eq!(report.main.completed, 600);
    let series_total: u64 = report.series.iter().map(|w| w.success + w.failure).sum();
    assert_eq!(
        series_total, report.main.completed,
        "series and summary agree"
    );
    assert!(
        report.main.service.p50_us >= 1_000.0,
        "sleep time is measured"
    );
    assert!(
        decode_v2(report.histograms.scheduler_lag.as_ref().unwrap())
            .unwrap()
            .len()
            == 600
    );
}

#[test]
fn csv_report_has_one_row_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("series.csv");
    let r = finish(
        binary()
            .args([
                "run",
                "--task",
                "noop",
                "--tps",
                "10",
                "--duration",
                "3s",
                "--quiet",
                "--output",
            ])
            .arg(&csv)
            .output()
            .unwrap(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert!(lines[0].starts_with("second,phase,"));
    assert!(lines.len() >= 4, "{text}");
    assert!(lines[1].starts_with("0,main,"));
}

#[test]
fn http_task_records_every_request_the_target_served() {
    let target = TestTarget::start(TargetBehaviour::default());
    let r = run(&[
        "--url",
        &target.url(),
        "--concurrency",
        "4",
        "--duration",
        "2s",
        "--threads",
        "1",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert!(report.main.completed > 100);
    assert_eq!(report.main.completed, target.target.requests());
    assert_eq!(report.main.failure, 0);
}

#[test]
fn http_status_failures_are_classified() {
    let target = TestTarget::start(TargetBehaviour::default());
    let r = run(&[
        "--url",
        &target.url(),
        "--tps",
        "50",
        "--duration",
        "1s",
        "--expect-status",
        "204",
        "--threshold",
        "error_rate<1%",
    ]);
    assert_eq!(r.code, 3);
    let report = r.report.unwrap();
    assert_eq!(report.main.failure, 50);
    assert_eq!(report.main.errors[0].kind, "status_200");
}

#[test]
fn blocking_strategy_runs_on_os_threads() {
    let r = run(&[
        "--task",
        "noop",
        "--tps",
        "200",
        "--duration",
        "1s",
        "--thread-strategy",
        "blocking",
        "--blocking-threads",
        "2",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    // Two OS threads are also the in-flight limit: an arrival due while
    // both are busy (a loaded box) is dropped and counted, never lost.
    assert_eq!(report.main.completed + report.main.dropped, 200);
    assert!(report.main.completed >= 190, "{:?}", report.main);
    assert_eq!(report.instances, 2);
}

#[test]
fn ctrl_c_drains_and_reports_an_interrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let child = binary()
        .args([
            "run",
            "--task",
            "sleep",
            "--sleep",
            "200ms",
            "--tps",
            "50",
            "--duration",
            "30s",
            "--quiet",
            "--output",
        ])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let r = finish(child.wait_with_output().unwrap(), Some(&path));
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(r.stdout.contains("INTERRUPTED"));
    let report = r.report.unwrap();
    assert_eq!(report.outcome, "interrupted");
    assert!(report.load_secs < 5.0);
    assert_eq!(report.unfinished, 0, "in-flight sleeps were drained");
    assert!(
        report.main.completed >= 50,
        "work done before the interrupt is kept"
    );
}

#[test]
fn demo_runs_against_its_own_target() {
    let r = raw(&["demo", "--duration", "2s", "--tps", "200"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("pass  p99<100ms"), "{}", r.stdout);
}

/// The closed model busy-polls; the spinning that found nothing to do is
/// left out of the self-check's CPU figure, so a run of sleeps (almost no
/// work) is not flagged as a saturated generator, and spinning pauses
/// when nothing comes.
#[test]
fn busy_polling_is_not_counted_as_load_and_belongs_to_the_closed_model() {
    let r = run(&[
        "--task",
        "sleep",
        "--sleep",
        "2ms",
        "--concurrency",
        "4",
        "--threads",
        "1",
        "--duration",
        "2s",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert!(report.main.completed > 2_000, "{}", report.main.completed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // One thread spinning all the time is 100/cores percent; 2 000 sleeps
    // a second are little work, and the spinner pauses between them
    // (engine::busy_poll's tests check the idle accounting itself).
    let spinning = 100.0 / cores;
    assert!(
        report.self_check.cpu_percent_mean < spinning / 2.0,
        "CPU {:.1}% (a spinning thread is {spinning:.0}%)",
        report.self_check.cpu_percent_mean
    );
    assert!(
        report.self_check.reliable,
        "{:?}",
        report.self_check.reasons
    );

    let paced = run(&[
        "--task",
        "noop",
        "--tps",
        "10",
        "--duration",
        "1s",
        "--no-busy-poll",
    ]);
    assert_eq!(paced.code, 2, "{}", paced.stderr);
    assert!(paced.stderr.contains("no-busy-poll"), "{}", paced.stderr);
}

#[test]
fn completions_and_manual_pages_come_from_the_command_line_definitions() {
    let out = binary().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("complete") && script.contains("--health-listen"),
        "{script}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let join = std::fs::read_to_string(dir.path().join("vajra-peer-join.1")).unwrap();
    assert!(
        join.contains("health\\-listen"),
        "a page per command, with its flags"
    );
    // A reader that has gone away is an exit code, not a panic: the pipe's
    // read end is closed before the child starts, so its write must fail.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = binary()
        .args(["completions", "zsh"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let bad = binary().args(["completions", "nosh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
