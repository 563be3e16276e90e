//! Joining through one node: a newcomer that knows only a seed (which admits strangers) is
//! learned by the others from the flood, as a temporary member with its address, and reached
//! directly; a node that removed it does not learn it back, even when it comes back at a new
//! address.

mod nodes;

use hawser_proto::node::engine::SendError;
use hawser_proto::node::{Delivery, Event, Member, MembershipChange, NodeId, Role};
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, from, ms, with_reach};

/// Whether `at` sees `peer` alive with an address that exists and is reachable.
fn sees(cl: &Cluster, at: NodeId, peer: NodeId) -> bool {
    let peers = cl.engine(at).map(|e| e.peers()).unwrap_or_default();
    peers
        .iter()
        .any(|p| p.id == peer && p.alive && p.addresses.iter().any(|a| a.exists && a.reachable))
}

fn all_see_all(cl: &Cluster, ids: &[NodeId]) -> bool {
    ids.iter()
        .all(|&i| ids.iter().all(|&j| i == j || sees(cl, i, j)))
}

/// How often `at` learned `peer`.
fn learned(cl: &Cluster, at: NodeId, peer: NodeId) -> usize {
    let hits = cl
        .events(at)
        .iter()
        .filter(|(_, e)| matches!(e, Event::Learned(m) if m.id == peer));
    hits.count()
}

#[test]
fn a_newcomer_joins_through_one_node_and_is_reached_directly() {
    each_seed("join", |seed| {
        let lease = ms(300);
        let mut cl = Cluster::with_config(seed, with_reach(lease));
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        // a is the seed: it admits nodes it does not know.
        let mut seed_config = with_reach(lease);
        seed_config.admit_unknown = true;
        cl.set_config(a, seed_config);
        cl.crash(a);
        cl.restart(a);
        assert!(cl.run_until(|cl| all_see_all(cl, &[a, b]), lease * 2));
        let c = cl.add_node_knowing(&[a]);
        assert!(!cl.engine(b).unwrap().membership().contains(c));
        assert!(cl.run_until(|cl| all_see_all(cl, &[a, b, c]), lease * 4));

        // b learned c (and c learned b) from the flood, as temporary members.
        let c_addr = cl.addr(c).unwrap();
        let got = cl.engine(b).unwrap().membership().get(c).cloned();
        assert_eq!(got, Some(Member::new(c.0, Role::Temporary, c_addr)));
        assert_eq!(learned(&cl, b, c), 1);
        assert!(cl.engine(c).unwrap().membership().contains(b));
        let snap = cl.engine(b).unwrap().peers();
        let snap = snap.iter().find(|p| p.id == c).unwrap();
        let addr = snap.addresses.iter().find(|x| x.addr == c_addr).unwrap();
        assert!(addr.exists && addr.reachable, "{snap:?}");
        assert!(addr.last_found.is_some() && addr.promise_reachable.is_some());

        // b sends to c directly: it arrives from b, over b's own queue; a relays nothing.
        cl.with(b, |e, now| e.send(now, c, b"direct", Delivery::Reliable))
            .unwrap()
            .unwrap();
        assert!(cl.run_until(|cl| !cl.messages(c).is_empty(), ms(100)));
        assert_eq!(cl.messages(c), [(b, bytes::Bytes::from_static(b"direct"))]);
        assert_eq!(cl.engine(b).unwrap().peer_stats(c).unwrap().sent, 1);
        assert_eq!(cl.engine(a).unwrap().peer_stats(c).unwrap().sent, 0);

        // b removes c; c comes back at a new address, which a finds and floods to b: b does
        // not learn c back from it, until b adds it again itself.
        cl.with(b, |e, now| {
            e.change_membership(now, MembershipChange::Remove(c))
        })
        .unwrap()
        .unwrap();
        cl.crash(c);
        let new_addr = hawser_sim::fake_addr(100);
        assert_ne!(new_addr, c_addr);
        cl.set_addr(c, new_addr);
        cl.restart(c);
        let found = |cl: &Cluster| {
            let peers = cl.engine(a).unwrap().peers();
            peers
                .iter()
                .any(|p| p.id == c && p.addresses.iter().any(|x| x.addr == new_addr && x.exists))
        };
        assert!(cl.run_until(found, lease * 4));
        // a floods what it found to b at once; give it time to arrive, and more.
        cl.run_for(lease * 2);
        assert!(
            !cl.engine(b).unwrap().membership().contains(c),
            "b learned c back"
        );
        assert_eq!(learned(&cl, b, c), 1);
        let sent = cl.with(b, |e, now| e.send(now, c, b"x", Delivery::Reliable));
        assert_eq!(sent, Some(Err(SendError::UnknownNode(c))));
        let member = Member::new(c.0, Role::Member, new_addr);
        cl.with(b, |e, now| {
            e.change_membership(now, MembershipChange::Add(member))
        })
        .unwrap()
        .unwrap();
        assert!(cl.engine(b).unwrap().membership().contains(c));
        cl.with(b, |e, now| e.send(now, c, b"again", Delivery::Reliable))
            .unwrap()
            .unwrap();
        assert!(cl.run_until(|cl| from(cl, c, b).len() == 2, ms(100)));
    });
}
