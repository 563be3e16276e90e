//! The node test suite, run against the in-memory network, the default network on 127.0.0.1
//! (TCP + UDP), the default network with reliable delivery over LSP, and the
//! default network with reliable delivery over each session transport (`ws://`, `mem://`,
//! `lsp://`, `uds://`; unreliable datagrams still go over UDP).
//!
//! What a transport can change runs on every network: delivery, order, back-pressure,
//! cancel safety, a connection closed and dialled again, a node restarted at its address, the
//! handler and the tasks left at stop. What the engine decides alone (broadcast groups, typed
//! errors, full queues, the queue deadline, membership changes) is asserted on simulated time
//! in `hawser-sim` (`tests/node_*.rs`), and runs here once, on the in-memory network, as a
//! check of the shell's wiring.

mod node_common;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::FutureExt;
use hawser_net::node::{
    Delivery, Group, Member, MembershipChange, NodeId, QueueLimits, Role, SendError,
};
use node_common::{eventually, next, quiet, stop_all, suite, Cluster, Kind, WAIT};

/// 4 nodes exchange reliable and unreliable messages, each to each.
async fn exchange(kind: Kind) {
    let mut c = Cluster::members(kind, 4);
    let nodes = c.start_all().await;
    let mut inboxes: Vec<_> = nodes.iter().map(|n| n.incoming()).collect();
    for from in &nodes {
        for to in 1..=4u64 {
            if to != from.id().0 {
                let msg = format!("r {} {}", from.id().0, to);
                from.try_send(to, msg, Delivery::Reliable).unwrap();
            }
        }
    }
    for (i, inbox) in inboxes.iter_mut().enumerate() {
        let mut got: Vec<u64> = Vec::new();
        for _ in 0..3 {
            let m = next(inbox).await;
            assert_eq!(m.delivery, Delivery::Reliable);
            assert_eq!(m.payload, format!("r {} {}", m.from.0, i + 1));
            got.push(m.from.0);
        }
        got.sort();
        assert_eq!(got.len(), 3);
        assert!(!got.contains(&(i as u64 + 1)));
    }
    // Unreliable: on loopback nothing is lost in practice; retry a few times to be sure.
    let mut inbox2 = inboxes.remove(1);
    let mut got = None;
    for _ in 0..5 {
        nodes[0].try_send(2, "u", Delivery::Unreliable).unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), inbox2.recv()).await {
            got = Some(m);
            break;
        }
    }
    let m = got.expect("no datagram arrived in 5 tries");
    assert_eq!(
        (m.from, m.delivery, &m.payload[..]),
        (NodeId(1), Delivery::Unreliable, &b"u"[..])
    );
    let s = nodes[0].peer_stats(2).unwrap();
    assert!(s.sent >= 2 && s.bytes_out >= 5, "{s:?}");
    stop_all(&nodes).await;
}

/// A broadcast to each group reaches exactly that group, never the sender.
async fn broadcast_groups(kind: Kind) {
    let roles = [
        (1, Role::Member),
        (2, Role::Member),
        (3, Role::Follower),
        (4, Role::Temporary),
        (5, Role::Member),
    ];
    let mut c = Cluster::new(kind, &roles);
    let nodes = c.start_all().await;
    let mut inboxes: Vec<_> = nodes.iter().map(|n| n.incoming()).collect();
    let cases = [
        (Group::Members, vec![2, 5]),
        (Group::Followers, vec![3]),
        (Group::Temporary, vec![4]),
        (Group::All, vec![2, 3, 4, 5]),
    ];
    for (group, expect) in cases {
        let tag = format!("{group:?}");
        let report = nodes[0].broadcast(group, tag.clone(), Delivery::Reliable);
        assert!(report.is_all_ok(), "{report:?}");
        let to: Vec<u64> = report.delivered().iter().map(|n| n.0).collect();
        assert_eq!(to, expect, "{group:?}");
        for id in &expect {
            let m = next(&mut inboxes[*id as usize - 1]).await;
            assert_eq!((m.from, &m.payload[..]), (NodeId(1), tag.as_bytes()));
        }
    }
    for inbox in &mut inboxes {
        assert!(
            quiet(inbox, Duration::from_millis(100)).await,
            "stray message"
        );
    }
    // Only when asked does a broadcast include the sender.
    let report = nodes[0].broadcast_including_self(Group::Members, "me too", Delivery::Reliable);
    assert_eq!(report.delivered(), [NodeId(1), NodeId(2), NodeId(5)]);
    assert_eq!(next(&mut inboxes[0]).await.payload, "me too");
    stop_all(&nodes).await;
}

