use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hawser_proto::node::{Delivery, Member, Role};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use super::*;
use crate::node::MemoryHub;

/// The field names of a stats type, read from its `Debug` form (`Name { a: 0, b: 0 }`), so a
/// field added to a stats struct without a metric fails here.
fn fields(debug: &str) -> BTreeSet<String> {
    let inner = &debug[debug.find('{').unwrap() + 1..debug.rfind('}').unwrap()];
    // Nested structs (`conns: ConnStats { .. }`) are published through their own table.
    let mut depth = 0;
    let mut top = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => top.push(c),
            _ => {}
        }
    }
    top.split(',')
        .filter_map(|f| f.split(':').next())
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

fn sources(table: &[Metric], ty: &str) -> BTreeSet<String> {
    table
        .iter()
        .filter_map(|m| m.source.strip_prefix(ty)?.strip_prefix("::"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_counter_of_every_stats_type_has_a_metric() {
    let cases: [(&str, String, &[Metric]); 8] = [
        (
            "NodeStats",
            format!("{:?}", NodeStats::default()),
            NODE_METRICS,
        ),
        (
            "PeerStats",
            format!("{:?}", PeerStats::default()),
            PEER_METRICS,
        ),
        (
            "RpcStats",
            format!("{:?}", RpcStats::default()),
            RPC_METRICS,
        ),
        (
            "ReachStats",
            format!("{:?}", ReachStats::default()),
            REACH_METRICS,
        ),
        (
            "ConnStats",
            format!("{:?}", ConnStats::default()),
            CONN_METRICS,
        ),
        (
            "SessionStats",
            format!("{:?}", SessionStats::default()),
            SESSION_METRICS,
        ),
        (
            "ListenerStats",
            format!("{:?}", ListenerStats::default()),
            LISTENER_METRICS,
        ),
        (
            "EndpointStats",
            format!("{:?}", EndpointStats::default()),
            ENDPOINT_METRICS,
        ),
    ];
    for (ty, debug, table) in cases {
        let mut expected = fields(&debug);
        if ty == "EndpointStats" {
            expected.remove("conns"); // CONN_METRICS
        }
        assert_eq!(sources(table, ty), expected, "{ty}");
    }
}

#[test]
fn names_are_unique_and_follow_the_prometheus_conventions() {
    let mut seen = BTreeSet::new();
    for m in METRICS.iter().flat_map(|t| t.iter()) {
        assert!(seen.insert(m.name), "{} twice", m.name);
        assert!(m.name.starts_with("hawser_"), "{}", m.name);
        let total = m.name.ends_with("_total");
        assert_eq!(total, m.kind == MetricKind::Counter, "{}", m.name);
        assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
}

#[test]
fn docs_list_every_metric() {
    let doc = include_str!("../../../../docs/metrics.md");
    for m in METRICS.iter().flat_map(|t| t.iter()) {
        assert!(
            doc.contains(&format!("`{}`", m.name)),
            "{} undocumented",
            m.name
        );
    }
}

/// A recorder that keeps the last value of every counter and gauge, by `name{labels}`.
#[derive(Default)]
struct Capture(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Capture {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(id).or_default().clone()
    }

    fn counter(&self, id: &str) -> Option<u64> {
        let map = self.0.lock().unwrap();
        map.get(id).map(|c| c.load(Ordering::Relaxed))
    }

    fn gauge(&self, id: &str) -> Option<f64> {
        self.counter(id).map(f64::from_bits)
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn a_node_publishes_its_message_counters_per_peer() {
    let hub = MemoryHub::new();
    let members = [
        Member::without_addr(1, Role::Member),
        Member::without_addr(2, Role::Member),
    ];
    let start = |id: u64| {
        Node::builder(id)
            .members(members.clone())
            .in_memory(&hub)
            .start()
    };
    let (a, b) = (start(1).await.unwrap(), start(2).await.unwrap());
    let mut inbox = b.incoming();
    for i in 0..5u8 {
        a.try_send(2, Bytes::from(vec![i; 10]), Delivery::Reliable)
            .unwrap();
    }
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .unwrap()
            .unwrap();
    }
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || {
        publish_node(&a);
        publish_node(&b);
    });
    let sent = "hawser_peer_messages_sent_total{node=1,peer=2}";
    let received = "hawser_peer_messages_received_total{node=2,peer=1}";
    assert_eq!(capture.counter(sent), Some(5));
    assert_eq!(capture.counter(received), Some(5));
    assert_eq!(
        capture.counter("hawser_peer_bytes_received_total{node=2,peer=1}"),
        Some(50)
    );
    assert_eq!(capture.gauge("hawser_node_members{node=1}"), Some(2.0));
    assert_eq!(
        capture.counter("hawser_node_malformed_datagrams_total{node=1}"),
        Some(0)
    );
    assert!(capture
        .counter("hawser_rpc_requests_sent_total{node=1}")
        .is_some());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_publisher_ends_when_the_node_stops() {
    let hub = MemoryHub::new();
    let node = Node::builder(1)
        .member(Member::without_addr(1, Role::Member))
        .in_memory(&hub)
        .start()
        .await
        .unwrap();
    let publisher = spawn_node_publisher(&node, Duration::from_millis(10));
    node.stop().await;
    tokio::time::timeout(Duration::from_secs(5), publisher)
        .await
        .expect("the publisher ended")
        .unwrap();
}
