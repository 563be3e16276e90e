//! Reachability wiring: members connected, reported alive, learned from the flood.

use std::time::Duration;

use super::*;
use crate::node::{Member, Role};
use crate::reach::PeerEvent;

#[test]
fn reachability_connects_members_and_reports_them_alive() {
    let mut s = Shell::new(3, EngineConfig::default());
    // One renewal interval (10 s / 3) after start, every node pings the others.
    s.advance(Duration::from_secs(4));
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                assert!(s.nodes[i].is_alive(NodeId(j as u64 + 1)), "{i} sees {j}");
            }
        }
    }
    assert!(s.events[0].iter().any(|e| matches!(
        e,
        Event::Peer(PeerEvent::PeerAlive {
            peer: NodeId(2),
            ..
        })
    )));
    // Reachability frames count in no application counter.
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)).unwrap().sent, 0);
}

#[test]
fn nodes_reported_by_the_flood_are_learned_unless_removed() {
    let mut s = Shell::new(3, EngineConfig::default());
    // Node 2 starts without node 3 in its membership; nodes 1 and 3 know everyone.
    let mut partial = members(3);
    partial.remove(NodeId(3));
    s.nodes[1] = Engine::new(
        NodeId(2),
        EngineConfig::default(),
        partial,
        &[addr(1)],
        s.now,
    )
    .unwrap();
    s.advance(Duration::from_secs(4));
    let learned: Vec<&Member> = s.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::Learned(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(learned, [&Member::new(3, Role::Temporary, addr(2))]);
    assert!(s.nodes[1].membership().contains(NodeId(3)));
    assert!(s.nodes[1].is_alive(NodeId(3)));
    assert_eq!(
        s.nodes[1]
            .all_peer_stats()
            .map(|(id, _)| id.0)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Removed by the application: the flood does not bring it back.
    let now = s.now;
    s.node(1)
        .change_membership(now, MembershipChange::Remove(NodeId(3)))
        .unwrap();
    s.advance(Duration::from_secs(8));
    assert!(!s.nodes[1].membership().contains(NodeId(3)));
    let again = s.events[1]
        .iter()
        .filter(|e| matches!(e, Event::Learned(_)))
        .count();
    assert_eq!(again, 1);
    assert!(
        s.nodes[1].stats().refused_connections > 0,
        "node 3's dials are refused"
    );
}
