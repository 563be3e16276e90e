//! The async layer over real sockets on 127.0.0.1, with short epochs. Protocol behaviour is
//! proven deterministically on simulated time in `hawser-sim`; these tests prove that the
//! tokio driver moves bytes and time correctly. Every test is bounded by a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hawser_net::lsp::{
    Client, ClientReadError, CloseError, Codec, Config, ConnectError, EndReason, Params, RtoBounds,
    Server, ServerReadError, Socket, WriteError,
};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn fast(window: u32, max_unacked: u32) -> Params {
    Params::reference()
        .with_epoch_limit(5)
        .with_epoch(Duration::from_millis(50))
        .with_window(window)
        .with_max_backoff(1)
        .with_max_unacked(max_unacked)
}

fn localhost() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// A server and a client on 127.0.0.1, both with `config`, the client connected (ISN 1).
async fn pair_with(config: Config) -> (Server, Client) {
    let server = Server::bind_with(
        config.clone(),
        tokio::net::UdpSocket::bind(localhost()).await.unwrap(),
    )
    .unwrap();
    let socket = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
    let client = Client::connect_with(server.local_addr(), 1, config, socket)
        .await
        .unwrap();
    (server, client)
}

async fn echo_server(server: std::sync::Arc<Server>) {
    while let Ok((conn, payload)) = server.read().await {
        let _ = server.try_send(conn, payload);
    }
}

