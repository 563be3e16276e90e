//! The node engine fed arbitrary frames (well-formed application, rpc and reachability frames,
//! or any bytes), datagrams (envelopes or any bytes), connection outcomes, writes, timeouts and
//! its own commands, under small bounds. Nothing may panic; every queue and table stays
//! within its bound; every dial names a member with addresses; every batch taken is whole
//! frames.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::{BufMut, Bytes, BytesMut};
use hawser_fuzz::{Addr, Clock, ReachEvent};
use hawser_proto::node::engine::{ConnId, DialError, InboundId, WriteError};
use hawser_proto::node::{
    Delivery, Engine, EngineConfig, Event, FrameBatch, Group, Member, Membership, MembershipChange,
    NodeId, QueueLimits, Role, Transmit,
};
use hawser_proto::reach::{self, LeasePolicy};
use hawser_proto::wire::node::{Datagram, FrameKind};
use hawser_proto::wire::rpc::{Outcome, Rpc};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Action {
    Send {
        to: u8,
        len: u8,
        reliable: bool,
    },
    Broadcast {
        len: u8,
    },
    Request {
        to: u8,
        len: u8,
        timeout_ms: u16,
    },
    Respond {
        which: u8,
        ok: bool,
    },
    Cancel {
        which: u8,
    },
    RawFrame {
        conn: u8,
        bytes: Vec<u8>,
    },
    AppFrame {
        conn: u8,
        payload: Vec<u8>,
    },
    RpcRequest {
        conn: u8,
        id: u8,
        timeout_ms: u16,
        payload: Vec<u8>,
    },
    RpcResponse {
        conn: u8,
        id: u8,
        payload: Vec<u8>,
    },
    RpcCancel {
        conn: u8,
        id: u8,
    },
    ReachFrame {
        conn: u8,
        event: ReachEvent,
    },
    RawDatagram {
        from: Addr,
        bytes: Vec<u8>,
    },
    Datagram {
        from: u8,
        to: u8,
        payload: Vec<u8>,
    },
    Accept {
        peer: u8,
        announced: Option<Addr>,
    },
    Dialed {
        conn: u8,
        ok: Option<Addr>,
    },
    Write {
        conn: u8,
        fail_after: Option<u16>,
    },
    Closed {
        conn: u8,
    },
    Advance(u16),
    Membership {
        peer: u8,
        remove: bool,
        addr: Addr,
    },
    Close,
}

const MAX_EVENTS: usize = 32;
const MAX_MESSAGES: usize = 4;

fn config(reach_on: bool) -> EngineConfig {
    let mut c = EngineConfig::default();
    c.queue = QueueLimits::default()
        .with_max_messages(MAX_MESSAGES)
        .with_max_bytes(512)
        .with_deadline(Duration::from_millis(700));
    c.max_frame = 300;
    c.max_datagram = 64;
    c.max_control_frames = 3;
    c.max_inbound_connections = 3;
    c.max_events = MAX_EVENTS;
    c.connect_timeout = Duration::from_millis(200);
    c.idle_timeout = Duration::from_millis(900);
    c.admit_unknown = true;
    c.rpc.max_pending = 4;
    c.rpc.max_pending_per_peer = 2;
    c.rpc.max_inbound = 3;
    c.rpc.max_inbound_per_peer = 2;
    c.rpc.max_request = 128;
    c.rpc.max_response = 128;
    if reach_on {
        let mut r = reach::Config::default();
        r.lease = LeasePolicy::Fixed(Duration::from_millis(600));
        r.reachable_for = Duration::from_millis(1200);
        r.max_peers = 8;
        c.reach = Some(r);
    } else {
        c.reach = None;
    }
    c
}

fn node(p: u8) -> NodeId {
    NodeId(u64::from(p % 6))
}

fn conn(c: u8) -> ConnId {
    ConnId(u64::from(c % 12))
}

fn rpc_frame(msg: Rpc<'_>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(FrameKind::Rpc.byte());
    msg.emit(&mut out);
    out.freeze()
}

