//! Reference groups "ISN", "CAck" and "integrity" (spec section 5, rules 1, 1.2, 3.2, 3.3):
//! sequence numbers progress from the client's ISN; a CAck acknowledges everything up to its
//! sequence number, so nothing is resent after it; a lengthened payload is truncated to its
//! size and delivered, a shortened or corrupted one is never delivered.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hawser_proto::lsp::{ConnStats, Connection};
use hawser_proto::wire::{Codec, ConnId, MsgType, SeqNum};
use hawser_sim::{FaultConfig, Verdict};

/// Reference `TestBasicISN` (K 5, δ 2000 ms, ω 1, M 1): 100 clients with random ISNs in
/// 1..=256 each write one message. Watching every datagram, each connection's first three
/// messages, heartbeats aside, carry `isn` (the Connect's Ack), `isn + 1` (the Data) and
/// `isn + 1` (its Ack); and exactly the 100 connections (plus id 0, the Connects) appear.
fn basic_isn(codec: Codec) {
    let mut c = Cluster::new(codec, params(5, 2000, 1, 0, 1));
    c.net.record_trace(usize::MAX);
    for _ in 0..100 {
        let isn = c.rng.u64(1..=256);
        c.add_client(isn);
    }
    c.connect_all();
    for i in 0..100 {
        c.write(i, &[Bytes::from_static(b"TestMessage")]);
    }
    let limit = Duration::from_millis(1000);
    assert!(c.net.elapsed() <= limit);
    assert!(c.run_until(limit - c.net.elapsed(), |c| c.server_read_total() == 100));
    c.run_for(c.epoch());
    let mut per_conn: BTreeMap<ConnId, Vec<u64>> = BTreeMap::new();
    for (_, m) in c.sent_messages() {
        let seqs = per_conn.entry(m.conn).or_default();
        if !m.is_heartbeat() {
            seqs.push(m.seq.0);
        }
    }
    assert_eq!(
        per_conn.len(),
        101,
        "connections seen: {:?}",
        per_conn.keys()
    );
    assert_eq!(per_conn[&ConnId(0)].len(), 100, "one Connect per client");
    for i in 0..100 {
        let isn = c.isns[i];
        let seqs = &per_conn[&c.conn_id(i)];
        assert!(seqs.len() >= 3, "client {i}: too few messages: {seqs:?}");
        assert_eq!(seqs[..3], [isn, isn + 1, isn + 1], "client {i} (ISN {isn})");
        assert_eq!(c.server_reads(i), [Bytes::from_static(b"TestMessage")]);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ClientsToServer,
    ServerToClients,
}

/// The reference's "ACK coalescing middlebox", on the receiver's side of each connection:
/// acknowledgements of all but the last message are dropped (or, with `random_drops`, half of
/// them), and the last one is turned into a CAck. Afterwards the senders are watched for 12
/// epochs: not one Data message may be sent.
fn cack(
    codec: Codec,
    dir: Dir,
    window: u32,
    max_unacked: u32,
    random_writes: bool,
    random_drops: bool,
) {
    let clients = 5;
    let mut c = Cluster::new(codec, params(5, 1000, window, 0, max_unacked));
    for _ in 0..clients {
        let isn = c.rng.u64(1..=256);
        c.add_client(isn);
    }
    c.connect_all();
    let unexpected = Arc::new(Mutex::new(Vec::new()));
    let rewritten = Arc::new(Mutex::new(BTreeMap::<ConnId, u32>::new()));
    let mut sent = Vec::new();
    for i in 0..clients {
        let writes = if random_writes {
            c.rng.usize(1..=max_unacked as usize)
        } else {
            max_unacked as usize
        };
        sent.push(c.msgs(&format!("c{i}"), writes));
        let last = SeqNum(c.isns[i] + writes as u64);
        let (unexpected, rewritten) = (Arc::clone(&unexpected), Arc::clone(&rewritten));
        let mut rng = fastrand::Rng::with_seed(c.rng.u64(..));
        let link = ack_link(&c, dir, i);
        c.hook(link, move |m| {
            if !matches!(m.kind, MsgType::Ack | MsgType::CAck | MsgType::SAck) || m.seq.0 == 0 {
                return Verdict::Pass;
            }
            if m.seq < last {
                if !random_drops || rng.bool() {
                    return Verdict::Drop;
                }
            } else if m.seq == last {
                m.kind = MsgType::CAck;
                m.payload = None;
                *rewritten
                    .lock()
                    .expect("not poisoned")
                    .entry(m.conn)
                    .or_default() += 1;
            } else {
                unexpected.lock().expect("not poisoned").push(m.clone());
            }
            Verdict::Pass
        });
    }
    for (i, m) in sent.iter().enumerate() {
        match dir {
            Dir::ClientsToServer => c.write(i, m),
            Dir::ServerToClients => c.server_write(i, m),
        }
    }
    c.run_for(c.epoch() * 2);
    let sniffed = DataCounter::default();
    for i in 0..clients {
        let (ack, data) = (ack_link(&c, dir, i), data_link(&c, dir, i));
        c.unhook(ack);
        c.count_data(data, &sniffed);
    }
    c.run_for(c.epoch() * 12);
    assert_eq!(sniffed.total(), 0, "Data sent after everything was CAck'd");
    assert!(
        unexpected.lock().expect("not poisoned").is_empty(),
        "{unexpected:?}"
    );
    let rewritten = rewritten.lock().expect("not poisoned").clone();
    for (i, m) in sent.iter().enumerate() {
        let got = match dir {
            Dir::ClientsToServer => c.server_reads(i),
            Dir::ServerToClients => c.reads(i),
        };
        assert_eq!(got, &m[..], "client {i}");
        assert!(
            rewritten.get(&c.conn_id(i)).is_some_and(|n| *n >= 1),
            "client {i}: no CAck"
        );
        let sender = sender_stats(&c, dir, i);
        assert_eq!(sender.retransmits, 0, "client {i}: resent despite the CAck");
        assert_eq!(sender.data_sent, m.len() as u64);
    }
}

fn data_link(c: &Cluster, dir: Dir, i: usize) -> (SocketAddr, SocketAddr) {
    match dir {
        Dir::ClientsToServer => c.up(i),
        Dir::ServerToClients => c.down(i),
    }
}

fn ack_link(c: &Cluster, dir: Dir, i: usize) -> (SocketAddr, SocketAddr) {
    match dir {
        Dir::ClientsToServer => c.down(i),
        Dir::ServerToClients => c.up(i),
    }
}

fn sender_stats(c: &Cluster, dir: Dir, i: usize) -> ConnStats {
    *sender(c, dir, i).stats()
}

fn sender(c: &Cluster, dir: Dir, i: usize) -> &Connection {
    match dir {
        Dir::ClientsToServer => c.client_conn(i),
        Dir::ServerToClients => c.server_conn(i),
    }
}

fn receiver(c: &Cluster, dir: Dir, i: usize) -> &Connection {
    match dir {
        Dir::ClientsToServer => c.server_conn(i),
        Dir::ServerToClients => c.client_conn(i),
    }
}

/// One payload fault on every data link; `n` messages per client (ω 5, K 5, δ 500 ms).
/// Returns the cluster, what was sent, and the Data messages put on the data links.
fn damaged(
    codec: Codec,
    dir: Dir,
    fault: FaultConfig,
    n: usize,
) -> (Cluster, Vec<Vec<Bytes>>, DataCounter) {
    let clients = 2;
    let mut c = Cluster::new(codec, params(5, 500, 5, 0, 5));
    c.add_clients(clients);
    c.connect_all();
    let counter = DataCounter::default();
    for i in 0..clients {
        let link = data_link(&c, dir, i);
        c.count_data(link, &counter);
        c.set_faults(link, fault.clone());
    }
    let sent: Vec<_> = (0..clients).map(|i| c.msgs(&format!("c{i}"), n)).collect();
    for (i, m) in sent.iter().enumerate() {
        match dir {
            Dir::ClientsToServer => c.write(i, m),
            Dir::ServerToClients => c.server_write(i, m),
        }
    }
    (c, sent, counter)
}

fn received(c: &Cluster, dir: Dir, i: usize) -> &[Bytes] {
    match dir {
        Dir::ClientsToServer => c.server_reads(i),
        Dir::ServerToClients => c.reads(i),
    }
}

/// Spec 3.3: a payload longer than its Size is truncated to Size and delivered. Every Data
/// message is lengthened; every one is counted as truncated; all arrive intact.
fn lengthened(codec: Codec, dir: Dir) {
    let fault = FaultConfig::default().with_lengthen_percent(100.0);
    let (mut c, sent, counter) = damaged(codec, dir, fault, 10);
    let done = c.run_until(c.epoch() * 4, |c| {
        (0..2).all(|i| received(c, dir, i).len() == 10 && sender(c, dir, i).pending() == 0)
    });
    assert!(done, "lengthened messages were not delivered");
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(
            received(&c, dir, i),
            &m[..],
            "client {i}: truncated back to Size"
        );
        let seen: u32 = counter.per_seq(c.conn_id(i)).iter().map(|(_, n)| n).sum();
        let stats = receiver(&c, dir, i).stats();
        assert_eq!(
            stats.truncated,
            u64::from(seen),
            "client {i}: every arrival was truncated"
        );
        assert_eq!((stats.bad_size, stats.bad_checksum), (0, 0));
    }
}

