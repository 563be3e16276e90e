//! Simulated network (being written).
