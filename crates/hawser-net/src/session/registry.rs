//! The protocol registry: named, numbered, versioned protocols, and the agreement on one
//! version per protocol when a session starts. They are `hawser_proto::session::registry`'s,
//! re-exported here.

pub use hawser_proto::session::registry::{
    negotiate, Negotiated, Protocol, ProtocolId, ProtocolRegistry, RegistryError,
    FIRST_APPLICATION_ID, MAX_NAME_LEN, MAX_PROTOCOLS, MAX_VERSIONS, REFUSAL_STREAM,
};
