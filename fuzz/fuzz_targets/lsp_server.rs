//! The LSP server endpoint fed datagrams from a few addresses (well-formed messages with
//! correct checksums, or any bytes), timeouts at any time, and application calls, under small
//! bounds. Nothing may panic; every datagram it sends goes to an address it heard from and
//! decodes with its codec; connections, send queues and events stay within their bounds.
#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use bytes::Bytes;
use hawser_fuzz::{addr, check_transmit, Clock, Datagram, LspSetup};
use hawser_proto::lsp::{ServerEndpoint, ServerRead, MAX_EVENTS};
use hawser_proto::wire::ConnId;
use hawser_proto::DatagramEndpoint;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Action {
    Datagram {
        from: u8,
        isn: u8,
        datagram: Datagram,
    },
    Advance(u16),
    Stale(u16),
    Write {
        conn: u8,
        payload: Vec<u8>,
    },
    Read(u8),
    CloseConn(u8),
    Close,
}

fuzz_target!(|input: (LspSetup, Vec<Action>)| {
    let (setup, actions) = input;
    let config = setup.config();
    let codec = config.codec;
    let mut server = ServerEndpoint::new(config.clone()).unwrap();
    let mut clock = Clock::new();
    let start = clock.now();
    let mut heard = BTreeSet::new();
    for action in actions.into_iter().take(512) {
        match action {
            Action::Datagram {
                from,
                isn,
                datagram,
            } => {
                let from = addr(from);
                heard.insert(from);
                // Sequence numbers near the ISN the Connects used, so that Data lands in windows.
                let isn = u64::from(isn % 4) * 100;
                server.handle_datagram(clock.now(), from, &datagram.to_bytes(codec, isn));
            }
            Action::Advance(ms) => server.handle_timeout(clock.advance(ms)),
            Action::Stale(ms) => {
                let then = clock
                    .now()
                    .checked_sub(std::time::Duration::from_millis(u64::from(ms)));
                server.handle_timeout(then.unwrap_or(start).max(start));
            }
            Action::Write { conn, payload } => {
                let _ = server.write(
                    clock.now(),
                    ConnId(u64::from(conn % 8)),
                    Bytes::from(payload),
                );
            }
            Action::Read(n) => {
                for _ in 0..n {
                    match server.read() {
                        Some(ServerRead::Data(conn, _)) | Some(ServerRead::Ended(conn, _)) => {
                            assert!(conn.0 > 0);
                        }
                        None => break,
                    }
                }
            }
            Action::CloseConn(conn) => {
                let _ = server.close_conn(ConnId(u64::from(conn % 8)));
            }
            Action::Close => server.close(),
        }
        while let Some(t) = server.poll_transmit() {
            assert!(heard.contains(&t.destination), "sent to a stranger");
            check_transmit(codec, &t.contents);
        }
        assert!(!server.has_transmit());
        let mut events = 0;
        while server.poll_event().is_some() {
            events += 1;
        }
        assert!(events <= MAX_EVENTS);
        assert!(server.live_connections() <= config.max_connections);
        for id in 0..8 {
            assert!(server.pending(ConnId(id)) <= config.max_send_queue);
        }
        if let Some(t) = server.poll_timeout() {
            // Timers are set from the instants it was given.
            assert!(t >= start);
        }
    }
    // The run loop settles: firing the timers a bounded number of times never panics.
    for _ in 0..64 {
        let Some(t) = server.poll_timeout() else {
            break;
        };
        server.handle_timeout(t.max(clock.now()));
        while let Some(t) = server.poll_transmit() {
            check_transmit(codec, &t.contents);
        }
    }
});
