//! Bundling (binary codec): small messages written while data is in flight share one Data
//! message. Whatever the network does, the application still reads every message exactly once,
//! in order; a lone message on an idle connection still leaves at once and unbundled; nothing is
//! bundled when it is off, too large, or on the JSON codec; the send queue stays bounded.

#[allow(unused_macros)]
#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use hawser_proto::lsp::{Config, WriteError};
use hawser_proto::wire::{bundle, Codec, MsgType};
use hawser_sim::FaultConfig;

fn config(bundle_max: usize) -> Config {
    let mut config = Config::new(params(20, 100, 32, 2, 32)).with_codec(Codec::Binary);
    config.bundle_max = bundle_max;
    config
}

/// Client `i` writes every message in one step, as a busy application does between two runs
/// of its driver (the harness sends after every step, which would seal a bundle per write).
fn write_at_once(c: &mut Cluster, i: usize, msgs: &[Bytes]) {
    c.with_client(i, |cl, now| {
        for m in msgs {
            cl.write(now, m.clone()).expect("write");
        }
    });
}

/// Every client writes `msgs` small messages at once, the server echoes each; returns once both
/// sides read everything, after checking order and exactly-once.
fn stream(c: &mut Cluster, msgs: usize) -> Vec<Vec<Bytes>> {
    let sent: Vec<_> = (0..c.clients.len())
        .map(|i| c.msgs(&format!("c{i}"), msgs))
        .collect();
    for (i, m) in sent.iter().enumerate() {
        write_at_once(c, i, m);
    }
    let total = sent.len() * msgs;
    let done = c.run_until(Duration::from_secs(120), |c| {
        c.server_read_total() == total && (0..c.clients.len()).all(|i| c.reads(i).len() == msgs)
    });
    assert!(done, "not everything arrived");
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(c.server_reads(i), &m[..], "server's reads from client {i}");
        assert_eq!(c.reads(i), &m[..], "client {i}'s echoes");
    }
    sent
}

#[test]
fn bundles_survive_loss_duplication_and_reordering() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut c = Cluster::with_config(config(256));
        c.app.echo = true;
        c.net.set_faults_all(
            FaultConfig::default()
                .with_drop_percent(10.0)
                .with_duplicate_percent(10.0)
                .with_reorder_percent(20.0)
                .with_delay_percent(5.0)
                .with_delay(Duration::from_millis(30)),
        );
        c.add_clients(5);
        c.connect_all();
        stream(&mut c, 400);
        let server = c.server_ep().stats().conns;
        let client = c.client_conn(0).stats();
        // The clients' writes were bundled: far fewer Data messages than messages.
        assert!(client.bundles_sent > 0, "{client:?}");
        assert!(client.data_sent < 400, "{client:?}");
        assert!(client.messages_bundled > 0);
        assert!(c.net.stats().dropped > 0);
        assert_eq!(server.bad_bundle, 0);

        // The other way: the server writes a burst to each client in one step.
        let burst: Vec<_> = (0..5).map(|i| c.msgs(&format!("s{i}"), 300)).collect();
        for (i, m) in burst.iter().enumerate() {
            let id = c.conn_id(i);
            c.with_server(|s, now| {
                for msg in m {
                    s.write(now, id, msg.clone()).expect("server write");
                }
            });
        }
        c.app.echo = false;
        let done = c.run_until(Duration::from_secs(120), |c| {
            (0..5).all(|i| c.reads(i).len() == 400 + 300)
        });
        assert!(done, "the server's bursts did not all arrive");
        for (i, m) in burst.iter().enumerate() {
            assert_eq!(
                &c.reads(i)[400..],
                &m[..],
                "client {i}'s reads of the burst"
            );
        }
        let server = c.server_ep().stats().conns;
        assert!(server.bundles_sent > 0, "{server:?}");
        assert_eq!(c.client_conn(0).stats().bad_bundle, 0);
    });
}

#[test]
fn a_lone_message_on_an_idle_connection_leaves_at_once_unbundled() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut c = Cluster::with_config(config(256));
        c.add_client(1000);
        c.connect_all();
        c.net.record_trace(10_000);
        let m = c.msgs("solo", 1);
        c.write(0, &m);
        // Sent by the write itself, before any time passes.
        let sent = c.sent_messages();
        let data: Vec<_> = sent
            .iter()
            .filter(|(_, m)| m.kind == MsgType::Data)
            .collect();
        assert_eq!(data.len(), 1);
        assert!(!data[0].1.bundled);
        assert_eq!(data[0].1.payload.as_ref(), Some(&m[0]));
    });
}

