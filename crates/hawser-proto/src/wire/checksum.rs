//! LSP checksum (spec 1.2). PLACEHOLDER: being written.
/// Computes the checksum.
pub fn compute(conn: i64, seq: i64, size: i64, payload: &[u8]) -> u16 { let _ = (conn, seq, size, payload); 0 }
