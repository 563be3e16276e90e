//! LSP state machines (being written).
