//! `vajra-peer history list|show|compare|export|delete`: recorded runs,
//! read from a store directly (`--store`) or through an orchestrator's API
//! (`--api`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::process::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, runtime};
use crate::history::compare::{Comparison, Delta, compare};
use crate::history::remote::RemoteStore;
use crate::history::store::{RecordedRun, RunFilter, RunSummary, Store, StoreError, StoreUrl};
use crate::web::history::parse_instant;

/// Arguments of `vajra-peer history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: HistoryCommand,
    /// Where the runs are.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Where `history` reads.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// A history store: sqlite:PATH, postgres://USER@HOST/DB, or a file
    /// path [default: the orchestrator's default file].
    #[arg(long, env = "VAJRA_STORE", global = true, conflicts_with = "api")]
    pub store: Option<String>,
    /// An orchestrator's API instead, http(s)://HOST:PORT.
    #[arg(long, env = "VAJRA_API", global = true)]
    pub api: Option<String>,
    /// The API token, for --api (or VAJRA_API_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// One `history` action.
#[derive(Debug, Clone, Subcommand)]
pub enum HistoryCommand {
    /// Recorded runs, newest first.
    List {
        /// Runs of this test name only.
        #[arg(long)]
        name: Option<String>,
        /// completed, stopped, interrupted, aborted, passed or failed.
        #[arg(long)]
        outcome: Option<String>,
        /// Runs started at or after this (a date, an RFC 3339 time, Unix ms).
        #[arg(long)]
        since: Option<String>,
        /// Runs started before this.
        #[arg(long)]
        before: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One run's figures.
    Show {
        /// The run's id.
        id: String,
    },
    /// Two runs side by side: each figure of both and the change.
    Compare {
        /// The reference run.
        a: String,
        /// The run compared with it.
        b: String,
    },
    /// Writes a run's report: .json (as recorded, byte for byte), .csv or
    /// .html.
    Export {
        /// The run's id.
        id: String,
        /// Where.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
    /// Forgets a run.
    Delete {
        /// The run's id.
        id: String,
    },
}

/// Runs `vajra-peer history`.
pub fn history(args: HistoryArgs) -> u8 {
    let Ok(rt) = runtime(1) else {
        return EXIT_RUNTIME;
    };
    rt.block_on(async move {
        let store = match source(&args.source).await {
            Ok(store) => store,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_CONFIG;
            }
        };
        match act(&args.command, store.as_ref(), args.source.json).await {
            Ok(()) => EXIT_OK,
            Err(Failure::Config(e)) => {
                eprintln!("error: {e}");
                EXIT_CONFIG
            }
            Err(Failure::Runtime(e)) => {
                eprintln!("error: {e}");
                EXIT_RUNTIME
            }
        }
    })
}

/// Why an action failed: what the user gave, or what happened.
enum Failure {
    Config(String),
    Runtime(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Runtime(e.to_string())
    }
}

async fn source(args: &SourceArgs) -> Result<Arc<dyn Store>, String> {
    if let Some(api) = &args.api {
        let token = match &args.api_token_file {
            Some(path) => {
                Some(token_in(&std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read {}: {e}", path.display())
                })?))
            }
            None => std::env::var("VAJRA_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        return Ok(Arc::new(
            RemoteStore::new(api, token).map_err(|e| e.to_string())?,
        ));
    }
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", StoreUrl::default_path().display()));
    crate::history::open(&url).await.map_err(|e| e.to_string())
}

/// The token of a token file: the file's first line that is not a
/// comment, its last word (a lone `TOKEN`, or `ROLE TOKEN` as the server's
/// `--api-token-file` has it).
fn token_in(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_default()
        .to_owned()
}

