//! Reachability as the application sees it: [`PeerEvents`], the stream of a node's
//! [`PeerEvent`]s (fed by the engine's `Event::Peer`), [`Lagged`], and [`memory_addr`], the
//! pseudo address of an in-memory node in reachability tables.

use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use hawser_proto::node::NodeId;
use hawser_proto::reach::PeerEvent;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The pseudo address of in-memory node `id` in reachability tables: `[fd68:6177::]` plus the
/// id in the low 64 bits, port 0 (the in-memory network routes by id and has no addresses).
pub fn memory_addr(id: NodeId) -> SocketAddr {
    let ip = Ipv6Addr::from((0xfd68_6177_u128 << 112) | u128::from(id.0));
    SocketAddr::new(ip.into(), 0)
}

/// Why a [`PeerEvents`] item is missing: the consumer fell behind by more than
/// `ReachSettings::event_capacity` events, and the oldest `n` were dropped for it.
/// [`Node::peers`](super::Node::peers) gives the current state to resync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("missed {0} peer events (the consumer lagged); resync with Node::peers()")]
pub struct Lagged(pub u64);

/// A [`Stream`] of reachability changes of one node: `Ok(event)` in the order the node's engine
/// produced them, or `Err(Lagged(n))` where `n` events were dropped because this consumer fell
/// `ReachSettings::event_capacity` behind (the others are unaffected). Every stream sees every
/// event from its creation on. Ends when the node stops.
pub struct PeerEvents {
    inner: Pin<Box<dyn Stream<Item = Result<PeerEvent, Lagged>> + Send>>,
}

impl PeerEvents {
    /// A stream that ends at once (networks without reachability).
    pub fn empty() -> PeerEvents {
        PeerEvents {
            inner: Box::pin(futures_util::stream::empty()),
        }
    }

    pub(crate) fn new(
        rx: broadcast::Receiver<PeerEvent>,
        stopped: CancellationToken,
    ) -> PeerEvents {
        let stream = futures_util::stream::unfold((rx, stopped), |(mut rx, stopped)| async {
            let item = tokio::select! {
                biased;
                r = rx.recv() => match r {
                    Ok(e) => Some(Ok(e)),
                    Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(Lagged(n))),
                    Err(broadcast::error::RecvError::Closed) => None,
                },
                () = stopped.cancelled() => None,
            };
            item.map(|i| (i, (rx, stopped)))
        });
        PeerEvents {
            inner: Box::pin(stream),
        }
    }

    /// The next change; `None` once the node is stopped.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<Result<PeerEvent, Lagged>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for PeerEvents {
    type Item = Result<PeerEvent, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for PeerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerEvents").finish_non_exhaustive()
    }
}
