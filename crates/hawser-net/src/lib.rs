//! # hawser: a network layer for distributed systems
//!
//! hawser gives a distributed application (a Paxos or Raft node, a replicated store, a P2P
//! service) reliable and unreliable messaging from one library. This crate is the async (tokio)
//! layer; all protocol logic lives in the sans-IO crate [`hawser_proto`], which this crate only
//! feeds with datagrams and time.
//!
//! # Organization
//! - [`lsp`]: the Live Sequence Protocol over UDP — [`lsp::Client`] and [`lsp::Server`]:
//!   reliable, in-order, exactly-once messages with a sliding window, epochs, heartbeats, loss
//!   detection and graceful close, speaking either the reference JSON wire format or hawser's
//!   compact binary one.
//! - [`fault_socket`]: a UDP socket that injects loss, delay, duplication, reordering and
//!   corruption, for tests and demos; [`fault_relay`] puts one between two endpoints.
//! - [`node`]: messages, requests and streams to node ids, reachability; [`session`]: the
//!   encrypted, multiplexed sessions under them.
//! - [`proto`]: the sans-IO core, [`hawser_proto`], re-exported.
//! - `metrics` (feature `metrics`): every counter above published through the `metrics`
//!   facade (`docs/metrics.md`).
//!
//! The repository's `README.md` has a quick start, and its `docs/` directory one document per
//! topic (nodes, sessions and security, reachability, LSP and its specification, wire formats).
//!
//! # Features
//! - `metrics`: the `metrics` module.
//! - `serde`: `Serialize` and `Deserialize` on [`node::Settings`] and the types in it (for a
//!   configuration file) and on every stats snapshot (`NodeStats`, `PeerStats`, `RpcStats`,
//!   `SessionStats`, `ListenerStats`, the LSP and reachability counters).
//!
//! # Example
//! An echo over 127.0.0.1 with short epochs:
//! ```
//! use std::time::Duration;
//! use hawser_net::lsp::{Client, Params, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let params = Params::reference()
//!     .with_epoch(Duration::from_millis(100))
//!     .with_window(4)
//!     .with_max_unacked(4);
//! let server = Server::bind("127.0.0.1:0".parse()?, params).await?;
//! let client = Client::connect(server.local_addr(), 42, params).await?;
//!
//! client.try_send("hello")?; // never blocks; sent at once when the window allows
//! let (conn, msg) = server.read().await?;
//! assert_eq!(msg, "hello");
//! server.try_send(conn, msg)?;
//! assert_eq!(client.read().await?, "hello");
//!
//! client.close().await?; // waits until everything is acknowledged
//! server.close().await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod fault_relay;
pub mod fault_socket;
pub mod lsp;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod node;
#[cfg(feature = "serde")]
mod serde_impls;
pub mod session;

pub use hawser_proto as proto;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The Rust examples of the documents in `docs/`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/lsp.md")]
#[doc = include_str!("../../../docs/node.md")]
#[doc = include_str!("../../../docs/reachability.md")]
pub struct DocsDoctests;
