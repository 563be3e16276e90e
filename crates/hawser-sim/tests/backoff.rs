//! Reference group "exponential back-off" (spec section 5, rule 3.4): while acknowledgements are
//! lost, each unacknowledged message is resent at epochs 1, 3, 6, 11, 16, ... after its first
//! send (waits 0, 1, 2, 4, 4 with MaxBackOffInterval 4), so 14 epochs without acks cost exactly
//! 5 sends and the first resend after acks return makes 6. These tests pin the reference's
//! schedule, so both codecs run with `RetransmitPolicy::Epoch`.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hawser_proto::lsp::Params;
use hawser_proto::wire::{Codec, MsgType};
use hawser_sim::Verdict;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ClientsToServer,
    ServerToClients,
}

/// The scenario: `clients` connections, each sender writes `msgs` messages at once (within
/// the window), every data acknowledgement is dropped for `dropped_epochs` epochs (heartbeats
/// still pass, so nobody is declared lost), then acks flow again. Returns, per connection and
/// per message, the instants at which it was put on the wire.
fn acks_lost_for(
    codec: Codec,
    dir: Dir,
    clients: usize,
    msgs: usize,
    p: Params,
    dropped_epochs: u32,
) -> Vec<Vec<Vec<Duration>>> {
    let mut c = Cluster::with_config(reference_config(codec, p));
    c.add_clients(clients);
    c.connect_all();
    let (data_links, ack_links): (Vec<_>, Vec<_>) = (0..clients)
        .map(|i| match dir {
            Dir::ClientsToServer => (c.up(i), c.down(i)),
            Dir::ServerToClients => (c.down(i), c.up(i)),
        })
        .unzip();
    for &link in &ack_links {
        c.hook(link, |m| match m.kind {
            MsgType::Ack | MsgType::CAck | MsgType::SAck if m.seq.0 != 0 => Verdict::Drop,
            _ => Verdict::Pass,
        });
    }
    // Every Data send is counted by a hook on its link, and timed by the trace.
    let counter = DataCounter::default();
    for &link in &data_links {
        c.count_data(link, &counter);
    }
    c.net.record_trace(usize::MAX);
    let sent: Vec<_> = (0..clients)
        .map(|i| c.msgs(&format!("c{i}"), msgs))
        .collect();
    for (i, m) in sent.iter().enumerate() {
        match dir {
            Dir::ClientsToServer => c.write(i, m),
            Dir::ServerToClients => c.server_write(i, m),
        }
    }
    c.run_for(c.epoch() * dropped_epochs + c.epoch() / 2);
    for i in 0..clients {
        let sender = match dir {
            Dir::ClientsToServer => c.client_conn(i),
            Dir::ServerToClients => c.server_conn(i),
        };
        assert_eq!(
            sender.in_flight() as usize,
            msgs,
            "client {i}: an ack got through"
        );
    }
    for &link in &ack_links {
        c.unhook(link);
    }
    let acked = c.run_until(c.epoch() * (p.max_backoff + 2), |c| {
        (0..clients).all(|i| match dir {
            Dir::ClientsToServer => c.client_conn(i).pending() == 0,
            Dir::ServerToClients => c.server_conn(i).pending() == 0,
        })
    });
    assert!(acked, "messages still unacknowledged after acks came back");
    // Nothing more is sent once everything is acknowledged.
    c.run_for(c.epoch() * 5);
    for (i, m) in sent.iter().enumerate() {
        let got = match dir {
            Dir::ClientsToServer => c.server_reads(i),
            Dir::ServerToClients => c.reads(i),
        };
        assert_eq!(got, &m[..], "client {i}: delivered exactly once, in order");
    }
    let sends = c.sent_messages_at();
    (0..clients)
        .map(|i| {
            let (from, id): (SocketAddr, _) = (data_links[i].0, c.conn_id(i));
            let first = c.isns[i] + 1;
            let per_msg: Vec<Vec<Duration>> = (0..msgs as u64)
                .map(|k| {
                    sends
                        .iter()
                        .filter(|(_, f, m)| {
                            *f == from
                                && m.kind == MsgType::Data
                                && m.conn == id
                                && m.seq.0 == first + k
                        })
                        .map(|(at, _, _)| *at)
                        .collect()
                })
                .collect();
            let counted: Vec<(u64, u32)> = per_msg
                .iter()
                .zip(first..)
                .map(|(times, seq)| (seq, times.len() as u32))
                .collect();
            assert_eq!(
                counter.per_seq(id),
                counted,
                "client {i}: the hook and the trace differ"
            );
            per_msg
        })
        .collect()
}

