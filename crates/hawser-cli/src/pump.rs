//! Pipelined echo traffic over one client: write generated messages ahead of their echoes,
//! check every echo.

use std::future::Future;

use hawser_net::lsp::{Client, ClientReadError, WriteError};
use tokio::time::Instant;

use crate::payload::{self, EchoCheck};

/// Why [`pump`] stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every message was echoed (see the check for whether exactly once and in order).
    Complete,
    /// The connection ended before every echo came back.
    Ended(ClientReadError),
    /// A write was refused.
    WriteFailed(WriteError),
    /// The deadline passed.
    TimedOut,
    /// The `stop` future resolved (for example on Ctrl-C).
    Stopped,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Complete => f.write_str("complete"),
            Outcome::Ended(e) => write!(f, "{e} before every echo came back"),
            Outcome::WriteFailed(e) => write!(f, "write failed: {e}"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Stopped => f.write_str("interrupted"),
        }
    }
}

/// What [`pump`] did.
#[derive(Clone, Debug)]
pub struct PumpReport {
    /// Messages written.
    pub sent: u64,
    /// The check of the echoes.
    pub check: EchoCheck,
    /// Why it stopped.
    pub outcome: Outcome,
}

/// Sends messages `0..count` of `size` bytes (see [`payload::make`]) and checks their echoes,
/// keeping at most `pipeline` messages written and not yet echoed. Stops when every echo came
/// back, the connection ended, `deadline` passed, or `stop` resolved.
pub async fn pump(
    client: &Client,
    count: u64,
    size: usize,
    pipeline: u64,
    deadline: Option<Instant>,
    stop: impl Future<Output = ()>,
) -> PumpReport {
    pump_with_progress(client, count, size, pipeline, deadline, stop, |_, _| {}).await
}

/// How often [`pump_with_progress`] reports.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// [`pump`], calling `progress(sent, echoed)` every [`PROGRESS_EVERY`].
pub async fn pump_with_progress(
    client: &Client,
    count: u64,
    size: usize,
    pipeline: u64,
    deadline: Option<Instant>,
    stop: impl Future<Output = ()>,
    mut progress: impl FnMut(u64, u64),
) -> PumpReport {
    let mut ticks = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let pipeline = pipeline.max(1);
    let mut check = EchoCheck::new(count, size);
    let mut sent = 0u64;
    let mut stop = std::pin::pin!(stop);
    let outcome = 'run: loop {
        while sent < count && sent.saturating_sub(check.distinct) < pipeline {
            match client.try_send(payload::make(sent, size)) {
                Ok(()) => sent += 1,
                // Queue full: wait for echoes (hence acks) to free room.
                Err(WriteError::QueueFull(_)) if sent > check.distinct => break,
                Err(e) => break 'run Outcome::WriteFailed(e),
            }
        }
        if check.is_complete() {
            break Outcome::Complete;
        }
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut stop => break Outcome::Stopped,
            () = timeout => break Outcome::TimedOut,
            _ = ticks.tick() => progress(sent, check.distinct),
            echo = client.read() => match echo {
                Ok(p) => {
                    check.on_echo(&p);
                }
                Err(e) => break Outcome::Ended(e),
            },
        }
    };
    PumpReport {
        sent,
        check,
        outcome,
    }
}
