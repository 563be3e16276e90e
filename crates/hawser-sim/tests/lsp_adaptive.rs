//! The adaptive retransmission policy and flow control, on simulated time: RTT estimation,
//! fast retransmit, RTO-driven recovery under loss, and a slow reader bounding the writer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hawser_proto::lsp::{
    AckPolicy, ClientEndpoint, ClientRead, Config, ConnStats, Params, RetransmitPolicy,
    ServerEndpoint, ServerRead, WriteError,
};
use hawser_proto::wire::{Codec, MsgType, SeqNum};
use hawser_sim::{fake_addr, message_hook, FaultConfig, SimNet, Verdict};

const SERVER: u32 = 0;

/// How many seeds each scenario under random loss runs on (`hawser_sim::for_each_seed`).
const SEEDS: usize = 8;
/// The same for the bulk transfers of thousands of messages, which take longer each.
const BULK_SEEDS: usize = 3;

fn config(codec: Codec, policy: RetransmitPolicy) -> Config {
    Config::new(
        Params::reference()
            .with_epoch_limit(20)
            .with_epoch(Duration::from_secs(2))
            .with_window(64)
            .with_max_backoff(4)
            .with_max_unacked(64),
    )
    .with_codec(codec)
    .with_retransmit(policy)
}

/// A server and one client, connected.
fn pair(net: &mut SimNet, config: &Config) -> (SocketAddr, SocketAddr) {
    let (s, c) = (fake_addr(SERVER), fake_addr(1));
    net.add(s, ServerEndpoint::new(config.clone()).unwrap())
        .unwrap();
    let client = ClientEndpoint::new(config.clone(), s, SeqNum(1000), net.now()).unwrap();
    net.add(c, client).unwrap();
    assert!(net.run_until_cond(Duration::from_secs(1), |net| {
        net.endpoint::<ClientEndpoint>(c)
            .unwrap()
            .conn_id()
            .is_some()
    }));
    (s, c)
}

/// The client's connection counters.
fn client_stats(net: &SimNet, c: SocketAddr) -> ConnStats {
    *net.endpoint::<ClientEndpoint>(c)
        .unwrap()
        .connection()
        .unwrap()
        .stats()
}

/// Writes `n` numbered messages from the client and runs until the server has read them all
/// (or `limit` of simulated time passed); returns what the server read, in order.
fn send_and_collect(
    net: &mut SimNet,
    s: SocketAddr,
    c: SocketAddr,
    n: u32,
    limit: Duration,
) -> Vec<u32> {
    for i in 0..n {
        net.with::<ClientEndpoint, _>(c, |ep, now| {
            ep.write(now, Bytes::from(i.to_be_bytes().to_vec()))
        })
        .unwrap()
        .unwrap();
    }
    let mut got = Vec::new();
    net.run_until_cond(limit, |net| {
        net.with::<ServerEndpoint, _>(s, |ep, _| {
            while let Some(ServerRead::Data(_, p)) = ep.read() {
                got.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
            }
        })
        .unwrap();
        got.len() as u32 == n
    });
    got
}

#[test]
fn rtt_is_estimated_from_the_link_latency() {
    let mut net = SimNet::new(hawser_sim::seed());
    net.set_latency(Duration::from_millis(10));
    let cfg = config(Codec::Binary, RetransmitPolicy::Adaptive);
    let (s, c) = pair(&mut net, &cfg);
    let got = send_and_collect(&mut net, s, c, 50, Duration::from_secs(5));
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    net.run_for(Duration::from_millis(100));
    let client = net.endpoint::<ClientEndpoint>(c).unwrap();
    let conn = client.connection().unwrap();
    let srtt = conn.srtt().expect("an RTT sample");
    assert!(
        srtt >= Duration::from_millis(19) && srtt <= Duration::from_millis(22),
        "srtt {srtt:?} for a 20 ms round trip"
    );
    assert_eq!(conn.stats().retransmits, 0, "no loss, no retransmission");
}

