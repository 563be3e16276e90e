use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::wire::{ConnId, MsgType, SeqNum};

fn run(inj: &mut FaultInjector, now: Instant, n: usize) -> Vec<(Instant, Bytes)> {
    let mut out = Vec::new();
    for i in 0..n {
        inj.process(
            now,
            Bytes::from((i as u32).to_be_bytes().to_vec()),
            &mut out,
        );
    }
    out
}

fn encode(codec: Codec, msg: &Message) -> Bytes {
    let mut buf = BytesMut::new();
    codec.encode(msg, &mut buf);
    buf.freeze()
}

fn decode_one(codec: Codec, bytes: &[u8]) -> Message {
    let mut msgs = Vec::new();
    codec.decode(bytes, &mut msgs).expect("decodes");
    assert_eq!(msgs.len(), 1);
    msgs.remove(0)
}

/// An arbitrary origin: the injector never reads the clock, so any instant will do.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn hello() -> Message {
    Message::data(ConnId(1), SeqNum(43), Bytes::from_static(b"hello"))
}

/// Runs `hello` through a config and returns the single decoded message that comes out.
fn damaged(codec: Codec, config: FaultConfig, seed: u64) -> (Message, FaultStats) {
    let mut inj = FaultInjector::new(config, codec, seed);
    let mut out = Vec::new();
    inj.process(t0(), encode(codec, &hello()), &mut out);
    assert_eq!(out.len(), 1);
    (decode_one(codec, &out[0].1), inj.stats())
}

#[test]
fn fault_zero_config_passes_everything_untouched() {
    let now = t0();
    let mut inj = FaultInjector::new(FaultConfig::default(), Codec::Binary, 1);
    let out = run(&mut inj, now, 1000);
    assert_eq!(out.len(), 1000);
    for (i, (at, bytes)) in out.iter().enumerate() {
        assert_eq!(*at, now);
        assert_eq!(&bytes[..], &(i as u32).to_be_bytes());
    }
    let stats = inj.stats();
    assert_eq!(
        stats,
        FaultStats {
            seen: 1000,
            ..FaultStats::default()
        }
    );
    assert!(FaultConfig::default().is_noop());
}

#[test]
fn fault_drop_rate_lands_in_band() {
    let mut inj = FaultInjector::new(FaultConfig::dropping(20.0), Codec::Binary, 42);
    let out = run(&mut inj, t0(), 10_000);
    let dropped = inj.stats().dropped;
    // 5 standard deviations (sqrt(10000 * 0.2 * 0.8) = 40) either side.
    assert!((1800..=2200).contains(&dropped), "dropped {dropped}");
    assert_eq!(out.len() as u64, 10_000 - dropped);
}

#[test]
fn fault_same_seed_same_decisions() {
    let config = FaultConfig {
        drop_percent: 10.0,
        delay_percent: 10.0,
        delay: Duration::from_millis(50),
        duplicate_percent: 10.0,
        reorder_percent: 10.0,
        ..FaultConfig::default()
    };
    let now = t0();
    let mut a = FaultInjector::new(config.clone(), Codec::Binary, 99);
    let mut b = FaultInjector::new(config.clone(), Codec::Binary, 99);
    let mut c = FaultInjector::new(config, Codec::Binary, 100);
    let (out_a, out_b, out_c) = (
        run(&mut a, now, 2000),
        run(&mut b, now, 2000),
        run(&mut c, now, 2000),
    );
    assert_eq!(out_a, out_b);
    assert_eq!(a.stats(), b.stats());
    assert_ne!(out_a, out_c, "a different seed should decide differently");
}

#[test]
fn fault_duplicate_and_delay() {
    let now = t0();
    let delay = Duration::from_millis(500);
    let config = FaultConfig {
        duplicate_percent: 100.0,
        delay_percent: 100.0,
        delay,
        ..FaultConfig::default()
    };
    let mut inj = FaultInjector::new(config, Codec::Json, 3);
    let out = run(&mut inj, now, 2);
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|(at, _)| *at == now + delay));
    assert_eq!(out[0].1, out[1].1);
    assert_eq!(out[2].1, out[3].1);
    let stats = inj.stats();
    assert_eq!((stats.duplicated, stats.delayed), (2, 2));
}

