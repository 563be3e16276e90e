//! Serde support for the session types that appear in `node::Settings` (feature `serde`):
//! each is written as the text it prints and parses. `NetworkId` and `PeerId` are
//! `hawser_proto`'s, with their serde support (the id as text, the `PeerId` in base58).
//!
//! | type | form |
//! | --- | --- |
//! | `TransportAddr` | `tcp://IP:PORT`, `lsp://IP:PORT`, `ws://IP:PORT`, `mem://NAME`, `SCHEME://REST` |
//! | `Security` | `noise`, `noise_aes_gcm` or `danger_plaintext` |

use std::str::FromStr;

use hawser_proto::serde_util::from_text;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::session::{Security, TransportAddr};

impl Serialize for TransportAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TransportAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TransportAddr, D::Error> {
        from_text(
            d,
            "a transport address like tcp://IP:PORT",
            TransportAddr::from_str,
        )
    }
}

/// The name of a [`Security`] choice in a configuration file.
fn security_name(s: Security) -> &'static str {
    match s {
        Security::Noise => "noise",
        Security::NoiseAesGcm => "noise_aes_gcm",
        Security::DangerPlaintext => "danger_plaintext",
    }
}

fn parse_security(name: &str) -> Result<Security, String> {
    [
        Security::Noise,
        Security::NoiseAesGcm,
        Security::DangerPlaintext,
    ]
    .into_iter()
    .find(|s| security_name(*s) == name)
    .ok_or_else(|| {
        format!("unknown security {name:?}: expected noise, noise_aes_gcm or danger_plaintext")
    })
}

impl Serialize for Security {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(security_name(*self))
    }
}

impl<'de> Deserialize<'de> for Security {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Security, D::Error> {
        from_text(
            d,
            "noise, noise_aes_gcm or danger_plaintext",
            parse_security,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::node::{LeasePolicy, NodeId, Settings};

    #[test]
    fn a_partial_settings_file_keeps_every_other_default() {
        let s: Settings = serde_json::from_str(
            r#"{"network_id": "blue", "idle_timeout": "90s",
                "reach": {"engine": {"lease": {"fixed": "2s"}}},
                "transports": {"3": "ws://127.0.0.1:7003"}, "security": "noise_aes_gcm"}"#,
        )
        .unwrap();
        assert_eq!(s.network_id.as_str(), "blue");
        assert_eq!(s.idle_timeout, Duration::from_secs(90));
        assert_eq!(
            s.reach.engine.lease,
            LeasePolicy::Fixed(Duration::from_secs(2))
        );
        assert_eq!(s.transports[&NodeId(3)].to_string(), "ws://127.0.0.1:7003");
        let defaults = Settings::default();
        assert_eq!(s.max_frame, defaults.max_frame);
        assert_eq!(
            s.reach.engine.renew_divisor,
            defaults.reach.engine.renew_divisor
        );
        assert_eq!(s.lsp, defaults.lsp);
    }

    #[test]
    fn settings_round_trip_and_unknown_keys_are_errors() {
        let s = Settings::default();
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""idle_timeout":"1m""#), "{text}");
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        let err = serde_json::from_str::<Settings>(r#"{"idle_timeot": "1s"}"#).unwrap_err();
        assert!(err.to_string().contains("idle_timeot"), "{err}");
        let err = serde_json::from_str::<Settings>(r#"{"network_id": ""}"#).unwrap_err();
        assert!(err.to_string().contains("network id"), "{err}");
        let err = serde_json::from_str::<Settings>(r#"{"security": "rot13"}"#).unwrap_err();
        assert!(err.to_string().contains("rot13"), "{err}");
    }
}
