//! The Live Sequence Protocol over UDP, as async Rust: [`Client`] and [`Server`].
//!
//! Each runs one background task that moves datagrams and time into the sans-IO endpoints of
//! [`hawser_proto::lsp`]; all protocol logic lives there.

mod client;
mod driver;
mod error;
mod handoff;
mod server;
mod socket;

pub use client::Client;
pub use error::{ClientReadError, CloseError, ConnectError, ServerReadError, WriteError};
pub use hawser_proto::lsp::{
    AckPolicy, Config, ConnStats, EndReason, EndpointStats, Params, RetransmitPolicy, RtoBounds,
    MAX_DATAGRAM, MAX_PAYLOAD_LIMIT,
};
pub use hawser_proto::wire::{Codec, ConnId};
pub use server::Server;
pub(crate) use socket::tune_buffers;
pub use socket::{Socket, SOCKET_BUFFER_BYTES};
