//! The `http` task over TLS, against the built-in target serving HTTPS with
//! a certificate from a CA made here: trusted through `--https-ca`, refused
//! without it, accepted unverified with `--https-skip-verify`.

mod common;

use common::pki::pki;
use common::{TestTarget, run};
use vajra::target::TargetBehaviour;

fn load(url: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "--url",
        url,
        "--tps",
        "200",
        "--duration",
        "1s",
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn https_with_the_targets_ca_records_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = pki(dir.path());
    let target = TestTarget::start_https(TargetBehaviour::default(), tls);
    assert!(target.url().starts_with("https://"));
    let r = load(&target.url(), &["--https-ca", ca.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.report.unwrap();
    assert_eq!(report.main.completed + report.main.dropped, 200);
    assert_eq!(report.main.failure, 0);
    assert_eq!(report.main.completed, target.target.requests());
}

#[test]
fn an_unknown_issuer_fails_setup_naming_it_unless_verification_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (_, tls) = pki(dir.path());
    let target = TestTarget::start_https(TargetBehaviour::default(), tls);
    let refused = load(&target.url(), &[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("UnknownIssuer"),
        "{}",
        refused.stderr
    );
    assert_eq!(target.target.requests(), 0);

    let unverified = load(&target.url(), &["--https-skip-verify"]);
    assert_eq!(unverified.code, 0, "{}", unverified.stderr);
    assert_eq!(unverified.report.unwrap().main.failure, 0);
}

#[test]
fn https_flags_on_a_plain_url_or_a_bad_ca_file_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let plain = load("http://127.0.0.1:9/", &["--https-skip-verify"]);
    assert_eq!(plain.code, 2, "{}", plain.stderr);
    assert!(
        plain.stderr.contains("need an https:// URL"),
        "{}",
        plain.stderr
    );

    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let bad = load(
        "https://127.0.0.1:9/",
        &["--https-ca", not_pem.to_str().unwrap()],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("holds no certificate"),
        "{}",
        bad.stderr
    );
}
