//! Sessions: authenticated, encrypted, multiplexed connections between nodes, carrying named
//! protocols on their own streams over swappable transports.
//!
//! # Organization
//! The sans-IO parts (identities, the Noise handshake, transport encryption, the protocol
//! registry) are `hawser_proto::session`'s, and every message format is `hawser_proto::wire`'s;
//! this module drives them over transports and re-exports their types at the paths below.
//! Bottom to top:
//! - [`transport`]: byte streams (TCP, in-memory duplex) and message transports (LSP,
//!   WebSocket, in-memory channels), addressed by [`TransportAddr`] (`tcp://`, `lsp://`,
//!   `ws://`, `mem://`), and the [`Transport`] seam through which an application adds its own
//!   for other schemes.
//! - [`framing`]: the 2-byte length prefix on byte streams and the message envelope (with an
//!   explicit counter) on message transports, cut from a byte stream by a bounded codec.
//! - [`identity`]: ed25519 [`Identity`], [`PublicKey`], printable [`PeerId`], key files
//!   (re-exported).
//! - [`noise`]: the Noise `XX` handshake (ChaCha20-Poly1305 or AES-256-GCM) bound to
//!   identities, and transport-mode encryption (re-exported).
//! - [`mux`]: yamux with lowered bounds ([`MuxConfig`]).
//! - [`registry`]: numbered, named, versioned protocols and their negotiation (re-exported).
//! - The session API: [`SessionConfig`], [`connect`], [`accept`], [`dial`], [`Listener`],
//!   [`Session`], [`Stream`]; the handshake's driver, and the sealed I/O objects under yamux.
//! - [`error`]: why a handshake, a stream or a session failed.
//!
//! `docs/security.md` describes the threat model, the handshake and the limits.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use hawser_net::session::{
//!     accept, connect, memory_duplex_pair, Identity, RawConnection, NetworkId, Protocol, ProtocolId,
//!     SessionConfig,
//! };
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! const ECHO: ProtocolId = ProtocolId(1024);
//! let config = |secret: u8| {
//!     let mut c = SessionConfig::new(
//!         Arc::new(Identity::from_secret_bytes(&[secret; 32])),
//!         NetworkId::new("example").unwrap(),
//!     );
//!     c.protocols.register(Protocol::new(ECHO, "echo", &[1]).unwrap()).unwrap();
//!     c
//! };
//! let (a, b) = (config(1), config(2));
//! let (left, right) = memory_duplex_pair(64 * 1024);
//! let pin = Some(b.identity.peer_id()); // the dialer pins the peer it expects
//! let (client, server) = tokio::try_join!(
//!     connect(RawConnection::bytes(left), &a, pin),
//!     accept(RawConnection::bytes(right), &b),
//! )?;
//! assert_eq!(server.peer_id(), a.identity.peer_id());
//!
//! let mut incoming = server.accept_streams(ECHO)?;
//! let mut stream = client.open(ECHO).await?;
//! stream.write_all(b"hello").await?;
//! let mut inbound = incoming.accept().await.unwrap();
//! let mut buf = [0u8; 5];
//! inbound.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"hello");
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod config;
pub mod error;
pub mod framing;
pub mod identity;
mod listener;
pub mod mux;
pub mod noise;
pub mod registry;
mod sealed;
mod secure;
#[allow(clippy::module_inception)] // `Session` lives in session/session.rs
mod session;
mod status;
mod stream;
pub mod transport;
mod turn;

pub use config::{Security, SessionConfig};
pub use error::{
    AcceptStreamsError, CloseReason, ConfigError, CryptoError, DialError, HandshakeError,
    ListenError, OpenError,
};
pub use hawser_proto::wire::refusal::{Refusal, RefusalReason};
pub use identity::{Identity, KeyError, PeerId, PublicKey};
pub use listener::{Listener, ListenerStats};
pub use mux::MuxConfig;
pub use noise::{NetworkId, NoiseCipher};
pub use registry::{
    Negotiated, Protocol, ProtocolId, ProtocolRegistry, RegistryError, FIRST_APPLICATION_ID,
};
pub(crate) use session::WeakSession;
pub use session::{accept, connect, dial, Session, SessionStats};
pub use stream::{InboundStreams, Stream, REFUSAL_STREAM, STREAM_HEADER_LEN};
pub use transport::{
    memory_duplex_pair, memory_message_pair, ByteStream, MessageTransport, RawConnection,
    Transport, TransportAddr, TransportConfig, TransportListener, TransportRegistry,
    UnknownTransport,
};
