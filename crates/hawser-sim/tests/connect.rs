//! Connecting (spec 3.1) and the server's defences: reference group "slow start" (a server that
//! starts 3 epochs late is still reached, because Connect is resent every epoch), connects that
//! give up after K epochs, duplicate Connects that never make a second connection, connection
//! ids and first sequence numbers, `max_connections`, and malformed datagrams.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use hawser_proto::lsp::{ClientRead, ClientState, Config, EndReason, WriteError};
use hawser_proto::wire::{Codec, ConnId, Message, MsgType, SeqNum};
use hawser_sim::{FaultConfig, Verdict};

/// Reference `TestServerSlowStart*` (K 5, δ 500 ms, 5 epochs in all): the clients start, the
/// server 3 epochs later; each client then echoes 10 messages one by one and closes.
fn slow_start(codec: Codec, clients: usize) {
    let p = params(5, 500, 1, 0, 1);
    let mut c = Cluster::without_server(Config::new(p).with_codec(codec));
    c.app.echo = true;
    for _ in 0..clients {
        c.add_client(0);
    }
    c.run_for(c.epoch() * 3 - MS);
    for i in 0..clients {
        assert_eq!(c.client(i).state(), ClientState::Connecting, "client {i}");
    }
    c.start_server();
    let sent: Vec<_> = (0..clients).map(|i| c.msgs(&format!("c{i}"), 10)).collect();
    for (i, m) in sent.iter().enumerate() {
        c.round_trips(i, m.clone());
    }
    let limit = c.epoch() * 5 - c.net.elapsed();
    let echoed = c.run_until(limit, |c| c.all_connected() && c.scripts_done());
    assert!(echoed, "not connected and echoed within 5 epochs");
    for i in 0..clients {
        c.with_client(i, |cl, _| cl.close());
    }
    assert!(c.run_until(c.epoch() * 5 - c.net.elapsed(), |c| {
        c.app
            .client_ended
            .iter()
            .all(|e| *e == Some(EndReason::Closed))
    }));
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(c.reads(i), &m[..]);
        assert_eq!(c.server_reads(i), &m[..]);
        // Connects were sent at 0, 1, 2 and 3 epochs; the first three found no server.
        let (from, to) = c.up(i);
        assert_eq!(c.net.link_stats(from, to).vanished, 3, "client {i}");
    }
    let server = c.server_ep().stats();
    assert_eq!(server.connections_opened, clients as u64);
    assert_eq!(server.duplicate_connects, 0);
}

/// Spec 3.1: with no server, Connect goes out K times (at 0 and at epochs 1..K−1) and the
/// connect fails at epoch K; reads then report the loss and writes fail.
fn connect_gives_up(codec: Codec) {
    let p = params(5, 500, 1, 0, 1);
    let mut c = Cluster::without_server(Config::new(p).with_codec(codec));
    c.add_clients(1);
    c.run_for(c.epoch() * 5 - MS);
    assert_eq!(c.client(0).state(), ClientState::Connecting);
    c.run_for(MS);
    assert_eq!(c.client(0).state(), ClientState::ConnectFailed);
    let (from, to) = c.up(0);
    assert_eq!(c.net.link_stats(from, to).sent, 5);
    assert_eq!(c.app.client_ended[0], Some(EndReason::Lost));
    assert!(c
        .with_client(0, |cl, now| cl.write(now, Bytes::from_static(b"x")))
        .is_err());
    c.run_for(c.epoch() * 5);
    assert_eq!(
        c.net.link_stats(from, to).sent,
        5,
        "a failed client stays silent"
    );
}

/// Spec 3.1: every Connect is duplicated by the network; every Data too. The server makes one
/// connection per client (ids 1, 2, 3 in Connect order), counts the duplicates, and echoes every
/// message exactly once.
fn duplicated_connects(codec: Codec) {
    let mut c = Cluster::new(codec, params(5, 500, 4, 0, 4));
    c.app.echo = true;
    c.net
        .set_faults_all(FaultConfig::default().with_duplicate_percent(100.0));
    c.add_clients(3);
    c.connect_all();
    c.run_for(10 * MS);
    let server = c.server_ep().stats();
    assert_eq!(server.connections_opened, 3);
    assert_eq!(server.duplicate_connects, 3);
    assert_eq!(c.server_ep().live_connections(), 3);
    for i in 0..3 {
        assert_eq!(
            c.conn_id(i),
            ConnId(i as u64 + 1),
            "ids are given out as 1, 2, 3"
        );
        assert_eq!(c.client(i).stats().connections_opened, 1);
    }
    let sent: Vec<_> = (0..3).map(|i| c.msgs(&format!("c{i}"), 20)).collect();
    for (i, m) in sent.iter().enumerate() {
        c.write(i, m);
    }
    assert!(c.run_until(c.epoch() * 4, |c| (0..3).all(|i| c.reads(i).len() == 20)));
    c.run_for(c.epoch());
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(c.server_reads(i), &m[..], "client {i}: exactly once");
        assert_eq!(c.reads(i), &m[..], "client {i}: echoes exactly once");
    }
    assert!(c.server_ep().stats().conns.duplicates_received > 0);
}

