//! The Live Sequence Protocol: reliable, in-order, exactly-once messages over datagrams.
//!
//! # Organization
//! - [`Params`] and [`Config`]: the five protocol parameters and the endpoint's bounds.
//! - [`ClientEndpoint`] and [`ServerEndpoint`]: the sans-IO endpoints a driver runs; both
//!   implement [`DatagramEndpoint`](crate::DatagramEndpoint).
//! - [`Connection`]: one connection's state (windows, epochs, heartbeats, loss, close), owned by
//!   an endpoint.
//! - [`WriteError`], [`EndReason`]: what can go wrong, and how a connection ends.
//! - [`ConnStats`], [`EndpointStats`]: counters.

mod bundler;
mod client;
mod connection;
mod error;
mod packer;
mod params;
mod range_set;
mod recv_window;
mod rto;
mod send_window;
mod server;
mod stats;

pub use client::{ClientEndpoint, ClientRead, ClientState};
pub use connection::{ConnState, Connection};
pub use error::{EndReason, WriteError};
pub use params::{
    AckPolicy, Config, Params, ParamsError, RetransmitPolicy, RtoBounds, MAX_BACKOFF_LIMIT,
    MAX_DATAGRAM, MAX_PAYLOAD_LIMIT, MAX_WINDOW_LIMIT, MIN_DATAGRAM,
};
pub use rto::{ACK_DELAY, MAX_ACK_DELAY};
pub use server::{ServerEndpoint, ServerEvent, ServerRead, MAX_EVENTS};
pub use stats::{ConnStats, EndpointStats};
