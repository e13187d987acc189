//! Run history: both stores keep a full report byte for byte, filter and
//! forget runs, and say clearly what is wrong with a damaged, locked or
//! newer store; relative thresholds gate a run against its baseline.
//!
//! PostgreSQL's tests are ignored by a plain run: `.ci/run` installs
//! Debian's server, starts it on loopback and gives its URL in
//! `VAJRA_TEST_POSTGRES`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestTarget, raw, run};
use vajra::export::Report;
use vajra::history::recorder::{Recorded, Recorder};
use vajra::history::sqlite::SqliteStore;
use vajra::history::store::{Provenance, RecordedRun, RunFilter, Store, StoreError};
use vajra::target::TargetBehaviour;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A real report: a short run of the noop task with two tags' worth of
/// series and histograms.
fn a_report() -> Report {
    let run = run(&["--task", "noop", "--tps", "300", "--duration", "2s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.report.expect("a report")
}

fn recorded(id: &str, name: &str, report: &Report) -> RecordedRun {
    let from = Provenance {
        id,
        name,
        started_by: "test:history",
        definition: r#"{"task":"noop","tps":300}"#.into(),
    };
    RecordedRun::new(from, report, Some(300.0))
}

/// What every store must do with runs: keep them byte for byte, once, and
/// list, filter and forget them.
async fn keeps_runs(store: &dyn Store, report: &Report) {
    let first = recorded("t1000", "checkout", report);
    assert!(store.record(&first).await.unwrap(), "recorded");
    assert!(
        !store.record(&first).await.unwrap(),
        "a run is recorded once"
    );
    let back = store.get("t1000").await.unwrap().expect("it is there");
    assert_eq!(
        back.report.as_bytes(),
        first.report.as_bytes(),
        "the report's JSON comes back byte for byte"
    );
    assert_eq!(back.summary, first.summary);
    assert_eq!(back.definition, first.definition);
    assert_eq!(
        &back.parsed_report().unwrap(),
        report,
        "and reads back as the same report"
    );
    assert_eq!(
        back.summary.completed as u64, report.main.completed,
        "its summary is the report's"
    );

    let mut later = recorded("t2000", "checkout", report);
    later.summary.started_ms += 60_000;
    later.summary.passed = false;
    let mut other = recorded("t3000", "search", report);
    other.summary.started_ms += 120_000;
    for run in [&later, &other] {
        assert!(store.record(run).await.unwrap());
    }
    let ids = |runs: Vec<vajra::history::RunSummary>| -> Vec<String> {
        runs.into_iter().map(|r| r.id).collect()
    };
    let all = store.list(&RunFilter::default()).await.unwrap();
    assert_eq!(ids(all), ["t3000", "t2000", "t1000"], "newest first");
    let checkout = RunFilter {
        name: Some("checkout".into()),
        ..RunFilter::default()
    };
    assert_eq!(
        ids(store.list(&checkout).await.unwrap()),
        ["t2000", "t1000"]
    );
    let failed = RunFilter {
        outcome: Some("failed".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.list(&failed).await.unwrap()), ["t2000"]);
    let window = RunFilter {
        since_ms: Some(first.summary.started_ms + 1),
        before_ms: Some(other.summary.started_ms),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.list(&window).await.unwrap()), ["t2000"]);
    let one = RunFilter {
        limit: 1,
        ..RunFilter::default()
    };
    assert_eq!(ids(store.list(&one).await.unwrap()), ["t3000"]);

    assert!(store.delete("t2000").await.unwrap());
    assert!(!store.delete("t2000").await.unwrap(), "gone already");
    assert!(!store.contains("t2000").await.unwrap());
    assert!(store.contains("t1000").await.unwrap());
    assert!(store.get("nope").await.unwrap().is_none());
}

#[test]
fn sqlite_keeps_runs_byte_for_byte() {
    let report = a_report();
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet is made.
    let path = dir.path().join("nested/history.db");
    runtime().block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        keeps_runs(&store, &report).await;
        drop(store);
        // Opened again: the schema is there, nothing migrates twice.
        let again = SqliteStore::open(&path).await.unwrap();
        assert!(again.contains("t1000").await.unwrap());
    });
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "history: 2 runs of {} s in {size} bytes",
        report.load_secs.round()
    );
}

