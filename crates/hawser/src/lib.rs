//! hawser (being written).
