//! The per-peer summary `hawser node` prints at exit: a table on stderr, or one JSON object
//! on stdout with `--json`.

use std::collections::BTreeMap;

use hawser_net::node::{Node, NodeId};
use serde::Serialize;

use super::console::Tally;

/// One peer's line of the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerLine {
    /// The peer's node id.
    pub id: u64,
    /// Messages handed to the transport.
    pub sent: u64,
    /// Messages received from it.
    pub received: u64,
    /// Messages to it dropped, for any reason (the next fields).
    pub dropped: u64,
    /// Dropped: refused at once (queue full, too large, no address, not a member).
    pub refused: u64,
    /// Dropped: waited in the queue past its deadline.
    pub stale: u64,
    /// Dropped: unreliable, no datagram key in time.
    pub no_key: u64,
    /// Still queued at exit (not sent).
    pub unsent: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Reconnections after the first connection.
    pub reconnects: u64,
    /// Whether its reachability lease held at exit.
    pub alive: bool,
}

/// The summary of a node.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Always `"summary"` (stdout also carries `"message"` objects with `--json`).
    pub event: &'static str,
    /// This node's id.
    pub node: u64,
    /// One line per peer (members and every destination a line named), by id.
    pub peers: Vec<PeerLine>,
}

impl Summary {
    /// Collects the summary of `node` with the command's own tallies.
    pub fn collect(node: &Node, tallies: &BTreeMap<NodeId, Tally>) -> Summary {
        let me = node.id();
        let mut ids: Vec<NodeId> = node.membership().iter().map(|m| m.id).collect();
        ids.extend(tallies.keys().copied());
        ids.sort_unstable();
        ids.dedup();
        let peers = ids
            .into_iter()
            .filter(|id| *id != me)
            .map(|id| {
                let t = tallies.get(&id).copied().unwrap_or_default();
                let s = node.peer_stats(id).unwrap_or_default();
                // `send` counts a full queue in `dropped_full` and also returned the error
                // the command tallied: count it once.
                let refused = t.refused.max(s.dropped_full);
                PeerLine {
                    id: id.0,
                    sent: s.sent,
                    received: s.received,
                    dropped: refused + s.dropped_stale + t.held_dropped,
                    refused,
                    stale: s.dropped_stale,
                    no_key: t.held_dropped,
                    unsent: s.queued,
                    bytes_out: s.bytes_out,
                    bytes_in: s.bytes_in,
                    connect_failures: s.connect_failures,
                    reconnects: s.reconnects,
                    alive: node.is_alive(id),
                }
            })
            .collect();
        Summary {
            event: "summary",
            node: me.0,
            peers,
        }
    }

    /// The summary as a table.
    pub fn to_text(&self) -> String {
        let mut out = format!("summary of node {}:\n", self.node);
        if self.peers.is_empty() {
            out.push_str("  no peers\n");
            return out;
        }
        out.push_str(
            "  peer      sent  received   dropped    unsent  conn fails  reconnects  alive\n",
        );
        for p in &self.peers {
            out.push_str(&format!(
                "  {:<6} {:>7} {:>9} {:>9} {:>9} {:>11} {:>11}  {}\n",
                p.id,
                p.sent,
                p.received,
                p.dropped,
                p.unsent,
                p.connect_failures,
                p.reconnects,
                if p.alive { "yes" } else { "no" }
            ));
            let mut why = Vec::new();
            for (n, what) in [
                (p.refused, "refused"),
                (p.stale, "past the deadline"),
                (p.no_key, "without datagram key"),
            ] {
                if n > 0 {
                    why.push(format!("{n} {what}"));
                }
            }
            if !why.is_empty() {
                out.push_str(&format!("         dropped: {}\n", why.join(", ")));
            }
        }
        out
    }
}