async fn act(command: &HistoryCommand, store: &dyn Store, json: bool) -> Result<(), Failure> {
    match command {
        HistoryCommand::List {
            name,
            outcome,
            since,
            before,
            limit,
        } => {
            let instant = |t: &Option<String>| {
                t.as_deref()
                    .map(parse_instant)
                    .transpose()
                    .map_err(Failure::Config)
            };
            let filter = RunFilter {
                name: name.clone(),
                outcome: outcome.clone(),
                since_ms: instant(since)?,
                before_ms: instant(before)?,
                limit: *limit,
            };
            filter.check().map_err(Failure::Config)?;
            let runs = store.list(&filter).await?;
            if json {
                print_json(&runs);
            } else {
                print!("{}", table(&runs));
            }
        }
        HistoryCommand::Show { id } => {
            let run = get(store, id).await?;
            if json {
                print_json(&serde_json::json!({
                    "summary": run.summary,
                    "definition": serde_json::from_str::<serde_json::Value>(&run.definition)
                        .unwrap_or(serde_json::Value::String(run.definition.clone())),
                }));
            } else {
                let report = run.parsed_report()?;
                println!(
                    "run {}  test '{}'  started by {}",
                    run.summary.id, run.summary.name, run.summary.started_by
                );
                print!(
                    "{}",
                    crate::export::console::summary(&report, run.summary.target_rate)
                );
            }
        }
        HistoryCommand::Compare { a, b } => {
            let (run_a, run_b) = (get(store, a).await?, get(store, b).await?);
            let comparison = compare(
                (&run_a.summary, &run_a.parsed_report()?),
                (&run_b.summary, &run_b.parsed_report()?),
            );
            if json {
                print_json(&comparison);
            } else {
                print!("{}", comparison_table(&comparison));
            }
        }
        HistoryCommand::Export { id, output } => {
            let run = get(store, id).await?;
            let written = match output.extension().and_then(|e| e.to_str()) {
                // As recorded, byte for byte.
                Some("json") => std::fs::write(output, run.report.as_bytes()).map_err(|e| {
                    Failure::Runtime(format!("cannot write {}: {e}", output.display()))
                }),
                Some("csv" | "html") => crate::export::files::write(&run.parsed_report()?, output)
                    .map_err(|e| Failure::Runtime(format!("{e:#}"))),
                _ => Err(Failure::Config(format!(
                    "'{}' must end in .json, .csv or .html",
                    output.display()
                ))),
            };
            written?;
            eprintln!("wrote {}", output.display());
        }
        HistoryCommand::Delete { id } => {
            if !store.delete(id).await? {
                return Err(Failure::Config(format!(
                    "no run '{id}' in {}",
                    store.describe()
                )));
            }
            eprintln!("deleted run {id}");
        }
    }
    Ok(())
}

async fn get(store: &dyn Store, id: &str) -> Result<RecordedRun, Failure> {
    store
        .get(id)
        .await?
        .ok_or_else(|| Failure::Config(format!("no run '{id}' in {}", store.describe())))
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("answers serialise")
    );
}

/// The latest instant RFC 3339 writes: 9999-12-31T23:59:59.999Z, in Unix ms.
const LAST_RFC3339_MS: i64 = 253_402_300_799_999;

/// When a run started, in RFC 3339 to the second; as the Unix milliseconds
/// it is if that is before 1970 or past year 9999 (a row from a store or
/// an orchestrator this process did not write).
fn started_at(started_ms: i64) -> String {
    if !(0..=LAST_RFC3339_MS).contains(&started_ms) {
        return format!("{started_ms} ms");
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(started_ms as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Runs as a table, one per line.
fn table(runs: &[RunSummary]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<22} {:<20} {:<10} {:<6} {:>10} {:>10} {:>8} {:>10}  {}\n",
        "RUN", "STARTED", "OUTCOME", "GATE", "TARGET/s", "RATE/s", "ERR%", "P99 ms", "TEST"
    );
    for r in runs {
        let started = started_at(r.started_ms);
        let _ = writeln!(
            out,
            "{:<22} {:<20} {:<10} {:<6} {:>10} {:>10.1} {:>8.3} {:>10.2}  {}",
            r.id,
            started.trim_end_matches('Z'),
            r.outcome,
            if r.passed { "pass" } else { "FAIL" },
            r.target_rate
                .map_or_else(|| "-".to_owned(), |t| format!("{t:.1}")),
            r.rate,
            r.error_rate() * 100.0,
            r.p99_us / 1e3,
            r.name
        );
    }
    if runs.is_empty() {
        out.push_str("(no runs)\n");
    }
    out
}

/// A comparison as a table: each figure of both runs and the change.
fn comparison_table(c: &Comparison) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "A = {} ({})\nB = {} ({})\n",
        c.a.id, c.a.name, c.b.id, c.b.name
    );
    let section = |out: &mut String, title: &str, rows: &[Delta]| {
        let _ = writeln!(
            out,
            "\n{title}\n  {:<16} {:>14} {:>14} {:>9}",
            "", "A", "B", "change"
        );
        for d in rows {
            let change = d
                .change
                .map_or_else(|| "-".to_owned(), |c| format!("{:+.1}%", c * 100.0));
            let _ = writeln!(
                out,
                "  {:<16} {:>14} {:>14} {:>9}",
                d.metric,
                format!("{:.3} {}", d.a, d.unit),
                format!("{:.3} {}", d.b, d.unit),
                change
            );
        }
    };
    section(&mut out, "overall", &c.overall);
    for (tag, rows) in &c.tags {
        section(&mut out, &format!("tag {tag}"), rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_gives_its_token_in_either_form() {
        assert_eq!(
            token_in("# mine\nviewer abcdefghijklmnop\n"),
            "abcdefghijklmnop"
        );
        assert_eq!(token_in("abcdefghijklmnop\n"), "abcdefghijklmnop");
        assert_eq!(token_in(""), "");
    }

    #[test]
    fn a_start_out_of_rfc3339_s_range_is_shown_as_a_number() {
        assert_eq!(started_at(0), "1970-01-01T00:00:00Z");
        assert_eq!(started_at(LAST_RFC3339_MS), "9999-12-31T23:59:59Z");
        assert_eq!(started_at(-1), "-1 ms");
        assert_eq!(started_at(i64::MAX), format!("{} ms", i64::MAX));
    }
}
