//! LSP between two network namespaces (`shared/netlab/netlab.sh`) over a real Ethernet-sized
//! link (veth and a bridge, MTU 1,500) with loss, duplication and reordering on both hosts:
//! - the binary codec sends bursts of equal datagrams as segmented sends (GSO) and receives
//!   them glued (GRO) where the kernel allows; every message still arrives once, in order;
//! - the JSON codec's datagrams of a 1,400-byte payload (about 1,950 bytes, over the MTU) need
//!   IP fragmentation, which hawser's sockets keep allowed (`quinn-udp` forbids it by default).
//!
//! Runs only with `HAWSER_NETLAB=1` (otherwise it prints "skipped: ..." and passes), as root
//! with `ip` and `nft` available: with the variable set, a missing piece fails the test. Host 1 runs two echo servers, host 2 the clients; both are this
//! test binary re-executed in its namespace (`lsp_netlab_child`). Traffic goes only to the
//! lab's 10.77.0.0/24 inside its namespaces.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hawser_net::lsp::{Client, Codec, Config, Params, Server, ServerReadError, Socket};

mod netlab_common;

use netlab_common::{field, lab, Lab};

const BINARY_PORT: u16 = 7800;
const JSON_PORT: u16 = 7801;
/// Binary: this many messages of `BINARY_SIZE` bytes, written at once (bursts of full datagrams).
const BINARY_MESSAGES: u32 = 3000;
const BINARY_SIZE: usize = 1024;
/// JSON: this many messages of the largest payload the codec allows by default.
const JSON_MESSAGES: u32 = 100;
const JSON_SIZE: usize = 1400;
/// Each host's outgoing impairment.
const IMPAIR: &str = "loss 2% duplicate 2% delay 2ms 1ms reorder 5%";

#[test]
fn lsp_netlab_segmented_and_fragmented() {
    let Some(running) = Lab::up(2) else {
        return;
    };
    lab(&["impair", "1", IMPAIR]);
    lab(&["impair", "2", IMPAIR]);
    let mut children = running.spawn_children(2, "lsp_netlab_child");
    let client = children.pop().unwrap();
    let server = children.pop().unwrap();
    let out = netlab_common::outputs(vec![client]);
    // The servers run until killed.
    let mut server = server;
    let _ = server.kill();
    let _ = server.wait();
    let out = &out[0];
    println!("{out}");
    for (what, want) in [("BINARY ", BINARY_MESSAGES), ("JSON ", JSON_MESSAGES)] {
        let got: u32 = out
            .lines()
            .find_map(|l| field(l, what))
            .unwrap_or_else(|| panic!("no {what}result:\n{out}"))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(got, want, "{what}echoes complete and in order");
    }
}

fn params() -> Params {
    Params::reference()
        .with_epoch(Duration::from_millis(100))
        .with_epoch_limit(50)
        .with_window(256)
        .with_max_unacked(256)
        .with_max_backoff(4)
}

fn config(codec: Codec) -> Config {
    let mut config = Config::new(params()).with_codec(codec);
    config.max_payload = JSON_SIZE;
    config
}

fn payload(i: u32, size: usize) -> Bytes {
    let mut v = vec![(i % 251) as u8; size];
    v[..4].copy_from_slice(&i.to_be_bytes());
    Bytes::from(v)
}

/// Host 1: echo servers; host 2: the clients (runs only when re-executed by the test above).
#[test]
fn lsp_netlab_child() {
    let Some(id) = netlab_common::child_id() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        if id == 1 {
            let mut echoes = Vec::new();
            for (codec, port) in [(Codec::Binary, BINARY_PORT), (Codec::Json, JSON_PORT)] {
                let socket = Socket::bind(netlab_common::addr(1, port)).await.unwrap();
                let server = Arc::new(Server::bind_with(config(codec), socket).unwrap());
                echoes.push(tokio::spawn(async move {
                    loop {
                        match server.read().await {
                            Ok((conn, msg)) => {
                                let _ = server.send(conn, msg).await;
                            }
                            Err(ServerReadError::ConnEnded(..)) => {}
                            Err(_) => return,
                        }
                    }
                }));
            }
            for e in echoes {
                let _ = e.await;
            }
            return;
        }
        // Give the servers time to bind.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (codec, port, n, size, tag) in [
            (
                Codec::Binary,
                BINARY_PORT,
                BINARY_MESSAGES,
                BINARY_SIZE,
                "BINARY",
            ),
            (Codec::Json, JSON_PORT, JSON_MESSAGES, JSON_SIZE, "JSON"),
        ] {
            let server = netlab_common::addr(1, port);
            let socket = Socket::bind(netlab_common::addr(2, 0)).await.unwrap();
            let client = Client::connect_with(server, 1, config(codec), socket)
                .await
                .unwrap();
            let writer = async {
                for i in 0..n {
                    client.send(payload(i, size)).await.unwrap();
                }
            };
            let reader = async {
                let mut ok = 0;
                for i in 0..n {
                    let echo = tokio::time::timeout(Duration::from_secs(20), client.read())
                        .await
                        .expect("echo in time")
                        .unwrap();
                    if echo == payload(i, size) {
                        ok += 1;
                    } else {
                        println!("{tag} echo {i} differs");
                    }
                }
                ok
            };
            let ((), ok) = tokio::join!(writer, reader);
            let stats = client.stats();
            println!(
                "{tag} {ok}\n{tag}-stats datagrams sent {} retransmits {}",
                stats.datagrams_sent, stats.conns.retransmits
            );
            client.close().await.unwrap();
        }
    });
}
