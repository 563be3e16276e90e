//! The protocol registry: named, numbered, versioned protocols, and the agreement on one
//! version per protocol when a session starts.
//!
//! Each end sends its list inside the handshake (see [`handshake`](super::handshake)); both then run
//! the same pure function, [`negotiate`], so they agree without another round trip: for each
//! protocol id both lists hold under the same name, the highest version both support.
//!
//! Ids 0 to 1,023 are reserved for hawser's own traffic (node messages, presence,
//! reachability); applications use 1,024 and up.
//!
//! # Wire format of a list
//! ```text
//! u16 count (≤ MAX_PROTOCOLS)
//! count × { u32 id | u8 name length (1..=MAX_NAME_LEN) | name (UTF-8)
//!           | u8 version count (1..=MAX_VERSIONS) | count × u16 version }
//! ```
//! All integers big-endian; ids strictly increasing.

use std::collections::BTreeMap;
use std::fmt;

use crate::wire::handshake::ProtocolList;
pub use crate::wire::handshake::{MAX_NAME_LEN, MAX_PROTOCOLS, MAX_VERSIONS};
use crate::wire::stream::REFUSAL_PROTOCOL;

/// First id free for applications; lower ids are hawser's.
pub const FIRST_APPLICATION_ID: u32 = 1024;
/// The reserved protocol of the stream that carries a refusal after the handshake
/// (`wire::stream`).
pub const REFUSAL_STREAM: ProtocolId = ProtocolId(REFUSAL_PROTOCOL);

/// A protocol's number, the same at every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolId(pub u32);

impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol {}", self.0)
    }
}

/// A protocol: an id, a human-readable name and the versions this node speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    id: ProtocolId,
    name: String,
    versions: Vec<u16>,
}

impl Protocol {
    /// A protocol description. Versions are sorted and deduplicated.
    ///
    /// # Errors
    /// [`RegistryError`] if the name is empty or longer than [`MAX_NAME_LEN`] bytes, or if
    /// there are no versions or more than [`MAX_VERSIONS`].
    pub fn new(id: ProtocolId, name: &str, versions: &[u16]) -> Result<Protocol, RegistryError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(RegistryError::BadName(name.to_owned()));
        }
        let mut versions = versions.to_vec();
        versions.sort_unstable();
        versions.dedup();
        if versions.is_empty() || versions.len() > MAX_VERSIONS {
            return Err(RegistryError::BadVersions(id));
        }
        Ok(Protocol {
            id,
            name: name.to_owned(),
            versions,
        })
    }

    /// The id.
    pub fn id(&self) -> ProtocolId {
        self.id
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The versions, ascending.
    pub fn versions(&self) -> &[u16] {
        &self.versions
    }
}

/// The protocols a node offers on its sessions (at most [`MAX_PROTOCOLS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtocolRegistry {
    protocols: BTreeMap<ProtocolId, Protocol>,
}

impl ProtocolRegistry {
    /// An empty registry.
    pub fn new() -> ProtocolRegistry {
        ProtocolRegistry::default()
    }

    /// Adds a protocol.
    ///
    /// # Errors
    /// [`RegistryError::Reserved`] for id 0 (the refusal stream, [`REFUSAL_STREAM`]); [`RegistryError::Duplicate`] if its id is
    /// taken; [`RegistryError::Full`] past [`MAX_PROTOCOLS`].
    pub fn register(&mut self, protocol: Protocol) -> Result<(), RegistryError> {
        if protocol.id == REFUSAL_STREAM {
            return Err(RegistryError::Reserved(protocol.id));
        }
        if self.protocols.contains_key(&protocol.id) {
            return Err(RegistryError::Duplicate(protocol.id));
        }
        if self.protocols.len() >= MAX_PROTOCOLS {
            return Err(RegistryError::Full);
        }
        self.protocols.insert(protocol.id, protocol);
        Ok(())
    }

    /// The protocol with this id, if registered.
    pub fn protocol(&self, id: ProtocolId) -> Option<&Protocol> {
        self.protocols.get(&id)
    }

    /// All protocols, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = &Protocol> {
        self.protocols.values()
    }

    /// Appends the list in its wire format ([`wire::handshake`](crate::wire::handshake)).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let entries = self
            .protocols
            .values()
            .map(|p| (p.id.0, p.name.as_str(), p.versions.as_slice()));
        let written = ProtocolList::encode(entries, out);
        // `register` and `Protocol::new` keep a registry within the list's bounds, by id.
        debug_assert!(written.is_ok(), "a registry is a valid protocol list");
    }

    /// Parses a list in its wire format; the whole of `bytes` must be used.
    ///
    /// # Errors
    /// [`RegistryError::Truncated`] when the bytes are not a list
    /// ([`ProtocolList::parse`]), and as
    /// [`register`](Self::register) (the reserved id 0).
    pub fn parse(bytes: &[u8]) -> Result<ProtocolRegistry, RegistryError> {
        let list = ProtocolList::parse(bytes).map_err(|_| RegistryError::Truncated)?;
        ProtocolRegistry::from_list(&list)
    }

    /// The registry of a decoded list.
    ///
    /// # Errors
    /// As [`register`](Self::register) (the reserved id 0).
    pub fn from_list(list: &ProtocolList<'_>) -> Result<ProtocolRegistry, RegistryError> {
        let mut registry = ProtocolRegistry::new();
        for entry in list.iter() {
            let versions: Vec<u16> = entry.versions.collect();
            registry.register(Protocol::new(ProtocolId(entry.id), entry.name, &versions)?)?;
        }
        Ok(registry)
    }
}

