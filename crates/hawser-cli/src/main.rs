//! The `hawser` command: an LSP echo server and client, a node that sends to node ids, a node
//! of a replicated key-value store (`hawser raft`), and a self-contained demo that echoes thousands of messages through injected loss, duplication and
//! reordering.
//!
//! Exit status: 0 on success, 1 on a runtime failure or a mismatch in the echoes, 2 on invalid
//! usage (including invalid protocol parameters).

mod args;
mod demo;
mod demo_nodes;
mod demo_raft;
mod echo;
mod faults;
mod keygen;
mod metrics;
mod node_cmd;
mod payload;
mod pump;
mod raft_cmd;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use args::{Cli, Command, LspCommand};

/// Why a command failed, deciding the exit status.
#[derive(Debug)]
pub enum CliError {
    /// Invalid usage or settings: exit status 2.
    Invalid(String),
    /// Anything else: exit status 1.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError::Failed(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hawser: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Lsp {
                command: LspCommand::EchoServer(a),
            } => echo::server(a).await,
            Command::Lsp {
                command: LspCommand::EchoClient(a),
            } => echo::client(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Keygen(a) => keygen::run(&a)
                .map(|()| ExitCode::SUCCESS)
                .map_err(CliError::Failed),
            Command::Node(a) => node_cmd::run(a)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(CliError::Failed),
            Command::Raft(a) => raft_cmd::run(a)
                .await
                .map(|()| ExitCode::SUCCESS)
                .map_err(CliError::Failed),
        }
    });
    // Background tasks of endpoints that were dropped are aborted; do not wait for stragglers.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(CliError::Invalid(msg)) => {
            eprintln!("hawser: error: {msg}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("hawser: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings and errors only).
fn init_tracing() {
    // openraft warns of every heartbeat a lossy or stopped peer misses: errors only from it
    // unless RUST_LOG asks for more.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,openraft=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
