//! Reference groups "basic echo" and "send/receive without epochs" (spec section 5): echo
//! clients against an echo server on a perfect network. Every message comes back, in order,
//! exactly once, within the reference's time limits; and without epochs, nothing needs one.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use hawser_proto::lsp::Params;
use hawser_proto::wire::Codec;

/// What one echo run looks like, as the reference's basic tests set it up.
struct Echo {
    clients: usize,
    msgs: usize,
    params: Params,
    /// The reference's timeout, in simulated milliseconds from the moment all are connected.
    limit_ms: u64,
    /// The echo server sleeps up to this long before each echo (reference `maxSleepMillis`).
    sleep_ms: Option<u64>,
}

/// Runs the echo scenario; returns the cluster for further checks.
fn echo(codec: Codec, e: Echo) -> Cluster {
    let mut c = Cluster::new(codec, e.params);
    c.app.echo = true;
    c.app.echo_delay_max = e.sleep_ms.map(Duration::from_millis);
    c.add_clients(e.clients);
    c.connect_all();
    let start = c.net.now();
    let sent: Vec<_> = (0..e.clients)
        .map(|i| c.msgs(&format!("c{i}"), e.msgs))
        .collect();
    for (i, msgs) in sent.iter().enumerate() {
        c.round_trips(i, msgs.clone());
    }
    let limit = Duration::from_millis(e.limit_ms);
    let done = c.run_until(limit, Cluster::scripts_done);
    let progress: Vec<usize> = (0..e.clients).map(|i| c.reads(i).len()).collect();
    assert!(
        done,
        "not done within {limit:?}: echoes read per client {progress:?}"
    );
    for (i, msgs) in sent.iter().enumerate() {
        assert_eq!(
            c.server_reads(i),
            &msgs[..],
            "server's reads from client {i}"
        );
        assert_eq!(c.reads(i), &msgs[..], "client {i}'s echoes");
    }
    assert!(c.app.echo_errors.is_empty(), "{:?}", c.app.echo_errors);
    assert!(c.app.server_ended.is_empty() && c.app.client_ended.iter().all(Option::is_none));
    assert!(c.net.now() - start <= limit);
    c
}

/// The reference's basic tests: K 5, δ 2000 ms, M = ω.
fn basic(
    codec: Codec,
    clients: usize,
    msgs: usize,
    window: u32,
    limit_ms: u64,
    sleep_ms: Option<u64>,
) {
    echo(
        codec,
        Echo {
            clients,
            msgs,
            params: params(5, 2000, window, 0, window),
            limit_ms,
            sleep_ms,
        },
    );
}

both_codecs! {
    basic1_one_client_3_msgs: |codec| basic(codec, 1, 3, 1, 2000, None);
    basic2_one_client_50_msgs: |codec| basic(codec, 1, 50, 1, 2000, None);
    basic3_two_clients_50_msgs: |codec| basic(codec, 2, 50, 1, 2000, None);
    basic4_ten_clients_50_msgs_window_2: |codec| basic(codec, 10, 50, 2, 2000, None);
    basic5_two_clients_500_round_trips_within_2s: |codec| basic5(codec);
    basic6_ten_clients_500_msgs_window_20: |codec| basic(codec, 10, 500, 20, 15_000, None);
    basic7_random_server_delays_4_clients: |codec| basic(codec, 4, 10, 2, 15_000, Some(100));
    basic8_random_server_delays_5_clients_window_10: |codec| basic(codec, 5, 10, 10, 15_000, Some(100));
    basic9_random_server_delays_2_clients_50_msgs: |codec| basic(codec, 2, 50, 10, 15_000, Some(100));
    send_receive1_no_epochs_one_client: |codec| send_receive(codec, 1, 5000, None);
    send_receive2_no_epochs_four_clients: |codec| send_receive(codec, 4, 5000, None);
    send_receive3_no_epochs_random_delays: |codec| send_receive(codec, 4, 10_000, Some(100));
}

/// 2 clients × 500 round trips with δ 2000 ms must finish within 2 s: no message may wait for
/// an epoch, so not one was ever resent and no epoch fired.
fn basic5(codec: Codec) {
    let c = echo(
        codec,
        Echo {
            clients: 2,
            msgs: 500,
            params: params(5, 2000, 2, 0, 2),
            limit_ms: 2000,
            sleep_ms: None,
        },
    );
    assert_eq!(c.server_ep().stats().conns.retransmits, 0);
    for i in 0..2 {
        assert_eq!(c.client(i).stats().conns.retransmits, 0);
    }
}

/// Reference `TestSendReceive*`: K 3, δ 5000 or 10000 ms, 6 round trips per client. Everything
/// is done before the first epoch, so no epoch, resend or heartbeat happened on either side.
fn send_receive(codec: Codec, clients: usize, epoch_ms: u64, sleep_ms: Option<u64>) {
    let c = echo(
        codec,
        Echo {
            clients,
            msgs: 6,
            params: params(3, epoch_ms, 1, 0, 1),
            limit_ms: epoch_ms,
            sleep_ms,
        },
    );
    assert!(
        c.net.elapsed() < Duration::from_millis(epoch_ms),
        "{:?}",
        c.net.elapsed()
    );
    let server = c.server_ep().stats().conns;
    assert_eq!(
        (server.epochs, server.retransmits, server.heartbeats_sent),
        (0, 0, 0)
    );
    for i in 0..clients {
        let client = c.client(i).stats().conns;
        assert_eq!(
            (client.epochs, client.retransmits, client.heartbeats_sent),
            (0, 0, 0)
        );
        assert_eq!(client.data_sent, 6);
        assert_eq!(client.data_received, 6);
    }
    assert_eq!(server.data_sent, 6 * clients as u64);
    assert_eq!(server.duplicates_received, 0);
}
