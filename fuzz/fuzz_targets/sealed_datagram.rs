//! Sealed node datagrams: a receiver fed authentic datagrams (at chosen counters, in any order,
//! repeated), altered copies and garbage never panics; it opens each authentic counter at most
//! once, exactly when a model of the 64-wide replay window says so, returns the payload that
//! was sealed, and opens nothing altered or forged.
#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use hawser_proto::session::fuzzing::{DatagramKeys, Window};
use hawser_proto::session::NoiseCipher;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Action {
    /// Seal a payload at `base + delta` and deliver it.
    Seal { delta: i16, payload: Vec<u8> },
    /// Deliver again the `n`th datagram sealed so far.
    Replay(u8),
    /// Deliver the `n`th datagram with one byte changed.
    Alter { n: u8, at: u16, xor: u8 },
    /// Deliver these bytes.
    Garbage(Vec<u8>),
}

/// What the window must decide: seen counters, and the highest.
#[derive(Default)]
struct Model {
    seen: BTreeSet<u64>,
    top: Option<u64>,
}

impl Model {
    fn accept(&mut self, c: u64) -> bool {
        let fresh = match self.top {
            None => true,
            Some(top) => c > top || (top - c < Window::WIDTH && !self.seen.contains(&c)),
        };
        if fresh {
            self.seen.insert(c);
            self.top = Some(self.top.map_or(c, |t| t.max(c)));
        }
        fresh
    }
}

fuzz_target!(|input: (bool, u64, Vec<Action>)| {
    let (aes, base, actions) = input;
    let cipher = if aes {
        NoiseCipher::AesGcm
    } else {
        NoiseCipher::ChaChaPoly
    };
    let mut keys = DatagramKeys::new(&[7; 32], cipher);
    let mut model = Model::default();
    let mut sent: Vec<(u64, Vec<u8>, Vec<u8>)> = Vec::new();
    for action in actions.into_iter().take(256) {
        match action {
            Action::Seal { delta, payload } => {
                let counter = base.wrapping_add_signed(i64::from(delta));
                let Some(d) = keys.seal(counter, 1, 2, &payload) else {
                    // Only the last counter cannot be used.
                    assert_eq!(counter, u64::MAX);
                    continue;
                };
                let opened = keys.open(&d);
                let fresh = model.accept(counter);
                assert_eq!(opened.as_deref().ok(), fresh.then_some(&payload[..]));
                if !fresh {
                    assert_eq!(opened, Err("replayed"));
                }
                sent.push((counter, d.to_vec(), payload));
            }
            Action::Replay(n) => {
                let Some((counter, d, _)) = sent.get(usize::from(n) % sent.len().max(1)) else {
                    continue;
                };
                // Each was delivered once already.
                assert!(!model.accept(*counter));
                assert_eq!(keys.open(d), Err("replayed"));
            }
            Action::Alter { n, at, xor } => {
                let Some((_, d, _)) = sent.get(usize::from(n) % sent.len().max(1)) else {
                    continue;
                };
                let mut d = d.clone();
                let i = usize::from(at) % d.len();
                d[i] ^= xor;
                if xor != 0 {
                    assert!(keys.open(&d).is_err());
                }
            }
            Action::Garbage(bytes) => {
                assert!(keys.open(&bytes).is_err(), "forged datagram opened");
            }
        }
    }
});