/// Spec 3.3: shortened (or corrupted) payloads are dropped as if never received: for three
/// and a half epochs every send of every message is damaged, nothing is delivered or acknowledged and
/// each arrival is counted; once the damage stops, everything is delivered in order.
fn never_delivered(codec: Codec, dir: Dir, fault: FaultConfig, shortened: bool) {
    let (mut c, sent, counter) = damaged(codec, dir, fault, 10);
    // Mid-epoch, so that no resend is still on its way.
    c.run_for(c.epoch() * 3 + c.epoch() / 2);
    for i in 0..2 {
        assert!(
            received(&c, dir, i).is_empty(),
            "client {i}: a damaged payload was delivered"
        );
        let recv = receiver(&c, dir, i);
        assert_eq!(
            (
                recv.readable(),
                recv.buffered_out_of_order(),
                recv.delivered()
            ),
            (0, 0, 0)
        );
        let stats = *recv.stats();
        let seen: u32 = counter.per_seq(c.conn_id(i)).iter().map(|(_, n)| n).sum();
        assert!(
            seen > 5,
            "client {i}: the first 5 were not even resent ({seen})"
        );
        let counted = if shortened {
            stats.bad_size
        } else {
            stats.bad_checksum
        };
        assert_eq!(counted, u64::from(seen), "client {i}: {stats:?}");
        assert_eq!(
            (stats.acks_sent, stats.data_received),
            (0, 0),
            "client {i}: {stats:?}"
        );
        assert_eq!(sender(&c, dir, i).in_flight(), 5);
    }
    for i in 0..2 {
        let link = data_link(&c, dir, i);
        c.set_faults(link, FaultConfig::none());
    }
    let done = c.run_until(c.epoch() * 6, |c| {
        (0..2).all(|i| received(c, dir, i).len() == 10)
    });
    assert!(done, "nothing got through once the damage stopped");
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(received(&c, dir, i), &m[..]);
    }
    assert!(c.app.server_ended.is_empty() && c.app.client_ended.iter().all(Option::is_none));
}