#[test]
fn what_is_written_while_busy_is_bundled_and_valid_on_the_wire() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut c = Cluster::with_config(config(256));
        c.add_client(1000);
        c.connect_all();
        c.net.record_trace(10_000);
        let m = c.msgs("burst", 50);
        write_at_once(&mut c, 0, &m);
        c.run_until(Duration::from_secs(5), |c| c.server_read_total() == 50);
        assert_eq!(c.server_reads(0), &m[..]);
        let sent = c.sent_messages();
        let data: Vec<_> = sent
            .iter()
            .filter(|(_, m)| m.kind == MsgType::Data)
            .map(|(_, m)| m)
            .collect();
        // The first goes alone at once; the other 49 wait for the drain and share bundles.
        assert!(!data[0].bundled);
        assert!(
            data.len() < 10,
            "{} Data messages for 50 writes",
            data.len()
        );
        let bundled: usize = data
            .iter()
            .filter(|m| m.bundled)
            .map(|m| bundle::validate(m.payload.as_ref().expect("data")).expect("valid bundle"))
            .sum();
        let plain = data.iter().filter(|m| !m.bundled).count();
        assert_eq!(bundled + plain, 50);
        for m in data.iter().filter(|m| m.bundled) {
            assert!(m.payload.as_ref().expect("data").len() <= c.config.max_payload);
        }
    });
}

#[test]
fn nothing_is_bundled_when_off_too_large_or_in_json() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        for (codec, bundle_max, size) in [
            (Codec::Binary, 0, 10),
            (Codec::Binary, 16, 17),
            (Codec::Json, 256, 10),
        ] {
            let mut config = config(bundle_max);
            config.codec = codec;
            let mut c = Cluster::with_config(config);
            c.add_client(1000);
            c.connect_all();
            let m: Vec<Bytes> = (0..40u8).map(|k| Bytes::from(vec![k; size])).collect();
            write_at_once(&mut c, 0, &m);
            c.run_until(Duration::from_secs(20), |c| c.server_read_total() == 40);
            assert_eq!(c.server_reads(0), &m[..]);
            let stats = c.client_conn(0).stats();
            assert_eq!(stats.bundles_sent, 0, "{codec:?} {bundle_max} {size}");
            assert_eq!(stats.data_sent, 40);
        }
    });
}

#[test]
fn the_send_queue_bound_counts_a_bundle_once_and_still_holds() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut config = config(256);
        config.max_send_queue = 3;
        config.max_payload = 100;
        let mut c = Cluster::with_config(config);
        c.add_client(1000);
        c.connect_all();
        // 20-byte messages, 21 bytes in a bundle: four per 100-byte bundle.
        let mut accepted = 0;
        let mut refused = None;
        c.with_client(0, |cl, now| {
            for k in 0..100u8 {
                match cl.write(now, Bytes::from(vec![k; 20])) {
                    Ok(()) => accepted += 1,
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
                assert!(cl.pending() <= 3);
            }
        });
        assert_eq!(refused, Some(WriteError::QueueFull(3)));
        // One plain message in flight, then two bundles of four.
        assert_eq!(accepted, 1 + 4 + 4);
        let flushed = c.run_until(Duration::from_secs(5), |c| c.client_conn(0).pending() == 0);
        assert!(flushed);
        assert_eq!(c.server_read_total(), accepted);
    });
}

#[test]
fn a_malformed_bundle_with_a_valid_checksum_is_dropped_and_counted() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        use hawser_proto::wire::{Message, SeqNum};
        let mut c = Cluster::with_config(config(256));
        c.add_client(1000);
        c.connect_all();
        let conn = c.conn_id(0);
        // One entry only (a bundle needs two), with a correct checksum.
        let bad = Message::bundle(conn, SeqNum(1001), Bytes::from_static(&[1, b'x']));
        let mut buf = bytes::BytesMut::new();
        Codec::Binary.encode(&bad, &mut buf);
        let (client, server) = c.up(0);
        c.net.inject(client, server, buf.freeze());
        c.run_for(Duration::from_millis(10));
        assert_eq!(c.server_conn(0).stats().bad_bundle, 1);
        assert_eq!(c.server_read_total(), 0);
    });
}

