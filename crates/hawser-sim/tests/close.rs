//! Reference groups "close" and "fast close" (spec section 5, rules 3.5 and 4): closing flushes
//! every pending message before going silent; the peer notices the silence after K epochs and
//! its reader gets every buffered message first, then the end; writes after a close fail at
//! once; a close started while the network is down completes once it comes back.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use hawser_proto::lsp::{ClientRead, ConnState, EndReason, ServerRead, WriteError};
use hawser_proto::wire::Codec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerCloses {
    /// `close()`: every connection.
    All,
    /// `close_conn(id)` for each connection.
    EachConn,
}

/// Reference `TestServerClose*` / `TestServerCloseConns*` (δ 500 ms, ω 1): clients (ISN 0)
/// echo 10 messages one by one; as soon as the server has echoed everything it closes; each
/// client then reads its last echoes and an end (the server went silent), all within
/// `max_epochs` epochs. Afterwards every read and write on both sides fails at once.
fn server_close(codec: Codec, how: ServerCloses, clients: usize, k: u32, max_epochs: u32) {
    let mut c = Cluster::new(codec, params(k, 500, 1, 0, 1));
    c.app.echo = true;
    for _ in 0..clients {
        c.add_client(0);
    }
    c.connect_all();
    let limit = c.net.now() + c.epoch() * max_epochs;
    let sent: Vec<_> = (0..clients).map(|i| c.msgs(&format!("c{i}"), 10)).collect();
    for (i, m) in sent.iter().enumerate() {
        c.round_trips(i, m.clone());
    }
    let total = clients * 10;
    assert!(c.run_until(remaining(&c, limit), |c| c.server_read_total() == total));
    let ids: Vec<_> = (0..clients).map(|i| c.conn_id(i)).collect();
    match how {
        ServerCloses::All => {
            c.with_server(|s, _| s.close());
            for &id in &ids {
                let late = c.with_server(|s, now| s.write(now, id, Bytes::from_static(b"late")));
                assert_eq!(
                    late,
                    Err(WriteError::Closed),
                    "a write after close fails at once"
                );
            }
        }
        ServerCloses::EachConn => {
            for &id in &ids {
                assert_eq!(c.with_server(|s, _| s.close_conn(id)), Ok(()));
            }
        }
    }
    let ended = c.run_until(remaining(&c, limit), |c| {
        c.app.client_ended.iter().all(Option::is_some) && c.app.server_ended.len() == clients
    });
    assert!(
        ended,
        "clients {:?}, server {:?}",
        c.app.client_ended, c.app.server_ended
    );
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(
            c.reads(i),
            &m[..],
            "client {i} read every echo before the end"
        );
        assert_eq!(c.app.client_ended[i], Some(EndReason::Lost), "client {i}");
        assert_eq!(c.app.server_ended[&ids[i]], EndReason::Closed, "{}", ids[i]);
        // The reference then closes the client: reads and writes fail at once.
        c.with_client(i, |cl, _| cl.close());
        assert_eq!(c.drain_client(i), vec![ClientRead::Ended(EndReason::Lost)]);
        let late = c.with_client(i, |cl, now| cl.write(now, Bytes::from_static(b"late")));
        assert!(late.is_err(), "client {i}: a write after close succeeded");
    }
    if how == ServerCloses::All {
        assert!(c.server_ep().is_closed());
        assert!(!c.server_ep().lost_while_closing());
    }
    assert!(
        c.drain_server().is_empty(),
        "nothing left for the server's reader"
    );
    for &id in &ids {
        let late = c.with_server(|s, now| s.write(now, id, Bytes::from_static(b"late")));
        assert!(late.is_err(), "the server wrote to {id} after closing it");
    }
    assert_eq!(c.server_ep().live_connections(), 0);
    assert!(c.app.echo_errors.is_empty(), "{:?}", c.app.echo_errors);
}

fn remaining(c: &Cluster, limit: Instant) -> Duration {
    limit.saturating_duration_since(c.net.now())
}