#[test]
fn a_single_loss_is_repaired_by_fast_retransmit_before_any_timeout() {
    for codec in [Codec::Binary, Codec::Json] {
        let mut net = SimNet::new(hawser_sim::seed());
        net.set_codec(codec);
        let cfg = config(codec, RetransmitPolicy::Adaptive);
        let (s, c) = pair(&mut net, &cfg);
        // Drop the first transmission of seq 1003 (the third message), nothing else.
        let dropped = Arc::new(AtomicU32::new(0));
        let seen = dropped.clone();
        net.set_hook(
            c,
            s,
            Some(message_hook(codec, move |m| {
                if m.kind == MsgType::Data
                    && m.seq == SeqNum(1003)
                    && seen.fetch_add(1, Ordering::SeqCst) == 0
                {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                }
            })),
        );
        let start = net.now();
        // Write one message per millisecond so acks of later ones come back one by one.
        let mut got = Vec::new();
        for i in 0..20u32 {
            net.with::<ClientEndpoint, _>(c, |ep, now| {
                ep.write(now, Bytes::from(i.to_be_bytes().to_vec()))
            })
            .unwrap()
            .unwrap();
            net.run_for(Duration::from_millis(1));
        }
        net.run_until_cond(Duration::from_secs(1), |net| {
            net.with::<ServerEndpoint, _>(s, |ep, _| {
                while let Some(ServerRead::Data(_, p)) = ep.read() {
                    got.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
                }
            })
            .unwrap();
            got.len() == 20
        });
        assert_eq!(got, (0..20).collect::<Vec<_>>(), "{codec:?}");
        let conn_stats = client_stats(&net, c);
        assert_eq!(
            conn_stats.retransmits, 1,
            "{codec:?}: exactly the lost message, once"
        );
        assert!(dropped.load(Ordering::SeqCst) >= 2, "it was sent again");
        // Repaired within a few round trips of the loss, long before the 200 ms initial RTO.
        assert!(
            net.now() - start < Duration::from_millis(60),
            "{codec:?}: took {:?}",
            net.now() - start
        );
    }
}

/// 20 % loss each way: every loss is repaired by the adaptive timers (RTO, fast retransmit)
/// long before an epoch (2 s here) would resend it: the server's deliveries never stall for a
/// quarter of an epoch, on simulated time.
#[test]
fn heavy_loss_recovers_by_rto_long_before_an_epoch() {
    hawser_sim::for_each_seed(SEEDS, |seed| {
        for codec in [Codec::Binary, Codec::Json] {
            heavy_loss(seed, codec, RetransmitPolicy::Adaptive);
        }
    });
}

/// Sends 500 messages under 20 % loss each way with `policy` and checks that deliveries never
/// stall for a quarter of an epoch.
fn heavy_loss(seed: u64, codec: Codec, policy: RetransmitPolicy) {
    let mut net = SimNet::new(seed);
    net.set_codec(codec);
    net.set_latency(Duration::from_millis(5));
    let cfg = config(codec, policy);
    let epoch = cfg.params.epoch;
    let (s, c) = pair(&mut net, &cfg);
    net.set_faults_both(s, c, FaultConfig::dropping(20.0));
    for i in 0..500u32 {
        net.with::<ClientEndpoint, _>(c, |ep, now| {
            ep.write(now, Bytes::from(i.to_be_bytes().to_vec()))
        })
        .unwrap()
        .unwrap();
    }
    // The longest wait, on the simulated clock, between two deliveries (or before the first).
    let (mut got, mut last, mut stall) = (Vec::new(), net.now(), Duration::ZERO);
    net.run_until_cond(Duration::from_secs(60), |net| {
        let now = net.now();
        net.with::<ServerEndpoint, _>(s, |ep, _| {
            while let Some(ServerRead::Data(_, p)) = ep.read() {
                got.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
                stall = stall.max(now - last);
                last = now;
            }
        })
        .unwrap();
        got.len() == 500
    });
    assert_eq!(got, (0..500).collect::<Vec<_>>(), "{codec:?}");
    let stats = client_stats(&net, c);
    assert!(
        stats.retransmits > 0 && stats.rto_expiries > 0,
        "{codec:?}: {stats:?}"
    );
    assert!(
        stall < epoch / 4,
        "{codec:?}: deliveries stalled for {stall:?} (epoch {epoch:?}), {stats:?}"
    );
}

#[test]
fn adaptive_beats_epoch_under_loss() {
    hawser_sim::for_each_seed(SEEDS, adaptive_beats_epoch);
}