/// Every payload fault at once on every link, echoing: whatever is delivered is intact, and
/// everything is delivered exactly once, in order.
fn all_damage(codec: Codec) {
    let mut c = Cluster::new(codec, params(10, 200, 8, 2, 8));
    c.app.echo = true;
    c.add_clients(3);
    c.connect_all();
    c.net.set_faults_all(
        FaultConfig::default()
            .with_lengthen_percent(40.0)
            .with_shorten_percent(20.0)
            .with_corrupt_percent(20.0),
    );
    let sent: Vec<_> = (0..3).map(|i| c.msgs(&format!("c{i}"), 30)).collect();
    for (i, m) in sent.iter().enumerate() {
        c.write(i, m);
    }
    let done = c.run_until(Duration::from_secs(60), |c| {
        (0..3).all(|i| c.reads(i).len() == 30)
    });
    assert!(done, "not everything came back");
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(c.server_reads(i), &m[..]);
        assert_eq!(c.reads(i), &m[..]);
    }
    let s = c.server_ep().stats().conns;
    assert!(
        s.truncated > 0 && s.bad_size > 0 && s.bad_checksum > 0,
        "{s:?}"
    );
}

both_codecs! {
    basic_isn_100_clients: |codec| basic_isn(codec);
    cack_server1_replaces_a_single_ack: |codec| cack(codec, Dir::ClientsToServer, 1, 1, false, false);
    cack_server2_replaces_50_acks: |codec| cack(codec, Dir::ClientsToServer, 100, 50, false, false);
    cack_server3_replaces_a_random_number_of_acks:
        |codec| cack(codec, Dir::ClientsToServer, 100, 100, true, false);
    cack_server4_random_ack_drops_then_one_cack:
        |codec| cack(codec, Dir::ClientsToServer, 100, 100, true, true);
    cack_client1_replaces_a_single_ack: |codec| cack(codec, Dir::ServerToClients, 1, 1, false, false);
    cack_client2_replaces_50_acks: |codec| cack(codec, Dir::ServerToClients, 100, 50, false, false);
    cack_client3_random_ack_drops_then_one_cack:
        |codec| cack(codec, Dir::ServerToClients, 100, 100, true, true);
    lengthened_payload_is_truncated_and_delivered_to_server:
        |codec| lengthened(codec, Dir::ClientsToServer);
    lengthened_payload_is_truncated_and_delivered_to_client:
        |codec| lengthened(codec, Dir::ServerToClients);
    shortened_payload_is_never_delivered_to_server: |codec| never_delivered(
        codec,
        Dir::ClientsToServer,
        FaultConfig::default().with_shorten_percent(100.0),
        true,
    );
    shortened_payload_is_never_delivered_to_client: |codec| never_delivered(
        codec,
        Dir::ServerToClients,
        FaultConfig::default().with_shorten_percent(100.0),
        true,
    );
    corrupted_payload_is_never_delivered_to_server: |codec| never_delivered(
        codec,
        Dir::ClientsToServer,
        FaultConfig::default().with_corrupt_percent(100.0),
        false,
    );
    corrupted_payload_is_never_delivered_to_client: |codec| never_delivered(
        codec,
        Dir::ServerToClients,
        FaultConfig::default().with_corrupt_percent(100.0),
        false,
    );
    every_payload_fault_at_once_still_delivers_intact: |codec| all_damage(codec);
}
