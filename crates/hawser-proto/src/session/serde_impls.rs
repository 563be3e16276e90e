//! Serde support for the session types that appear in settings (feature `serde`): each is
//! written as the text it prints and parses.
//!
//! | type | form |
//! | --- | --- |
//! | `NetworkId` | the id, 1 to 64 bytes |
//! | `PeerId` | base58, as printed by `hawser keygen` |

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{NetworkId, PeerId};
use crate::serde_util::from_text;

impl Serialize for NetworkId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NetworkId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NetworkId, D::Error> {
        from_text(d, "a network id of 1 to 64 bytes", NetworkId::new)
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        from_text(d, "a PeerId (base58)", PeerId::from_str)
    }
}