/// In units of epochs, the gaps between consecutive resends of one message (the first send is
/// left out: it went at `write`, anywhere within an epoch).
fn resend_gaps(times: &[Duration], epoch: Duration) -> Vec<u128> {
    times[1..]
        .windows(2)
        .map(|w| {
            let gap = (w[1] - w[0]).as_nanos();
            assert_eq!(
                gap % epoch.as_nanos(),
                0,
                "a resend off the epoch grid: {times:?}"
            );
            gap / epoch.as_nanos()
        })
        .collect()
}

/// Reference "exponential back-off": back-off 4, δ 2000 ms, ω 5; acks dropped for 14 epochs.
/// Every message is sent exactly 6 times: at `write`, at epochs 1, 3, 6 and 11 (all lost acks),
/// and at epoch 16, after acks came back.
fn exponential(codec: Codec, dir: Dir) {
    let p = params(5, 2000, 5, 4, 5);
    let sends = acks_lost_for(codec, dir, 2, 5, p, 14);
    for (i, per_msg) in sends.iter().enumerate() {
        for (k, times) in per_msg.iter().enumerate() {
            assert_eq!(
                times.len(),
                6,
                "{dir:?} client {i} message {k}: sends at {times:?}"
            );
            assert!(
                times[1] - times[0] <= p.epoch,
                "first resend at the first epoch"
            );
            assert_eq!(resend_gaps(times, p.epoch), vec![2, 3, 5, 5], "{times:?}");
        }
    }
}

/// MaxBackOffInterval 0: resent at every epoch. Acks dropped for 3 epochs: sends at `write` and
/// at epochs 1, 2, 3 (lost acks) and 4 (acked): 5 in all.
fn every_epoch(codec: Codec, dir: Dir) {
    let p = params(5, 1000, 5, 0, 5);
    let sends = acks_lost_for(codec, dir, 1, 3, p, 3);
    for times in &sends[0] {
        assert_eq!(times.len(), 5, "{times:?}");
        assert_eq!(resend_gaps(times, p.epoch), vec![1, 1, 1]);
    }
}

/// MaxBackOffInterval 2: waits 0, 1, 2, 2, 2: resends at epochs 1, 3, 6, 9, 12, 15. Acks
/// dropped for 13 epochs: 1 + 5 lost + the one at epoch 15 = 7 sends.
fn capped(codec: Codec, dir: Dir) {
    let p = params(5, 500, 3, 2, 3);
    let sends = acks_lost_for(codec, dir, 1, 3, p, 13);
    for times in &sends[0] {
        assert_eq!(times.len(), 7, "{times:?}");
        assert_eq!(resend_gaps(times, p.epoch), vec![2, 3, 3, 3, 3]);
    }
}

/// Spec 2: MaxBackOffInterval is "the most epochs to wait between two sends of one Data
/// message". Under each codec's *default* retransmission policy and the reference's robust
/// parameters (K 20, δ 50 ms, back-off 0), the first 8 sends of a message are lost: no two
/// consecutive sends of it may be more than one epoch apart, so it arrives within 9 epochs.
fn default_policy_respects_max_backoff(codec: Codec) {
    let p = params(20, 50, 1, 0, 1);
    let mut c = Cluster::new(codec, p);
    c.add_clients(1);
    c.connect_all();
    let first = c.isns[0] + 1;
    let mut lost = 0;
    c.hook(c.up(0), move |m| {
        if m.kind == MsgType::Data && m.seq.0 == first && lost < 8 {
            lost += 1;
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    c.net.record_trace(usize::MAX);
    let start = c.net.now();
    let msg = c.msgs("m", 1);
    c.write(0, &msg);
    assert!(c.run_until(Duration::from_secs(60), |c| c.server_reads(0).len() == 1));
    let took = c.net.now() - start;
    let from = c.clients[0];
    let sends: Vec<Duration> = c
        .sent_messages_at()
        .into_iter()
        .filter(|(_, f, m)| *f == from && m.kind == MsgType::Data && m.seq.0 == first)
        .map(|(at, _, _)| at)
        .collect();
    let allowed = p.epoch * (p.max_backoff + 1);
    let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g <= allowed),
        "waited more than {allowed:?} between two sends: gaps {gaps:?}, delivered after {took:?}"
    );
    assert!(took <= p.epoch * 9 + 10 * MS, "delivered after {took:?}");
}

both_codecs! {
    default_policy_waits_at_most_max_backoff_epochs_between_sends:
        |codec| default_policy_respects_max_backoff(codec);
    exp_backoff1_client_to_server_6_sends_per_message:
        |codec| exponential(codec, Dir::ClientsToServer);
    exp_backoff2_server_to_client_6_sends_per_message:
        |codec| exponential(codec, Dir::ServerToClients);
    no_backoff_resends_every_epoch: |codec| every_epoch(codec, Dir::ClientsToServer);
    no_backoff_server_resends_every_epoch: |codec| every_epoch(codec, Dir::ServerToClients);
    backoff_is_capped_at_max_backoff: |codec| capped(codec, Dir::ClientsToServer);
}
