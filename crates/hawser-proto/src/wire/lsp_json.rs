//! JSON codec. PLACEHOLDER: being written.
use super::{Message, WireError};
/// Decodes.
pub fn decode(d: &[u8]) -> Result<Message, WireError> { let _ = d; Err(WireError::Malformed("unimplemented")) }
/// Encodes.
pub fn encode(m: &Message, out: &mut bytes::BytesMut) { let _ = (m, out); }
/// Length.
pub fn encoded_len(m: &Message) -> usize { let _ = m; 0 }