fuzz_target!(|input: (bool, Vec<Action>)| {
    let (reach_on, actions) = input;
    let cfg = config(reach_on);
    let mut clock = Clock::new();
    let me = NodeId(1);
    let members = Membership::from_members(
        (1..4).map(|i| Member::new(i, Role::Member, Addr::Known(0).to_socket())),
    )
    .unwrap();
    let local = [Addr::Known(0).to_socket()];
    let mut e = Engine::new(me, cfg.clone(), members, &local, clock.now()).unwrap();
    let mut batch = FrameBatch::default();
    let mut served: Vec<InboundId> = Vec::new();
    let mut requests = Vec::new();
    for action in actions.into_iter().take(512) {
        let now = clock.now();
        match action {
            Action::Send { to, len, reliable } => {
                let d = if reliable {
                    Delivery::Reliable
                } else {
                    Delivery::Unreliable
                };
                let _ = e.send(now, node(to), &vec![7; usize::from(len)], d);
            }
            Action::Broadcast { len } => {
                let _ = e.broadcast(
                    now,
                    Group::All,
                    &vec![1; usize::from(len)],
                    Delivery::Reliable,
                );
            }
            Action::Request {
                to,
                len,
                timeout_ms,
            } => {
                let t = Some(Duration::from_millis(u64::from(timeout_ms)));
                if let Ok(id) = e.request(now, node(to), 1, &vec![2; usize::from(len)], t) {
                    requests.push(id);
                }
            }
            Action::Respond { which, ok } => {
                if let Some(&id) = served.get(usize::from(which) % served.len().max(1)) {
                    let outcome = if ok {
                        Outcome::Ok(b"r")
                    } else {
                        Outcome::Omitted
                    };
                    let _ = e.respond(now, id, outcome);
                }
            }
            Action::Cancel { which } => {
                if let Some(&id) = requests.get(usize::from(which) % requests.len().max(1)) {
                    e.cancel(now, id);
                }
            }
            Action::RawFrame { conn: c, bytes } => e.handle_frame(now, conn(c), Bytes::from(bytes)),
            Action::AppFrame { conn: c, payload } => {
                let mut f = vec![FrameKind::App.byte()];
                f.extend_from_slice(&payload);
                e.handle_frame(now, conn(c), Bytes::from(f));
            }
            Action::RpcRequest {
                conn: c,
                id,
                timeout_ms,
                payload,
            } => {
                let msg = Rpc::Request {
                    id: u64::from(id),
                    protocol: 1,
                    timeout_ms: u32::from(timeout_ms),
                    payload: &payload,
                };
                e.handle_frame(now, conn(c), rpc_frame(msg));
            }
            Action::RpcResponse {
                conn: c,
                id,
                payload,
            } => {
                let msg = Rpc::Response {
                    id: u64::from(id),
                    outcome: Outcome::Ok(&payload),
                };
                e.handle_frame(now, conn(c), rpc_frame(msg));
            }
            Action::RpcCancel { conn: c, id } => {
                e.handle_frame(now, conn(c), rpc_frame(Rpc::Cancel { id: u64::from(id) }));
            }
            Action::ReachFrame { conn: c, event } => {
                if let Some(bytes) = event.encode() {
                    let mut f = vec![FrameKind::Reach.byte()];
                    f.extend_from_slice(&bytes);
                    e.handle_frame(now, conn(c), Bytes::from(f));
                }
            }
            Action::RawDatagram { from, bytes } => {
                e.handle_datagram(now, from.to_socket(), Bytes::from(bytes))
            }
            Action::Datagram { from, to, payload } => {
                let mut out = BytesMut::new();
                Datagram {
                    from: node(from).0,
                    to: node(to).0,
                    payload: &payload,
                }
                .emit(&mut out);
                e.handle_datagram(now, Addr::Known(1).to_socket(), out.freeze());
            }
            Action::Accept { peer, announced } => {
                let _ = e.handle_accepted(now, node(peer), announced.map(Addr::to_socket));
            }
            Action::Dialed { conn: c, ok } => {
                let result = ok.map(Addr::to_socket).ok_or(DialError::Refused);
                e.handle_dialed(now, conn(c), result);
            }
            Action::Write {
                conn: c,
                fail_after,
            } => {
                if e.take_frames(now, conn(c), &mut batch) {
                    let mut at = 0;
                    for (frame, header) in batch.frames() {
                        assert!(
                            frame.len() >= 5 && header >= 5,
                            "a frame has its length and kind"
                        );
                        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
                        assert_eq!(len + 4, frame.len(), "whole frames");
                        at += frame.len();
                    }
                    assert_eq!(at, batch.bytes().len());
                    let result = match fail_after {
                        None => Ok(()),
                        Some(n) => Err(WriteError {
                            written: usize::from(n),
                        }),
                    };
                    e.handle_written(now, conn(c), &mut batch, result);
                }
            }
            Action::Closed { conn: c } => e.handle_closed(now, conn(c)),
            Action::Advance(ms) => e.handle_timeout(clock.advance(ms % 3000)),
            Action::Membership { peer, remove, addr } => {
                let change = if remove {
                    MembershipChange::Remove(node(peer))
                } else {
                    MembershipChange::Add(Member::new(node(peer), Role::Follower, addr.to_socket()))
                };
                let _ = e.change_membership(now, change);
            }
            Action::Close => e.close(now),
        }
        let (events, _) = e.pending();
        assert!(events <= MAX_EVENTS);
        let stats = e.stats();
        assert!(stats.rpc.outbound_in_flight <= 4);
        assert!(stats.rpc.inbound_in_flight <= 3);
        for m in e.membership().iter() {
            let st = e.peer_stats(m.id).unwrap();
            // A failed write may put one batch back beyond the bound, never more.
            assert!(st.queued <= 2 * MAX_MESSAGES as u64);
        }
        while let Some(ev) = e.poll_event() {
            if let Event::Request { id, .. } = ev {
                served.push(id);
            }
        }
        while let Some(t) = e.poll_transmit() {
            if let Transmit::Dial { peer, addrs, .. } = t {
                assert_ne!(peer, me);
                assert!(!addrs.is_empty());
                assert!(e.membership().contains(peer));
            }
        }
        if let Some(t) = e.poll_timeout() {
            assert!(!e.is_stopped());
            let _ = t;
        }
    }
});
