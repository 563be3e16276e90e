//! Reference groups "window / max-unacked", "scattered" and "out of window" (spec section 5,
//! rules 3.2 and 3.3): with the peer's acknowledgements cut, exactly `min(ω, M)` messages get
//! through, the rest follow once acks flow again; a receiver buffers messages that arrive ahead
//! of a gap and delivers everything in order; the window slides only past its oldest message.

#[macro_use]
mod common;

use bytes::Bytes;
use common::*;
use hawser_proto::lsp::Params;
use hawser_proto::wire::{Codec, MsgType, SeqNum};
use hawser_sim::{FaultConfig, Verdict};

/// Which way the data of a phase flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ClientsToServer,
    ServerToClients,
}

/// The link carrying data from the sender to the receiver, for client `i`.
fn data_link(c: &Cluster, dir: Dir, i: usize) -> (std::net::SocketAddr, std::net::SocketAddr) {
    match dir {
        Dir::ClientsToServer => c.up(i),
        Dir::ServerToClients => c.down(i),
    }
}

/// The link carrying the receiver's acknowledgements back, for client `i`.
fn ack_link(c: &Cluster, dir: Dir, i: usize) -> (std::net::SocketAddr, std::net::SocketAddr) {
    match dir {
        Dir::ClientsToServer => c.down(i),
        Dir::ServerToClients => c.up(i),
    }
}

fn send(c: &mut Cluster, dir: Dir, i: usize, msgs: &[Bytes]) {
    match dir {
        Dir::ClientsToServer => c.write(i, msgs),
        Dir::ServerToClients => c.server_write(i, msgs),
    }
}

fn received(c: &Cluster, dir: Dir, i: usize) -> &[Bytes] {
    match dir {
        Dir::ClientsToServer => c.server_reads(i),
        Dir::ServerToClients => c.reads(i),
    }
}

fn sender_conn(c: &Cluster, dir: Dir, i: usize) -> &hawser_proto::lsp::Connection {
    match dir {
        Dir::ClientsToServer => c.client_conn(i),
        Dir::ServerToClients => c.server_conn(i),
    }
}

fn receiver_conn(c: &Cluster, dir: Dir, i: usize) -> &hawser_proto::lsp::Connection {
    match dir {
        Dir::ClientsToServer => c.server_conn(i),
        Dir::ServerToClients => c.client_conn(i),
    }
}

/// Reference `runMaxCapacityTest`, both directions: the receiver's writes are all dropped while
/// the sender streams `msgs` messages, so exactly `min(ω, M)` reach it and stay in flight; then
/// its writes flow again and everything arrives, within `max_epochs` epochs in all.
fn max_capacity(codec: Codec, clients: usize, msgs: usize, p: Params, max_epochs: u32) {
    let limit = p.in_flight_limit() as usize;
    assert!(
        msgs > limit,
        "the test needs more messages than can be in flight"
    );
    let mut c = Cluster::new(codec, p);
    c.add_clients(clients);
    c.connect_all();
    let start = c.net.now();
    for dir in [Dir::ClientsToServer, Dir::ServerToClients] {
        let sent: Vec<_> = (0..clients)
            .map(|i| c.msgs(&format!("{dir:?}{i}"), msgs))
            .collect();
        for i in 0..clients {
            c.set_faults(ack_link(&c, dir, i), FaultConfig::drop_all());
        }
        for (i, m) in sent.iter().enumerate() {
            send(&mut c, dir, i, m);
        }
        // Well under an epoch: nothing is resent, nobody is declared lost.
        c.run_for(c.epoch() / 5);
        for (i, m) in sent.iter().enumerate() {
            assert_eq!(
                received(&c, dir, i),
                &m[..limit],
                "{dir:?}, client {i}: first phase"
            );
            let sender = sender_conn(&c, dir, i);
            assert_eq!(
                sender.in_flight() as usize,
                limit,
                "{dir:?}, client {i}: in flight"
            );
            assert_eq!(
                sender.pending(),
                msgs,
                "{dir:?}, client {i}: nothing acknowledged"
            );
        }
        for i in 0..clients {
            c.set_faults(ack_link(&c, dir, i), FaultConfig::none());
        }
        let all = c.run_until(c.epoch() * max_epochs, |c| {
            (0..clients).all(|i| received(c, dir, i).len() == msgs)
        });
        assert!(
            all,
            "{dir:?}: not everything arrived once acks flowed again"
        );
        for (i, m) in sent.iter().enumerate() {
            assert_eq!(received(&c, dir, i), &m[..], "{dir:?}, client {i}");
        }
    }
    assert!(
        c.net.now() - start <= c.epoch() * max_epochs,
        "took {:?}",
        c.net.now() - start
    );
    assert!(c.app.server_ended.is_empty() && c.app.client_ended.iter().all(Option::is_none));
}

