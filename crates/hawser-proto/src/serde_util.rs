//! Serde support for the settings types (feature `serde`): durations as human-readable text,
//! and [`NodeId`] as a number or a string of digits; [`from_text`] reads any type written as the
//! text it prints and parses.
//!
//! # Durations
//! A duration is written as a number followed by a unit, `ns`, `us`, `ms`, `s`, `m` or `h`
//! (`"500ms"`, `"10s"`, `"1.5s"`, `"2m"`), or as a bare integer of milliseconds (`500`).
//! It is serialized in the largest unit that divides it exactly (`"10s"`, `"250ms"`).
//!
//! ```
//! # use std::time::Duration;
//! use hawser_proto::serde_util::{format_duration, parse_duration};
//! assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

use crate::node::NodeId;

/// The units of a duration, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses a duration: a number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`).
///
/// # Errors
/// A message naming the expected form.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a number and a unit (ns, us, ms, s, m, h), like \"500ms\" or \"10s\"")
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let (_, nanos) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?;
    if number.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = number.parse::<u64>() {
        let total = u128::from(n) * nanos;
        return u64::try_from(total)
            .map(Duration::from_nanos)
            .map_err(|_| format!("duration {text:?} is too long"));
    }
    let n: f64 = number.parse().map_err(|_| bad())?;
    let total = n * (*nanos as f64);
    if !total.is_finite() || total < 0.0 || total >= u64::MAX as f64 {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Writes a duration in the largest unit that divides it exactly (`"10s"`, `"250ms"`,
/// `"0s"` for zero).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let (unit, size) = UNITS
        .iter()
        .find(|(_, size)| nanos.checked_rem(*size) == Some(0))
        .copied()
        .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / size)
}

/// `#[serde(with = "hawser_proto::serde_util::duration")]` for a [`Duration`] field.
pub mod duration {
    use super::*;

    /// Serializes as text (see the [module docs](super)).
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Deserializes text with a unit, or an integer of milliseconds.
    ///
    /// # Errors
    /// A malformed or out-of-range duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration like \"500ms\" or \"10s\", or an integer of milliseconds")
        }

        fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(ms))
        }

        fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
            u64::try_from(ms)
                .map(Duration::from_millis)
                .map_err(|_| E::custom(format!("negative duration: {ms}")))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            parse_duration(text).map_err(E::custom)
        }
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    /// A number, or a string of digits (as map keys are in TOML and JSON).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = NodeId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node id (an unsigned integer)")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeId, E> {
                Ok(NodeId(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeId, E> {
                u64::try_from(v)
                    .map(NodeId)
                    .map_err(|_| E::custom(format!("invalid node id {v}")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeId, E> {
                v.parse()
                    .map(NodeId)
                    .map_err(|_| E::custom(format!("invalid node id {v:?}")))
            }
        }

        d.deserialize_any(IdVisitor)
    }
}

/// Deserializes a string through `parse`, reporting its error (for types written as the text
/// they print and parse).
///
/// # Errors
/// The deserializer's error, or `parse`'s as a custom one.
pub fn from_text<'de, D, T, E>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_print_back() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("7us", Duration::from_micros(7)),
            ("3ns", Duration::from_nanos(3)),
            (" 5 s ", Duration::from_secs(5)),
        ] {
            assert_eq!(parse_duration(text), Ok(d), "{text}");
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for bad in ["", "10", "s", "10 parsecs", "-1s", "1e400s", "99999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_ids_read_from_numbers_and_digit_strings() {
        let id: NodeId = serde_json::from_str("7").unwrap();
        assert_eq!(id, NodeId(7));
        let id: NodeId = serde_json::from_str("\"8\"").unwrap();
        assert_eq!(id, NodeId(8));
        assert!(serde_json::from_str::<NodeId>("\"x\"").is_err());
        assert_eq!(serde_json::to_string(&NodeId(9)).unwrap(), "9");
    }
}
