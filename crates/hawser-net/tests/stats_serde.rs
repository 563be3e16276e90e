//! The counters serialize (feature `serde`): JSON out, the same values back, and a document
//! missing fields (written by an older version) reads with them at zero.
#![cfg(feature = "serde")]

use hawser_net::lsp::EndpointStats;
use hawser_net::node::{NodeStats, PeerStats, RpcStats};
use hawser_net::proto::reach::ReachStats;
use hawser_net::session::{ListenerStats, SessionStats};

fn round_trip<T>(value: T) -> serde_json::Value
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(&value).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, value);
    json
}

#[test]
fn every_stats_snapshot_round_trips_through_json() {
    let mut peer = PeerStats::default();
    peer.sent = 7;
    peer.bytes_in = 1 << 40;
    let json = round_trip(peer);
    assert_eq!(json["sent"], 7);
    assert_eq!(json["bytes_in"], 1u64 << 40);

    let mut node = NodeStats::default();
    node.handshake_failures = 3;
    assert_eq!(round_trip(node)["handshake_failures"], 3);

    let mut rpc = RpcStats::default();
    rpc.requests_sent = 2;
    assert_eq!(round_trip(rpc)["requests_sent"], 2);

    let mut lsp = EndpointStats::default();
    lsp.conns.retransmits = 9;
    assert_eq!(round_trip(lsp)["conns"]["retransmits"], 9);

    round_trip(ReachStats::default());
    round_trip(SessionStats::default());
    round_trip(ListenerStats::default());
}

#[test]
fn missing_fields_read_as_zero() {
    let peer: PeerStats = serde_json::from_str(r#"{"sent": 4}"#).unwrap();
    assert_eq!((peer.sent, peer.received), (4, 0));
}
