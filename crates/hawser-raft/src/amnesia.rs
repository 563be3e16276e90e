//! The amnesia rule: a node that lost its data never votes under its old identity.
//!
//! Raft's safety rests on a voter remembering its vote and its log. A node restarted with an
//! empty data directory has forgotten both; if it answered vote requests under its old id it
//! could elect a second leader in a term or help elect a leader without committed entries.
//!
//! Each data directory draws a random [`Incarnation`] when it is created, and the membership
//! records each node with the incarnation it was added with ([`crate::types::Node`]). A network
//! client knows its target's incarnation from the membership (openraft hands the target's
//! [`crate::types::Node`] to `RaftNetworkFactory::new_client`) and sends it with every request,
//! together with the sender's own identity. The rule:
//!
//! 1. **A request is for one incarnation.** A node refuses every Raft request (append, snapshot,
//!    vote, pre-vote) addressed to an incarnation other than its own ([`check_addressed`]). To
//!    the cluster, a node restarted with empty storage is then simply down under its old
//!    identity: it receives no log, so the leader never sees a follower's log revert (which
//!    openraft treats as a fatal bug), and it grants no vote.
//! 2. **A stale node neither votes nor campaigns.** While the membership a node holds lists its
//!    id with another incarnation than its own, [`may_vote`] is false: it refuses vote and
//!    pre-vote requests, and [`crate::app::KvNode`] turns openraft's elections off on it. (This
//!    covers a node whose identity file was lost but whose log was not.)
//! 3. **A vote request names its sender's incarnation.** A node refuses a candidate that its
//!    membership lists with another incarnation.
//!
//! The remedy for a node that lost its data is to remove it from the membership and add it
//! again (as a learner, then a voter) with its new incarnation; or to restart it with its data.
//!
//! A network adapter calls [`crate::app::KvNode::check_vote_request`] on every incoming vote
//! and pre-vote request and [`crate::app::KvNode::check_addressed`] on every incoming append and
//! snapshot, before handing the request to openraft, and answers a refusal with an error.

use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::types::{Incarnation, Node, NodeId};

/// Why a Raft request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refused {
    /// The request was addressed to another incarnation of this node.
    #[error("request addressed to incarnation {addressed}, this node is {own}")]
    AddressedToOther {
        /// The incarnation the sender expects.
        addressed: Incarnation,
        /// This node's incarnation.
        own: Incarnation,
    },
    /// The membership lists this node with another incarnation: it lost its data.
    #[error("membership lists this node as incarnation {recorded}, this node is {own}")]
    OwnIncarnationStale {
        /// The incarnation in the membership.
        recorded: Incarnation,
        /// This node's incarnation.
        own: Incarnation,
    },
    /// The membership lists the sender with another incarnation than the one it claims.
    #[error("membership lists node {sender} as incarnation {recorded}, it claims {claimed}")]
    SenderIncarnationStale {
        /// The sender.
        sender: NodeId,
        /// The incarnation in the membership.
        recorded: Incarnation,
        /// The incarnation the sender claims.
        claimed: Incarnation,
    },
}

/// Whether `me` may vote and campaign: false only while the membership lists its id with
/// another incarnation. `recorded` looks a node's incarnation up in the membership.
pub fn may_vote(recorded: impl Fn(NodeId) -> Option<Incarnation>, me: &Identity) -> bool {
    recorded(me.id).is_none_or(|inc| inc == me.incarnation)
}

/// Checks that a request addressed to incarnation `addressed` is meant for `me`.
///
/// # Errors
///
/// [`Refused::AddressedToOther`] when it is not.
pub fn check_addressed(me: &Identity, addressed: Incarnation) -> Result<(), Refused> {
    if addressed == me.incarnation {
        Ok(())
    } else {
        Err(Refused::AddressedToOther {
            addressed,
            own: me.incarnation,
        })
    }
}