fn adaptive_beats_epoch(seed: u64) {
    let mut elapsed = Vec::new();
    for policy in [RetransmitPolicy::Epoch, RetransmitPolicy::Adaptive] {
        let mut net = SimNet::new(seed);
        net.set_latency(Duration::from_millis(5));
        let cfg = config(Codec::Binary, policy);
        let (s, c) = pair(&mut net, &cfg);
        net.set_faults_both(s, c, FaultConfig::dropping(10.0));
        let start = net.now();
        let got = send_and_collect(&mut net, s, c, 300, Duration::from_secs(600));
        assert_eq!(got.len(), 300, "{policy:?}");
        elapsed.push(net.now() - start);
    }
    assert!(
        elapsed[1] * 5 < elapsed[0],
        "adaptive {:?} should be far faster than epoch {:?} under 10% loss",
        elapsed[1],
        elapsed[0]
    );
}

#[test]
fn slow_reader_bounds_the_writer_then_everything_arrives() {
    let mut net = SimNet::new(hawser_sim::seed());
    let mut cfg = config(Codec::Binary, RetransmitPolicy::Adaptive);
    cfg.max_read_queue = 16;
    cfg.max_send_queue = 32;
    let (s, c) = pair(&mut net, &cfg);
    // The server's application does not read: the client can write only until its own queue
    // (32) is full on top of what the server accepted (16).
    let mut written = 0u32;
    loop {
        let r = net
            .with::<ClientEndpoint, _>(c, |ep, now| {
                ep.write(now, Bytes::from(written.to_be_bytes().to_vec()))
            })
            .unwrap();
        match r {
            Ok(()) => written += 1,
            Err(WriteError::QueueFull(32)) => {
                // Let acks arrive; if the queue stays full, the bound holds.
                net.run_for(Duration::from_millis(500));
                let cap = net.endpoint::<ClientEndpoint>(c).unwrap().send_capacity();
                if cap == 0 {
                    break;
                }
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(written < 1000, "the writer was never bounded");
    }
    assert_eq!(written, 16 + 32, "server read queue + client send queue");
    let server = net.endpoint::<ServerEndpoint>(s).unwrap();
    assert!(
        server.stats().conns.data_refused > 0,
        "the reader refused data while full"
    );
    // Now the reader catches up, and the writer writes the rest.
    let mut got = Vec::new();
    net.run_until_cond(Duration::from_secs(30), |net| {
        net.with::<ServerEndpoint, _>(s, |ep, _| {
            while let Some(ServerRead::Data(_, p)) = ep.read() {
                got.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
            }
        })
        .unwrap();
        got.len() as u32 == written
    });
    assert_eq!(got, (0..written).collect::<Vec<_>>());
}

#[test]
fn epoch_policy_with_binary_codec_resends_only_at_epochs() {
    let mut net = SimNet::new(hawser_sim::seed());
    let cfg = config(Codec::Binary, RetransmitPolicy::Epoch);
    let (s, c) = pair(&mut net, &cfg);
    net.set_faults(s, c, FaultConfig::drop_all()); // no acks come back
    net.with::<ClientEndpoint, _>(c, |ep, now| ep.write(now, Bytes::from_static(b"x")))
        .unwrap()
        .unwrap();
    net.run_for(Duration::from_millis(1900));
    let stats = client_stats(&net, c);
    assert_eq!(stats.retransmits, 0, "nothing before the first epoch");
    net.run_for(Duration::from_millis(200));
    let stats = client_stats(&net, c);
    assert_eq!(stats.retransmits, 1, "one resend at the first epoch");
    let _ = ClientRead::Data(Bytes::new());
}

#[test]
fn json_with_cumulative_acks_uses_cacks_and_delivers_under_loss() {
    hawser_sim::for_each_seed(SEEDS, json_acks_under_loss);
}

fn json_acks_under_loss(seed: u64) {
    for acks in [AckPolicy::PerMessage, AckPolicy::Cumulative] {
        let mut net = SimNet::new(seed);
        net.set_codec(Codec::Json);
        let cfg = config(Codec::Json, RetransmitPolicy::Adaptive).with_acks(acks);
        let (s, c) = pair(&mut net, &cfg);
        let cacks = Arc::new(AtomicU32::new(0));
        let seen = cacks.clone();
        net.set_hook(
            s,
            c,
            Some(message_hook(Codec::Json, move |m| {
                if m.kind == MsgType::CAck {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                Verdict::Pass
            })),
        );
        let got = send_and_collect(&mut net, s, c, 200, Duration::from_secs(10));
        assert_eq!(got, (0..200).collect::<Vec<_>>(), "{acks:?}");
        let n = cacks.load(Ordering::SeqCst);
        match acks {
            AckPolicy::PerMessage => assert_eq!(n, 0, "the reference sends Acks only"),
            _ => assert!(n > 0, "in-order data is acknowledged by CAcks"),
        }
        // 10% loss both ways: still exactly once, in order.
        net.set_faults_both(s, c, FaultConfig::dropping(10.0));
        let more = send_and_collect(&mut net, s, c, 200, Duration::from_secs(60));
        assert_eq!(more, (0..200).collect::<Vec<_>>(), "{acks:?} under loss");
    }
}

/// A client and server with the bulk preset (ω 4,096, M 1,024) on 100 µs links, 1 KiB
/// messages, `loss` percent dropped each way; returns the client's counters, the data datagrams
/// the up link dropped, and the simulated time it took.
fn bulk_under_loss(seed: u64, acks: AckPolicy, loss: f64, n: u32) -> (ConnStats, u64, Duration) {
    let mut net = SimNet::new(seed);
    net.set_latency(Duration::from_micros(100));
    let mut cfg = Config::new(Params::throughput()).with_acks(acks);
    cfg.max_payload = 1400;
    let (s, c) = pair(&mut net, &cfg);
    net.set_faults_both(s, c, FaultConfig::dropping(loss));
    let before = net.link_stats(c, s).dropped;
    let start = net.now();
    for i in 0..n {
        let mut payload = vec![0u8; 1024];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        net.with::<ClientEndpoint, _>(c, |ep, now| ep.write(now, Bytes::from(payload)))
            .unwrap()
            .unwrap();
    }
    let mut next = 0u32;
    net.run_until_cond(Duration::from_secs(60), |net| {
        net.with::<ServerEndpoint, _>(s, |ep, _| {
            while let Some(ServerRead::Data(_, p)) = ep.read() {
                assert_eq!(u32::from_be_bytes(p[..4].try_into().unwrap()), next);
                next += 1;
            }
        })
        .unwrap();
        next == n
    });
    assert_eq!(next, n, "{acks:?} at {loss}% loss: not all delivered");
    let stats = client_stats(&net, c);
    (
        stats,
        net.link_stats(c, s).dropped - before,
        net.now() - start,
    )
}

#[test]
fn selective_acks_resend_only_what_was_lost() {
    hawser_sim::for_each_seed(BULK_SEEDS, selective_acks_resend_only);
}

fn selective_acks_resend_only(seed: u64) {
    for loss in [5.0, 10.0, 20.0] {
        let (stats, dropped, _) = bulk_under_loss(seed, AckPolicy::Selective, loss, 2_000);
        // Every drop on the up link is a data datagram (one message each) or, rarely, a
        // heartbeat; a resend is for a message that really was lost, or a probe (which resends
        // the newest message in flight, lost or not).
        assert!(
            stats.retransmits <= dropped + stats.probes,
            "{loss}%: {} retransmits for {dropped} lost",
            stats.retransmits
        );
        assert!(stats.retransmits * 10 >= dropped * 9, "{loss}%: {stats:?}");
    }
    // Per-message Acks, for comparison: each lost Ack of a message that arrived out of order
    // makes it look lost, so about half of all resends are spurious at 10 % each way.
    let (per_message, dropped, _) = bulk_under_loss(seed, AckPolicy::Cumulative, 10.0, 2_000);
    assert!(
        per_message.retransmits > dropped * 3 / 2,
        "{} for {dropped}",
        per_message.retransmits
    );
}

#[test]
fn a_lost_tail_is_probed_long_before_the_rto() {
    let mut net = SimNet::new(hawser_sim::seed());
    net.set_latency(Duration::from_micros(100));
    let cfg = config(Codec::Binary, RetransmitPolicy::Adaptive);
    let (s, c) = pair(&mut net, &cfg);
    // An RTT sample first, then a burst of 10 whose last three are lost once each: nothing is
    // sent after them, so only a probe (or the RTO) can reveal the loss.
    let got = send_and_collect(&mut net, s, c, 1, Duration::from_secs(1));
    assert_eq!(got, vec![0]);
    let seen = Arc::new(AtomicU32::new(0));
    let dropped = seen.clone();
    net.set_hook(
        c,
        s,
        Some(message_hook(Codec::Binary, move |m| {
            if m.kind == MsgType::Data
                && (1009..=1011).contains(&m.seq.0)
                && dropped.fetch_add(1, Ordering::SeqCst) < 3
            {
                Verdict::Drop
            } else {
                Verdict::Pass
            }
        })),
    );
    let start = net.now();
    let got = send_and_collect(&mut net, s, c, 10, Duration::from_secs(1));
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    let stats = client_stats(&net, c);
    assert_eq!(stats.rto_expiries, 0, "{stats:?}");
    assert_eq!(stats.probes, 1, "{stats:?}");
    // The probe resends 1011; its SAck shows 1009 and 1010 missing, which are resent at once.
    assert_eq!(stats.retransmits, 3, "{stats:?}");
    // Two RTTs (at least the 1 ms timer granularity) and a round trip, under the 5 ms RTO floor.
    let took = net.now() - start;
    assert!(took < Duration::from_millis(3), "took {took:?}");
}

/// What `docs/lsp.md` says of loss recovery, on simulated time: 5,000 messages under 10 %
/// loss each way take under 25 ms (10-21 ms over eight seeds) against 0.9 ms loss-free, and
/// every resend repairs a loss or is a probe: the resends are the losses, give or take the
/// probes. (Without probes, every lost resend at the window's edge would wait for the 5 ms
/// RTO floor.)
#[test]
fn losses_cost_little_time_with_selective_acks_and_probes() {
    hawser_sim::for_each_seed(BULK_SEEDS, |seed| {
        let (_, _, lossless) = bulk_under_loss(seed, AckPolicy::Selective, 0.0, 5_000);
        assert!(
            lossless <= Duration::from_millis(1),
            "lossless {lossless:?}"
        );
        let (stats, dropped, lossy) = bulk_under_loss(seed, AckPolicy::Selective, 10.0, 5_000);
        assert!(
            lossy < Duration::from_millis(25),
            "{lossy:?} (lossless {lossless:?}), {stats:?}"
        );
        assert!(
            stats.retransmits <= dropped + stats.probes,
            "{} resends for {dropped} losses, {stats:?}",
            stats.retransmits
        );
        assert!(
            stats.retransmits + stats.probes >= dropped,
            "{} resends for {dropped} losses, {stats:?}",
            stats.retransmits
        );
    });
}

#[test]
fn selective_acks_on_json_act_as_cumulative() {
    let cfg = config(Codec::Json, RetransmitPolicy::Adaptive).with_acks(AckPolicy::Selective);
    assert_eq!(cfg.effective_acks(), AckPolicy::Cumulative);
    let cfg = config(Codec::Binary, RetransmitPolicy::Adaptive);
    assert_eq!(cfg.effective_acks(), AckPolicy::Selective);
}

#[test]
fn unanswered_probes_back_off_until_the_rto_takes_over() {
    let mut net = SimNet::new(hawser_sim::seed());
    net.set_latency(Duration::from_micros(100));
    let cfg = config(Codec::Binary, RetransmitPolicy::Adaptive);
    let (s, c) = pair(&mut net, &cfg);
    let got = send_and_collect(&mut net, s, c, 1, Duration::from_secs(1));
    assert_eq!(got, vec![0]);
    // A lone message into a partition: one probe (two RTTs, at least 1 ms, and the peer's
    // ack delay), whose doubled wait would pass the 5 ms RTO floor, so the RTO takes over and
    // backs off (5, 10, 20 ms...). Without the doubling, a probe every 3 ms.
    net.partition(s, c);
    net.with::<ClientEndpoint, _>(c, |ep, now| ep.write(now, Bytes::from_static(b"x")))
        .unwrap()
        .unwrap();
    net.run_for(Duration::from_millis(60));
    let stats = client_stats(&net, c);
    assert_eq!(stats.probes, 1, "{stats:?}");
    assert_eq!(stats.rto_expiries, 3, "{stats:?}");
    net.heal(s, c);
    net.run_for(Duration::from_millis(100));
    let read = net.with::<ServerEndpoint, _>(s, |ep, _| ep.read()).unwrap();
    assert!(matches!(read, Some(ServerRead::Data(_, p)) if &p[..] == b"x"));
}
