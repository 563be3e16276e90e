//! Membership at run time: a broadcast reaches exactly its group; a node added, given another
//! role and removed is sent to accordingly.

mod nodes;

use hawser_proto::node::engine::SendError;
use hawser_proto::node::{Delivery, Group, MembershipChange, NodeId, Role};
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, from, ms, quick};

/// Sets `peer`'s role to `role` at every running node.
fn set_role(cl: &mut Cluster, peer: NodeId, role: Role) {
    for id in cl.ids() {
        if id != peer {
            cl.with(id, |e, now| {
                e.change_membership(now, MembershipChange::SetRole(peer, role))
            })
            .unwrap()
            .unwrap();
        }
    }
}

#[test]
fn a_broadcast_reaches_exactly_its_group_never_the_sender() {
    each_seed("broadcast_groups", |seed| {
        let mut cl = Cluster::with_config(seed, quick());
        let ids = cl.add_nodes(5);
        set_role(&mut cl, NodeId(3), Role::Follower);
        set_role(&mut cl, NodeId(4), Role::Temporary);
        let cases = [
            (Group::Members, vec![2, 5]),
            (Group::Followers, vec![3]),
            (Group::Temporary, vec![4]),
            (Group::All, vec![2, 3, 4, 5]),
        ];
        let a = ids[0];
        for (group, expect) in &cases {
            let tag = format!("{group:?}");
            let report = cl
                .with(a, |e, now| {
                    e.broadcast(now, *group, tag.as_bytes(), Delivery::Reliable)
                })
                .unwrap();
            assert!(report.is_all_ok(), "{report:?}");
            let to: Vec<u64> = report.outcomes.iter().map(|(n, _)| n.0).collect();
            assert_eq!(&to, expect, "{group:?}");
        }
        cl.run_for(ms(200));
        for &id in &ids {
            let want: Vec<String> = cases
                .iter()
                .filter(|(_, to)| to.contains(&id.0))
                .map(|(g, _)| format!("{g:?}"))
                .collect();
            let got: Vec<String> = from(&cl, id, a)
                .iter()
                .map(|p| String::from_utf8(p.to_vec()).unwrap())
                .collect();
            assert_eq!(got, want, "{id}");
            assert_eq!(cl.messages(id).len(), want.len(), "{id}: a stray message");
        }
        assert!(cl.messages(a).is_empty(), "never the sender");
    });
}

#[test]
fn membership_changes_at_run_time_reroute_sends() {
    each_seed("membership_changes", |seed| {
        let mut cl = Cluster::with_config(seed, quick());
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        // Added while a and b run (each learns it), as a follower.
        let [c] = cl.add_nodes(1)[..] else {
            unreachable!()
        };
        set_role(&mut cl, c, Role::Follower);
        let report = cl
            .with(a, |e, now| {
                e.broadcast(now, Group::Followers, b"f", Delivery::Reliable)
            })
            .unwrap();
        assert_eq!(report.outcomes, [(c, Ok(()))]);
        assert!(cl.run_until(|cl| !cl.messages(c).is_empty(), ms(100)));
        assert_eq!(cl.messages(c), [(a, bytes::Bytes::from_static(b"f"))]);
        // A member now: no follower left.
        cl.with(a, |e, now| {
            e.change_membership(now, MembershipChange::SetRole(c, Role::Member))
        })
        .unwrap()
        .unwrap();
        let report = cl
            .with(a, |e, now| {
                e.broadcast(now, Group::Followers, b"x", Delivery::Reliable)
            })
            .unwrap();
        assert_eq!(report.outcomes, []);
        // Removed: unknown, its counters gone, a change naming it refused.
        cl.with(a, |e, now| {
            e.change_membership(now, MembershipChange::Remove(c))
        })
        .unwrap()
        .unwrap();
        let sent = cl.with(a, |e, now| e.send(now, c, b"x", Delivery::Reliable));
        assert_eq!(sent, Some(Err(SendError::UnknownNode(c))));
        assert_eq!(cl.engine(a).unwrap().peer_stats(c), None);
        let set = cl.with(a, |e, now| {
            e.change_membership(now, MembershipChange::SetRole(c, Role::Member))
        });
        assert!(set.unwrap().is_err());
        cl.run_for(ms(200));
        assert_eq!(
            cl.messages(c).len(),
            1,
            "nothing more reached the removed node"
        );
        assert!(cl.messages(b).is_empty());
    });
}
