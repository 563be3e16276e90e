use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::{DatagramEndpoint, Transmit};

use crate::*;

/// Sends a numbered ping (`P` + u32) to its peer every `interval`, answers every ping with a
/// pong (`Q` + the same number), and records everything it hears.
struct Ping {
    peer: Option<SocketAddr>,
    interval: Option<Duration>,
    next_tick: Option<Instant>,
    sent: u32,
    ticks: Vec<Instant>,
    heard: Vec<(Instant, SocketAddr, Vec<u8>)>,
    out: VecDeque<Transmit>,
}

impl Ping {
    /// Answers pings, never sends on its own.
    fn server() -> Ping {
        Ping {
            peer: None,
            interval: None,
            next_tick: None,
            sent: 0,
            ticks: Vec::new(),
            heard: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// Pings `peer` every `interval`, the first one `interval` after `start`.
    fn client(peer: SocketAddr, start: Instant, interval: Duration) -> Ping {
        Ping {
            peer: Some(peer),
            interval: Some(interval),
            next_tick: Some(start + interval),
            ..Ping::server()
        }
    }

    fn send(&mut self, to: SocketAddr, contents: Vec<u8>) {
        self.out.push_back(Transmit {
            destination: to,
            contents: contents.into(),
        });
    }

    /// The numbers of the datagrams of `kind` heard, in arrival order.
    fn numbers(&self, kind: u8) -> Vec<u32> {
        self.heard
            .iter()
            .filter(|(_, _, d)| d.len() == 5 && d[0] == kind)
            .map(|(_, _, d)| u32::from_be_bytes([d[1], d[2], d[3], d[4]]))
            .collect()
    }
}

impl DatagramEndpoint for Ping {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.heard.push((now, from, datagram.to_vec()));
        if datagram.first() == Some(&b'P') {
            let mut pong = datagram.to_vec();
            pong[0] = b'Q';
            self.send(from, pong);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let (Some(tick), Some(interval)) = (self.next_tick, self.interval) else {
            return;
        };
        if now < tick {
            return;
        }
        self.ticks.push(now);
        if let Some(peer) = self.peer {
            let mut ping = vec![b'P'];
            ping.extend_from_slice(&self.sent.to_be_bytes());
            self.sent += 1;
            self.send(peer, ping);
        }
        self.next_tick = Some(tick + interval);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }
}

/// Never has anything to do: for type-mismatch tests.
struct Mute;

impl DatagramEndpoint for Mute {
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

const MS: Duration = Duration::from_millis(1);

fn server_addr() -> SocketAddr {
    fake_addr(0)
}

/// A server at `fake_addr(0)` and `clients` clients pinging it every `interval`.
fn star(seed: u64, clients: u32, interval: Duration) -> SimNet {
    let mut net = SimNet::new(seed);
    net.add(server_addr(), Ping::server())
        .expect("free address");
    for i in 1..=clients {
        let start = net.now();
        net.add(fake_addr(i), Ping::client(server_addr(), start, interval))
            .expect("free address");
    }
    net
}

fn lossy_everything() -> FaultConfig {
    FaultConfig::default()
        .with_drop_percent(10.0)
        .with_duplicate_percent(10.0)
        .with_reorder_percent(20.0)
        .with_delay_percent(5.0)
        .with_delay(30 * MS)
}

/// The trace with times, as a comparable value.
fn traced_run(seed: u64) -> Vec<TraceEvent> {
    let mut net = star(seed, 5, 10 * MS);
    net.record_trace(usize::MAX);
    net.set_faults_all(lossy_everything());
    net.run_for(Duration::from_secs(2));
    net.take_trace()
}

#[test]
fn same_seed_same_trace() {
    let seed = seed();
    let a = traced_run(seed);
    let b = traced_run(seed);
    assert!(a.len() > 1000, "trace too short: {}", a.len());
    assert_eq!(a, b);
    assert_ne!(
        a,
        traced_run(seed ^ 1),
        "another seed should give another run"
    );
}

#[test]
fn drop_rate_lands_in_band() {
    let mut net = star(seed(), 1, MS);
    let client = fake_addr(1);
    net.set_faults(client, server_addr(), FaultConfig::dropping(20.0));
    net.run_for(Duration::from_millis(5000) + MS / 2);
    // Stop the pings and let the last one land (its pong will vanish).
    net.remove::<Ping>(client).expect("client");
    net.run_for(10 * MS);
    let link = net.link_stats(client, server_addr());
    assert_eq!(link.sent, 5000);
    // 5 standard deviations either side (sqrt(5000 * 0.2 * 0.8) = 28).
    assert!(
        (860..=1140).contains(&link.dropped),
        "dropped {}",
        link.dropped
    );
    assert_eq!(link.delivered, 5000 - link.dropped);
    let heard = net
        .endpoint::<Ping>(server_addr())
        .expect("server")
        .heard
        .len() as u64;
    assert_eq!(heard, link.delivered);
    // The way back is clean.
    assert_eq!(net.link_stats(server_addr(), client).dropped, 0);
}

#[test]
fn reorder_and_delay_reorder_but_lose_nothing() {
    let mut net = star(seed(), 1, MS);
    let client = fake_addr(1);
    net.set_faults(
        client,
        server_addr(),
        FaultConfig::default()
            .with_reorder_percent(30.0)
            .with_delay(5 * MS),
    );
    net.run_for(Duration::from_millis(500));
    net.set_faults_all(FaultConfig::none());
    net.run_for(Duration::from_millis(100));
    let server = net.endpoint::<Ping>(server_addr()).expect("server");
    let order = server.numbers(b'P');
    assert!(order.windows(2).any(|w| w[1] < w[0]), "no reordering seen");
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..order.len() as u32).collect::<Vec<_>>());
}

#[test]
fn partition_and_heal() {
    let mut net = star(seed(), 2, 10 * MS);
    let (a, b) = (fake_addr(1), fake_addr(2));
    net.partition(a, server_addr());
    net.run_for(Duration::from_millis(105));
    let from = |net: &SimNet, who: SocketAddr| {
        let server = net.endpoint::<Ping>(server_addr()).expect("server");
        server.heard.iter().filter(|(_, f, _)| *f == who).count()
    };
    assert_eq!(from(&net, a), 0);
    assert_eq!(from(&net, b), 10);
    assert_eq!(net.link_stats(a, server_addr()).dropped, 10);

    net.heal(a, server_addr());
    net.run_for(Duration::from_millis(100));
    assert_eq!(from(&net, a), 10);
    let client = net.endpoint::<Ping>(a).expect("client");
    assert_eq!(client.numbers(b'Q'), (10..20).collect::<Vec<_>>());

    net.isolate(b);
    net.run_for(Duration::from_millis(100));
    assert_eq!(from(&net, b), 20);
    net.heal_all();
    net.run_for(Duration::from_millis(100));
    assert_eq!(from(&net, b), 30);
}

#[test]
fn with_drains_transmits() {
    let mut net = SimNet::new(seed());
    let (a, b) = (fake_addr(1), fake_addr(2));
    net.add(a, Ping::server()).expect("free");
    net.add(b, Ping::server()).expect("free");
    net.set_latency(3 * MS);
    let now = net
        .with(a, |p: &mut Ping, now| {
            p.send(b, b"P\0\0\0\x07".to_vec());
            now
        })
        .expect("a is a Ping");
    assert_eq!(now, net.origin());
    assert_eq!(net.in_flight(), 1);
    assert!(net.step());
    assert_eq!(net.elapsed(), 3 * MS);
    assert!(net.step());
    assert_eq!(net.elapsed(), 6 * MS);
    assert!(!net.step(), "nothing left to do");
    let a_ep = net.endpoint::<Ping>(a).expect("a");
    assert_eq!(a_ep.numbers(b'Q'), vec![7]);
    assert_eq!(a_ep.heard[0].0, net.origin() + 6 * MS);
}

#[test]
fn timers_fire_at_their_virtual_times() {
    let mut net = SimNet::new(seed());
    let start = net.now();
    net.add(fake_addr(1), Ping::client(fake_addr(9), start, 100 * MS))
        .expect("free");
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.elapsed(), Duration::from_secs(1));
    let ticks: Vec<Duration> = net
        .endpoint::<Ping>(fake_addr(1))
        .expect("client")
        .ticks
        .iter()
        .map(|t| *t - start)
        .collect();
    let want: Vec<Duration> = (1..=10).map(|i| i * 100 * MS).collect();
    assert_eq!(ticks, want);
    // Nobody is at fake_addr(9): the nine pings that arrived by now vanished.
    assert_eq!(net.stats().vanished, 9);
    assert_eq!(net.link_stats(fake_addr(1), fake_addr(9)).vanished, 9);
}

