//! A connected LSP client and server over a network the input controls: datagrams are
//! delivered in any order, dropped or duplicated, time moves at will, both sides write and
//! read. Nothing may panic, and each side reads exactly what the other wrote, in order, with no
//! message twice or lost in the middle: always a prefix of the other side's writes.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use hawser_fuzz::{addr, check_transmit, Clock, LspSetup};
use hawser_proto::lsp::{ClientEndpoint, ClientRead, ServerEndpoint, ServerRead};
use hawser_proto::wire::SeqNum;
use hawser_proto::DatagramEndpoint;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Action {
    /// Deliver the `n`th datagram in flight towards the server (`true`) or the client.
    Deliver {
        to_server: bool,
        n: u8,
    },
    Drop {
        to_server: bool,
        n: u8,
    },
    Duplicate {
        to_server: bool,
        n: u8,
    },
    /// Deliver everything in flight, in order.
    Flush,
    Advance(u16),
    ClientWrite(u8),
    ServerWrite(u8),
    Read,
}

fuzz_target!(|input: (LspSetup, Vec<Action>)| {
    let (setup, actions) = input;
    let config = setup.config();
    let codec = config.codec;
    let mut clock = Clock::new();
    let (caddr, saddr) = (addr(0), addr(1));
    let mut server = ServerEndpoint::new(config.clone()).unwrap();
    let mut client = ClientEndpoint::new(config, saddr, SeqNum(1000), clock.now()).unwrap();
    let mut to_server: Vec<Bytes> = Vec::new();
    let mut to_client: Vec<Bytes> = Vec::new();
    let (mut client_wrote, mut server_wrote) = (Vec::new(), Vec::new());
    let (mut client_read, mut server_read) = (Vec::new(), Vec::new());
    let mut next = 0u32;
    for action in actions.into_iter().take(1024) {
        let now = clock.now();
        match action {
            Action::Deliver { to_server: s, n } | Action::Duplicate { to_server: s, n } => {
                let dup = matches!(action, Action::Duplicate { .. });
                let queue = if s { &mut to_server } else { &mut to_client };
                if queue.is_empty() {
                    continue;
                }
                let i = usize::from(n) % queue.len();
                let d = if dup {
                    queue[i].clone()
                } else {
                    queue.remove(i)
                };
                if s {
                    server.handle_datagram(now, caddr, &d);
                } else {
                    client.handle_datagram(now, saddr, &d);
                }
            }
            Action::Drop { to_server: s, n } => {
                let queue = if s { &mut to_server } else { &mut to_client };
                if !queue.is_empty() {
                    let i = usize::from(n) % queue.len();
                    queue.remove(i);
                }
            }
            Action::Flush => {
                for d in std::mem::take(&mut to_server) {
                    server.handle_datagram(now, caddr, &d);
                }
                for d in std::mem::take(&mut to_client) {
                    client.handle_datagram(now, saddr, &d);
                }
            }
            Action::Advance(ms) => {
                let now = clock.advance(ms);
                server.handle_timeout(now);
                client.handle_timeout(now);
            }
            Action::ClientWrite(len) => {
                let payload = message(&mut next, len);
                if client.write(now, payload.clone()).is_ok() {
                    client_wrote.push(payload);
                }
            }
            Action::ServerWrite(len) => {
                let Some(conn) = client.conn_id() else {
                    continue;
                };
                let payload = message(&mut next, len);
                if server.write(now, conn, payload.clone()).is_ok() {
                    server_wrote.push(payload);
                }
            }
            Action::Read => {
                while let Some(r) = server.read() {
                    if let ServerRead::Data(_, m) = r {
                        server_read.push(m);
                    }
                }
                // The client's end is reported again at every read: stop there.
                while let Some(ClientRead::Data(m)) = client.read() {
                    client_read.push(m);
                }
            }
        }
        while let Some(t) = client.poll_transmit() {
            check_transmit(codec, &t.contents);
            to_server.push(t.contents);
        }
        while let Some(t) = server.poll_transmit() {
            assert_eq!(t.destination, caddr);
            check_transmit(codec, &t.contents);
            to_client.push(t.contents);
        }
        // A lossy network with bounded queues: the newest datagrams beyond 64 are lost.
        to_server.truncate(64);
        to_client.truncate(64);
        assert!(server_read.len() <= client_wrote.len());
        assert_eq!(server_read[..], client_wrote[..server_read.len()]);
        assert!(client_read.len() <= server_wrote.len());
        assert_eq!(client_read[..], server_wrote[..client_read.len()]);
    }
});

/// A distinct message of `len % 64` bytes (its number, then padding).
fn message(next: &mut u32, len: u8) -> Bytes {
    *next += 1;
    let mut m = next.to_be_bytes().to_vec();
    m.resize(4 + usize::from(len % 64), 0xA5);
    Bytes::from(m)
}