async fn echo_round_trips(codec: Codec, clients: usize, messages: usize) {
    let server = Server::bind_with(
        Config::new(fast(8, 8)).with_codec(codec),
        tokio::net::UdpSocket::bind(localhost()).await.unwrap(),
    )
    .unwrap();
    let server = std::sync::Arc::new(server);
    let addr = server.local_addr();
    let echo = tokio::spawn(echo_server(server.clone()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
            let config = Config::new(fast(8, 8)).with_codec(codec);
            let client = Client::connect_with(addr, 1000 * c as u32, config, socket)
                .await
                .unwrap();
            for i in 0..messages {
                client.try_send(format!("{c}:{i}")).unwrap();
            }
            for i in 0..messages {
                let got = client.read().await.unwrap();
                assert_eq!(got, Bytes::from(format!("{c}:{i}")));
            }
            client.close().await.unwrap();
            assert!(client.is_driver_finished());
            assert_eq!(client.try_send("late"), Err(WriteError::Closed));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server.close().await.unwrap();
    assert!(server.is_driver_finished());
    echo.await.unwrap();
}

#[tokio::test]
async fn echo_binary_many_clients() {
    timeout(LIMIT, echo_round_trips(Codec::Binary, 5, 200))
        .await
        .unwrap();
}

#[tokio::test]
async fn echo_json_reference_codec() {
    timeout(LIMIT, echo_round_trips(Codec::Json, 3, 100))
        .await
        .unwrap();
}

#[tokio::test]
async fn connect_times_out_without_server() {
    timeout(LIMIT, async {
        // A bound socket that never answers.
        let silent = tokio::net::UdpSocket::bind(localhost()).await.unwrap();
        let err = Client::connect(silent.local_addr().unwrap(), 7, fast(1, 1))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Timeout), "{err:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_params_are_refused_by_name() {
    let mut params = fast(1, 1);
    params.window = 0;
    let err = Server::bind(localhost(), params).await.unwrap_err();
    assert!(err.to_string().contains("window"), "{err}");
}

#[tokio::test]
async fn client_sees_server_loss_after_reading_buffered_data() {
    timeout(LIMIT, async {
        let server = Server::bind(localhost(), fast(4, 4)).await.unwrap();
        let client = Client::connect(server.local_addr(), 1, fast(4, 4))
            .await
            .unwrap();
        client.try_send("ping").unwrap();
        let (conn, payload) = server.read().await.unwrap();
        assert_eq!(payload, "ping");
        server.try_send(conn, "a").unwrap();
        server.try_send(conn, "b").unwrap();
        // Give the messages time to arrive, then silence the server entirely.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(server);
        assert_eq!(client.read().await.unwrap(), "a");
        assert_eq!(client.read().await.unwrap(), "b");
        assert_eq!(client.read().await, Err(ClientReadError(EndReason::Lost)));
        assert_eq!(client.try_send("x"), Err(WriteError::Lost));
        assert_eq!(client.close().await, Err(CloseError::Lost));
        assert!(client.is_driver_finished());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn server_sees_client_close_and_close_conn() {
    timeout(LIMIT, async {
        let server = Server::bind(localhost(), fast(4, 4)).await.unwrap();
        let a = Client::connect(server.local_addr(), 10, fast(4, 4))
            .await
            .unwrap();
        let b = Client::connect(server.local_addr(), 20, fast(4, 4))
            .await
            .unwrap();
        a.try_send("from a").unwrap();
        a.close().await.unwrap();
        let (conn_a, payload) = server.read().await.unwrap();
        assert_eq!(payload, "from a");
        assert_eq!(conn_a, a.conn_id());
        // a went silent: the server reports it lost after K epochs.
        assert_eq!(
            server.read().await,
            Err(ServerReadError::ConnEnded(conn_a, EndReason::Lost))
        );
        // close_conn flushes, then reports the end as closed; b sees silence and loses it.
        server.try_send(b.conn_id(), "bye").unwrap();
        server.close_conn(b.conn_id()).unwrap();
        assert_eq!(b.read().await.unwrap(), "bye");
        assert_eq!(
            server.read().await,
            Err(ServerReadError::ConnEnded(b.conn_id(), EndReason::Closed))
        );
        assert_eq!(b.read().await, Err(ClientReadError(EndReason::Lost)));
        assert_eq!(
            server.try_send(b.conn_id(), "x"),
            Err(WriteError::UnknownConn(b.conn_id()))
        );
        server.close().await.unwrap();
        assert_eq!(server.read().await, Err(ServerReadError::ServerClosed));
        assert!(matches!(
            server.try_send(b.conn_id(), "x"),
            Err(WriteError::Closed)
        ));
        assert!(server.is_driver_finished());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_idle_server_does_not_spin_after_its_last_connection_is_lost() {
    timeout(LIMIT, async {
        let server = Server::bind(localhost(), fast(4, 4)).await.unwrap();
        let client = Client::connect(server.local_addr(), 3, fast(4, 4))
            .await
            .unwrap();
        let conn = client.conn_id();
        drop(client); // silent from now on
        assert_eq!(
            server.read().await,
            Err(ServerReadError::ConnEnded(conn, EndReason::Lost))
        );
        let before = server.stats().timeouts_handled;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = server.stats().timeouts_handled;
        assert!(
            after - before < 5,
            "{} timer wake-ups in 300 ms with no connection",
            after - before
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reads_end_when_the_driver_dies() {
    use hawser_net::fault_socket::FaultySocket;
    timeout(LIMIT, async {
        let server = Server::bind(localhost(), fast(4, 4)).await.unwrap();
        let socket = FaultySocket::bind(localhost(), Codec::Binary, 1)
            .await
            .unwrap();
        let probe = socket.clone();
        let client = Client::connect_with(server.local_addr(), 5, Config::new(fast(4, 4)), socket)
            .await
            .unwrap();
        // A user hook that panics kills the client's driver task.
        probe.set_inbound_hook(Some(Box::new(|_: &mut Vec<u8>| panic!("hook bug"))));
        let (conn, _) = {
            client.try_send("ping").unwrap();
            server.read().await.unwrap()
        };
        server.try_send(conn, "pong").unwrap();
        // The driver is gone: read, send and close answer instead of waiting forever.
        assert_eq!(client.read().await, Err(ClientReadError(EndReason::Lost)));
        assert!(client.is_driver_finished());
        assert_eq!(client.send("x").await, Err(WriteError::Lost));
        assert_eq!(client.try_send("x"), Err(WriteError::Lost));
        assert_eq!(client.close().await, Err(CloseError::Lost));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn after_server_close_read_is_the_error_with_no_id() {
    timeout(LIMIT, async {
        let server = Server::bind(localhost(), fast(4, 4)).await.unwrap();
        let client = Client::connect(server.local_addr(), 9, fast(4, 4))
            .await
            .unwrap();
        client.try_send("last").unwrap();
        let (_, payload) = server.read().await.unwrap();
        assert_eq!(payload, "last");
        server.close().await.unwrap();
        assert_eq!(server.read().await, Err(ServerReadError::ServerClosed));
        assert_eq!(server.read().await, Err(ServerReadError::ServerClosed));
        drop(client);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn send_waits_for_queue_room_while_write_fails() {
    timeout(LIMIT, async {
        let mut config = Config::new(fast(8, 8));
        config.max_send_queue = 4;
        config.max_read_queue = 2;
        // One message per Data message, so that the bounds count these messages (bundles
        // count once: `hawser-sim/tests/bundle.rs`).
        config.bundle_max = 0;
        let (server, client) = pair_with(config).await;
        // The server does not read: 2 messages fill its read queue, 4 the client's send queue.
        for i in 0..6u8 {
            client.send(vec![i]).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(client.try_send(vec![6]), Err(WriteError::QueueFull(4)));
        let blocked = tokio::time::timeout(Duration::from_millis(300), client.send(vec![6])).await;
        assert!(blocked.is_err(), "send must wait while the queue is full");
        // The reader catches up: the waiting send completes and everything arrives in order.
        let reader = async {
            let mut got = Vec::new();
            while got.len() < 8 {
                got.push(server.read().await.unwrap().1[0]);
            }
            got
        };
        let writer = async {
            client.send(vec![6]).await.unwrap();
            client.send(vec![7]).await.unwrap();
        };
        let (got, ()) = tokio::join!(reader, writer);
        assert_eq!(got, (0..8).collect::<Vec<u8>>());
    })
    .await
    .unwrap();
}

/// Long epochs: nothing here may rely on an epoch tick to send.
fn slow_epochs() -> Params {
    fast(64, 64).with_epoch(Duration::from_secs(2))
}

/// A reader that takes a message and never replies: the acknowledgement its receive held back
/// for a reply still leaves (after the 1 ms ack delay), not when the sender gives up waiting
/// and resends (here after 5 s, an RTO expiry) or at an epoch (10 s, after the test's limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_read_without_reply_is_acknowledged_at_once() {
    timeout(LIMIT, async {
        let config = fixed_rto(ten_second_epochs(), Duration::from_secs(5));
        let server =
            Server::bind_with(config.clone(), Socket::bind(localhost()).await.unwrap()).unwrap();
        let client = Client::connect_with(
            server.local_addr(),
            1,
            config,
            Socket::bind(localhost()).await.unwrap(),
        )
        .await
        .unwrap();
        for i in 0..20u32 {
            // The server's read is waiting (and so receives itself) before the write.
            let read = async { server.read().await.unwrap() };
            let write = async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                client.try_send(i.to_be_bytes().to_vec()).unwrap();
            };
            let ((_, got), ()) = tokio::join!(read, write);
            assert_eq!(got, Bytes::from(i.to_be_bytes().to_vec()));
            while client.pending() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        // Held back for good, an acknowledgement would only follow the resend, an RTO expiry.
        // No timeout expired; a tail-loss probe (two RTTs and the peer's ack delay, 3 ms here)
        // may have gone out on a slow machine, and resent nothing else.
        let stats = client.stats().conns;
        assert_eq!(stats.rto_expiries, 0, "{stats:?}");
        assert_eq!(stats.retransmits, stats.probes, "{stats:?}");
    })
    .await
    .unwrap();
}

/// Request and response, one at a time, both ways over real sockets: every reply arrives, in
/// order, the acknowledgements with or ahead of them, with next to nothing resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_in_lockstep() {
    timeout(LIMIT, async {
        let server = std::sync::Arc::new(Server::bind(localhost(), slow_epochs()).await.unwrap());
        let echo = tokio::spawn(echo_server(server.clone()));
        let client = Client::connect(server.local_addr(), 1, slow_epochs())
            .await
            .unwrap();
        for i in 0..500u32 {
            client.try_send(i.to_be_bytes().to_vec()).unwrap();
            let got = client.read().await.unwrap();
            assert_eq!(got, Bytes::from(i.to_be_bytes().to_vec()));
        }
        client.close().await.unwrap();
        let stats = client.stats();
        // Nothing lost, so nothing needs resending; a loaded machine (a debug build in CI)
        // may still stall a round trip past the retransmission timeout now and then.
        assert!(
            stats.conns.retransmits <= 50,
            "{} of 500 messages resent",
            stats.conns.retransmits
        );
        assert_eq!(stats.conns.data_received, 500);
        server.close().await.unwrap();
        echo.await.unwrap();
    })
    .await
    .unwrap();
}

/// The batch calls both ways: many small messages (bundled on the wire) and a few large ones
/// (sent alone), echoed in batches, all back in order.
#[tokio::test]
async fn batch_calls_echo_everything_in_order() {
    timeout(LIMIT, async {
        let server = std::sync::Arc::new(
            Server::bind_with(
                Config::new(fast(64, 64)),
                tokio::net::UdpSocket::bind(localhost()).await.unwrap(),
            )
            .unwrap(),
        );
        let echo = tokio::spawn({
            let server = server.clone();
            async move {
                let mut got = Vec::new();
                loop {
                    got.clear();
                    if server.read_batch(&mut got, 100).await.is_err() {
                        return;
                    }
                    let conn = got[0].0;
                    assert!(got.iter().all(|(c, _)| *c == conn));
                    let mut batch: std::collections::VecDeque<Bytes> =
                        got.drain(..).map(|(_, p)| p).collect();
                    server.send_batch(conn, &mut batch).await.unwrap();
                    assert!(batch.is_empty());
                }
            }
        });
        let client = Client::connect(server.local_addr(), 7, fast(64, 64))
            .await
            .unwrap();
        let sent: Vec<Bytes> = (0..3000u32)
            .map(|i| {
                let len = if i % 500 == 0 {
                    1200
                } else {
                    (i % 40) as usize
                };
                let mut v = vec![(i % 251) as u8; len];
                if len >= 4 {
                    v[..4].copy_from_slice(&i.to_be_bytes());
                }
                Bytes::from(v)
            })
            .collect();
        let mut batch: std::collections::VecDeque<Bytes> = sent.iter().cloned().collect();
        client.send_batch(&mut batch).await.unwrap();
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let n = client.read_batch(&mut got, 64).await.unwrap();
            assert!((1..=64).contains(&n));
        }
        assert_eq!(got, sent);
        let stats = client.stats().conns;
        assert!(stats.bundles_sent > 0, "{stats:?}");
        assert!(stats.data_sent < 3000, "{stats:?}");
        client.close().await.unwrap();
        echo.abort();
    })
    .await
    .unwrap();
}

/// `write_batch` queues what fits, leaves the rest in the batch, and reports an error only
/// for a message it could not queue first.
#[tokio::test]
async fn write_batch_stops_at_what_it_cannot_queue() {
    timeout(LIMIT, async {
        let mut config = Config::new(fast(1, 1));
        config.max_send_queue = 4;
        // One message per Data message, so that the queue bound counts these messages.
        config.bundle_max = 0;
        config.max_payload = 100;
        let (server, client) = pair_with(config).await;
        let too_large = Bytes::from(vec![0u8; 101]);
        let mut batch: std::collections::VecDeque<Bytes> =
            (0..3u8).map(|i| Bytes::from(vec![i])).collect();
        batch.push_back(too_large.clone());
        batch.push_back(Bytes::from_static(b"after"));
        assert_eq!(client.try_send_batch(&mut batch), Ok(3));
        assert_eq!(batch.front(), Some(&too_large));
        assert_eq!(
            client.try_send_batch(&mut batch),
            Err(WriteError::TooLarge { len: 101, max: 100 })
        );
        batch.pop_front();
        assert_eq!(client.try_send_batch(&mut batch), Ok(1));
        let mut more: std::collections::VecDeque<Bytes> =
            std::iter::once(Bytes::from_static(b"full")).collect();
        assert_eq!(
            client.try_send_batch(&mut more),
            Err(WriteError::QueueFull(4))
        );
        assert_eq!(more.len(), 1);
        let mut got = Vec::new();
        while got.len() < 4 {
            let (_, p) = server.read().await.unwrap();
            got.push(p);
        }
        assert_eq!(got[3], "after");
    })
    .await
    .unwrap();
}

/// Ten-second epochs: anything here that happens sooner was not waiting for an epoch tick.
fn ten_second_epochs() -> Params {
    Params::reference()
        .with_epoch_limit(50)
        .with_epoch(Duration::from_secs(10))
        .with_window(8)
        .with_max_backoff(0)
        .with_max_unacked(8)
}

/// `params` with a retransmission timeout fixed at `rto`.
fn fixed_rto(params: Params, rto: Duration) -> Config {
    let mut config = Config::new(params);
    config.rto = RtoBounds::new(rto, rto, rto);
    config
}

/// A server on a fault-injecting socket (returned too, to inject faults later) and a client
/// on a plain one, connected.
async fn faulty_server_pair(
    server_config: Config,
    client_config: Config,
) -> (Server, hawser_net::fault_socket::FaultySocket, Client) {
    let socket = hawser_net::fault_socket::FaultySocket::bind(localhost(), Codec::Binary, 1)
        .await
        .unwrap();
    let probe = socket.clone();
    let server = Server::bind_with(server_config, socket).unwrap();
    let client = Client::connect_with(
        server.local_addr(),
        3,
        client_config,
        tokio::net::UdpSocket::bind(localhost()).await.unwrap(),
    )
    .await
    .unwrap();
    (server, probe, client)
}

/// A write made while waiting for queue room (`send`, `send_batch`) reaches the wire with no
/// other event to wake the driver: the server's acknowledgements are all lost and every timer
/// is 10 s away, so only the write itself can get its data sent (a driver that slept through
/// it would send at the retransmission timeout, 10 s later).
#[tokio::test]
async fn waiting_sends_leave_at_once_with_nothing_else_to_wake_the_driver() {
    use hawser_net::fault_socket::FaultConfig;
    timeout(LIMIT, async {
        let client_config = fixed_rto(ten_second_epochs(), Duration::from_secs(10));
        let (server, probe, client) =
            faulty_server_pair(Config::new(ten_second_epochs()), client_config).await;
        probe.set_outbound(FaultConfig::dropping(100.0));
        client.try_send("a").unwrap(); // idle: sent by the writing task itself
        assert_eq!(server.read().await.unwrap().1, "a");
        client.send("b").await.unwrap(); // "a" unacknowledged: the driver's to send
        let mut batch: std::collections::VecDeque<Bytes> = [&b"c"[..], b"d"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        client.send_batch(&mut batch).await.unwrap();
        let prompt = Duration::from_secs(5);
        for want in ["b", "c", "d"] {
            let (_, got) = timeout(prompt, server.read())
                .await
                .unwrap_or_else(|_| panic!("{want:?} not sent within {prompt:?}"))
                .unwrap();
            assert_eq!(got, want);
        }
    })
    .await
    .unwrap();
}

/// A write on an idle connection, sent by the writing task, arms the retransmission timeout
/// on the driver's timer without waking the driver: the resend still leaves at the timeout
/// (100 ms), with no reader, no other write and no epoch (10 s) to wake anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_an_idle_connection_is_resent_at_the_timeout() {
    use hawser_net::fault_socket::FaultConfig;
    timeout(LIMIT, async {
        let rto = Duration::from_millis(100);
        let (server, probe, client) = faulty_server_pair(
            Config::new(ten_second_epochs()),
            fixed_rto(ten_second_epochs(), rto),
        )
        .await;
        // Let whatever the connect left the driver to do settle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The server's acknowledgements are lost from now on.
        probe.set_outbound(FaultConfig::dropping(100.0));
        let start = tokio::time::Instant::now();
        client.try_send("a").unwrap();
        assert_eq!(server.read().await.unwrap().1, "a");
        while client.stats().conns.retransmits == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Resent by the timeout, not at an epoch (the first one, at 10 s, did not come yet);
        // and not before the timeout (timers never fire early).
        let stats = client.stats().conns;
        assert!(stats.rto_expiries >= 1 && stats.epochs == 0, "{stats:?}");
        assert!(start.elapsed() >= rto, "resent after {:?}", start.elapsed());
    })
    .await
    .unwrap();
}

/// A client that waited in `read` (receiving from the socket itself) until it gave up, and then
/// does nothing: the driver takes the socket back soon after the read ended, so what the server
/// sends next is received and acknowledged at once, with nothing else to wake the driver (the
/// read received nothing, so it holds no acknowledgement back with a timer) and long before the
/// server would resend (10 s) or an epoch would tick (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_takes_the_socket_back_when_the_reader_leaves() {
    timeout(LIMIT, async {
        let config = fixed_rto(ten_second_epochs(), Duration::from_secs(10));
        let (server, client) = pair_with(config).await;
        let conn = client.conn_id();
        // While the read waits, two writes: the second, with the first in flight, wakes the
        // driver, which then finds a reader on the socket and leaves it to it.
        let read = timeout(Duration::from_millis(100), client.read());
        let writes = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.try_send("x").unwrap();
            client.try_send("y").unwrap();
        };
        let (waited, ()) = tokio::join!(read, writes);
        assert!(
            waited.is_err(),
            "nothing was sent to the client: {waited:?}"
        );
        assert_eq!(
            client.pending(),
            0,
            "the waiting read received the acknowledgements"
        );
        for i in 0..5u32 {
            server.try_send(conn, i.to_be_bytes().to_vec()).unwrap();
        }
        while server.pending(conn) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Acknowledged without a resend (at 10 s) or an epoch (10 s) to wake the client.
        let stats = server.stats().conns;
        assert!(stats.retransmits == 0 && stats.epochs == 0, "{stats:?}");
        for i in 0..5u32 {
            assert_eq!(client.read().await.unwrap(), i.to_be_bytes().to_vec());
        }
    })
    .await
    .unwrap();
}

/// `read` and `read_batch` mixed on one server: every message
/// still comes once and in order, and a connection's end only after its last message.
#[tokio::test]
async fn reads_and_batch_reads_mixed_keep_order_and_the_end_last() {
    timeout(LIMIT, async {
        let server = Server::bind(localhost(), fast(64, 64)).await.unwrap();
        let client = Client::connect(server.local_addr(), 9, fast(64, 64))
            .await
            .unwrap();
        let sent: Vec<Bytes> = (0..500u32)
            .map(|i| Bytes::from(i.to_be_bytes().to_vec()))
            .collect();
        let mut batch: std::collections::VecDeque<Bytes> = sent.iter().cloned().collect();
        client.send_batch(&mut batch).await.unwrap();
        let mut got = Vec::new();
        let mut round = 0;
        while got.len() < sent.len() {
            round += 1;
            if round % 3 == 0 {
                let mut some = Vec::new();
                server.read_batch(&mut some, 7).await.unwrap();
                assert!(some.len() <= 7);
                got.extend(some.into_iter().map(|(_, p)| p));
            } else {
                got.push(server.read().await.unwrap().1);
            }
        }
        assert_eq!(got, sent);
        client.close().await.unwrap();
        // The client went silent: its end comes after every message, and only once.
        assert!(matches!(
            server.read().await,
            Err(ServerReadError::ConnEnded(_, EndReason::Lost))
        ));
    })
    .await
    .unwrap();
}

/// A task waiting in `read` receives the acknowledgements of what another task sends; a send
/// waiting for queue room in the meantime must be told of the change (by the receiving task
/// or the driver, whose notifications skip only a channel with no other subscriber), not left
/// until the next datagram it happens to receive itself, here a heartbeat every 2 s. Fails
/// when the endpoint's changes are never announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_waiting_for_room_hears_of_acks_another_reader_received() {
    timeout(LIMIT, async {
        let mut config = Config::new(slow_epochs().with_window(1).with_max_unacked(1));
        config.max_send_queue = 2;
        config.bundle_max = 0;
        let (server, client) = pair_with(config).await;
        let client = std::sync::Arc::new(client);
        // The server never writes: this read waits, receiving every acknowledgement.
        let reader = tokio::spawn({
            let client = client.clone();
            async move { client.read().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = 30u8;
        let sends = async {
            for i in 0..n {
                client.send(vec![i]).await.unwrap();
            }
        };
        let reads = async {
            for i in 0..n {
                assert_eq!(server.read().await.unwrap().1[..], [i]);
            }
        };
        let prompt = Duration::from_secs(3);
        tokio::time::timeout(prompt, async { tokio::join!(sends, reads) })
            .await
            .unwrap_or_else(|_| panic!("{n} sends did not finish within {prompt:?}"));
        reader.abort();
    })
    .await
    .unwrap();
}
