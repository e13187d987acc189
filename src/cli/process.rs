//! Exit codes and the runtime a subcommand runs on.

use crate::config::ConfigError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run could not be carried out.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: bad command line or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: a threshold failed.
pub const EXIT_THRESHOLD: u8 = 3;
/// Exit code: the self-check failed and `--fail-on-unreliable` was given.
pub const EXIT_UNRELIABLE: u8 = 4;
/// Exit code: a cluster's test was stopped by a command before its end.
pub const EXIT_STOPPED: u8 = 5;
/// Exit code: interrupted by Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

/// A tokio runtime with `threads` worker threads (one: the current thread).
pub(crate) fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Prints a configuration error; the exit code for it.
pub(crate) fn config_error(e: ConfigError) -> u8 {
    eprintln!("error: {e}");
    EXIT_CONFIG
}