/// Two senders, 500 reliable messages each: each sender's order is kept.
async fn per_sender_order(kind: Kind) {
    let mut c = Cluster::members(kind, 3);
    let nodes = c.start_all().await;
    let mut inbox = nodes[2].incoming();
    for i in 0..500u32 {
        for n in &nodes[..2] {
            n.send(3, i.to_be_bytes().to_vec(), Delivery::Reliable)
                .await
                .unwrap();
        }
    }
    let mut next_seq: HashMap<NodeId, u32> = HashMap::new();
    for _ in 0..1000 {
        let m = next(&mut inbox).await;
        let seq = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
        let expected = next_seq.entry(m.from).or_insert(0);
        assert_eq!(seq, *expected, "from {}", m.from);
        *expected += 1;
    }
    stop_all(&nodes).await;
}

/// Unknown node, too large (reliable and unreliable), stopped: typed errors at once.
async fn errors_at_once(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.max_frame = 1000;
    c.settings.datagram_limit = 100;
    let nodes = c.start_all().await;
    let n = &nodes[0];
    assert_eq!(
        n.try_send(9, "x", Delivery::Reliable),
        Err(SendError::UnknownNode(NodeId(9)))
    );
    // The same bound over every transport (LSP splits and joins large messages).
    let max = 1000;
    let err = n
        .try_send(2, vec![0u8; 1001], Delivery::Reliable)
        .unwrap_err();
    assert_eq!(err, SendError::TooLarge { len: 1001, max });
    let err = n
        .try_send(2, vec![0u8; 101], Delivery::Unreliable)
        .unwrap_err();
    assert_eq!(err, SendError::TooLarge { len: 101, max: 100 });
    stop_all(&nodes).await;
    assert_eq!(
        n.try_send(2, "x", Delivery::Reliable),
        Err(SendError::Stopped)
    );
    let r = tokio::time::timeout(WAIT, n.send(2, "x", Delivery::Reliable))
        .await
        .unwrap();
    assert_eq!(r, Err(SendError::Stopped));
}

/// A full queue is an error to the caller, counted; `send` waits for room instead.
async fn full_queue(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.queue = QueueLimits::default()
        .with_max_messages(5)
        .with_deadline(Duration::from_secs(30));
    let mut nodes = c.start_all().await;
    let b = nodes.pop().unwrap();
    b.stop().await; // node 2 is down: its queue on node 1 fills
    drop(b);
    let a = nodes.pop().unwrap();
    for i in 0..5u8 {
        a.try_send(2, vec![i], Delivery::Reliable).unwrap();
    }
    // Node 2 is down, so nothing drains the queue: a `try_send` that waited for room would
    // never return. It fails at once, and the queue is still full after it.
    assert_eq!(
        a.try_send(2, vec![5], Delivery::Reliable),
        Err(SendError::QueueFull(NodeId(2)))
    );
    let s = a.peer_stats(2).unwrap();
    assert_eq!((s.queued, s.dropped_full), (5, 1), "{s:?}");
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.send(2, vec![5], Delivery::Reliable).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "send must wait for room");
    let b = c.start(2).await;
    let mut inbox = b.incoming();
    tokio::time::timeout(WAIT, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    for i in 0..6u8 {
        assert_eq!(next(&mut inbox).await.payload[..], [i]);
    }
    stop_all(&[a, b]).await;
}