#[test]
fn faults_all_applies_to_links_not_yet_used() {
    let mut net = SimNet::new(seed());
    net.set_faults_all(FaultConfig::drop_all());
    net.add(server_addr(), Ping::server()).expect("free");
    let start = net.now();
    net.add(fake_addr(1), Ping::client(server_addr(), start, MS))
        .expect("free");
    net.run_for(50 * MS);
    assert_eq!(net.stats().delivered, 0);
    assert_eq!(net.stats().dropped, 50);
    net.set_faults_all(FaultConfig::none());
    net.run_for(10 * MS);
    // Pings sent at 51..=59 ms arrived, and pongs to those sent at 51..=58 ms.
    assert_eq!(net.stats().delivered, 9 + 8);
}

#[test]
fn hooks_see_and_drop_per_link() {
    let mut net = star(seed(), 1, MS);
    let client = fake_addr(1);
    // Drop every even-numbered ping on the way in.
    net.set_hook(
        client,
        server_addr(),
        Some(Box::new(|d: &mut Vec<u8>| {
            if d.last().is_some_and(|b| b % 2 == 0) {
                Verdict::Drop
            } else {
                Verdict::Pass
            }
        })),
    );
    net.run_for(20 * MS + MS / 2);
    let server = net.endpoint::<Ping>(server_addr()).expect("server");
    // Pings 0..=19 went out at 1..=20 ms; 19 is still on its way.
    assert_eq!(server.numbers(b'P'), vec![1, 3, 5, 7, 9, 11, 13, 15, 17]);
    let link = net.link_stats(client, server_addr());
    assert_eq!((link.faults.hooked_drops, link.dropped), (10, 10));
}

