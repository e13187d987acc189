//! The CI examples (`examples/ci/`): both jobs run `load-test.sh` and keep
//! `reports/`; the script itself, run here as those jobs run it, passes
//! against a healthy service with both reports written, and fails with the
//! threshold exit code (3) when a threshold does.

mod common;

use std::path::Path;
use std::process::Command;

/// Runs `examples/ci/load-test.sh` with `env`, the binary under test on
/// the PATH; its exit code and the reports folder.
fn load_test(env: &[(&str, &str)]) -> (Option<i32>, tempfile::TempDir, String) {
    let reports = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_vajra-peer"))
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let port = common::cluster::free_port();
    let mut cmd = Command::new("bash");
    cmd.arg("examples/ci/load-test.sh")
        .env("PATH", path)
        .env("REPORTS", reports.path())
        .env(
            "SERVICE_CMD",
            format!("vajra-peer serve --listen 127.0.0.1:{port}"),
        )
        .env("TARGET_URL", format!("http://127.0.0.1:{port}/"))
        .env("LOAD", "--tps 100 --duration 2s");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), reports, said)
}

#[test]
fn the_ci_script_keeps_both_reports_and_exits_with_the_verdict() {
    let (code, reports, said) = load_test(&[]);
    assert_eq!(code, Some(0), "{said}");
    let json = std::fs::read_to_string(reports.path().join("report.json")).unwrap();
    let report: vajra::export::Report = serde_json::from_str(&json).unwrap();
    assert_eq!(report.main.completed, 200);
    assert_eq!(report.thresholds.len(), 2, "the default thresholds");
    let html = std::fs::read_to_string(reports.path().join("report.html")).unwrap();
    assert!(html.contains("<html"), "a page");

    let (code, reports, said) = load_test(&[("THRESHOLDS", "p99<1us")]);
    assert_eq!(code, Some(3), "a failed threshold fails the job: {said}");
    assert!(reports.path().join("report.html").exists(), "kept anyway");
}

#[test]
fn both_ci_jobs_run_the_script_and_keep_the_reports() {
    for file in ["github-actions.yml", "gitlab-ci.yml"] {
        let text = std::fs::read_to_string(Path::new("examples/ci").join(file)).unwrap();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let commands = strings(&yaml);
        assert!(
            commands
                .iter()
                .any(|c| c.trim() == "bash examples/ci/load-test.sh"),
            "{file} runs the script"
        );
        assert!(
            commands.iter().any(|c| c.trim() == "reports/"),
            "{file} keeps the reports"
        );
    }
}

/// Every string in `value`, depth first.
fn strings(value: &serde_yaml_ng::Value) -> Vec<String> {
    match value {
        serde_yaml_ng::Value::String(s) => vec![s.clone()],
        serde_yaml_ng::Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        serde_yaml_ng::Value::Mapping(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}
