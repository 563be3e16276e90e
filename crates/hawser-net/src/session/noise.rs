//! The secure channel, sans-IO: the Noise `XX` handshake bound to the nodes' identities, then
//! transport-mode encryption. The state machines are `hawser_proto::session`'s
//! (`handshake`, `hello`, `transport`, `cipher`), re-exported here; the session layer drives
//! them over a transport.

pub use hawser_proto::session::cipher::{
    NoiseCipher, MAX_NETWORK_ID, MAX_NOISE_MESSAGE, MAX_PLAINTEXT, NOISE_PARAMS,
    NOISE_PARAMS_AESGCM, PROTOCOL_VERSION, STATIC_KEY_CONTEXT, TAG_LEN,
};
pub use hawser_proto::session::handshake::{Handshake, Remote, Role};
pub use hawser_proto::session::hello::{
    check_prologue, foreign_mode_error, parse_plaintext_hello, plaintext_hello, prologue, NetworkId,
};
pub use hawser_proto::session::transport::{Cipher, Opener, Sealer};