#[test]
fn run_until_cond_stops_when_true_or_at_cap() {
    let mut net = star(seed(), 1, 10 * MS);
    let server = server_addr();
    let done = net.run_until_cond(Duration::from_secs(1), |net| {
        net.endpoint::<Ping>(server)
            .is_ok_and(|s| s.heard.len() == 3)
    });
    assert!(done);
    assert_eq!(net.elapsed(), 31 * MS);
    let before = net.now();
    assert!(!net.run_until_cond(Duration::from_millis(200), |_| false));
    assert_eq!(net.now(), before + Duration::from_millis(200));
    net.run_until(before);
    assert_eq!(
        net.now(),
        before + Duration::from_millis(200),
        "never backwards"
    );
}

#[test]
fn endpoint_errors_are_typed() {
    let mut net = SimNet::new(seed());
    let a = fake_addr(1);
    net.add(a, Mute).expect("free");
    assert_eq!(net.add(a, Mute), Err(SimError::AddressInUse(a)));
    assert!(matches!(
        net.with(a, |_: &mut Ping, _| ()),
        Err(SimError::WrongType { .. })
    ));
    assert!(matches!(
        net.remove::<Ping>(a),
        Err(SimError::WrongType { .. })
    ));
    assert_eq!(
        net.endpoint::<Mute>(fake_addr(2)).err(),
        Some(SimError::NoEndpoint(fake_addr(2)))
    );
    assert!(net.remove::<Mute>(a).is_ok());
    assert_eq!(net.addrs().count(), 0);
}

#[test]
fn simultaneous_arrivals_keep_send_order() {
    let mut net = SimNet::new(seed());
    let (a, b) = (fake_addr(1), fake_addr(2));
    net.add(b, Ping::server()).expect("free");
    for n in 0u8..50 {
        net.inject(a, b, Bytes::from(vec![b'x', n]));
    }
    net.run_for(MS);
    let heard: Vec<u8> = net
        .endpoint::<Ping>(b)
        .expect("b")
        .heard
        .iter()
        .map(|(_, _, d)| d[1])
        .collect();
    assert_eq!(heard, (0..50).collect::<Vec<_>>());
}