/// `send_batch` is cancel-safe: dropped while it waits for room, it leaves in the batch, in
/// order, exactly the messages it did not queue; sent again, each message arrives once, in
/// order, none lost or duplicated.
async fn batch_cancel(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.queue = QueueLimits::default()
        .with_max_messages(5)
        .with_deadline(Duration::from_secs(30));
    let mut nodes = c.start_all().await;
    // Node 2 is down before anyone connected to it: its queue on node 1 can only fill.
    nodes.pop().unwrap().stop().await;
    let a = nodes.pop().unwrap();
    let msg = |i: u8| bytes::Bytes::from(vec![i; 3]);
    let mut batch: VecDeque<_> = (0..12u8).map(msg).collect();
    // Polled once, it queues what fits, then waits for room; dropped there.
    let first = a
        .send_batch(2, &mut batch, Delivery::Reliable)
        .now_or_never();
    assert!(first.is_none(), "it waited for room");
    assert_eq!(batch, (5..12u8).map(msg).collect::<VecDeque<_>>());
    assert_eq!(a.peer_stats(2).unwrap().queued, 5);
    // Dropped again at once: nothing more was queued, nothing taken from the batch.
    assert!(a
        .send_batch(2, &mut batch, Delivery::Reliable)
        .now_or_never()
        .is_none());
    assert_eq!(batch.len(), 7);
    let b = c.start(2).await;
    let mut inbox = b.incoming();
    tokio::time::timeout(WAIT, a.send_batch(2, &mut batch, Delivery::Reliable))
        .await
        .unwrap()
        .unwrap();
    assert!(batch.is_empty());
    for i in 0..12u8 {
        assert_eq!(next(&mut inbox).await.payload, msg(i));
    }
    assert!(
        quiet(&mut inbox, Duration::from_millis(200)).await,
        "a duplicate"
    );
    stop_all(&[a, b]).await;
}

/// A datagram that finds the incoming queue full is dropped and counted once in
/// `NodeStats::incoming_dropped`: what is read and what was dropped add up to what arrived.
async fn incoming_full(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.incoming_capacity = 4;
    let nodes = c.start_all().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // Nobody reads node 2's incoming queue yet.
    let mut inbox = b.incoming();
    for i in 0..20u8 {
        a.try_send(2, vec![i], Delivery::Unreliable).unwrap();
    }
    eventually("node 2 received the 20 datagrams", || {
        b.peer_stats(1).is_some_and(|s| s.received == 20)
    })
    .await;
    let dropped = b.stats().incoming_dropped;
    assert!((1..20).contains(&dropped), "{dropped} dropped");
    let mut got = Vec::new();
    for _ in 0..20 - dropped {
        got.push(next(&mut inbox).await.payload[0]);
    }
    assert!(quiet(&mut inbox, Duration::from_millis(200)).await);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    assert_eq!(b.stats().incoming_dropped, dropped, "counted once");
    // Reliable messages are never dropped: they wait for room.
    for i in 0..10u8 {
        a.try_send(2, vec![i], Delivery::Reliable).unwrap();
    }
    for i in 0..10u8 {
        assert_eq!(next(&mut inbox).await.payload[..], [i]);
    }
    assert_eq!(b.stats().incoming_dropped, dropped);
    stop_all(&nodes).await;
}

