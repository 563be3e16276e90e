//! The driver task of a node: sleeps until the engine's `poll_timeout`, then calls
//! `handle_timeout` (and carries out what follows); woken early when a call moved the
//! deadline earlier (`Shell::flush`).

use std::sync::Arc;

use tracing::Instrument;

use super::shell::Shell;

/// Starts `shell`'s driver on its task tracker.
pub(crate) fn start(shell: &Arc<Shell>) {
    let span = tracing::info_span!(parent: None, "driver", node = shell.id.0);
    let task = drive(shell.clone()).instrument(span);
    shell.tracker.spawn(task);
}

async fn drive(shell: Arc<Shell>) {
    let mut next = shell.timeout();
    loop {
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = shell.cancel.cancelled() => return,
            () = shell.driver.notified() => {}
            () = sleep => {}
        }
        next = shell.timeout();
    }
}