#[test]
fn zero_latency_loops_do_not_hang() {
    /// Answers every datagram with one: with zero latency, time never moves.
    struct Loop(VecDeque<Transmit>);
    impl DatagramEndpoint for Loop {
        fn handle_datagram(&mut self, _: Instant, from: SocketAddr, d: &[u8]) {
            self.0.push_back(Transmit {
                destination: from,
                contents: Bytes::copy_from_slice(d),
            });
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.0.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }
    let mut net = SimNet::new(seed());
    net.set_latency(Duration::ZERO);
    let (a, b) = (fake_addr(1), fake_addr(2));
    net.add(a, Loop(VecDeque::new())).expect("free");
    net.add(b, Loop(VecDeque::new())).expect("free");
    net.inject(a, b, Bytes::from_static(b"x"));
    net.run_for(MS);
    assert_eq!(net.stats().stalls, 1);
    assert_eq!(net.elapsed(), MS);
}

#[test]
fn many_clients_28_simulated_seconds_run_fast() {
    let wall = Instant::now();
    let mut net = star(seed(), 50, 10 * MS);
    net.set_faults_all(lossy_everything());
    net.run_for(Duration::from_secs(28));
    let took = wall.elapsed();
    assert_eq!(net.elapsed(), Duration::from_secs(28));
    let stats = net.stats();
    assert!(stats.sent > 200_000, "{stats:?}");
    eprintln!("28 simulated s, 51 endpoints, {stats:?}: {took:?} of wall time");
    // Far faster than real time (generous bound: this is no benchmark).
    assert!(took < Duration::from_secs(14), "took {took:?}");
}

#[test]
fn seeds_parse_and_differ_per_direction() {
    assert_eq!(parse_seed("42"), Some(42));
    assert_eq!(parse_seed(" 0x2A "), Some(42));
    assert_eq!(parse_seed("1_000"), Some(1000));
    assert_eq!(parse_seed("nope"), None);
    let (a, b) = (fake_addr(1), fake_addr(2));
    assert_ne!(link_seed(1, a, b), link_seed(1, b, a));
    assert_ne!(link_seed(1, a, b), link_seed(2, a, b));
    assert_eq!(link_seed(1, a, b), link_seed(1, a, b));
    assert_eq!(fake_addr(0).to_string(), "10.0.0.1:7000");
    assert_eq!(fake_addr(255).to_string(), "10.0.1.0:7000");
}

#[test]
fn lsp_aware_faults_and_message_hooks_use_the_net_codec() {
    use hawser_proto::wire::{Codec, ConnId, Message, MsgType, SeqNum};

    let mut net = SimNet::new(seed());
    net.set_codec(Codec::Json);
    let (a, b) = (fake_addr(1), fake_addr(2));
    net.add(b, Ping::server()).expect("free");
    net.set_faults(a, b, FaultConfig::default().with_shorten_percent(100.0));
    // Rewrite every Ack into a CAck on the same link.
    net.set_hook(
        a,
        b,
        Some(message_hook(Codec::Json, |m: &mut Message| {
            if m.kind == MsgType::Ack {
                m.kind = MsgType::CAck;
            }
            Verdict::Pass
        })),
    );
    let encode = |m: &Message| {
        let mut buf = bytes::BytesMut::new();
        Codec::Json.encode(m, &mut buf);
        buf.freeze()
    };
    let data = Message::data(ConnId(1), SeqNum(43), Bytes::from_static(b"hello"));
    net.inject(a, b, encode(&data));
    net.inject(a, b, encode(&Message::ack(ConnId(1), SeqNum(43))));
    net.run_for(MS);
    let heard: Vec<Message> = net
        .endpoint::<Ping>(b)
        .expect("b")
        .heard
        .iter()
        .map(|(_, _, d)| {
            let mut msgs = Vec::new();
            Codec::Json.decode(d, &mut msgs).expect("decodes");
            msgs.remove(0)
        })
        .collect();
    assert_eq!(heard[0].payload.as_deref(), Some(&b"hell"[..]));
    assert_eq!(heard[0].size, 5);
    assert_eq!(heard[1], Message::cack(ConnId(1), SeqNum(43)));
    assert_eq!(net.link_stats(a, b).faults.shortened, 1);
}
