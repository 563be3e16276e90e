//! The LSP client endpoint fed datagrams (from its server or elsewhere; well-formed messages
//! with correct checksums, or any bytes), timeouts at any time, and application calls, under
//! small bounds. Nothing may panic; it only ever sends to its server, datagrams its codec
//! decodes; its connection id never changes once set, and an ended client stays ended.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use hawser_fuzz::{addr, check_transmit, Clock, Datagram, LspSetup};
use hawser_proto::lsp::ClientEndpoint;
use hawser_proto::wire::SeqNum;
use hawser_proto::DatagramEndpoint;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Action {
    Datagram { stranger: bool, datagram: Datagram },
    Advance(u16),
    Write(Vec<u8>),
    Read(u8),
    Close,
}

const ISN: u64 = 100;

fuzz_target!(|input: (LspSetup, Vec<Action>)| {
    let (setup, actions) = input;
    let config = setup.config();
    let codec = config.codec;
    let mut clock = Clock::new();
    let server = addr(0);
    let mut client = ClientEndpoint::new(config.clone(), server, SeqNum(ISN), clock.now()).unwrap();
    let mut conn_id = None;
    let mut ended = false;
    for action in actions.into_iter().take(512) {
        match action {
            Action::Datagram { stranger, datagram } => {
                let from = if stranger { addr(1) } else { server };
                client.handle_datagram(clock.now(), from, &datagram.to_bytes(codec, ISN));
            }
            Action::Advance(ms) => client.handle_timeout(clock.advance(ms)),
            Action::Write(payload) => {
                let _ = client.write(clock.now(), Bytes::from(payload));
            }
            Action::Read(n) => {
                for _ in 0..n {
                    if client.read().is_none() {
                        break;
                    }
                }
            }
            Action::Close => client.close(),
        }
        while let Some(t) = client.poll_transmit() {
            assert_eq!(t.destination, server);
            check_transmit(codec, &t.contents);
        }
        assert!(client.pending() <= config.max_send_queue);
        match (conn_id, client.conn_id()) {
            (Some(a), b) => assert_eq!(Some(a), b, "connection id changed"),
            (None, b) => conn_id = b,
        }
        if ended {
            assert!(client.is_ended(), "an ended client came back");
        }
        ended = client.is_ended();
    }
});
