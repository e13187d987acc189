//! The web API's flags on `join`, and `vajra-peer report`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::process::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use crate::export::Report;
use crate::web::auth::{Authenticator, Providers, TokenFile};

/// Where and to whom a peer serves its web UI and API.
#[derive(Debug, Clone, Default, Args)]
pub struct WebArgs {
    /// Serve the web UI and the JSON API on this TCP address (e.g.
    /// 127.0.0.1:8080). Any address but loopback needs authentication.
    #[arg(long = "http", env = "VAJRA_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// API tokens, one per line: `ROLE TOKEN` (ROLE viewer or operator) or
    /// a lone TOKEN (an operator's). Tokens are at least 16 bytes.
    #[arg(long, env = "VAJRA_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
}

impl WebArgs {
    /// The address to serve and who may use it, or `None` without
    /// `--http`; `Err` says what is wrong.
    pub fn resolve(&self) -> Result<Option<(SocketAddr, Providers)>, String> {
        let Some(listen) = self.http else {
            if self.api_token_file.is_some() {
                return Err("--api-token-file needs --http ADDR".into());
            }
            return Ok(None);
        };
        let mut providers: Vec<Box<dyn Authenticator>> = Vec::new();
        if let Some(path) = &self.api_token_file {
            providers.push(Box::new(TokenFile::load(path)?));
        }
        if providers.is_empty() && !listen.ip().is_loopback() {
            return Err(format!(
                "refusing to serve the API on {listen} without authentication: give \
                 --api-token-file FILE, or bind a loopback address (127.0.0.1)"
            ));
        }
        Ok(Some((listen, Providers::new(providers))))
    }
}

/// Arguments of `vajra-peer report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A report written by `--output FILE.json`.
    pub input: PathBuf,
    /// Where to write it: `.html` (a self-contained page), `.csv` or `.json`.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
}

/// Runs `vajra-peer report`: converts a JSON report.
pub fn report(args: ReportArgs) -> u8 {
    let shown = args.input.display();
    let text = match std::fs::read_to_string(&args.input) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {shown}: {e}");
            return EXIT_CONFIG;
        }
    };
    let report: Report = match serde_json::from_str(&text) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {shown} is not a Vajra JSON report: {e}");
            return EXIT_CONFIG;
        }
    };
    if report.schema != crate::export::report::SCHEMA {
        eprintln!(
            "error: {shown} has schema `{}`; this version reads `{}`",
            report.schema,
            crate::export::report::SCHEMA
        );
        return EXIT_CONFIG;
    }
    match crate::export::files::write(&report, &args.output) {
        Ok(()) => {
            eprintln!("wrote {}", args.output.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_RUNTIME
        }
    }
}