/// Spec 3.1: the server's Ack of a Connect is lost; the client resends its Connect at the next
/// epoch; the server re-acknowledges the same connection rather than making a second one.
fn lost_connect_ack(codec: Codec) {
    let mut c = Cluster::new(codec, params(5, 500, 1, 0, 1));
    let mut dropped = false;
    let (server, client) = (c.server, hawser_sim::fake_addr(1));
    c.hook((server, client), move |m| {
        if m.kind == MsgType::Ack && !dropped {
            dropped = true;
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    c.add_clients(1);
    c.run_for(c.epoch() - MS);
    assert_eq!(c.client(0).state(), ClientState::Connecting);
    assert_eq!(
        c.server_ep().live_connections(),
        1,
        "the server accepted the first Connect"
    );
    c.connect_all();
    assert_eq!(c.conn_id(0), ConnId(1));
    let server = c.server_ep().stats();
    assert_eq!(
        (server.connections_opened, server.duplicate_connects),
        (1, 1)
    );
    assert_eq!(c.server_ep().live_connections(), 1);
    let sent = c.msgs("m", 3);
    c.write(0, &sent);
    assert!(c.run_until(c.epoch(), |c| c.server_reads(0).len() == 3));
    assert_eq!(c.server_reads(0), &sent[..]);
}

/// The server writes to a new connection at once, but its Ack of the Connect is lost: the
/// client drops the early Data (it is not connected yet), connects on its next Connect, and
/// then receives every message, in order, exactly once.
fn data_racing_a_lost_connect_ack(codec: Codec) {
    let mut c = Cluster::with_config(reference_config(codec, params(5, 500, 4, 0, 4)));
    let mut dropped = false;
    c.hook((c.server, hawser_sim::fake_addr(1)), move |m| {
        if m.kind == MsgType::Ack && !dropped {
            dropped = true;
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    c.add_clients(1);
    c.run_for(2 * MS);
    let id = ConnId(1);
    assert_eq!(c.server_ep().live_connections(), 1);
    let sent = c.msgs("m", 3);
    for m in &sent {
        let m = m.clone();
        assert_eq!(c.with_server(|s, now| s.write(now, id, m)), Ok(()));
    }
    c.run_for(10 * MS);
    assert_eq!(c.client(0).state(), ClientState::Connecting);
    assert!(
        c.client(0).stats().unknown_conn >= 3,
        "the early Data was not dropped"
    );
    assert!(c.run_until(c.epoch() * 4, |c| c.reads(0).len() == 3));
    c.run_for(c.epoch() * 2);
    assert_eq!(c.reads(0), &sent[..]);
    assert_eq!(c.conn_id(0), id);
    assert_eq!(c.server_ep().stats().connections_opened, 1);
}

/// A duplicate of a client's Connect arriving long after the connection was made (a late copy)
/// is re-acknowledged on the same connection, and the client takes the Ack as a sign of life.
fn late_duplicate_connect(codec: Codec) {
    let mut c = Cluster::new(codec, params(5, 500, 1, 0, 1));
    c.app.echo = true;
    c.add_clients(1);
    c.connect_all();
    c.run_for(300 * MS);
    let mut buf = BytesMut::new();
    codec.encode(&Message::connect(SeqNum(c.isns[0])), &mut buf);
    c.net.inject(c.clients[0], c.server, buf.freeze());
    c.run_for(10 * MS);
    let server = c.server_ep().stats();
    assert_eq!(
        (server.connections_opened, server.duplicate_connects),
        (1, 1)
    );
    assert_eq!(c.server_ep().live_connections(), 1);
    assert_eq!(c.conn_id(0), ConnId(1));
    let sent = c.msgs("m", 5);
    c.round_trips(0, sent.clone());
    assert!(c.run_until(c.epoch(), Cluster::scripts_done));
    assert_eq!(c.reads(0), &sent[..]);
    assert_eq!(c.client(0).stats().unknown_conn, 0);
}

/// Spec 1: Data sequence numbers start at ISN + 1 in both directions: the server's first Data
/// to a client carries that client's ISN + 1, whatever the ISN (0 and 2^32 − 1 included).
fn first_seqs(codec: Codec) {
    let mut c = Cluster::new(codec, params(5, 500, 4, 0, 4));
    c.app.echo = true;
    for isn in [0, 1, 42, u64::from(u32::MAX)] {
        c.add_client(isn);
    }
    c.add_clients(4);
    c.connect_all();
    c.net.record_trace(usize::MAX);
    let sent: Vec<_> = (0..8).map(|i| c.msgs(&format!("c{i}"), 3)).collect();
    for (i, m) in sent.iter().enumerate() {
        c.write(i, m);
    }
    assert!(c.run_until(c.epoch(), |c| (0..8).all(|i| c.reads(i).len() == 3)));
    let msgs = c.sent_messages();
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(c.reads(i), &m[..]);
        let id = c.conn_id(i);
        let data_seqs = |from| -> Vec<u64> {
            msgs.iter()
                .filter(|(f, msg)| *f == from && msg.kind == MsgType::Data && msg.conn == id)
                .map(|(_, msg)| msg.seq.0)
                .collect()
        };
        let isn = c.isns[i];
        let want: Vec<u64> = (1..=3).map(|k| isn + k).collect();
        assert_eq!(
            data_seqs(c.clients[i]),
            want,
            "client {i}'s Data (ISN {isn})"
        );
        assert_eq!(
            data_seqs(c.server),
            want,
            "the server's Data to client {i} (ISN {isn})"
        );
    }
}

/// `Config::max_connections`: 3 of 5 clients get in; the two others are refused every time they
/// try (K Connects each, all counted) and fail after K epochs. A slot frees when a connection
/// ends, and a new client then gets in.
fn max_connections(codec: Codec) {
    let p = params(5, 500, 1, 0, 1);
    let mut config = Config::new(p).with_codec(codec);
    config.max_connections = 3;
    let mut c = Cluster::with_config(config);
    c.add_clients(5);
    c.run_for(c.epoch() * 5);
    for i in 0..3 {
        assert!(
            matches!(c.client(i).state(), ClientState::Connected(_)),
            "client {i}"
        );
    }
    for i in 3..5 {
        assert_eq!(
            c.client(i).state(),
            ClientState::ConnectFailed,
            "client {i}"
        );
    }
    let server = c.server_ep().stats();
    assert_eq!(server.refused_connects, 2 * 5);
    assert_eq!(server.connections_opened, 3);
    assert_eq!(c.server_ep().live_connections(), 3);

    // Client 0 closes and goes silent; the server notices after K epochs and frees its slot.
    c.with_client(0, |cl, _| cl.close());
    let id = c.conn_id(0);
    assert!(c.run_until(c.epoch() * 7, |c| c.app.server_ended.contains_key(&id)));
    assert_eq!(c.app.server_ended[&id], EndReason::Lost);
    assert_eq!(c.server_ep().live_connections(), 2);
    let late = c.add_client(7);
    c.run_for(10 * MS);
    assert_eq!(c.client(late).conn_id(), Some(ConnId(4)));
    assert_eq!(c.server_ep().stats().refused_connects, 10);
}

/// Datagrams that are not valid messages of the codec, each checked to fail decoding.
fn garbage(codec: Codec) -> Vec<Bytes> {
    let other = match codec {
        Codec::Json => Codec::Binary,
        Codec::Binary => Codec::Json,
    };
    let encode = |codec: Codec, m: &Message| {
        let mut buf = BytesMut::new();
        codec.encode(m, &mut buf);
        buf.freeze()
    };
    let data = Message::data(ConnId(1), SeqNum(43), Bytes::from_static(b"hello"));
    let mut out: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(b"{"),
        Bytes::from_static(b"hello, world"),
        Bytes::from_static(&[0xff; 16]),
        Bytes::from_static(&[0x02, 0x01, 0x02, 0x05]),
        Bytes::from_static(
            br#"{"Type":9,"ConnID":1,"SeqNum":1,"Size":0,"Checksum":0,"Payload":null}"#,
        ),
        Bytes::from_static(
            br#"{"Type":1,"ConnID":1,"SeqNum":1,"Size":1,"Checksum":0,"Payload":"eA"}"#,
        ),
        Bytes::from_static(
            br#"{"Type":2,"ConnID":-1,"SeqNum":1,"Size":0,"Checksum":0,"Payload":null}"#,
        ),
        encode(other, &data),
        encode(other, &Message::heartbeat(ConnId(1))),
    ];
    let whole = encode(codec, &data);
    out.extend((0..whole.len()).map(|n| whole.slice(..n)));
    for g in &out {
        assert!(
            codec.decode(g, &mut Vec::new()).is_err(),
            "{g:?} decodes with {codec:?}"
        );
    }
    out
}

/// Malformed datagrams, to the server (from a connected client's address and from a stranger)
/// and to a client, are dropped and counted one by one, never a panic; the connection goes on.
fn malformed(codec: Codec) {
    let mut c = Cluster::new(codec, params(5, 500, 4, 0, 4));
    c.app.echo = true;
    c.add_clients(1);
    c.connect_all();
    let junk = garbage(codec);
    let stranger = hawser_sim::fake_addr(99);
    for g in &junk {
        c.net.inject(c.clients[0], c.server, g.clone());
        c.net.inject(stranger, c.server, g.clone());
        c.net.inject(c.server, c.clients[0], g.clone());
    }
    c.run_for(10 * MS);
    let n = junk.len() as u64;
    assert_eq!(c.server_ep().stats().malformed, 2 * n);
    assert_eq!(c.client(0).stats().malformed, n);
    assert_eq!(c.server_ep().live_connections(), 1);
    let sent = c.msgs("m", 10);
    c.write(0, &sent);
    assert!(c.run_until(c.epoch(), |c| c.reads(0).len() == 10));
    assert_eq!(c.reads(0), &sent[..]);
}

/// Random bytes and bit-flipped valid datagrams thrown at both endpoints: never a panic, every
/// datagram is counted as received.
fn fuzzed(codec: Codec) {
    let mut c = Cluster::new(codec, params(50, 500, 8, 0, 8));
    c.add_clients(1);
    c.connect_all();
    let id = c.conn_id(0);
    let isn = c.isns[0];
    let mut rng = fastrand::Rng::with_seed(hawser_sim::seed());
    let valid = [
        Message::data(id, SeqNum(isn + 1), Bytes::from_static(b"payload")),
        Message::ack(id, SeqNum(isn + 1)),
        Message::cack(id, SeqNum(isn + 3)),
        Message::connect(SeqNum(isn)),
        Message::heartbeat(id),
    ];
    let before = (
        c.server_ep().stats().datagrams_received,
        c.client(0).stats().datagrams_received,
    );
    let rounds = 2000;
    for _ in 0..rounds {
        let mut bytes = if rng.bool() {
            (0..rng.usize(0..64))
                .map(|_| rng.u8(..))
                .collect::<Vec<u8>>()
        } else {
            let mut buf = BytesMut::new();
            codec.encode(&valid[rng.usize(..valid.len())], &mut buf);
            buf.to_vec()
        };
        if !bytes.is_empty() {
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..bytes.len());
                bytes[at] ^= 1 << rng.u8(0..8);
            }
        }
        c.net
            .inject(c.clients[0], c.server, Bytes::from(bytes.clone()));
        c.net.inject(c.server, c.clients[0], Bytes::from(bytes));
    }
    c.run_for(10 * MS);
    let after = (
        c.server_ep().stats().datagrams_received,
        c.client(0).stats().datagrams_received,
    );
    assert!(after.0 - before.0 >= rounds && after.1 - before.1 >= rounds);
    assert!(c.server_ep().stats().malformed > 0 && c.client(0).stats().malformed > 0);
}

both_codecs! {
    slow_start1_server_3_epochs_late_one_client: |codec| slow_start(codec, 1);
    slow_start2_server_3_epochs_late_three_clients: |codec| slow_start(codec, 3);
    connect_gives_up_after_k_epochs: |codec| connect_gives_up(codec);
    duplicate_connects_never_make_a_second_connection: |codec| duplicated_connects(codec);
    lost_connect_ack_is_healed_by_a_resent_connect: |codec| lost_connect_ack(codec);
    data_starts_at_isn_plus_one_both_ways: |codec| first_seqs(codec);
    server_data_racing_a_lost_connect_ack_is_delivered: |codec| data_racing_a_lost_connect_ack(codec);
    late_duplicate_connect_is_reacknowledged: |codec| late_duplicate_connect(codec);
    max_connections_refuses_and_counts_extra_connects: |codec| max_connections(codec);
    malformed_datagrams_are_dropped_and_counted: |codec| malformed(codec);
    fuzzed_datagrams_never_panic: |codec| fuzzed(codec);
}

/// A connect that failed reads as a lost connection, and writes fail with `Lost`.
#[test]
fn failed_connect_reads_as_lost() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut c = Cluster::without_server(Config::new(params(2, 100, 1, 0, 1)));
        c.app.read_clients = false;
        c.add_clients(1);
        c.run_for(Duration::from_millis(250));
        assert_eq!(c.drain_client(0), vec![ClientRead::Ended(EndReason::Lost)]);
        assert_eq!(
            c.with_client(0, |cl, now| cl.write(now, Bytes::from_static(b"x"))),
            Err(WriteError::Lost)
        );
    });
}