#[test]
fn a_damaged_or_newer_sqlite_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    runtime().block_on(async {
        match SqliteStore::open(&garbage).await {
            Err(StoreError::Corrupt { store, .. }) => assert!(store.contains("garbage.db")),
            Err(other) => panic!("not called damaged: {other}"),
            Ok(_) => panic!("a garbage file opened as a history"),
        }
    });
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![0x5a; 8192],
        "and it is left as it was"
    );
    let cli = raw(&["history", "--store", garbage.to_str().unwrap(), "list"]);
    assert_eq!(cli.code, 2, "{}", cli.stderr);
    assert!(
        cli.stderr.contains("not a Vajra history database"),
        "{}",
        cli.stderr
    );

    // Another program's SQLite file is not taken over.
    let theirs = dir.path().join("theirs.db");
    let db = rusqlite::Connection::open(&theirs).unwrap();
    db.execute("CREATE TABLE invoices (id INTEGER)", [])
        .unwrap();
    drop(db);
    runtime().block_on(async {
        match SqliteStore::open(&theirs).await {
            Err(e @ StoreError::Corrupt { .. }) => {
                assert!(e.to_string().contains("`invoices`"), "{e}")
            }
            other => panic!("another program's file was taken: {:?}", other.err()),
        }
    });
    let db = rusqlite::Connection::open(&theirs).unwrap();
    let tables: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "and nothing was added to it");

    let newer = dir.path().join("newer.db");
    runtime().block_on(async {
        drop(SqliteStore::open(&newer).await.unwrap());
    });
    let db = rusqlite::Connection::open(&newer).unwrap();
    db.execute(
        "INSERT INTO vajra_schema (version, applied_ms) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(db);
    runtime().block_on(async {
        match SqliteStore::open(&newer).await {
            Err(e @ StoreError::NewerSchema { found: 99, .. }) => {
                assert!(e.to_string().contains("newer vajra-peer"), "{e}");
            }
            other => panic!("a newer schema was not refused: {:?}", other.err()),
        }
    });
}

#[test]
fn a_locked_sqlite_file_queues_runs_until_it_is_free() {
    let report = a_report();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        let recorder = Recorder::new(Arc::clone(&store));
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

        let started = Instant::now();
        let outcome = recorder.record(recorded("t1", "locked", &report)).await;
        match &outcome {
            Recorded::Waiting(why) => assert!(why.contains("locked"), "{why}"),
            other => panic!("not queued: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it waits a bounded time"
        );
        assert_eq!(recorder.waiting(), ["t1"]);
        assert!(
            recorder.knows("t1").await.unwrap(),
            "a waiting run counts as known"
        );
        // A second one waits behind it, in order.
        let second = recorder.record(recorded("t2", "locked", &report)).await;
        assert!(matches!(second, Recorded::Waiting(_)), "{second:?}");

        holder.execute_batch("COMMIT").unwrap();
        assert_eq!(recorder.flush().await, 2, "both written once it is free");
        assert!(recorder.waiting().is_empty());
        let ids: Vec<String> = store
            .list(&RunFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
    });
}

/// The same as SQLite's, against Debian's PostgreSQL.
#[test]
#[ignore = "needs PostgreSQL (VAJRA_TEST_POSTGRES, started by .ci/run)"]
fn postgres_keeps_runs_byte_for_byte() {
    use vajra::history::postgres::PostgresStore;
    let url = std::env::var("VAJRA_TEST_POSTGRES")
        .expect("VAJRA_TEST_POSTGRES names the database (.ci/run starts one)");
    let report = a_report();
    runtime().block_on(async {
        let store = PostgresStore::open(&url).await.unwrap();
        for id in ["t1000", "t2000", "t3000"] {
            store.delete(id).await.unwrap();
        }
        keeps_runs(&store, &report).await;
        for id in ["t1000", "t3000"] {
            store.delete(id).await.unwrap();
        }

        // Nothing listens on port 1: unreachable, quickly, by name.
        let away = PostgresStore::open("postgres://vajra@127.0.0.1:1/vajra").await;
        match away {
            Err(e @ StoreError::Unreachable { .. }) => {
                assert!(e.is_transient());
                assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
            }
            other => panic!("not unreachable: {:?}", other.err()),
        }
    });
}