/// Reference `TestClientClose*` (K 5, δ 500 ms): clients echo 10 messages, then close; a closed
/// client reads its end and fails writes at once; the server notices every client's silence
/// (its reader reports each loss), closes, and fails writes at once.
fn client_close(codec: Codec, clients: usize, max_epochs: u32) {
    let mut c = Cluster::new(codec, params(5, 500, 1, 0, 1));
    c.app.echo = true;
    for _ in 0..clients {
        c.add_client(0);
    }
    c.connect_all();
    let limit = c.net.now() + c.epoch() * max_epochs;
    let sent: Vec<_> = (0..clients).map(|i| c.msgs(&format!("c{i}"), 10)).collect();
    for (i, m) in sent.iter().enumerate() {
        c.round_trips(i, m.clone());
    }
    assert!(c.run_until(remaining(&c, limit), Cluster::scripts_done));
    for i in 0..clients {
        c.with_client(i, |cl, _| cl.close());
        let late = c.with_client(i, |cl, now| cl.write(now, Bytes::from_static(b"late")));
        assert_eq!(
            late,
            Err(WriteError::Closed),
            "client {i}: a write after close"
        );
    }
    // Every echo was read, so every client message was acknowledged: the closes complete.
    c.pump();
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(c.app.client_ended[i], Some(EndReason::Closed), "client {i}");
        assert_eq!(c.reads(i), &m[..]);
        assert_eq!(c.server_reads(i), &m[..]);
    }
    let ids: Vec<_> = (0..clients).map(|i| c.conn_id(i)).collect();
    let noticed = c.run_until(remaining(&c, limit), |c| {
        c.app.server_ended.len() == clients
    });
    assert!(
        noticed,
        "the server noticed {:?} of {ids:?}",
        c.app.server_ended
    );
    for id in &ids {
        assert_eq!(c.app.server_ended[id], EndReason::Lost);
    }
    c.with_server(|s, _| s.close());
    assert!(c.server_ep().is_closed(), "nothing was pending");
    assert!(c.drain_server().is_empty());
    for &id in &ids {
        let late = c.with_server(|s, now| s.write(now, id, Bytes::from_static(b"late")));
        assert_eq!(late, Err(WriteError::Closed));
    }
}

/// Spec 3.5: the server writes 5 messages and closes the connection; the client reads nothing
/// until the connection is lost; then it reads all 5, then the end.
fn buffered_before_end_client(codec: Codec) {
    let mut c = Cluster::new(codec, params(3, 500, 2, 0, 2));
    c.app.read_clients = false;
    c.add_clients(1);
    c.connect_all();
    let sent = c.msgs("m", 5);
    c.server_write(0, &sent);
    let id = c.conn_id(0);
    assert_eq!(c.with_server(|s, _| s.close_conn(id)), Ok(()));
    let lost = c.run_until(c.epoch() * 6, |c| c.client(0).end_reason().is_some());
    assert!(lost, "the client never noticed the silence");
    let mut want: Vec<ClientRead> = sent.iter().cloned().map(ClientRead::Data).collect();
    want.push(ClientRead::Ended(EndReason::Lost));
    assert_eq!(c.drain_client(0), want);
    assert_eq!(
        c.drain_client(0),
        vec![ClientRead::Ended(EndReason::Lost)],
        "the end stays"
    );
    assert_eq!(c.app.server_ended.get(&id), Some(&EndReason::Closed));
}

/// Spec 3.5 and 4, the other way: a client writes 5 messages and closes; the server's reader
/// reads nothing until the connection is lost, then the 5 messages, then the loss.
fn buffered_before_end_server(codec: Codec) {
    let mut c = Cluster::new(codec, params(3, 500, 2, 0, 2));
    c.app.read_server = false;
    c.add_clients(2);
    c.connect_all();
    let sent = c.msgs("m", 5);
    c.write(0, &sent);
    c.with_client(0, |cl, _| cl.close());
    let id = c.conn_id(0);
    let lost = c.run_until(c.epoch() * 6, |c| {
        c.server_ep()
            .connection(id)
            .is_some_and(|conn| conn.state() == ConnState::Ended(EndReason::Lost))
    });
    assert!(lost, "the server never noticed the silence");
    assert_eq!(c.client(0).end_reason(), Some(EndReason::Closed));
    let mut want: Vec<ServerRead> = sent
        .iter()
        .cloned()
        .map(|p| ServerRead::Data(id, p))
        .collect();
    want.push(ServerRead::Ended(id, EndReason::Lost));
    assert_eq!(c.drain_server(), want);
    assert!(
        c.server_ep().connection(id).is_none(),
        "gone once its end was read"
    );
    assert_eq!(
        c.server_ep().live_connections(),
        1,
        "the other client is unaffected"
    );
}

