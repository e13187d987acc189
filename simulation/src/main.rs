//! `vajra-simulation`: runs one simulated cluster and exits non-zero on any
//! invariant violation.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vajra_simulation::{Config, Scenario, report, run};

/// Simulate a Vajra cluster in virtual time and check its invariants.
#[derive(Debug, Parser)]
#[command(name = "vajra-simulation", version)]
struct Args {
    /// Peers at the start.
    #[arg(long, default_value_t = 100)]
    peers: usize,
    /// Seed of every random decision the simulation makes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Faults to play.
    #[arg(long, value_enum, default_value_t = Scenario::Churn)]
    scenario: Scenario,
    /// Length of the test, in virtual seconds (at least 35).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Gossip interval in milliseconds (the peers' default is 150).
    #[arg(long, default_value_t = 150)]
    gossip_interval_ms: u64,
    /// Cluster rate at the start of the test, per second.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
}

/// Replaces the C library's `getrandom` for this process: every random
/// draw of the code under test (hash-map keys, tokio, chitchat, Raft's
/// election timeouts) comes from the seed's stream (see
/// `vajra_simulation::entropy`), so a seed replays exactly.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes, as the C function asks.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, _flags: u32) -> isize {
    if len == 0 {
        return 0;
    }
    // SAFETY: the caller hands a writable buffer of `len` bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf, len) };
    vajra_simulation::entropy::fill(buf);
    len as isize
}

/// `getentropy`, which some code calls instead: at most 256 bytes.
///
/// # Safety
/// As [`getrandom`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getentropy(buf: *mut u8, len: usize) -> i32 {
    if len > 256 {
        return -1;
    }
    // SAFETY: as the caller of getentropy promises.
    unsafe { getrandom(buf, len, 0) };
    0
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    vajra_simulation::entropy::seed(args.seed);
    let config = Config {
        peers: args.peers,
        seed: args.seed,
        scenario: args.scenario,
        duration_secs: args.duration,
        gossip_interval: Duration::from_millis(args.gossip_interval_ms),
        rate: args.rate,
    };
    match run(&config) {
        Ok(summary) => {
            print!("{}", report::render(&summary));
            if summary.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("simulation failed: {e:#}");
            ExitCode::from(2)
        }
    }
}
