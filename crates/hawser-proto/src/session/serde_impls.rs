//! Serde support for the session types that appear in settings (feature `serde`): each is
//! written as the text it prints and parses.
//!
//! | type | form |
//! | --- | --- |
//! | `NetworkId` | the id, 1 to 64 bytes |
//! | `PeerId` | base58, as printed by `hawser keygen` |

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{NetworkId, PeerId};

/// Deserializes a string through `parse`, reporting its error.
fn from_text<'de, D, T, E>(
    d: D,
    what: &'static str,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    struct Text<T, E> {
        what: &'static str,
        parse: fn(&str) -> Result<T, E>,
    }

    impl<T, E: fmt::Display> Visitor<'_> for Text<T, E> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.what)
        }

        fn visit_str<X: de::Error>(self, v: &str) -> Result<T, X> {
            (self.parse)(v).map_err(X::custom)
        }
    }

    d.deserialize_str(Text { what, parse })
}

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