/// Spec 4: `close` reports clients lost meanwhile. Client 0 is cut off while the server still
/// has messages for it; the server closes; client 1's connection closes cleanly, client 0's is
/// lost after K epochs, and the server says so.
fn lost_while_closing(codec: Codec) {
    let mut c = Cluster::new(codec, params(3, 500, 2, 0, 2));
    c.add_clients(2);
    c.connect_all();
    let (server, cut) = (c.server, c.clients[0]);
    c.net.partition(server, cut);
    for i in 0..2 {
        let m = c.msgs(&format!("c{i}"), 3);
        c.server_write(i, &m);
    }
    c.with_server(|s, _| s.close());
    assert!(!c.server_ep().is_closed());
    let closed = c.run_until(c.epoch() * 6, |c| c.server_ep().is_closed());
    assert!(closed, "the close never completed");
    assert!(c.server_ep().lost_while_closing());
    let (a, b) = (c.conn_id(0), c.conn_id(1));
    assert_eq!(c.app.server_ended.get(&a), Some(&EndReason::Lost));
    assert_eq!(c.app.server_ended.get(&b), Some(&EndReason::Closed));
    assert_eq!(c.reads(1).len(), 3);
}

/// Spec 2 and 3.4: a connection is declared lost after K epochs in which nothing was received
/// (the epoch in which the last datagram arrived does not count). Both directions are cut
/// 100 ms after connecting; the client last heard from the server when its connection was made.
fn loss_after_k_silent_epochs(codec: Codec, k: u32) {
    let mut c = Cluster::new(codec, params(k, 500, 1, 0, 1));
    c.add_clients(1);
    c.connect_all();
    let connected = c.net.now();
    c.run_for(100 * MS);
    let (server, client) = (c.server, c.clients[0]);
    c.net.partition(server, client);
    let lost = c.run_until(c.epoch() * (k + 3), |c| c.app.client_ended[0].is_some());
    assert!(lost, "never declared lost");
    assert_eq!(c.app.client_ended[0], Some(EndReason::Lost));
    assert_eq!(
        c.net.now() - connected,
        c.epoch() * (k + 1),
        "lost at the wrong epoch"
    );
}

/// The reference's `syncTestSystem` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Both ways, then the server closes while the network is down.
    ServerFastClose,
    /// Server to clients only; the server closes while the network is down.
    ServerToClient,
    /// Clients to server only; the clients close while the network is down.
    ClientToServer,
    /// Both ways, no fast close.
    RoundTrip,
}

/// Reference `runTest` of the sync tests: the network is toggled between 0% and 100% loss; it
/// stays up at least 2 epochs each time. Messages are written while it is down, a close is
/// started while it is down (and cannot complete: it is checked one epoch later), everything
/// completes once it is up, and the readers, reading only while it is down again, get every
/// message from their buffers.
fn sync(codec: Codec, mode: Mode, clients: usize, msgs: usize, epoch_ms: u64, max_epochs: u32) {
    let mut c = Cluster::new(codec, params(5, epoch_ms, 1, 0, 1));
    c.app.read_server = false;
    c.app.read_clients = false;
    c.add_clients(clients);
    c.connect_all();
    let limit = c.net.now() + c.epoch() * max_epochs;
    let data: Vec<_> = (0..clients)
        .map(|i| c.msgs(&format!("c{i}"), msgs))
        .collect();
    let up_for_two_epochs = |c: &mut Cluster, done: &dyn Fn(&Cluster) -> bool| {
        c.net_up();
        let up = c.net.now();
        let ok = c.run_until(remaining(c, limit), |c| {
            done(c) && c.net.now() >= up + c.epoch() * 2
        });
        assert!(ok, "{mode:?}: not done while the network was up");
        c.net_down();
    };

    c.net_down();
    if mode != Mode::ServerToClient {
        for (i, m) in data.iter().enumerate() {
            c.write(i, m);
        }
    }
    if mode == Mode::ClientToServer {
        for i in 0..clients {
            c.with_client(i, |cl, _| cl.close());
            let late = c.with_client(i, |cl, now| cl.write(now, Bytes::from_static(b"late")));
            assert_eq!(
                late,
                Err(WriteError::Closed),
                "client {i}: a write while closing"
            );
        }
        c.run_for(c.epoch());
        assert!(
            (0..clients).all(|i| c.client(i).end_reason().is_none()),
            "closed while down"
        );
    }
    if mode != Mode::ServerToClient {
        up_for_two_epochs(&mut c, &|c: &Cluster| {
            (0..clients).all(|i| match mode {
                Mode::ClientToServer => c.client(i).end_reason() == Some(EndReason::Closed),
                _ => c.client_conn(i).pending() == 0,
            })
        });
        let reads = c.drain_server();
        for (i, m) in data.iter().enumerate() {
            let id = c.conn_id(i);
            let got: Vec<&Bytes> = reads
                .iter()
                .filter_map(|r| match r {
                    ServerRead::Data(from, p) if *from == id => Some(p),
                    _ => None,
                })
                .collect();
            assert_eq!(
                got,
                m.iter().collect::<Vec<_>>(),
                "{mode:?}: server's reads from {i}"
            );
        }
        assert_eq!(reads.len(), clients * msgs, "{mode:?}: {reads:?}");
    }
    if mode != Mode::ClientToServer {
        for k in 0..msgs {
            for (i, m) in data.iter().enumerate() {
                c.server_write(i, &m[k..=k]);
            }
        }
    }
    if mode == Mode::ServerFastClose || mode == Mode::ServerToClient {
        c.with_server(|s, _| s.close());
        let id = c.conn_id(0);
        let late = c.with_server(|s, now| s.write(now, id, Bytes::from_static(b"x")));
        assert_eq!(late, Err(WriteError::Closed));
        c.run_for(c.epoch());
        assert!(
            !c.server_ep().is_closed(),
            "{mode:?}: closed while the network was down"
        );
    }
    if mode != Mode::ClientToServer {
        let fast_close = mode != Mode::RoundTrip;
        up_for_two_epochs(&mut c, &|c: &Cluster| {
            if fast_close {
                c.server_ep().is_closed()
            } else {
                (0..clients).all(|i| c.server_conn(i).pending() == 0)
            }
        });
        if fast_close {
            assert!(!c.server_ep().lost_while_closing());
        }
        for (i, m) in data.iter().enumerate() {
            let got = c.drain_client(i);
            let want: Vec<ClientRead> = m.iter().cloned().map(ClientRead::Data).collect();
            assert_eq!(
                got, want,
                "{mode:?}: client {i} reads every buffered message"
            );
            c.with_client(i, |cl, _| cl.close());
            assert_eq!(
                c.client(i).end_reason(),
                Some(EndReason::Closed),
                "nothing was pending"
            );
        }
    }
    if mode == Mode::RoundTrip || mode == Mode::ClientToServer {
        c.with_server(|s, _| s.close());
        assert!(c.server_ep().is_closed(), "{mode:?}: nothing was pending");
    }
    assert!(
        c.net.now() <= limit,
        "{mode:?}: took more than {max_epochs} epochs"
    );
}

