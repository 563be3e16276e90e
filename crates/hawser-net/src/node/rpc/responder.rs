//! [`Responder`], how an inbound request reaches the node with its answer, and [`ServeCounters`],
//! the serving side's own counters: what both the handler's side (`inbound`) and the node's
//! side (`serving`) of a request use.

use std::sync::atomic::AtomicU64;

use hawser_proto::node::engine::InboundId;
use hawser_proto::wire::rpc::Outcome;

use super::error::RespondError;

/// Where an `InboundRequest` answers: the node, which hands the answer to its engine.
pub(crate) trait Responder: Send + Sync + 'static {
    /// Answers request `id` with `outcome`.
    ///
    /// # Errors
    /// As the engine's `respond`, in the node's terms.
    fn respond(&self, id: InboundId, outcome: Outcome<'_>) -> Result<(), RespondError>;

    /// Request `id` leaves unanswered (its caller gave up): only its cancel signal is
    /// forgotten.
    fn forget(&self, id: InboundId);
}

/// Counters of the serving side that only the shell sees.
#[derive(Debug, Default)]
pub(crate) struct ServeCounters {
    /// Requests answered `NoHandler`.
    pub no_handler: AtomicU64,
    /// Requests answered `Overloaded` because their handler's queue was full.
    pub overloaded: AtomicU64,
    /// Requests whose caller gave up before the handler took them (never handed out).
    pub expired: AtomicU64,
}