both_codecs! {
    window1_one_client_w5: |codec| max_capacity(codec, 1, 10, params(3, 500, 5, 0, 5), 5);
    window2_five_clients_w10: |codec| max_capacity(codec, 5, 25, params(3, 500, 10, 0, 10), 5);
    window3_ten_clients_w10: |codec| max_capacity(codec, 10, 25, params(3, 500, 10, 0, 10), 5);
    max_unacked1_m2_under_w5: |codec| max_capacity(codec, 1, 10, params(3, 500, 5, 0, 2), 5);
    max_unacked2_m4_under_w10: |codec| max_capacity(codec, 5, 25, params(3, 500, 10, 0, 4), 5);
    max_unacked3_w3_under_m10: |codec| max_capacity(codec, 3, 25, params(3, 500, 3, 0, 10), 5);
    out_of_window1_w15_m10: |codec| max_capacity(codec, 1, 30, params(5, 500, 15, 10, 10), 5);
    out_of_window2_w20_m10_five_clients: |codec| max_capacity(codec, 5, 30, params(5, 500, 20, 10, 10), 5);
    scattered1_one_client: |codec| scattered(codec, 1);
    scattered2_five_clients: |codec| scattered(codec, 5);
    scattered3_ten_clients: |codec| scattered(codec, 10);
    out_of_order_acks_free_m_slots_but_the_window_waits_for_its_oldest:
        |codec| oldest_unacked_holds_the_window(codec);
    data_beyond_the_receive_window_is_refused_unacknowledged: |codec| beyond_window(codec);
}

/// Reference `runScatteredMsgsTest` (K 3, δ 1000 ms, ω 20, 10 messages, 5 epochs), both
/// directions: the first half is lost, the second half arrives and is buffered (nothing
/// delivered), then the first half is resent and everything is delivered in order.
fn scattered(codec: Codec, clients: usize) {
    let msgs = 10;
    let max_epochs = 5;
    let mut c = Cluster::new(codec, params(3, 1000, 20, 0, 20));
    c.add_clients(clients);
    c.connect_all();
    let start = c.net.now();
    for dir in [Dir::ClientsToServer, Dir::ServerToClients] {
        let sent: Vec<_> = (0..clients)
            .map(|i| c.msgs(&format!("{dir:?}{i}"), msgs))
            .collect();
        for i in 0..clients {
            c.set_faults(data_link(&c, dir, i), FaultConfig::drop_all());
        }
        for (i, m) in sent.iter().enumerate() {
            send(&mut c, dir, i, &m[..msgs / 2]);
        }
        for i in 0..clients {
            c.set_faults(data_link(&c, dir, i), FaultConfig::none());
        }
        for (i, m) in sent.iter().enumerate() {
            send(&mut c, dir, i, &m[msgs / 2..]);
        }
        // The moment the second half has arrived, it is all buffered and nothing delivered.
        let buffered = c.run_until(c.epoch() / 5, |c| {
            (0..clients)
                .all(|i| receiver_conn(c, dir, i).buffered_out_of_order() == msgs - msgs / 2)
        });
        assert!(buffered, "{dir:?}: the second half was not buffered");
        for i in 0..clients {
            assert!(
                received(&c, dir, i).is_empty(),
                "{dir:?}, client {i}: delivered past a gap"
            );
            assert_eq!(receiver_conn(&c, dir, i).readable(), 0);
        }
        let all = c.run_until(c.epoch() * max_epochs, |c| {
            (0..clients).all(|i| received(c, dir, i).len() == msgs)
        });
        assert!(all, "{dir:?}: the first half never arrived");
        for (i, m) in sent.iter().enumerate() {
            assert_eq!(received(&c, dir, i), &m[..], "{dir:?}, client {i}");
            assert_eq!(receiver_conn(&c, dir, i).buffered_out_of_order(), 0);
        }
    }
    assert!(c.net.now() - start <= c.epoch() * (2 * max_epochs));
}

