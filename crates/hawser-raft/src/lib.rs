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
//! - [`config`]: [`config::NodeConfig`], Raft timing and the snapshot policy.
//! - [`amnesia`]: the rule that keeps a node that lost its data from voting.
//! - [`app`]: [`app::KvNode`], one node of the key-value store: writes, linearizable reads,
//!   status, membership changes.
//! - [`forward`]: the [`forward::Forward`] seam through which followers reach the leader.
//! - [`net`]: the network over hawser: openraft's RPCs as hawser requests, snapshots as
//!   hawser streams, forwarding to the leader, and serving all of them.
//! - [`router`]: an in-process network for tests and as a baseline.
//! - [`server`]: one node on hawser ([`server::Server`]): the hawser node, the key-value node,
//!   the Raft protocols served, and the cluster bootstrapped from the lowest id.
//! - [`http`]: the HTTP API (axum): `PUT`/`GET /kv/{key}`, `GET /status`.
//! - [`check`]: a history recorder and linearizability checker for key-value operations.
//!
//! # Starting a node
//!
//! Open the node's [`store::Storage`] ([`store::Storage::open`] for a data directory,
//! [`store::Storage::in_memory`] for tests), then call [`app::KvNode::start`] with a
//! [`config::NodeConfig`], an openraft network factory and a [`forward::Forward`]
//! implementation. On one node, [`app::KvNode::initialize`] with every member's
//! [`app::KvNode::node_info`] forms the cluster.
//!
//! # What a network adapter implements
//!
//! - `openraft::RaftNetworkFactory<TypeConfig>` whose clients implement
//!   `openraft::RaftNetworkV2<TypeConfig>` with `SnapshotData = Vec<u8>`. Each request carries
//!   the sender's [`identity::Identity`] and the target incarnation from the `Node` passed to
//!   `new_client`.
//! - On the receiving side: [`app::KvNode::check_vote_request`] before `Raft::vote` and
//!   `Raft::pre_vote`, [`app::KvNode::check_addressed`] before `Raft::append_entries` and
//!   `Raft::install_full_snapshot` (see [`amnesia`]).
//! - [`forward::Forward`], whose receiving side calls [`app::KvNode::write_local`] and
//!   [`app::KvNode::read_local`].
pub mod amnesia;
pub mod app;
pub mod check;
pub mod config;
pub mod forward;
pub mod http;
pub mod identity;
pub mod net;
pub mod router;
pub mod server;
pub mod store;
pub mod types;