/// Batch sends: everything queued arrives in order; a batch stops at a message too large or
/// a full queue, leaving it (and what follows) at the front; the waiting form waits for room.
async fn batch_send(kind: Kind) {
    let mut c = Cluster::members(kind, 3);
    c.settings.max_frame = 1000;
    c.settings.incoming_capacity = 4;
    c.settings.queue = QueueLimits::default()
        .with_max_messages(8)
        .with_deadline(Duration::from_secs(30));
    let mut nodes = c.start_all().await;
    // Node 3 is down before anyone connected to it: its queue on node 1 can only fill. (A
    // node stopped after a connection to it was made may still look connected for a while,
    // over LSP until its loss is detected, and take what is queued meanwhile.)
    nodes.pop().unwrap().stop().await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let mut inbox = b.incoming();
    let msg = |i: u8| bytes::Bytes::from(vec![i; 3]);
    // 200 messages through a queue of 8 and an incoming queue of 4: the waiting form waits
    // for room, in order.
    let mut batch: VecDeque<_> = (0..200u8).map(msg).collect();
    let read = async {
        for i in 0..200u8 {
            assert_eq!(next(&mut inbox).await.payload, msg(i));
        }
    };
    let (sent, ()) = tokio::join!(
        tokio::time::timeout(WAIT, a.send_batch(2, &mut batch, Delivery::Reliable)),
        read
    );
    sent.unwrap().unwrap();
    assert!(batch.is_empty());
    // Too large in the middle: what is before it is queued, it stays at the front.
    let mut batch: VecDeque<_> = [msg(1), msg(2), bytes::Bytes::from(vec![0u8; 1001]), msg(3)]
        .into_iter()
        .collect();
    assert_eq!(a.try_send_batch(2, &mut batch, Delivery::Reliable), Ok(2));
    assert_eq!(batch.len(), 2);
    let err = a
        .try_send_batch(2, &mut batch, Delivery::Reliable)
        .unwrap_err();
    assert!(
        matches!(err, SendError::TooLarge { len: 1001, .. }),
        "{err}"
    );
    assert_eq!(batch.len(), 2, "a refused batch is left whole");
    for i in 1..=2u8 {
        assert_eq!(next(&mut inbox).await.payload, msg(i));
    }
    assert_eq!(
        a.try_send_batch(9, &mut batch, Delivery::Reliable),
        Err(SendError::UnknownNode(NodeId(9)))
    );
    // To itself: through the node's own incoming queue, waiting for room there when full.
    drop(a.incoming());
    let mut own = a.incoming();
    let mut batch: VecDeque<_> = (0..20u8).map(msg).collect();
    tokio::time::timeout(WAIT, async {
        let send = a.send_batch(1, &mut batch, Delivery::Reliable);
        let read = async {
            for i in 0..20u8 {
                assert_eq!(next(&mut own).await.payload, msg(i));
            }
        };
        let (sent, ()) = tokio::join!(send, read);
        sent
    })
    .await
    .expect("a batch to itself must not wait forever")
    .unwrap();
    drop(own);
    // A full queue (node 3 down): the batch stops at the ninth, which is counted once.
    drop(inbox);
    let mut batch: VecDeque<_> = (0..12u8).map(msg).collect();
    assert_eq!(a.try_send_batch(3, &mut batch, Delivery::Reliable), Ok(8));
    assert_eq!(batch.front(), Some(&msg(8)));
    assert_eq!(
        a.try_send_batch(3, &mut batch, Delivery::Reliable),
        Err(SendError::QueueFull(NodeId(3)))
    );
    assert_eq!(batch.len(), 4);
    let s = a.peer_stats(3).unwrap();
    assert_eq!((s.queued, s.dropped_full), (8, 2), "{s:?}");
    stop_all(&[a, b]).await;
}

/// A node stopped and restarted over a transport: its loss is noticed, dials to it fail while
/// it is down, and the node that had a connection to it reconnects to the new process and
/// delivers what waited, in order.
async fn restart_reconnects(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    // Long enough that nothing waits past it, however long the restart takes.
    c.settings.queue = QueueLimits::default().with_deadline(Duration::from_secs(30));
    let mut nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "before", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox).await.payload, "before");
    drop(inbox);
    nodes.pop().unwrap().stop().await;
    let a = nodes.pop().unwrap();
    // (Over LSP a stopped peer is noticed after its silent epochs, 100 ms here.)
    tokio::time::sleep(Duration::from_millis(150)).await;
    for i in 0..3 {
        a.try_send(2, format!("during {i}"), Delivery::Reliable)
            .unwrap();
    }
    eventually("a dial to the stopped node failed", || {
        a.peer_stats(2).unwrap().connect_failures >= 1
    })
    .await;
    let b = c.start(2).await;
    let mut inbox = b.incoming();
    for i in 0..3 {
        assert_eq!(next(&mut inbox).await.payload, format!("during {i}"));
    }
    let s = a.peer_stats(2).unwrap();
    assert_eq!(
        (s.reconnects, s.dropped_stale, s.queued),
        (1, 0, 0),
        "{s:?}"
    );
    stop_all(&[a, b]).await;
}