#[test]
fn fault_reorder_holds_within_window() {
    let now = t0();
    let delay = Duration::from_millis(40);
    let config = FaultConfig {
        reorder_percent: 100.0,
        delay,
        ..FaultConfig::default()
    };
    let mut inj = FaultInjector::new(config, Codec::Json, 5);
    let out = run(&mut inj, now, 500);
    assert_eq!(inj.stats().reordered, 500);
    assert!(out.iter().all(|(at, _)| *at > now && *at <= now + delay));
    // Holds are random, so some later datagram overtakes an earlier one.
    assert!(out.windows(2).any(|w| w[1].0 < w[0].0));

    let zero = FaultConfig {
        reorder_percent: 100.0,
        ..FaultConfig::default()
    };
    let mut inj = FaultInjector::new(zero, Codec::Json, 5);
    let out = run(&mut inj, now, 100);
    assert!(out
        .iter()
        .all(|(at, _)| *at > now && *at <= now + DEFAULT_REORDER_WINDOW));
}

#[test]
fn fault_delay_takes_precedence_over_reorder() {
    let now = t0();
    let delay = Duration::from_millis(7);
    let config = FaultConfig {
        delay_percent: 100.0,
        reorder_percent: 100.0,
        delay,
        ..FaultConfig::default()
    };
    let mut inj = FaultInjector::new(config, Codec::Json, 5);
    let out = run(&mut inj, now, 10);
    assert!(out.iter().all(|(at, _)| *at == now + delay));
    assert_eq!((inj.stats().delayed, inj.stats().reordered), (10, 0));
}

#[test]
fn fault_config_switches_mid_stream() {
    let now = t0();
    let mut inj = FaultInjector::new(FaultConfig::drop_all(), Codec::Binary, 8);
    assert!(run(&mut inj, now, 50).is_empty());
    inj.set_config(FaultConfig::none());
    assert_eq!(run(&mut inj, now, 50).len(), 50);
    assert_eq!(inj.stats().dropped, 50);
    assert_eq!(inj.stats().seen, 100);
}

#[test]
fn fault_out_of_range_percent_is_clamped_and_rejected() {
    let over = FaultConfig::dropping(150.0);
    assert_eq!(
        over.validate(),
        Err(FaultConfigError::PercentOutOfRange {
            field: "drop_percent",
            value: 150.0
        })
    );
    let mut inj = FaultInjector::new(over, Codec::Binary, 1);
    assert!(run(&mut inj, t0(), 20).is_empty());

    let nan = FaultConfig {
        lengthen_percent: f64::NAN,
        ..FaultConfig::default()
    };
    let err = nan.validate().expect_err("NaN is rejected");
    assert!(err
        .to_string()
        .starts_with("lengthen_percent must be within 0..=100"));
    assert!(nan.is_noop());
    let negative = FaultConfig {
        reorder_percent: -1.0,
        ..FaultConfig::default()
    };
    assert!(matches!(
        negative.validate(),
        Err(FaultConfigError::PercentOutOfRange {
            field: "reorder_percent",
            ..
        })
    ));
}

#[test]
fn fault_hook_runs_first_and_may_drop_or_rewrite() {
    let now = t0();
    let mut inj = FaultInjector::new(FaultConfig::drop_all(), Codec::Binary, 1);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&seen);
    inj.set_hook(Some(Box::new(move |_: &mut Vec<u8>| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Verdict::Pass
    })));
    run(&mut inj, now, 10);
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 10);

    inj.set_config(FaultConfig::none());
    inj.set_hook(Some(Box::new(|d: &mut Vec<u8>| {
        if d.first() == Some(&0xff) {
            return Verdict::Drop;
        }
        d.push(0xee);
        Verdict::Pass
    })));
    let mut out = Vec::new();
    inj.process(now, Bytes::from_static(&[0xff]), &mut out);
    inj.process(now, Bytes::from_static(&[1, 2]), &mut out);
    assert_eq!(out, vec![(now, Bytes::from_static(&[1, 2, 0xee]))]);
    assert_eq!(inj.stats().hooked_drops, 1);
    inj.set_hook(None);
    assert!(!inj.has_hook());
}

#[test]
fn fault_damage_leaves_undecodable_datagrams_alone() {
    let config = FaultConfig {
        corrupt_percent: 100.0,
        shorten_percent: 100.0,
        lengthen_percent: 100.0,
        ..FaultConfig::default()
    };
    for codec in [Codec::Json, Codec::Binary] {
        let mut inj = FaultInjector::new(config.clone(), codec, 1);
        let mut out = Vec::new();
        let garbage = Bytes::from_static(b"\xfe\xfdnot a message");
        inj.process(t0(), garbage.clone(), &mut out);
        assert_eq!(out[0].1, garbage);
        let stats = inj.stats();
        assert_eq!(
            (stats.corrupted, stats.shortened, stats.lengthened),
            (0, 0, 0)
        );
    }
}

