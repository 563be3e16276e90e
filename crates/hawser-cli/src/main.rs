//! The `hawser` command: an LSP echo server and client, a node that sends to node ids, a node
//! of a replicated key-value store (`hawser raft`), and a self-contained demo that echoes thousands of messages through injected loss, duplication and
//! reordering.
//!
//! Exit status: 0 on success, 1 on a runtime failure or a mismatch in the echoes, 2 on invalid
//! usage (including invalid protocol parameters).

mod addr;
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

use std::io::IsTerminal as _;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use args::{Cli, Command, LogFormat, LspCommand};

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
    // The demo stops nodes and injects faults on purpose: what the library warns of then is
    // expected, so by default it shows only errors.
    let demo = matches!(cli.command, Command::Demo(_));
    init_tracing(cli.verbose, cli.log_format, demo);
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
            Command::Node(a) => node_cmd::run(a).await.map(|()| ExitCode::SUCCESS),
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
            eprintln!("hawser: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated, each cause left out when the text before it
/// already ends with it (many errors print their source, so a chain would repeat an OS error
/// such as "Address already in use (os error 98)").
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Logs to stderr, filtered by `RUST_LOG` if set, otherwise by `verbose` (`-v` counts):
/// 0 shows this command's own notices (peers up and down, drops) and every warning; 1 adds
/// hawser's informational messages (sessions, connections); 2 its debug messages; 3 and more
/// trace. Colour only when stderr is a terminal.
fn init_tracing(verbose: u8, format: LogFormat, demo: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if demo && verbose == 0 {
            EnvFilter::new("error")
        } else {
            default_filter(verbose)
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(verbose > 0)
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// The log filter of `-v` given `verbose` times.
fn default_filter(verbose: u8) -> EnvFilter {
    // `hawser` (this binary) is a prefix of the library crates' names: more specific
    // directives win, so each is named. openraft warns of every heartbeat a lossy or stopped
    // peer misses: errors only from it unless asked.
    let spec = match verbose {
        0 => "warn,openraft=error,hawser=info,hawser_net=warn,hawser_proto=warn,hawser_raft=warn",
        1 => "warn,openraft=warn,hawser=debug,hawser_net=info,hawser_proto=info,hawser_raft=info",
        2 => {
            "warn,openraft=info,hawser=debug,hawser_net=debug,hawser_proto=debug,hawser_raft=debug"
        }
        _ => "info,hawser=trace,hawser_net=trace,hawser_proto=trace,hawser_raft=trace",
    };
    EnvFilter::new(spec)
}
