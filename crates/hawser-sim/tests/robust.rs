//! Reference groups "robust" and "out of order" (spec section 5), and every fault at once:
//! echo clients over a network that loses, delays, reorders and duplicates datagrams. Whatever
//! the network does, every message is delivered exactly once, in order.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use hawser_proto::lsp::{ClientState, EndReason};
use hawser_proto::wire::Codec;
use hawser_sim::FaultConfig;

/// Every client streams its messages (all written at once), the server echoes them; checks that
/// both sides read exactly what the other wrote, in order.
fn stream_echo(c: &mut Cluster, msgs: usize, limit: Duration) -> Vec<Vec<Bytes>> {
    let sent: Vec<_> = (0..c.clients.len())
        .map(|i| c.msgs(&format!("c{i}"), msgs))
        .collect();
    for (i, m) in sent.iter().enumerate() {
        c.write(i, m);
    }
    let total = sent.len() * msgs;
    let done = c.run_until(limit, |c| {
        c.server_read_total() == total && (0..c.clients.len()).all(|i| c.reads(i).len() == msgs)
    });
    let progress: Vec<(usize, usize)> = (0..sent.len())
        .map(|i| (c.server_reads(i).len(), c.reads(i).len()))
        .collect();
    assert!(
        done,
        "not done in {limit:?}: (server read, echoes read) per client: {progress:?}"
    );
    check_echoed(c, &sent);
    sent
}

/// Exactly once, in order, both ways; nobody lost.
fn check_echoed(c: &Cluster, sent: &[Vec<Bytes>]) {
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(
            c.server_reads(i),
            &m[..],
            "the server's reads from client {i}"
        );
        assert_eq!(c.reads(i), &m[..], "client {i}'s echoes");
    }
    assert!(c.app.echo_errors.is_empty(), "{:?}", c.app.echo_errors);
    assert!(c.app.server_ended.is_empty(), "{:?}", c.app.server_ended);
    assert!(
        c.app.client_ended.iter().all(Option::is_none),
        "{:?}",
        c.app.client_ended
    );
}

/// Reference `TestRobust*`: K 20, δ 50 ms, 20% of every write dropped (both ways) once
/// connected; round trips one at a time; 15 s to finish.
fn robust(codec: Codec, clients: usize, msgs: usize, window: u32) {
    let mut c = Cluster::new(codec, params(20, 50, window, 0, window));
    c.app.echo = true;
    c.add_clients(clients);
    c.connect_all();
    c.net.set_faults_all(FaultConfig::dropping(20.0));
    let sent: Vec<_> = (0..clients)
        .map(|i| c.msgs(&format!("c{i}"), msgs))
        .collect();
    for (i, m) in sent.iter().enumerate() {
        c.round_trips(i, m.clone());
    }
    let start = c.net.now();
    let limit = Duration::from_secs(15);
    assert!(
        c.run_until(limit, Cluster::scripts_done),
        "not done within {limit:?}"
    );
    check_echoed(&c, &sent);
    assert!(c.net.now() - start <= limit);
    assert!(
        c.net.stats().dropped > 0,
        "the network dropped nothing: the test proves nothing"
    );
    let resent = c.server_ep().stats().conns.retransmits
        + (0..clients)
            .map(|i| c.client(i).stats().conns.retransmits)
            .sum::<u64>();
    assert!(resent > 0, "nothing was resent under 20% loss");
}

both_codecs! {
    robust1_one_client_10_msgs: |codec| robust(codec, 1, 10, 1);
    robust2_three_clients_15_msgs: |codec| robust(codec, 3, 15, 1);
    robust3_five_clients_10_msgs: |codec| robust(codec, 5, 10, 1);
    robust4_one_client_window_2: |codec| robust(codec, 1, 10, 2);
    robust5_three_clients_window_5: |codec| robust(codec, 3, 15, 5);
    robust6_five_clients_window_10: |codec| robust(codec, 5, 10, 10);
    out_of_order1_one_client: |codec| out_of_order(codec, 1, 30);
    out_of_order2_three_clients: |codec| out_of_order(codec, 3, 30);
    out_of_order3_five_clients_window_30: |codec| out_of_order(codec, 5, 60);
    everything_at_once_20_clients: |codec| chaos(codec);
}

/// Half of every write (both ways) is delivered 500 ms late, so later messages overtake earlier
/// ones; ω 30 lets the receiver buffer them. Everything arrives once, in order.
fn out_of_order(codec: Codec, clients: usize, msgs: usize) {
    let mut c = Cluster::new(codec, params(5, 2000, 30, 0, 30));
    c.app.echo = true;
    c.add_clients(clients);
    c.connect_all();
    c.net.set_faults_all(
        FaultConfig::default()
            .with_delay_percent(50.0)
            .with_delay(Duration::from_millis(500)),
    );
    stream_echo(&mut c, msgs, Duration::from_secs(15));
    assert!(
        c.app.max_ahead_server > 0 && c.app.max_ahead_clients > 0,
        "no message overtook another (server {}, clients {})",
        c.app.max_ahead_server,
        c.app.max_ahead_clients
    );
}

/// 20 clients connect and echo over a network that drops, duplicates, reorders and delays, all
/// at once, then everybody closes cleanly.
fn chaos(codec: Codec) {
    let mut c = Cluster::new(codec, params(20, 100, 8, 2, 4));
    c.app.echo = true;
    c.net.set_faults_all(
        FaultConfig::default()
            .with_drop_percent(10.0)
            .with_duplicate_percent(10.0)
            .with_reorder_percent(20.0)
            .with_delay_percent(5.0)
            .with_delay(Duration::from_millis(30)),
    );
    c.add_clients(20);
    c.connect_all();
    let server = c.server_ep().stats();
    assert_eq!(server.connections_opened, 20);
    assert_eq!(c.server_ep().live_connections(), 20);
    stream_echo(&mut c, 50, Duration::from_secs(120));
    let net = c.net.stats();
    assert!(net.dropped > 0, "{net:?}");
    let dups: u64 = (0..20)
        .map(|i| {
            let (up, down) = (c.up(i), c.down(i));
            c.net.link_stats(up.0, up.1).faults.duplicated
                + c.net.link_stats(down.0, down.1).faults.duplicated
        })
        .sum();
    assert!(dups > 0, "nothing was duplicated");
    assert!(c.server_ep().stats().conns.duplicates_received > 0);

    // Everybody closes once every message is acknowledged both ways (an Ack lost just before a
    // close would leave its sender waiting for a silent peer): clients first, then the server.
    let flushed = c.run_until(Duration::from_secs(10), |c| {
        (0..20).all(|i| c.client_conn(i).pending() == 0 && c.server_conn(i).pending() == 0)
    });
    assert!(flushed, "some message was never acknowledged");
    for i in 0..20 {
        c.with_client(i, |cl, _| cl.close());
    }
    let closed = c.run_until(Duration::from_secs(10), |c| {
        (0..20).all(|i| c.app.client_ended[i].is_some())
    });
    assert!(closed, "clients did not finish closing");
    for i in 0..20 {
        assert_eq!(c.app.client_ended[i], Some(EndReason::Closed), "client {i}");
        assert!(matches!(c.client(i).state(), ClientState::Connected(_)));
    }
    c.with_server(|s, _| s.close());
    assert!(
        c.server_ep().is_closed(),
        "nothing was pending: the close completes at once"
    );
    assert!(!c.server_ep().lost_while_closing());
}