/// Relative thresholds: a run as fast as its baseline passes the gate, one
/// against a slower target fails it, and the verdict names the baseline.
#[test]
fn a_slower_run_fails_the_gate_against_its_baseline() {
    let fast = TestTarget::start(TargetBehaviour {
        delay: Duration::from_millis(2),
        ..TargetBehaviour::default()
    });
    let slow = TestTarget::start(TargetBehaviour {
        delay: Duration::from_millis(50),
        ..TargetBehaviour::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("history.db");
    let store = store.to_str().unwrap();
    let against = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "--url",
            url,
            "--tps",
            "100",
            "--duration",
            "2s",
            "--test-name",
            "checkout",
            "--store",
            store,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let gate = ["--baseline", "last-passed", "--threshold", "p50<+300%"];

    let first = against(&fast.url(), &gate);
    assert_eq!(first.code, 0, "no baseline yet: {}", first.stderr);
    let verdict = &first.report.unwrap().thresholds[0];
    assert!(verdict.passed);
    assert!(
        verdict
            .baseline
            .as_deref()
            .unwrap()
            .contains("no earlier run"),
        "{verdict:?}"
    );

    let same = against(&fast.url(), &gate);
    assert_eq!(same.code, 0, "as fast as its baseline: {}", same.stdout);
    let report = same.report.unwrap();
    let verdict = &report.thresholds[0];
    assert!(verdict.passed, "{verdict:?}");
    assert!(
        verdict.baseline.as_deref().unwrap().contains(" in r"),
        "{verdict:?}"
    );

    let slower = against(&slow.url(), &gate);
    assert_eq!(slower.code, 3, "25x slower: {}", slower.stdout);
    let report = slower.report.unwrap();
    assert!(!report.thresholds[0].passed);
    assert!(
        slower.stdout.contains("FAIL  p50<+300%"),
        "shown with its baseline: {}",
        slower.stdout
    );

    // last-passed still picks the fast run: the slow one failed its gate.
    let again = against(&fast.url(), &gate);
    assert_eq!(again.code, 0, "{}", again.stdout);

    let listed = raw(&["history", "--store", store, "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let gates: Vec<bool> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["passed"].as_bool().unwrap())
        .collect();
    assert_eq!(gates, [true, false, true, true], "newest first");

    // A relative threshold without a baseline, or a baseline without a
    // store, is a configuration error before any load is sent.
    let lone = run(&[
        "--task",
        "noop",
        "--tps",
        "10",
        "--duration",
        "1s",
        "--threshold",
        "p99<+5%",
    ]);
    assert_eq!(lone.code, 2);
    assert!(lone.stderr.contains("--baseline"), "{}", lone.stderr);
    let storeless = run(&[
        "--task",
        "noop",
        "--tps",
        "10",
        "--duration",
        "1s",
        "--baseline",
        "last",
    ]);
    assert_eq!(storeless.code, 2);
    assert!(
        storeless.stderr.contains("needs --store"),
        "{}",
        storeless.stderr
    );
    let unknown = against(&fast.url(), &["--baseline", "r123"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("baseline run 'r123' is not in"),
        "{}",
        unknown.stderr
    );
}

/// `history show`, `compare` and `export` read what `run --store` wrote.
#[test]
fn the_history_command_shows_compares_and_exports_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("history.db");
    let store = store.to_str().unwrap();
    for tps in ["200", "300"] {
        let r = run(&[
            "--task",
            "noop",
            "--tps",
            tps,
            "--duration",
            "1s",
            "--store",
            store,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let listed = raw(&["history", "--store", store, "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let (newer, older) = (ids[0], ids[1]);

    let compared = raw(&[
        "history", "--store", store, "compare", older, newer, "--json",
    ]);
    assert_eq!(compared.code, 0, "{}", compared.stderr);
    let comparison: serde_json::Value = serde_json::from_str(&compared.stdout).unwrap();
    let count = comparison["overall"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["metric"] == "completed")
        .unwrap();
    assert_eq!(
        (count["a"].as_f64(), count["b"].as_f64()),
        (Some(200.0), Some(300.0))
    );
    assert!((count["change"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    let seconds = comparison["series_b"].as_array().unwrap();
    let rates: f64 = seconds.iter().map(|p| p["rate"].as_f64().unwrap()).sum();
    assert!(!seconds.is_empty() && rates > 0.0, "{seconds:?}");
    let table = raw(&["history", "--store", store, "compare", older, newer]);
    assert!(table.stdout.contains("latency.p99"), "{}", table.stdout);

    let exported = dir.path().join("out.json");
    let export = raw(&[
        "history",
        "--store",
        store,
        "export",
        newer,
        "-o",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let db = rusqlite::Connection::open(store).unwrap();
    let kept: String = db
        .query_row("SELECT report FROM runs WHERE id = ?1", [newer], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&exported).unwrap(),
        kept,
        "byte for byte"
    );

    let shown = raw(&["history", "--store", store, "show", newer]);
    assert!(
        shown.stdout.contains("main: 300 completed"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("started by run:"), "{}", shown.stdout);

    let deleted = raw(&["history", "--store", store, "delete", older]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let again = raw(&["history", "--store", store, "delete", older]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("no run"), "{}", again.stderr);
}
