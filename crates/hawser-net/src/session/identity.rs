//! Node identities: an ed25519 key pair ([`Identity`]), its public half ([`PublicKey`]) and
//! the printable name derived from it ([`PeerId`]), with key files. They are
//! `hawser_proto::session::identity`'s, re-exported here.

pub use hawser_proto::session::identity::{
    Identity, KeyError, PeerId, PublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN,
};