/// A node stopped and restarted: what waited less than the deadline is delivered, what
/// outlived it is dropped and counted; the caller never blocks.
async fn restart_within_deadline(kind: Kind) {
    let mut c = Cluster::members(kind, 3);
    let mut nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "before", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox).await.payload, "before");
    drop(inbox);
    nodes[1].stop().await;
    nodes.remove(1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    for i in 0..3 {
        nodes[0]
            .try_send(2, format!("old {i}"), Delivery::Reliable)
            .unwrap();
        nodes[1]
            .try_send(2, format!("old {i}"), Delivery::Reliable)
            .unwrap();
    }
    // The 1 s deadline passes while node 2 is down.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for i in 0..3 {
        nodes[0]
            .try_send(2, format!("new {i}"), Delivery::Reliable)
            .unwrap();
        nodes[1]
            .try_send(2, format!("new {i}"), Delivery::Reliable)
            .unwrap();
    }
    // (`try_send` never waits: with node 2 down, one that waited would not have returned.)
    let b = c.start(2).await;
    let mut inbox = b.incoming();
    let mut got: HashMap<NodeId, Vec<String>> = HashMap::new();
    for _ in 0..6 {
        let m = next(&mut inbox).await;
        got.entry(m.from)
            .or_default()
            .push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    for from in [1, 3] {
        assert_eq!(got[&NodeId(from)], ["new 0", "new 1", "new 2"]);
    }
    assert!(
        quiet(&mut inbox, Duration::from_millis(200)).await,
        "old messages arrived"
    );
    for n in [&nodes[0], &nodes[1]] {
        let s = n.peer_stats(2).unwrap();
        assert_eq!(s.dropped_stale, 3, "{s:?}");
        assert!(s.connect_failures >= 1, "{s:?}");
    }
    // Node 1 had a connection before the restart: it counts a reconnect.
    assert_eq!(nodes[0].peer_stats(2).unwrap().reconnects, 1);
    nodes.push(b);
    stop_all(&nodes).await;
}

/// 16 tasks send concurrently through clones of one node; all arrive, each task in order.
async fn concurrent_senders(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    let nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    let mut tasks = Vec::new();
    for t in 0..16u8 {
        let a = nodes[0].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100u8 {
                a.send(2, vec![t, i], Delivery::Reliable).await.unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
    }
    let mut next_i = [0u8; 16];
    for _ in 0..1600 {
        let m = next(&mut inbox).await;
        let (t, i) = (m.payload[0] as usize, m.payload[1]);
        assert_eq!(i, next_i[t], "task {t} out of order");
        next_i[t] += 1;
    }
    stop_all(&nodes).await;
}

/// Membership changes at run time: add a node, change its role, remove it.
async fn membership_changes(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    let nodes = c.start_all().await;
    c.roles.push((3, Role::Follower));
    let n3 = c.start(3).await;
    let mut inbox3 = n3.incoming();
    for n in &nodes {
        let m3 = c.membership().into_iter().find(|m| m.id.0 == 3).unwrap();
        n.change_membership(MembershipChange::Add(m3)).unwrap();
    }
    let report = nodes[0].broadcast(Group::Followers, "f", Delivery::Reliable);
    assert_eq!(report.delivered(), [NodeId(3)]);
    assert_eq!(next(&mut inbox3).await.payload, "f");
    nodes[0]
        .change_membership(MembershipChange::SetRole(NodeId(3), Role::Member))
        .unwrap();
    assert_eq!(
        nodes[0]
            .broadcast(Group::Followers, "x", Delivery::Reliable)
            .outcomes,
        []
    );
    nodes[0]
        .change_membership(MembershipChange::Remove(NodeId(3)))
        .unwrap();
    assert_eq!(
        nodes[0].try_send(3, "x", Delivery::Reliable),
        Err(SendError::UnknownNode(NodeId(3)))
    );
    assert_eq!(nodes[0].peer_stats(3), None);
    let err = nodes[0].change_membership(MembershipChange::SetRole(NodeId(3), Role::Member));
    assert!(err.is_err());
    let _ = Member::without_addr(3, Role::Member);
    stop_all(&nodes).await;
    n3.stop().await;
}

/// The callback-style handler receives every message; it ends at stop.
async fn on_receive_handler(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    let nodes = c.start_all().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    nodes[1].on_receive(move |m| {
        let _ = tx.send(m);
    });
    nodes[0].try_send(2, "cb", Delivery::Reliable).unwrap();
    let m = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "cb");
    stop_all(&nodes).await;
    assert!(rx.recv().await.is_none(), "handler still alive after stop");
}

/// An idle connection is closed after `idle_timeout`; the next message reconnects.
async fn idle_connection_closes(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.idle_timeout = Duration::from_millis(200);
    let nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "1", Delivery::Reliable).unwrap();
    next(&mut inbox).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[0].try_send(2, "2", Delivery::Reliable).unwrap();
    next(&mut inbox).await;
    eventually("reconnect counted", || {
        nodes[0].peer_stats(2).unwrap().reconnects == 1
    })
    .await;
    stop_all(&nodes).await;
}

