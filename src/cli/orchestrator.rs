//! `vajra-peer orchestrator`: a member that runs no load, records every
//! test the cluster ends in its history store, and serves the web UI and
//! API with the history pages.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;

use super::Extensions;
use super::cluster::{Member, MemberArgs};
use super::process::{EXIT_CONFIG, EXIT_RUNTIME, runtime};
use crate::cluster::membership::state::MemberRole;
use crate::export::registry::Exports;
use crate::history::recorder::Recorder;
use crate::history::store::{StoreUrl, open_or_await};

/// Where the orchestrator serves its UI and API unless told otherwise.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7780";

/// Arguments of `vajra-peer orchestrator`.
#[derive(Debug, Clone, Args)]
pub struct OrchestratorArgs {
    /// Where it listens, whom it joins through, how it is admitted.
    #[command(flatten)]
    pub member: MemberArgs,
    /// The history store: sqlite:PATH, postgres://USER@HOST/DB, or a file
    /// path [default: $XDG_DATA_HOME/vajra/history.db, or
    /// ~/.local/share/vajra/history.db].
    #[arg(long, env = "VAJRA_STORE")]
    pub store: Option<String>,
    /// Its web UI and API [default: --http 127.0.0.1:7780].
    #[command(flatten)]
    pub web: super::web::WebArgs,
}

/// Runs `vajra-peer orchestrator` until SIGINT or SIGTERM.
pub fn orchestrator(mut args: OrchestratorArgs, extensions: Extensions) -> u8 {
    if args.web.http.is_none() {
        args.web.http = Some(DEFAULT_HTTP.parse::<SocketAddr>().expect("literal address"));
    }
    let (config, web) = match (
        args.member.peer_config(MemberRole::Orchestrator, 0.0),
        args.web.resolve(),
    ) {
        (Ok(config), Ok(web)) => (config, web),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", StoreUrl::default_path().display()));
    let Ok(rt) = runtime(2) else {
        return EXIT_RUNTIME;
    };
    rt.block_on(async move {
        let store = match open_or_await(&url).await {
            Ok((store, None)) => store,
            Ok((store, Some(away))) => {
                eprintln!("warning: {away}; tests are recorded once it is back");
                store
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_CONFIG;
            }
        };
        eprintln!("history in {}", store.describe());
        let member = Member {
            config,
            web,
            history: Some(Arc::new(Recorder::new(store))),
            health: args.member.health_listen,
        };
        let exports = Exports {
            registry: extensions.exporters.clone(),
            settings: Default::default(),
        };
        member
            .run(
                Arc::new(extensions.tasks),
                Arc::new(extensions.strategies),
                Arc::new(exports),
            )
            .await
    })
}
