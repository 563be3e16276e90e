//! The cluster's configuration: every node's id, addresses and role.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{Group, NodeId, Role};

/// The most nodes a [`Membership`] holds by default (PhxPaxos clusters are a handful of members
/// plus followers; 4,096 leaves ample room while bounding every per-node table).
pub const MAX_NODES: usize = 4096;

/// The most addresses one [`Member`] may list.
pub const MAX_ADDRS_PER_NODE: usize = 8;

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub id: NodeId,
    /// Its role, deciding which broadcast groups include it.
    pub role: Role,
    /// Where it listens, in order of preference: reliable connections (TCP) and datagrams (UDP)
    /// use the same address and port. Tried in turn when connecting fails. At most
    /// [`MAX_ADDRS_PER_NODE`]; may be empty for transports that need no address.
    pub addrs: Vec<SocketAddr>,
    /// Where it accepts reliable delivery over LSP, if it does (a UDP address of its own).
    pub lsp_addr: Option<SocketAddr>,
}

impl Member {
    /// A member with one address and no LSP address.
    pub fn new(id: impl Into<NodeId>, role: Role, addr: SocketAddr) -> Member {
        Member {
            id: id.into(),
            role,
            addrs: vec![addr],
            lsp_addr: None,
        }
    }

    /// A member without any address (for transports that route by id alone, like the in-memory
    /// one).
    pub fn without_addr(id: impl Into<NodeId>, role: Role) -> Member {
        Member {
            id: id.into(),
            role,
            addrs: Vec::new(),
            lsp_addr: None,
        }
    }

    /// Sets the LSP address (builder style).
    #[must_use]
    pub fn with_lsp_addr(mut self, addr: SocketAddr) -> Member {
        self.lsp_addr = Some(addr);
        self
    }

    /// Adds a further address (builder style).
    #[must_use]
    pub fn with_addr(mut self, addr: SocketAddr) -> Member {
        self.addrs.push(addr);
        self
    }
}

/// A change to the membership at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Adds a node, or replaces the node with the same id.
    Add(Member),
    /// Removes a node (absent: no change).
    Remove(NodeId),
    /// Replaces a node's addresses.
    SetAddrs(NodeId, Vec<SocketAddr>),
    /// Changes a node's role.
    SetRole(NodeId, Role),
}

/// Why a membership change was refused. Nothing changes when it fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The membership already holds its maximum number of nodes.
    #[error("membership full ({max} nodes)")]
    Full {
        /// The configured maximum.
        max: usize,
    },
    /// A member lists more than [`MAX_ADDRS_PER_NODE`] addresses.
    #[error("{id} lists {count} addresses, more than {MAX_ADDRS_PER_NODE}")]
    TooManyAddrs {
        /// The node.
        id: NodeId,
        /// How many it listed.
        count: usize,
    },
    /// The change names a node that is not a member.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
}

/// Every node of the cluster by id, bounded by a maximum node count.
///
/// ```
/// use hawser_proto::node::{Group, Member, Membership, MembershipChange, NodeId, Role};
///
/// let addr = "127.0.0.1:7000".parse().unwrap();
/// let mut m = Membership::from_members([
///     Member::new(1, Role::Member, addr),
///     Member::new(2, Role::Member, addr),
///     Member::new(3, Role::Follower, addr),
/// ]).unwrap();
/// assert_eq!(m.select(Group::Members, Some(NodeId(1))), [NodeId(2)]);
/// m.apply(MembershipChange::SetRole(NodeId(3), Role::Member)).unwrap();
/// assert_eq!(m.select(Group::Members, None).len(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    nodes: BTreeMap<NodeId, Member>,
    max_nodes: usize,
}

impl Default for Membership {
    fn default() -> Membership {
        Membership::new(MAX_NODES)
    }
}

impl Membership {
    /// An empty membership holding at most `max_nodes` nodes.
    pub fn new(max_nodes: usize) -> Membership {
        Membership {
            nodes: BTreeMap::new(),
            max_nodes,
        }
    }

