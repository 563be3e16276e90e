//! hawser-proto: the sans-IO core of hawser.
pub mod fault;
pub mod lsp;
pub mod transmit;
pub mod wire;

pub use transmit::{DatagramEndpoint, Transmit};
