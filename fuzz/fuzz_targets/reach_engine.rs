//! The reachability engine fed events from a few neighbours (well-formed, or any bytes),
//! connections, traffic, failed sends, timeouts and its own commands, under small bounds.
//! Nothing may panic; every copy it sends goes to a neighbour and decodes; its tables and
//! queues stay within their bounds; a peer it reports alive is one it heard of.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use hawser_fuzz::{Addr, Clock, ReachEvent};
use hawser_proto::reach::{AdaptiveLease, Config, LeasePolicy, NodeId, Reachability};
use hawser_proto::wire::reach;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Action {
    Event {
        from: u8,
        via: Addr,
        event: ReachEvent,
    },
    RawEvent {
        from: u8,
        via: Addr,
        bytes: Vec<u8>,
    },
    Connected {
        peer: u8,
        via: Addr,
    },
    Disconnected {
        peer: u8,
        via: Addr,
    },
    Traffic {
        peer: u8,
        via: Addr,
    },
    SendFailed {
        peer: u8,
        via: Addr,
    },
    Advance(u16),
    AddLocal(Addr),
    RemoveLocal(Addr),
    Publish {
        kind: u16,
        payload: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Setup {
    adaptive: bool,
    lease_ms: u16,
    max_hops: u8,
    max_seen: u8,
    max_peers: u8,
    max_addresses_per_peer: u8,
    max_neighbours: u8,
    max_local_addresses: u8,
    max_pending_events: u8,
    max_outgoing: u8,
}

impl Setup {
    fn config(&self) -> Config {
        let lease = Duration::from_millis(u64::from(self.lease_ms % 5000) + 10);
        let mut config = Config::default();
        config.incarnation = 1;
        config.lease = if self.adaptive {
            let uptime_divisor = AdaptiveLease::default().uptime_divisor;
            LeasePolicy::Adaptive(AdaptiveLease::new(lease, lease * 4, uptime_divisor))
        } else {
            LeasePolicy::Fixed(lease)
        };
        config.reachable_for = lease * 4;
        config.max_hops = self.max_hops % 8 + 1;
        config.seen_ttl = Duration::from_secs(5);
        config.max_seen = usize::from(self.max_seen % 64) + 1;
        config.max_peers = usize::from(self.max_peers % 8) + 1;
        config.max_addresses_per_peer = usize::from(self.max_addresses_per_peer % 4) + 1;
        config.max_neighbours = usize::from(self.max_neighbours % 4) + 1;
        config.max_local_addresses = usize::from(self.max_local_addresses % 4) + 1;
        config.max_pending_events = usize::from(self.max_pending_events % 16) + 1;
        config.max_outgoing = usize::from(self.max_outgoing % 32) + 1;
        config.validate().expect("fuzz settings validate");
        config
    }
}

fn peer(p: u8) -> NodeId {
    NodeId(u64::from(p % 8))
}

fuzz_target!(|input: (Setup, Vec<Action>)| {
    let (setup, actions) = input;
    let config = setup.config();
    let mut clock = Clock::new();
    let me = NodeId(0);
    let mut engine = Reachability::new(me, config.clone(), clock.now()).unwrap();
    for action in actions.into_iter().take(512) {
        let now = clock.now();
        match action {
            Action::Event { from, via, event } => {
                if let Some(bytes) = event.encode() {
                    engine.handle_event(now, peer(from), via.to_socket(), &bytes);
                }
            }
            Action::RawEvent { from, via, bytes } => {
                engine.handle_event(now, peer(from), via.to_socket(), &bytes)
            }
            Action::Connected { peer: p, via } => {
                engine.handle_connected(now, peer(p), via.to_socket())
            }
            Action::Disconnected { peer: p, via } => {
                engine.handle_disconnected(now, peer(p), via.to_socket())
            }
            Action::Traffic { peer: p, via } => {
                engine.handle_traffic(now, peer(p), via.to_socket())
            }
            Action::SendFailed { peer: p, via } => {
                engine.handle_send_failed(now, peer(p), via.to_socket())
            }
            Action::Advance(ms) => engine.handle_timeout(clock.advance(ms)),
            Action::AddLocal(a) => {
                let _ = engine.add_local_address(now, a.to_socket());
            }
            Action::RemoveLocal(a) => {
                let _ = engine.remove_local_address(now, a.to_socket());
            }
            Action::Publish { kind, payload } => {
                let _ = engine.publish(now, kind, Bytes::from(payload));
            }
        }
        let (transmits, events, app_events) = engine.pending();
        assert!(transmits <= config.max_outgoing);
        assert!(events <= config.max_pending_events);
        assert!(app_events <= config.max_pending_events);
        assert!(engine.seen_len() <= config.max_seen);
        assert!(engine.peer_count() <= config.max_peers);
        assert!(engine.max_addresses_held() <= config.max_addresses_per_peer);
        assert!(engine.neighbours().count() <= config.max_neighbours);
        assert!(engine.local_addresses().count() <= config.max_local_addresses);
        let neighbours: Vec<_> = engine.neighbours().collect();
        while let Some(out) = engine.poll_transmit() {
            assert_ne!(out.peer, me);
            assert!(
                neighbours.contains(&(out.peer, out.addr)),
                "sent to a stranger"
            );
            let event = reach::decode(&out.payload).expect("sent events decode");
            assert!(event.hops <= config.max_hops);
        }
        while engine.poll_event().is_some() {}
        while let Some(e) = engine.poll_app_event() {
            assert_ne!(e.id.origin, me, "our own event delivered to us");
        }
        assert!(!engine.is_alive(me) || engine.peer(me).is_some());
    }
});