    /// A membership of these members (bounded by [`MAX_NODES`]); a later duplicate id replaces
    /// an earlier one.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn from_members(
        members: impl IntoIterator<Item = Member>,
    ) -> Result<Membership, MembershipError> {
        let mut m = Membership::default();
        for member in members {
            m.insert(member)?;
        }
        Ok(m)
    }

    /// Adds `member`, or replaces the node with its id; returns the replaced node.
    ///
    /// # Errors
    /// [`MembershipError::Full`] or [`MembershipError::TooManyAddrs`].
    pub fn insert(&mut self, member: Member) -> Result<Option<Member>, MembershipError> {
        if member.addrs.len() > MAX_ADDRS_PER_NODE {
            return Err(MembershipError::TooManyAddrs {
                id: member.id,
                count: member.addrs.len(),
            });
        }
        if !self.nodes.contains_key(&member.id) && self.nodes.len() >= self.max_nodes {
            return Err(MembershipError::Full {
                max: self.max_nodes,
            });
        }
        Ok(self.nodes.insert(member.id, member))
    }

    /// Removes a node; returns it if it was a member.
    pub fn remove(&mut self, id: NodeId) -> Option<Member> {
        self.nodes.remove(&id)
    }

    /// Applies one change.
    ///
    /// # Errors
    /// [`MembershipError`]: full, too many addresses, or (for `SetAddrs`/`SetRole`) an unknown
    /// node. Removing an unknown node is not an error.
    pub fn apply(&mut self, change: MembershipChange) -> Result<(), MembershipError> {
        match change {
            MembershipChange::Add(member) => self.insert(member).map(drop),
            MembershipChange::Remove(id) => {
                self.remove(id);
                Ok(())
            }
            MembershipChange::SetAddrs(id, addrs) => {
                if addrs.len() > MAX_ADDRS_PER_NODE {
                    return Err(MembershipError::TooManyAddrs {
                        id,
                        count: addrs.len(),
                    });
                }
                let node = self
                    .nodes
                    .get_mut(&id)
                    .ok_or(MembershipError::UnknownNode(id))?;
                node.addrs = addrs;
                Ok(())
            }
            MembershipChange::SetRole(id, role) => {
                let node = self
                    .nodes
                    .get_mut(&id)
                    .ok_or(MembershipError::UnknownNode(id))?;
                node.role = role;
                Ok(())
            }
        }
    }

    /// The node with this id.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.nodes.get(&id)
    }

    /// Whether this id is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The maximum number of nodes.
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }

    /// Every node, by increasing id.
    pub fn iter(&self) -> impl Iterator<Item = &Member> + '_ {
        self.nodes.values()
    }

    /// The ids of the group's nodes by increasing id, leaving out `except` (usually the local
    /// node, so a broadcast does not loop back).
    pub fn select(&self, group: Group, except: Option<NodeId>) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|m| group.includes(m.role) && Some(m.id) != except)
            .map(|m| m.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    fn sample() -> Membership {
        Membership::from_members([
            Member::new(1, Role::Member, addr()),
            Member::new(2, Role::Member, addr()),
            Member::new(3, Role::Follower, addr()),
            Member::new(4, Role::Temporary, addr()),
        ])
        .unwrap()
    }

    #[test]
    fn groups_select_by_role_and_skip_self() {
        let m = sample();
        let ids = |g, ex| {
            m.select(g, ex)
                .into_iter()
                .map(|n: NodeId| n.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Group::All, Some(NodeId(1))), [2, 3, 4]);
        assert_eq!(ids(Group::All, None), [1, 2, 3, 4]);
        assert_eq!(ids(Group::Members, Some(NodeId(1))), [2]);
        assert_eq!(ids(Group::Followers, Some(NodeId(1))), [3]);
        assert_eq!(ids(Group::Temporary, None), [4]);
    }

    #[test]
    fn changes_apply_and_unknown_nodes_are_refused() {
        let mut m = sample();
        m.apply(MembershipChange::SetRole(NodeId(4), Role::Member))
            .unwrap();
        assert_eq!(m.get(NodeId(4)).unwrap().role, Role::Member);
        let new: SocketAddr = "127.0.0.1:2".parse().unwrap();
        m.apply(MembershipChange::SetAddrs(NodeId(2), vec![new]))
            .unwrap();
        assert_eq!(m.get(NodeId(2)).unwrap().addrs, [new]);
        m.apply(MembershipChange::Remove(NodeId(2))).unwrap();
        assert!(!m.contains(NodeId(2)));
        m.apply(MembershipChange::Remove(NodeId(2))).unwrap();
        assert_eq!(
            m.apply(MembershipChange::SetRole(NodeId(2), Role::Member)),
            Err(MembershipError::UnknownNode(NodeId(2)))
        );
        m.apply(MembershipChange::Add(Member::without_addr(
            9,
            Role::Follower,
        )))
        .unwrap();
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn bounded_by_node_count_and_addresses() {
        let mut m = Membership::new(2);
        m.insert(Member::new(1, Role::Member, addr())).unwrap();
        m.insert(Member::new(2, Role::Member, addr())).unwrap();
        // Replacing an existing node is allowed at the limit; a new one is not.
        assert!(m
            .insert(Member::new(2, Role::Follower, addr()))
            .unwrap()
            .is_some());
        assert_eq!(
            m.insert(Member::new(3, Role::Member, addr())),
            Err(MembershipError::Full { max: 2 })
        );
        let mut many = Member::new(1, Role::Member, addr());
        many.addrs = vec![addr(); MAX_ADDRS_PER_NODE + 1];
        assert!(matches!(
            m.insert(many),
            Err(MembershipError::TooManyAddrs { .. })
        ));
        assert!(matches!(
            m.apply(MembershipChange::SetAddrs(NodeId(1), vec![addr(); 9])),
            Err(MembershipError::TooManyAddrs { .. })
        ));
        assert_eq!(m.len(), 2);
    }
}