#[test]
fn fault_corrupt_flips_one_payload_byte() {
    for codec in [Codec::Json, Codec::Binary] {
        for seed in 0..20 {
            let config = FaultConfig {
                corrupt_percent: 100.0,
                ..FaultConfig::default()
            };
            let (msg, stats) = damaged(codec, config, seed);
            assert_eq!(stats.corrupted, 1);
            let original = hello();
            let (got, want) = (
                msg.payload.expect("payload"),
                original.payload.expect("payload"),
            );
            assert_eq!(got.len(), want.len());
            let diffs = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
            assert_eq!(diffs, 1, "{codec:?} seed {seed}");
            assert_eq!((msg.size, msg.checksum), (original.size, original.checksum));
        }
    }
}

#[test]
fn fault_shorten_and_lengthen_change_payload_not_size() {
    for codec in [Codec::Json, Codec::Binary] {
        let shorten = FaultConfig {
            shorten_percent: 100.0,
            ..FaultConfig::default()
        };
        let (msg, stats) = damaged(codec, shorten, 1);
        assert_eq!(stats.shortened, 1);
        assert_eq!(msg.size, 5);
        assert_eq!(msg.payload.as_deref(), Some(&b"hell"[..]));

        let lengthen = FaultConfig {
            lengthen_percent: 100.0,
            ..FaultConfig::default()
        };
        let (msg, stats) = damaged(codec, lengthen, 1);
        assert_eq!(stats.lengthened, 1);
        assert_eq!(msg.size, 5);
        let payload = msg.payload.expect("payload");
        assert!((6..=5 + mutate::MAX_LENGTHEN).contains(&payload.len()));
        assert_eq!(&payload[..5], b"hello");
    }
}

#[test]
fn fault_damage_skips_control_messages() {
    let config = FaultConfig {
        corrupt_percent: 100.0,
        shorten_percent: 100.0,
        lengthen_percent: 100.0,
        ..FaultConfig::default()
    };
    let ack = encode(Codec::Json, &Message::ack(ConnId(1), SeqNum(43)));
    let mut inj = FaultInjector::new(config, Codec::Json, 1);
    let mut out = Vec::new();
    inj.process(t0(), ack.clone(), &mut out);
    assert_eq!(out[0].1, ack);
}

#[test]
fn fault_binary_batch_is_reencoded_whole() {
    let batch = [
        Message::ack(ConnId(1), SeqNum(42)),
        hello(),
        Message::data(ConnId(1), SeqNum(44), Bytes::from_static(b"world")),
    ];
    let mut buf = BytesMut::new();
    crate::wire::lsp_binary::encode(&batch, &mut buf);
    let config = FaultConfig {
        shorten_percent: 100.0,
        ..FaultConfig::default()
    };
    let mut inj = FaultInjector::new(config, Codec::Binary, 1);
    let mut out = Vec::new();
    inj.process(t0(), buf.freeze(), &mut out);
    let mut msgs = Vec::new();
    Codec::Binary.decode(&out[0].1, &mut msgs).expect("decodes");
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0], batch[0]);
    assert_eq!(msgs[1].payload.as_deref(), Some(&b"hell"[..]));
    assert_eq!(msgs[2].payload.as_deref(), Some(&b"worl"[..]));
    assert_eq!(inj.stats().shortened, 2);
}

#[test]
fn fault_message_hook_rewrites_ack_into_cack() {
    for codec in [Codec::Json, Codec::Binary] {
        let mut inj = FaultInjector::new(FaultConfig::none(), codec, 1);
        inj.set_hook(Some(message_hook(codec, |msg: &mut Message| {
            if msg.kind == MsgType::Ack {
                msg.kind = MsgType::CAck;
            }
            if msg.kind == MsgType::Data {
                return Verdict::Drop;
            }
            Verdict::Pass
        })));
        let mut out = Vec::new();
        let now = t0();
        inj.process(
            now,
            encode(codec, &Message::ack(ConnId(2), SeqNum(9))),
            &mut out,
        );
        inj.process(now, encode(codec, &hello()), &mut out);
        assert_eq!(out.len(), 1, "{codec:?}");
        assert_eq!(
            decode_one(codec, &out[0].1),
            Message::cack(ConnId(2), SeqNum(9))
        );
        assert_eq!(inj.stats().hooked_drops, 1);
    }
}

#[test]
fn fault_message_hook_keeps_bytes_when_unchanged() {
    let mut hook = message_hook(Codec::Json, |_: &mut Message| Verdict::Pass);
    let mut bytes = encode(Codec::Json, &hello()).to_vec();
    let before = bytes.clone();
    assert_eq!(hook(&mut bytes), Verdict::Pass);
    assert_eq!(bytes, before);
    let mut garbage = b"garbage".to_vec();
    assert_eq!(hook(&mut garbage), Verdict::Pass);
    assert_eq!(garbage, b"garbage");
}