/// The outcome of [`negotiate`]: the version agreed for each protocol both ends speak.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    agreed: BTreeMap<ProtocolId, u16>,
    /// Protocols both ends know but with no common version (or different names).
    mismatched: BTreeMap<ProtocolId, ()>,
}

impl Negotiated {
    /// The agreed version of `id`, if both ends speak it.
    pub fn version(&self, id: ProtocolId) -> Option<u16> {
        self.agreed.get(&id).copied()
    }

    /// Whether both ends know `id` but share no version of it (or name it differently).
    pub fn is_mismatched(&self, id: ProtocolId) -> bool {
        self.mismatched.contains_key(&id)
    }

    /// Every agreed protocol with its version, by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (ProtocolId, u16)> + '_ {
        self.agreed.iter().map(|(id, v)| (*id, *v))
    }
}

/// Agrees on one version per protocol: for each id in both lists under the same name, the
/// highest version in both. Symmetric: `negotiate(a, b) == negotiate(b, a)`.
pub fn negotiate(local: &ProtocolRegistry, remote: &ProtocolRegistry) -> Negotiated {
    let mut out = Negotiated::default();
    for (id, mine) in &local.protocols {
        let Some(theirs) = remote.protocols.get(id) else {
            continue;
        };
        let common = mine
            .versions
            .iter()
            .rev()
            .find(|v| theirs.versions.binary_search(v).is_ok());
        match common {
            Some(v) if mine.name == theirs.name => {
                out.agreed.insert(*id, *v);
            }
            _ => {
                out.mismatched.insert(*id, ());
            }
        }
    }
    out
}

/// Why a protocol or a registry is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is empty or too long.
    #[error("protocol name {0:?} is empty or longer than {MAX_NAME_LEN} bytes")]
    BadName(String),
    /// No versions, or too many.
    #[error("{0} needs 1 to {MAX_VERSIONS} versions")]
    BadVersions(ProtocolId),
    /// The id is already registered.
    #[error("{0} is already registered")]
    Duplicate(ProtocolId),
    /// The id is reserved by the session layer (0, the refusal stream).
    #[error("{0} is reserved")]
    Reserved(ProtocolId),
    /// More than [`MAX_PROTOCOLS`] protocols.
    #[error("more than {MAX_PROTOCOLS} protocols")]
    Full,
    /// The wire bytes are not a protocol list: they end early, carry trailing bytes,
    /// unsorted ids or a field out of its bounds.
    #[error("malformed protocol list")]
    Truncated,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(entries: &[(u32, &str, &[u16])]) -> ProtocolRegistry {
        let mut r = ProtocolRegistry::new();
        for (id, name, versions) in entries {
            r.register(Protocol::new(ProtocolId(*id), name, versions).unwrap())
                .unwrap();
        }
        r
    }

    #[test]
    fn wire_round_trip_and_golden_bytes() {
        let r = reg(&[(1, "ab", &[2, 1])]);
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out, [0, 1, 0, 0, 0, 1, 2, b'a', b'b', 2, 0, 1, 0, 2]);
        assert_eq!(ProtocolRegistry::parse(&out).unwrap(), r);
        for cut in 0..out.len() {
            assert!(ProtocolRegistry::parse(&out[..cut]).is_err());
        }
        out.push(0);
        assert!(ProtocolRegistry::parse(&out).is_err());
    }

    #[test]
    fn id_zero_is_reserved_for_the_refusal_stream() {
        let mut r = ProtocolRegistry::new();
        let zero = Protocol::new(ProtocolId(0), "mine", &[1]).unwrap();
        assert_eq!(
            r.register(zero),
            Err(RegistryError::Reserved(ProtocolId(0)))
        );
        // Nor does a peer's list with it parse.
        let list = [0, 1, 0, 0, 0, 0, 1, b'x', 1, 0, 1];
        assert!(ProtocolRegistry::parse(&list).is_err());
    }

    #[test]
    fn highest_common_version_wins() {
        let a = reg(&[(1, "x", &[1, 2, 3]), (2, "y", &[1]), (3, "z", &[5])]);
        let b = reg(&[(1, "x", &[2, 3, 4]), (2, "y", &[2]), (4, "w", &[1])]);
        let n = negotiate(&a, &b);
        assert_eq!(n, negotiate(&b, &a));
        assert_eq!(n.version(ProtocolId(1)), Some(3));
        assert_eq!(n.version(ProtocolId(2)), None);
        assert!(n.is_mismatched(ProtocolId(2)));
        assert_eq!(n.version(ProtocolId(3)), None);
        assert!(!n.is_mismatched(ProtocolId(3)));
    }

    #[test]
    fn same_id_different_name_is_not_agreed() {
        let a = reg(&[(1, "x", &[1])]);
        let b = reg(&[(1, "other", &[1])]);
        assert_eq!(negotiate(&a, &b).version(ProtocolId(1)), None);
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(Protocol::new(ProtocolId(1), "", &[1]).is_err());
        assert!(Protocol::new(ProtocolId(1), "x", &[]).is_err());
        assert!(Protocol::new(ProtocolId(1), &"n".repeat(65), &[1]).is_err());
        let mut r = reg(&[(1, "x", &[1])]);
        assert_eq!(
            r.register(Protocol::new(ProtocolId(1), "y", &[1]).unwrap()),
            Err(RegistryError::Duplicate(ProtocolId(1)))
        );
    }
}