/// Checks a vote or pre-vote request from `from`, addressed to incarnation `addressed`, against
/// `me` and the membership `me` holds (`recorded` looks a node's incarnation up in it).
///
/// # Errors
///
/// The first rule the request breaks: own staleness, addressing, sender staleness.
pub fn check_vote_request(
    recorded: impl Fn(NodeId) -> Option<Incarnation>,
    me: &Identity,
    from: &Identity,
    addressed: Incarnation,
) -> Result<(), Refused> {
    if let Some(inc) = recorded(me.id) {
        if inc != me.incarnation {
            return Err(Refused::OwnIncarnationStale {
                recorded: inc,
                own: me.incarnation,
            });
        }
    }
    check_addressed(me, addressed)?;
    if let Some(inc) = recorded(from.id) {
        if inc != from.incarnation {
            return Err(Refused::SenderIncarnationStale {
                sender: from.id,
                recorded: inc,
                claimed: from.incarnation,
            });
        }
    }
    Ok(())
}

/// A `recorded` lookup over any map-like list of members.
pub fn lookup_in<'a>(
    members: impl IntoIterator<Item = (&'a NodeId, &'a Node)> + Clone,
) -> impl Fn(NodeId) -> Option<Incarnation> {
    move |id| {
        members
            .clone()
            .into_iter()
            .find(|(n, _)| **n == id)
            .map(|(_, node)| node.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn ident(id: NodeId, inc: u128) -> Identity {
        Identity {
            id,
            incarnation: Incarnation(inc),
        }
    }

    fn members(list: &[(NodeId, u128)]) -> BTreeMap<NodeId, Node> {
        list.iter()
            .map(|(id, inc)| {
                let node = Node {
                    addr: format!("n{id}"),
                    incarnation: Incarnation(*inc),
                };
                (*id, node)
            })
            .collect()
    }

    #[test]
    fn a_listed_node_with_its_incarnation_may_vote() {
        let m = members(&[(1, 10), (2, 20)]);
        assert!(may_vote(lookup_in(&m), &ident(1, 10)));
        assert!(
            check_vote_request(lookup_in(&m), &ident(1, 10), &ident(2, 20), Incarnation(10))
                .is_ok()
        );
    }

    #[test]
    fn an_unlisted_node_may_vote_when_addressed_correctly() {
        let m = members(&[(2, 20)]);
        assert!(may_vote(lookup_in(&m), &ident(1, 10)));
        assert!(
            check_vote_request(lookup_in(&m), &ident(1, 10), &ident(2, 20), Incarnation(10))
                .is_ok()
        );
    }

    #[test]
    fn a_node_listed_with_another_incarnation_refuses() {
        let m = members(&[(1, 10), (2, 20)]);
        let me = ident(1, 11);
        assert!(!may_vote(lookup_in(&m), &me));
        assert_eq!(
            check_vote_request(lookup_in(&m), &me, &ident(2, 20), Incarnation(11)),
            Err(Refused::OwnIncarnationStale {
                recorded: Incarnation(10),
                own: Incarnation(11)
            })
        );
    }

    #[test]
    fn a_request_for_another_incarnation_is_refused_before_membership_is_known() {
        let empty = members(&[]);
        assert_eq!(
            check_vote_request(
                lookup_in(&empty),
                &ident(1, 11),
                &ident(2, 20),
                Incarnation(10)
            ),
            Err(Refused::AddressedToOther {
                addressed: Incarnation(10),
                own: Incarnation(11)
            })
        );
    }

    #[test]
    fn a_stale_sender_is_refused() {
        let m = members(&[(1, 10), (2, 20)]);
        assert_eq!(
            check_vote_request(lookup_in(&m), &ident(1, 10), &ident(2, 21), Incarnation(10)),
            Err(Refused::SenderIncarnationStale {
                sender: 2,
                recorded: Incarnation(20),
                claimed: Incarnation(21)
            })
        );
    }
}
