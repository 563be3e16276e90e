//! hawser-raft: a replicated key-value store on openraft, built to run over hawser.
//!
//! # openraft version
//!
//! The crate pins openraft to exactly `=0.10.0-alpha.37`. The 0.10 line is the one with
//! [`openraft::RaftNetworkV2`]: replication goes through `stream_append` (a stream of append
//! requests answered as a stream, so a network can pipeline them) and a snapshot is sent whole
//! through `full_snapshot` rather than in chunks the network must reassemble; storage is the v2
//! pair [`openraft::storage::RaftLogStorage`] and [`openraft::storage::RaftStateMachine`], with
//! an `IOFlushed` callback that lets the log store report durability after the fact. The pin is
//! exact because 0.10 alphas change public APIs from one release to the next; alpha.37 is the
//! newest at the time of writing and builds with the workspace's compiler.
//!
//! # Modules
//!
//! - [`types`]: the openraft type configuration ([`types::TypeConfig`]), node info with its
//!   incarnation, the KV request and response.
//! - [`identity`]: the node id and incarnation recorded once per data directory.
//! - [`store`]: redb-backed log store and state machine, durable or in memory.
pub mod identity;
pub mod store;
pub mod types;