/// Pinned peers write on one session both ways: the node that was dialled answers on the
/// dialler's session, which stays open while either node writes on it (the dialler's idle
/// close does not cut the other node's writer), and ends once both went idle.
async fn shared_session(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.idle_timeout = Duration::from_millis(300);
    let nodes = c.start_all().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (mut inbox_a, mut inbox_b) = (a.incoming(), b.incoming());
    a.try_send(2, "ping", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox_b).await.payload, "ping");
    b.try_send(1, "pong", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox_a).await.payload, "pong");
    assert_eq!(
        (a.stats().shared_sessions, b.stats().shared_sessions),
        (0, 1)
    );
    // Node 2 writes for twice node 1's idle timeout; node 1 stays silent, so its writer
    // closes, but the session stays: node 2 never reconnects.
    for i in 0..12 {
        b.try_send(1, format!("b {i}"), Delivery::Reliable).unwrap();
        assert_eq!(next(&mut inbox_a).await.payload, format!("b {i}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Node 1's writer has been idle for 600 ms: closed.
    a.try_send(2, "again", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox_b).await.payload, "again");
    assert_eq!(a.peer_stats(2).unwrap().reconnects, 1);
    assert_eq!(b.peer_stats(1).unwrap().reconnects, 0);
    // Node 1 wrote again on the session node 2 kept open.
    assert_eq!(a.stats().shared_sessions, 1);
    // Both idle: the session ends, and the next message dials a new one.
    tokio::time::sleep(Duration::from_millis(900)).await;
    a.try_send(2, "new", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox_b).await.payload, "new");
    b.try_send(1, "on it", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox_a).await.payload, "on it");
    assert_eq!(
        (a.stats().shared_sessions, b.stats().shared_sessions),
        (1, 2)
    );
    stop_all(&nodes).await;
}

/// After stop() returns, no task of the nodes is left on the runtime.
async fn stop_leaves_no_task(kind: Kind) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let mut c = Cluster::members(kind, 3);
    let nodes = c.start_all().await;
    let mut inbox = nodes[2].incoming();
    nodes[0].broadcast(Group::All, "x", Delivery::Reliable);
    nodes[1].broadcast(Group::All, "y", Delivery::Unreliable);
    next(&mut inbox).await;
    nodes[2].on_receive(|_| {});
    assert!(metrics.num_alive_tasks() > before);
    stop_all(&nodes).await;
    // Tasks aborted by dropping an LSP client or server end at their next poll.
    drop(nodes);
    drop(inbox);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    eventually("no task left", || metrics.num_alive_tasks() == before).await;
}

// What the engine decides alone: asserted on simulated time in `hawser-sim`, and here once, on
// the in-memory network, for the shell's wiring (and the shell's own incoming queue).
suite!(Memory: exchange, broadcast_groups, per_sender_order, errors_at_once, full_queue, batch_send, batch_cancel,
    incoming_full, restart_reconnects, restart_within_deadline, concurrent_senders, membership_changes,
    on_receive_handler, idle_connection_closes, stop_leaves_no_task);
suite!(Tcp: exchange, shared_session, per_sender_order, batch_send, batch_cancel, restart_reconnects, concurrent_senders,
    on_receive_handler, idle_connection_closes, stop_leaves_no_task);
suite!(Lsp: exchange, per_sender_order, batch_send, batch_cancel, restart_reconnects, concurrent_senders,
    on_receive_handler, idle_connection_closes, stop_leaves_no_task);

// Reliable messages over session transports (`Settings::transports`); each node also listens
// on TCP + UDP, which carries only datagrams (and reachability addresses) here.
suite!(SessionWs: exchange, shared_session, per_sender_order, batch_send, batch_cancel, restart_reconnects, concurrent_senders,
    on_receive_handler, idle_connection_closes, stop_leaves_no_task);
suite!(SessionMem: exchange, shared_session, per_sender_order, batch_send, batch_cancel, restart_reconnects, concurrent_senders,
    on_receive_handler, idle_connection_closes, stop_leaves_no_task);
suite!(SessionLsp: exchange, shared_session, per_sender_order, batch_send, batch_cancel, restart_reconnects, concurrent_senders,
    on_receive_handler, idle_connection_closes, stop_leaves_no_task);
// A transport written outside hawser, through its public seam (`node_common::uds`).
suite!(SessionUds: exchange, shared_session, per_sender_order, batch_send, batch_cancel, restart_reconnects, concurrent_senders,
    on_receive_handler, idle_connection_closes, stop_leaves_no_task);