/// Spec 3.2 with ω 15, M 10: every send of the oldest message is lost, the later ones arrive
/// and are acknowledged one by one (they are ahead of a gap, so even the binary codec's
/// cumulative acks cannot cover them). Those Acks free M-slots, but the window cannot slide past
/// the oldest, so exactly messages 1..=15 are ever sent: 14 buffered at the receiver, none
/// delivered, one in flight. Once the oldest gets through, everything follows in order.
fn oldest_unacked_holds_the_window(codec: Codec) {
    let (window, msgs) = (15usize, 30usize);
    let mut c = Cluster::new(codec, params(5, 500, window as u32, 0, 10));
    c.add_clients(1);
    c.connect_all();
    let first = SeqNum(c.isns[0] + 1);
    let counter = DataCounter::default();
    let seen = counter.clone();
    c.hook(c.up(0), move |m| {
        seen.record(m);
        if m.kind == MsgType::Data && m.seq == first {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    let sent = c.msgs("m", msgs);
    c.write(0, &sent);
    // Two epochs: the oldest is resent (and lost) meanwhile; nothing else changes.
    c.run_for(c.epoch() * 2);
    assert!(c.server_reads(0).is_empty(), "delivered past a gap");
    assert_eq!(c.server_conn(0).buffered_out_of_order(), window - 1);
    assert_eq!(
        c.client_conn(0).in_flight(),
        1,
        "only the oldest is unacknowledged"
    );
    assert_eq!(c.client_conn(0).pending(), msgs, "the window did not slide");
    let id = c.conn_id(0);
    let seqs: Vec<u64> = counter.per_seq(id).iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (first.0..first.0 + window as u64).collect::<Vec<_>>(),
        "sent beyond the window"
    );
    assert!(counter.per_seq(id)[0].1 > 1, "the oldest was never resent");
    c.unhook(c.up(0));
    let all = c.run_until(c.epoch() * 5, |c| c.server_reads(0).len() == msgs);
    assert!(all, "the rest never followed");
    assert_eq!(c.server_reads(0), &sent[..]);
}

/// Spec 3.3: Data beyond `expected + ω − 1` is dropped without an Ack. A hook holds back the
/// first message of a window of 4; when the server's messages 2..=4 arrive the client buffers
/// them; a forged message 5 (beyond the window) is refused and not acknowledged.
fn beyond_window(codec: Codec) {
    use hawser_proto::wire::Message;

    let mut c = Cluster::new(codec, params(5, 500, 4, 0, 4));
    c.add_clients(1);
    c.connect_all();
    let first = SeqNum(c.isns[0] + 1);
    c.hook(c.down(0), move |m| {
        if m.kind == MsgType::Data && m.seq == first {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    let sent = c.msgs("m", 4);
    c.server_write(0, &sent);
    c.run_for(10 * MS);
    assert_eq!(c.client_conn(0).buffered_out_of_order(), 3);
    assert!(c.reads(0).is_empty());
    let acks_before = c.client(0).stats().conns.acks_sent;
    let refused_before = c.client(0).stats().conns.data_refused;
    let forged = Message::data(c.conn_id(0), first.plus(4), Bytes::from_static(b"beyond"));
    let mut buf = bytes::BytesMut::new();
    c.codec.encode(&forged, &mut buf);
    let (from, to) = c.down(0);
    c.net.inject(from, to, buf.freeze());
    c.run_for(10 * MS);
    let stats = c.client(0).stats().conns;
    assert_eq!(stats.data_refused, refused_before + 1);
    assert_eq!(
        stats.acks_sent, acks_before,
        "refused data must not be acknowledged"
    );
    assert_eq!(c.client_conn(0).buffered_out_of_order(), 3);
    c.unhook(c.down(0));
    assert!(c.run_until(c.epoch() * 3, |c| c.reads(0).len() == 4));
    assert_eq!(c.reads(0), &sent[..]);
}