#[test]
fn batch_reads_keep_each_connections_order_and_stop_at_an_end() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut c = Cluster::with_config(config(256));
        c.app.read_server = false;
        c.add_clients(3);
        c.connect_all();
        let sent: Vec<_> = (0..3).map(|i| c.msgs(&format!("c{i}"), 60)).collect();
        for (i, m) in sent.iter().enumerate() {
            write_at_once(&mut c, i, m);
        }
        // Client 1 leaves once its messages are acknowledged; the server sees it go silent (lost,
        // spec 3.5) and that end queues behind its data.
        let flushed = c.run_until(Duration::from_secs(5), |c| {
            (0..3).all(|i| c.client_conn(i).pending() == 0)
        });
        assert!(flushed);
        c.with_client(1, |cl, _| cl.close());
        c.run_for(Duration::from_secs(10));
        let ids: Vec<_> = (0..3).map(|i| c.conn_id(i)).collect();
        let mut got: Vec<(hawser_proto::wire::ConnId, Bytes)> = Vec::new();
        let mut ends = Vec::new();
        loop {
            // Small batches, so that they end inside bundles too.
            let n = c.with_server(|s, _| s.read_data_batch(&mut got, 7));
            if n > 0 {
                assert!(n <= 7);
                continue;
            }
            match c.with_server(|s, _| s.read()) {
                Some(hawser_proto::lsp::ServerRead::Ended(id, reason)) => ends.push((id, reason)),
                Some(other) => panic!("data after read_data_batch returned 0: {other:?}"),
                None => break,
            }
        }
        for (i, m) in sent.iter().enumerate() {
            let mine: Vec<Bytes> = got
                .iter()
                .filter(|(id, _)| *id == ids[i])
                .map(|(_, p)| p.clone())
                .collect();
            assert_eq!(mine, *m, "connection {i}");
        }
        assert_eq!(ends, vec![(ids[1], hawser_proto::lsp::EndReason::Lost)]);
    });
}

#[test]
fn mixed_sizes_bundled_and_alone_arrive_in_order_through_faults() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        // Sizes on both sides of `bundle_max` and up to `max_payload`, so bundles are sealed early
        // by a large message and by running out of room, in many steps of a few writes each.
        let mut c = Cluster::with_config(config(256));
        c.net.set_faults_all(
            FaultConfig::default()
                .with_drop_percent(15.0)
                .with_duplicate_percent(10.0)
                .with_reorder_percent(30.0),
        );
        c.add_clients(2);
        c.connect_all();
        let mut sent: Vec<Vec<Bytes>> = vec![Vec::new(); 2];
        for step in 0..200 {
            for (i, out) in sent.iter_mut().enumerate() {
                let burst: Vec<Bytes> = (0..(c.rng.usize(1..12)))
                    .map(|k| {
                        let len = match c.rng.u8(..10) {
                            0 => c.rng.usize(257..=c.config.max_payload),
                            1 => 0,
                            _ => c.rng.usize(1..=256),
                        };
                        let mut v = vec![(step * 13 + k) as u8; len];
                        if len >= 4 {
                            v[..4].copy_from_slice(&(out.len() as u32 + k as u32).to_be_bytes());
                        }
                        Bytes::from(v)
                    })
                    .collect();
                write_at_once(&mut c, i, &burst);
                out.extend(burst);
            }
            c.run_for(Duration::from_millis(3));
        }
        let total: usize = sent.iter().map(Vec::len).sum();
        let done = c.run_until(Duration::from_secs(120), |c| c.server_read_total() == total);
        assert!(done, "not everything arrived");
        for (i, m) in sent.iter().enumerate() {
            assert_eq!(c.server_reads(i), &m[..], "client {i}");
            let stats = c.client_conn(i).stats();
            assert!(stats.bundles_sent > 0 && stats.retransmits > 0, "{stats:?}");
        }
    });
}

