//! The Noise handshake, sans-IO: a responder fed arbitrary first and third messages, and a
//! real initiator/responder pair whose messages the input may alter in flight. Nothing may
//! panic; an altered message must make one end fail (never two ends that both finish); an
//! unaltered exchange must finish on both ends with the right identities and keys that work.
#![no_main]

use arbitrary::Arbitrary;
use hawser_proto::session::{
    Handshake, Identity, NetworkId, NoiseCipher, Protocol, ProtocolId, ProtocolRegistry, Role,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    /// A responder receives these messages, replying as it goes.
    Responder { aes: bool, messages: Vec<Vec<u8>> },
    /// Two ends handshake; each message is altered by the edit with its index, if any.
    Pair { aes: bool, edits: Vec<(u8, Edit)> },
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Flip { at: u16, xor: u8 },
    Truncate(u16),
    Append(Vec<u8>),
    Replace(Vec<u8>),
    Duplicate,
}

fn registry() -> ProtocolRegistry {
    let mut r = ProtocolRegistry::new();
    r.register(Protocol::new(ProtocolId(1024), "fuzz", &[1, 2]).unwrap())
        .unwrap();
    r
}

fn handshake(role: Role, cipher: NoiseCipher, identity: &Identity) -> Handshake {
    let network = NetworkId::new("fuzz").unwrap();
    Handshake::new(role, cipher, identity, &network, &registry(), 4096, None).unwrap()
}

fn apply(edit: &Edit, msg: &mut Vec<u8>) {
    match edit {
        Edit::Flip { at, xor } => {
            if !msg.is_empty() {
                let i = usize::from(*at) % msg.len();
                msg[i] ^= xor;
            }
        }
        Edit::Truncate(n) => msg.truncate(usize::from(*n)),
        Edit::Append(b) => msg.extend_from_slice(b),
        Edit::Replace(b) => *msg = b.clone(),
        Edit::Duplicate => {}
    }
}

fuzz_target!(|input: Input| {
    let a = Identity::from_secret_bytes(&[1; 32]);
    let b = Identity::from_secret_bytes(&[2; 32]);
    match input {
        Input::Responder { aes, messages } => {
            let cipher = if aes {
                NoiseCipher::AesGcm
            } else {
                NoiseCipher::ChaChaPoly
            };
            let mut r = handshake(Role::Responder, cipher, &b);
            for m in messages.iter().take(4) {
                if r.handle_message(m).is_err() {
                    return;
                }
                while let Ok(Some(_)) = r.poll_transmit() {}
            }
            // Arbitrary bytes cannot finish a handshake: message 3 must be encrypted to us.
            assert!(!r.is_finished());
        }
        Input::Pair { aes, edits } => {
            let cipher = if aes {
                NoiseCipher::AesGcm
            } else {
                NoiseCipher::ChaChaPoly
            };
            let mut ends = [
                handshake(Role::Initiator, cipher, &a),
                handshake(Role::Responder, cipher, &b),
            ];
            let mut altered = false;
            let mut failed = false;
            let mut index = 0u8;
            'run: for turn in 0..4 {
                let (from, to) = (turn % 2, 1 - turn % 2);
                let Ok(Some(mut msg)) = ends[from].poll_transmit() else {
                    break;
                };
                let mut copies = 1;
                let sent = msg.clone();
                for (_, edit) in edits.iter().filter(|(i, _)| *i == index) {
                    apply(edit, &mut msg);
                    if matches!(edit, Edit::Duplicate) {
                        copies = 2;
                    }
                }
                // Edits may cancel out (the same flip twice): compare with what was sent.
                altered |= msg != sent;
                index += 1;
                for copy in 0..copies {
                    let result = ends[to].handle_message(&msg);
                    if copy == 0 && result.is_err() {
                        failed = true;
                        break 'run;
                    }
                    // A second copy is never accepted.
                    if copy == 1 {
                        assert!(result.is_err());
                    }
                }
            }
            let [i, r] = ends;
            if altered {
                assert!(failed || !(i.is_finished() && r.is_finished()));
                return;
            }
            assert!(!failed && i.is_finished() && r.is_finished());
            let (ci, ri) = i.into_established().unwrap();
            let (cr, rr) = r.into_established().unwrap();
            assert_eq!(ri.peer_id, b.peer_id());
            assert_eq!(rr.peer_id, a.peer_id());
            let (mut seal, _) = ci.split();
            let (_, mut open) = cr.split();
            let mut sealed = Vec::new();
            seal.seal(b"ping", &mut sealed).unwrap();
            let mut plain = Vec::new();
            open.open(&sealed, &mut plain).unwrap();
            assert_eq!(plain, b"ping");
        }
    }
});
