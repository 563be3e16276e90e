//! The openraft type configuration: node ids, node info, the KV request and response.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Raft node's id: stable for the life of its data directory.
pub type NodeId = u64;

/// A random 128-bit value drawn once per data directory.
///
/// Two runs of a node with the same data directory share an incarnation; a node started with an
/// empty (lost or wiped) directory draws a new one. Serialized as 32 lowercase hex digits so JSON
/// readers without 128-bit integers see it exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation(pub u128);

impl Incarnation {
    /// Draws a fresh incarnation from the operating system's random source.
    ///
    /// # Errors
    ///
    /// Fails when the operating system's random source is unavailable.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(u128::from_le_bytes(bytes)))
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for Incarnation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Incarnation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() != 32 {
            return Err(serde::de::Error::custom(
                "incarnation must be 32 hex digits",
            ));
        }
        u128::from_str_radix(&text, 16)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// What the cluster membership records about a node: where to reach it and which incarnation of
/// its data directory it was added with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node's hawser address (or, for the in-process router, any label).
    pub addr: String,
    /// The incarnation of the node's data directory when it joined the membership.
    pub incarnation: Incarnation,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.addr, self.incarnation)
    }
}

/// A write to the key-value state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Set `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Set { key, value } => write!(f, "set {key}={value}"),
            Self::Delete { key } => write!(f, "delete {key}"),
        }
    }
}

/// The state machine's answer to an applied entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The key's value before the write; `None` for blank and membership entries.
    pub previous: Option<String>,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of hawser-raft.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
);

/// An openraft log id under [`TypeConfig`].
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// An openraft vote under [`TypeConfig`].
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A log entry under [`TypeConfig`].
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A membership with its log id under [`TypeConfig`].
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata under [`TypeConfig`].
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot whose data is the serialized state machine.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnation_round_trips_as_hex() {
        let inc = Incarnation(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let json = serde_json::to_string(&inc).unwrap();
        assert_eq!(json, "\"0123456789abcdef0011223344556677\"");
        assert_eq!(serde_json::from_str::<Incarnation>(&json).unwrap(), inc);
    }

    #[test]
    fn incarnation_rejects_bad_text() {
        assert!(serde_json::from_str::<Incarnation>("\"12\"").is_err());
        assert!(
            serde_json::from_str::<Incarnation>("\"zz23456789abcdef0011223344556677\"").is_err()
        );
    }
}