#[test]
fn bundles_are_resent_by_the_epoch_policy_too() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        // The reference's retransmission (every epoch, with back-off) on the binary codec: lost
        // bundles are resent whole and their messages still arrive once, in order. Bursts of ten
        // in 40 steps make about 40 bundles per client, so some are lost whatever the seed.
        let config = config(256).with_retransmit(hawser_proto::lsp::RetransmitPolicy::Epoch);
        let mut c = Cluster::with_config(config);
        c.net.set_faults_all(
            FaultConfig::default()
                .with_drop_percent(20.0)
                .with_duplicate_percent(10.0)
                .with_reorder_percent(20.0),
        );
        c.add_clients(3);
        c.connect_all();
        let mut sent: Vec<Vec<Bytes>> = vec![Vec::new(); 3];
        for step in 0..40 {
            for (i, out) in sent.iter_mut().enumerate() {
                let burst = c.msgs(&format!("c{i}s{step}"), 10);
                write_at_once(&mut c, i, &burst);
                out.extend(burst);
            }
            c.run_for(Duration::from_millis(3));
        }
        let done = c.run_until(Duration::from_secs(120), |c| {
            c.server_read_total() == 3 * 400
        });
        assert!(done, "not everything arrived");
        let mut retransmits = 0;
        for (i, m) in sent.iter().enumerate() {
            assert_eq!(c.server_reads(i), &m[..], "client {i}");
            let stats = c.client_conn(i).stats();
            assert!(stats.bundles_sent > 0, "{stats:?}");
            retransmits += stats.retransmits;
        }
        assert!(retransmits > 0, "nothing was resent");
    });
}

#[test]
fn only_a_message_sent_on_its_own_reads_the_clock() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut c = Cluster::with_config(config(256));
        c.add_client(1000);
        c.connect_all();
        let reads = std::cell::Cell::new(0);
        c.with_client(0, |cl, now| {
            let clock = || {
                reads.set(reads.get() + 1);
                now
            };
            // Idle: sent at once, so timed.
            cl.write_with_clock(clock, Bytes::from_static(b"first"))
                .expect("write");
            assert_eq!(reads.get(), 1);
            // In flight now: small messages join a bundle and are not timed.
            for _ in 0..10 {
                cl.write_with_clock(clock, Bytes::from_static(b"small"))
                    .expect("write");
            }
            assert_eq!(reads.get(), 1);
            // Too large to bundle: sent on its own, timed.
            cl.write_with_clock(clock, Bytes::from(vec![0u8; 300]))
                .expect("write");
            assert_eq!(reads.get(), 2);
        });
        let done = c.run_until(Duration::from_secs(5), |c| c.server_read_total() == 12);
        assert!(done);
    });
}

#[test]
fn a_bundle_never_makes_a_datagram_larger_than_max_datagram() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        // A large `max_payload` (a loopback link's) with the Ethernet-sized datagram limit: small
        // messages gathered while busy still fit one `max_datagram` datagram each, while a single
        // message written larger goes alone in a larger one.
        let mut config = config(256);
        config.max_payload = 16 * 1024;
        config.max_datagram = 1452;
        let mut c = Cluster::with_config(config);
        c.add_client(1000);
        c.connect_all();
        c.net.record_trace(100_000);
        let small: Vec<Bytes> = (0..400u16)
            .map(|k| Bytes::from(vec![k as u8; 200]))
            .collect();
        write_at_once(&mut c, 0, &small);
        let big = Bytes::from(vec![7u8; 10_000]);
        write_at_once(&mut c, 0, std::slice::from_ref(&big));
        c.run_until(Duration::from_secs(20), |c| c.server_read_total() == 401);
        let mut want = small.clone();
        want.push(big);
        assert_eq!(c.server_reads(0), &want[..]);
        let trace = c.net.take_trace();
        let sent = trace
            .iter()
            .filter(|e| e.kind == hawser_sim::TraceKind::Sent && e.to == c.server);
        let (mut small_datagrams, mut large) = (0, 0);
        for e in sent {
            if e.bytes.len() > 1452 {
                large += 1;
                assert!(e.bytes.len() > 10_000, "a {}-byte datagram", e.bytes.len());
            } else {
                small_datagrams += 1;
            }
        }
        assert_eq!(large, 1, "only the large message exceeds max_datagram");
        assert!(
            small_datagrams >= 400 * 201 / 1452,
            "{small_datagrams} datagrams"
        );
        assert!(c.client_conn(0).stats().bundles_sent > 0);
    });
}
