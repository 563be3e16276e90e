//! [`Listener`]: accepts transport connections and runs their handshakes as responder.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn, Instrument};

use super::config::SessionConfig;
use super::error::ListenError;
use super::noise::Role;
use super::secure;
use super::session::Session;
use super::transport::{self, RawListener, TransportAddr, TransportConfig};

/// Accepts transport connections and runs their handshakes concurrently, each under
/// `handshake_timeout`, at most `max_pending_handshakes` at once. Failed handshakes are
/// traced and counted, never returned.
pub struct Listener {
    sessions: mpsc::Receiver<Session>,
    local: TransportAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

/// The listener's counters, shared with its accept task.
#[derive(Default)]
struct Counters {
    established: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    max_pending: AtomicU64,
}

/// Counters of a [`Listener`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Handshakes that succeeded.
    pub established: u64,
    /// Handshakes that failed (not counting timeouts).
    pub failed: u64,
    /// Handshakes dropped at `handshake_timeout`.
    pub timed_out: u64,
    /// Connections closed at once because `max_pending_handshakes` were in progress.
    pub refused: u64,
    /// The most handshakes ever in progress at once.
    pub max_pending: u64,
}

impl Listener {
    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    /// [`ListenError::Config`] for invalid settings; [`ListenError::Io`] if binding fails.
    pub async fn bind(
        addr: &TransportAddr,
        transport: &TransportConfig,
        config: SessionConfig,
    ) -> Result<Listener, ListenError> {
        config.validate()?;
        let raw = RawListener::bind(addr, transport).await?;
        Listener::from_raw(raw, config)
    }

    /// Starts accepting on a bound transport listener.
    ///
    /// # Errors
    /// [`ListenError::Config`] for invalid settings.
    pub fn from_raw(raw: RawListener, config: SessionConfig) -> Result<Listener, ListenError> {
        config.validate()?;
        let local = raw.local_addr().clone();
        let (tx, rx) = mpsc::channel(1);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(raw, Arc::new(config), tx, counters.clone()));
        Ok(Listener {
            sessions: rx,
            local,
            counters,
            task,
        })
    }

    /// The next established session, or `None` if the listener stopped.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<Session> {
        self.sessions.recv().await
    }

    /// The bound address.
    pub fn local_addr(&self) -> &TransportAddr {
        &self.local
    }

    /// Counters.
    pub fn stats(&self) -> ListenerStats {
        let c = &self.counters;
        ListenerStats {
            established: c.established.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            max_pending: c.max_pending.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    mut raw: RawListener,
    config: Arc<SessionConfig>,
    sessions: mpsc::Sender<Session>,
    counters: Arc<Counters>,
) {
    let limit = config.max_pending_handshakes;
    let permits = Arc::new(Semaphore::new(limit));
    // Each task holds a permit: at most `max_pending_handshakes` of them.
    let mut tasks = JoinSet::new();
    loop {
        let pending = tokio::select! {
            p = raw.accept() => p,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let pending = match pending {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            debug!("pending handshake cap reached; connection refused");
            continue;
        };
        let in_progress = (limit - permits.available_permits()) as u64;
        counters
            .max_pending
            .fetch_max(in_progress, Ordering::Relaxed);
        let (config, sessions, counters) = (config.clone(), sessions.clone(), counters.clone());
        let task = respond(pending, config, sessions, counters, permit);
        tasks.spawn(task.instrument(tracing::info_span!("handshake")));
    }
}

async fn respond(
    pending: transport::PendingConnection,
    config: Arc<SessionConfig>,
    sessions: mpsc::Sender<Session>,
    counters: Arc<Counters>,
    _permit: OwnedSemaphorePermit,
) {
    let attempt = async {
        let link = pending.await?;
        secure::establish(link, Role::Responder, &config, None).await
    };
    match tokio::time::timeout(config.handshake_timeout, attempt).await {
        Ok(Ok(channel)) => {
            counters.established.fetch_add(1, Ordering::Relaxed);
            let session = Session::start(channel, Role::Responder, &config);
            let _ = sessions.send(session).await;
        }
        Ok(Err(e)) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            info!(error = %e, "inbound handshake failed");
        }
        Err(_) => {
            counters.timed_out.fetch_add(1, Ordering::Relaxed);
            info!("inbound handshake timed out");
        }
    }
}
