//! hawser (being written).
pub mod fault_socket;
pub mod lsp;