both_codecs! {
    server_close1_one_client: |codec| server_close(codec, ServerCloses::All, 1, 5, 10);
    server_close2_three_clients_k2: |codec| server_close(codec, ServerCloses::All, 3, 2, 5);
    server_close_conns1_one_client: |codec| server_close(codec, ServerCloses::EachConn, 1, 5, 10);
    server_close_conns2_three_clients_k2: |codec| server_close(codec, ServerCloses::EachConn, 3, 2, 5);
    client_close1_two_clients: |codec| client_close(codec, 2, 10);
    client_close2_three_clients: |codec| client_close(codec, 3, 15);
    reads_give_buffered_data_before_the_end_client: |codec| buffered_before_end_client(codec);
    reads_give_buffered_data_before_the_end_server: |codec| buffered_before_end_server(codec);
    server_close_reports_a_client_lost_meanwhile: |codec| lost_while_closing(codec);
    loss_is_declared_after_k_silent_epochs_k2: |codec| loss_after_k_silent_epochs(codec, 2);
    loss_is_declared_after_k_silent_epochs_k5: |codec| loss_after_k_silent_epochs(codec, 5);
    server_fast_close1: |codec| sync(codec, Mode::ServerFastClose, 1, 10, 500, 12);
    server_fast_close2: |codec| sync(codec, Mode::ServerFastClose, 3, 10, 500, 12);
    server_fast_close3: |codec| sync(codec, Mode::ServerFastClose, 5, 500, 2000, 20);
    server_to_client1: |codec| sync(codec, Mode::ServerToClient, 1, 10, 500, 12);
    server_to_client2: |codec| sync(codec, Mode::ServerToClient, 3, 10, 500, 12);
    server_to_client3: |codec| sync(codec, Mode::ServerToClient, 5, 500, 2000, 20);
    client_to_server1: |codec| sync(codec, Mode::ClientToServer, 1, 10, 500, 12);
    client_to_server2: |codec| sync(codec, Mode::ClientToServer, 3, 10, 500, 12);
    client_to_server3: |codec| sync(codec, Mode::ClientToServer, 5, 500, 2000, 20);
    round_trip1: |codec| sync(codec, Mode::RoundTrip, 1, 10, 500, 12);
    round_trip2: |codec| sync(codec, Mode::RoundTrip, 3, 10, 500, 12);
    round_trip3: |codec| sync(codec, Mode::RoundTrip, 5, 500, 2000, 20);
}
