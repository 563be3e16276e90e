//! # hawser-proto: the sans-IO core of hawser
//!
//! Protocol state machines that take bytes and a `now: Instant`, and give back datagrams to
//! send, the next deadline and events. They own no socket, no task and no clock, and draw
//! randomness only from seeds they are given; so every behaviour can be tested deterministically
//! on simulated time (`hawser-sim`), and the tokio layer (`hawser-net`) only moves bytes and
//! time.
//!
//! # Layers
//! - [`wire`]: message formats only, stateless: the reference-compatible JSON codec, the binary
//!   codec, the LSP checksum, the node layer's frames, reachability events and requests, and
//!   the session layer's handshake messages, channel framing, streams and refusals. Decoders
//!   never panic.
//! - [`lsp`]: the Live Sequence Protocol: [`lsp::ClientEndpoint`], [`lsp::ServerEndpoint`] and
//!   the [`lsp::Connection`] they own.
//! - [`node`]: the node layer's sans-IO parts: node ids, roles and groups, the membership, and
//!   each destination's bounded send queue.
//! - [`reach`]: reachability: peer liveness as leases, each address's existence and
//!   reachability, and flooded events with de-duplication.
//! - [`session`]: sessions' sans-IO parts: identities, the Noise handshake, transport and
//!   datagram encryption with the replay window, the protocol registry and its negotiation.
//! - [`fault`]: a seeded fault injector (loss, delay, duplication, reordering, corruption) used by
//!   the simulator and by the fault-injecting socket.
//! - [`transmit`]: the [`DatagramEndpoint`] boundary every driver uses.
//!
//! The LSP specification this crate implements is `docs/lsp-spec.md` in the repository; comments
//! cite its sections ("spec 3.3").
//!
//! # Glossary
//! - **endpoint**: one side's protocol state for one socket (a client, or a server and all its
//!   connections).
//! - **connection** ([`wire::ConnId`]): a client/server pair; the server assigns the id.
//! - **ISN**: the client's initial sequence number; Data in both directions starts at ISN + 1.
//! - **epoch**: the periodic timer (δ) that drives resends, heartbeats and loss detection.
//! - **window** (ω), **max unacked** (M): at most `min(ω, M)` Data messages are in flight.
//! - **heartbeat**: `(Ack, id, 0)`, sent in an epoch in which no Data was sent.
//!
//! # The run loop
//! After every input (`handle_datagram`, `handle_timeout`) or command (`write`, `close`), drain
//! `poll_transmit` until it returns `None`; then sleep until `poll_timeout`. Two endpoints can be
//! wired together by hand:
//! ```
//! use std::time::{Duration, Instant};
//! use hawser_proto::lsp::{ClientEndpoint, ClientRead, Config, ServerEndpoint, ServerRead};
//! use hawser_proto::wire::SeqNum;
//! use hawser_proto::DatagramEndpoint;
//!
//! let (client_addr, server_addr) = ("10.0.0.1:4000".parse().unwrap(), "10.0.0.2:5000".parse().unwrap());
//! let start = Instant::now(); // the only clock read: the caller's
//! let mut server = ServerEndpoint::new(Config::default()).unwrap();
//! let mut client = ClientEndpoint::new(Config::default(), server_addr, SeqNum(42), start).unwrap();
//!
//! // Move every pending datagram across, both ways, until both are quiet.
//! fn shuttle(c: &mut ClientEndpoint, s: &mut ServerEndpoint, ca: std::net::SocketAddr, now: Instant) {
//!     loop {
//!         let mut moved = false;
//!         while let Some(t) = c.poll_transmit() { s.handle_datagram(now, ca, &t.contents); moved = true; }
//!         while let Some(t) = s.poll_transmit() { c.handle_datagram(now, c.server(), &t.contents); moved = true; }
//!         if !moved { break; }
//!     }
//! }
//! shuttle(&mut client, &mut server, client_addr, start);
//! assert!(client.conn_id().is_some());
//!
//! client.write(start, "hello".into()).unwrap();
//! shuttle(&mut client, &mut server, client_addr, start);
//! let Some(ServerRead::Data(conn, msg)) = server.read() else { panic!() };
//! assert_eq!(msg, "hello");
//!
//! // Nothing more is heard from the client. The first epoch still counts what came before it;
//! // after K = 5 further silent epochs the server declares the connection lost.
//! let mut now = start;
//! for _ in 0..6 {
//!     now += Duration::from_secs(2);
//!     server.handle_timeout(now);
//!     while server.poll_transmit().is_some() {} // heartbeats into the void
//! }
//! assert_eq!(server.read(), Some(ServerRead::Ended(conn, hawser_proto::lsp::EndReason::Lost)));
//! # let _ = ClientRead::Data(Default::default());
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod fault;
pub mod lsp;
pub mod node;
pub mod reach;
#[cfg(feature = "serde")]
pub mod serde_util;
pub mod session;
pub mod transmit;
pub mod wire;

pub use transmit::{DatagramEndpoint, Transmit};
