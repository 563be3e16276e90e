//! Writes the seed corpus of the byte-level targets, `corpus/<target>/seed-<name>`: the
//! messages the unit tests check as golden bytes, encoded by the crates' own encoders.
//!
//! ```text
//! cd fuzz && cargo run --example seeds
//! ```
//! The structured targets (engines, handshake, sealed datagrams, the node stream) read their
//! input through `arbitrary`; their seeds (`corpus/<target>/seed-run*`) are a few of the
//! largest inputs of a minimized corpus from longer runs, kept so that a short run starts deep.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hawser_proto::session::cipher::STATIC_KEY_CONTEXT;
use hawser_proto::session::hello::{plaintext_hello, prologue};
use hawser_proto::session::{
    Identity, NetworkId, NoiseCipher, Protocol, ProtocolId, ProtocolRegistry,
};
use hawser_proto::wire::channel::Envelope;
use hawser_proto::wire::handshake::IdentityPayload;
use hawser_proto::wire::node::{Datagram, FramedHello, Hello, SealedDatagram};
use hawser_proto::wire::reach::{self, Event, EventBody, Stamp};
use hawser_proto::wire::refusal::{Refusal, RefusalReason};
use hawser_proto::wire::rpc::{Outcome, Part, Rpc};
use hawser_proto::wire::stream::{StreamHeader, StreamStatus};
use hawser_proto::wire::{bundle, lsp_binary, lsp_json, sack, ConnId, Message, SeqNum};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn lsp_messages() -> Vec<(&'static str, Message)> {
    vec![
        ("connect", Message::connect(SeqNum(42))),
        ("ack", Message::ack(ConnId(1), SeqNum(42))),
        ("heartbeat", Message::heartbeat(ConnId(1))),
        (
            "data",
            Message::data(ConnId(1), SeqNum(43), Bytes::from_static(b"hello")),
        ),
        ("cack", Message::cack(ConnId(300), SeqNum(43))),
        (
            "sack",
            Message::sack(
                ConnId(1),
                SeqNum(10),
                [(SeqNum(12), SeqNum(15)), (SeqNum(20), SeqNum(21))],
            ),
        ),
        (
            "short-payload",
            Message {
                size: 7,
                ..Message::data(ConnId(1), SeqNum(43), Bytes::from_static(b"hello"))
            },
        ),
        (
            "bundle",
            Message::bundle(ConnId(1), SeqNum(44), bundle_bytes()),
        ),
    ]
}

fn bundle_bytes() -> Bytes {
    let mut b = BytesMut::new();
    for m in [&b"hi"[..], b"", b"abc"] {
        bundle::put_entry(&mut b, m);
    }
    b.freeze()
}

fn main() {
    for (name, m) in lsp_messages() {
        let mut out = BytesMut::new();
        lsp_binary::encode(std::slice::from_ref(&m), &mut out);
        write("lsp_binary", name, &out);
        if !m.bundled {
            let mut out = BytesMut::new();
            lsp_json::encode(&m, &mut out);
            write("lsp_json", name, &out);
        }
    }
    let batch: Vec<Message> = lsp_messages().into_iter().map(|(_, m)| m).collect();
    let mut out = BytesMut::new();
    lsp_binary::encode(&batch, &mut out);
    write("lsp_binary", "batch", &out);
    write(
        "lsp_json",
        "go-style",
        b"{ \"type\": 1, \"connid\": 1, \"SeqNum\": 43, \"Size\": 5, \"Checksum\": 11659, \"Payload\": \"aGVs\\r\\nbG8=\", \"Extra\": [1, {}] }",
    );

    write("bundle", "three", &bundle_bytes());
    // The target reads `through` (8 bytes), then the list.
    let mut through = 10u64.to_le_bytes().to_vec();
    through.extend_from_slice(&sack::encode(
        SeqNum(10),
        [(SeqNum(12), SeqNum(15)), (SeqNum(20), SeqNum(21))],
    ));
    write("sack", "two-ranges", &through);

    let mut out = BytesMut::new();
    Hello { from: 7 }.emit(&mut out);
    write("node_frames", "hello", &out);
    for (name, listen) in [
        ("framed-hello", None),
        (
            "framed-hello-v4",
            Some("10.77.0.3:7700".parse::<SocketAddr>().unwrap()),
        ),
        ("framed-hello-v6", Some("[fd00::1]:7700".parse().unwrap())),
    ] {
        let mut out = BytesMut::new();
        FramedHello { from: 7, listen }.emit(&mut out);
        write("node_frames", name, &out);
    }
    let mut out = BytesMut::new();
    Datagram {
        from: 1,
        to: 2,
        payload: b"abc",
    }
    .emit(&mut out);
    write("node_frames", "datagram", &out);
    let mut out = BytesMut::new();
    SealedDatagram {
        from: 1,
        to: 2,
        counter: 3,
        sealed: &[0; 20],
    }
    .emit(&mut out);
    write("node_frames", "sealed", &out);
    write("node_frames", "ping", &[0x02]);
    write(
        "node_frames",
        "key",
        &[[0x03].as_slice(), &[9; 32]].concat(),
    );

    let stamp = Stamp {
        incarnation: 5,
        seq: 9,
    };
    let events = [
        (
            "ticktock",
            EventBody::Ticktock {
                lease: Duration::from_secs(10),
                addresses: vec![
                    ("10.0.0.1:7000".parse().unwrap(), 3),
                    ("[::1]:7001".parse().unwrap(), 4),
                ],
            },
        ),
        ("found", EventBody::Found("10.0.0.1:7000".parse().unwrap())),
        ("down", EventBody::Down("[fd00::2]:9".parse().unwrap())),
        (
            "app",
            EventBody::App {
                kind: 7,
                payload: Bytes::from_static(b"payload"),
            },
        ),
    ];
    for (name, body) in events {
        let e = Event {
            origin: 300,
            stamp,
            hops: 2,
            body,
        };
        write("reach_event", name, &reach::to_bytes(&e).unwrap());
    }

    let rpcs = [
        (
            "request",
            Rpc::Request {
                id: 1,
                protocol: 1024,
                timeout_ms: 500,
                payload: b"ask",
            },
        ),
        (
            "ok",
            Rpc::Response {
                id: 1,
                outcome: Outcome::Ok(b"answer"),
            },
        ),
        (
            "refused",
            Rpc::Response {
                id: 2,
                outcome: Outcome::Refused {
                    code: 4,
                    message: "no",
                },
            },
        ),
        (
            "too-large",
            Rpc::Response {
                id: 3,
                outcome: Outcome::TooLarge {
                    part: Part::Response,
                    len: 2000,
                    max: 1024,
                },
            },
        ),
        (
            "omitted",
            Rpc::Response {
                id: 4,
                outcome: Outcome::Omitted,
            },
        ),
        ("cancel", Rpc::Cancel { id: 5 }),
    ];
    for (name, rpc) in rpcs {
        let mut out = BytesMut::new();
        rpc.emit(&mut out);
        write("rpc", name, &out);
    }

    write(
        "refusal",
        "network",
        &Refusal::new(RefusalReason::NetworkMismatch, "blue").to_vec(),
    );
    write(
        "refusal",
        "busy",
        &Refusal::new(RefusalReason::Busy, "").to_vec(),
    );

    let network = NetworkId::new("fuzz").unwrap();
    let mut protocols = ProtocolRegistry::new();
    protocols
        .register(Protocol::new(ProtocolId(1024), "echo", &[1, 2]).unwrap())
        .unwrap();
    protocols
        .register(Protocol::new(ProtocolId(2000), "kv", &[3]).unwrap())
        .unwrap();
    let mut list = Vec::new();
    protocols.emit(&mut list);
    write("session_registry", "two", &list);

    let identity = Identity::from_secret_bytes(&[1; 32]);
    write(
        "handshake_hello",
        "plaintext",
        &plaintext_hello(&identity, &network, &protocols),
    );
    write(
        "handshake_hello",
        "prologue",
        &prologue(&network, Some(NoiseCipher::ChaChaPoly)),
    );

    write("handshake_messages", "list", &list);
    write(
        "handshake_messages",
        "plaintext-hello",
        &plaintext_hello(&identity, &network, &protocols),
    );
    write(
        "handshake_messages",
        "prologue-aesgcm",
        &prologue(&network, Some(NoiseCipher::AesGcm)),
    );
    let mut signed = STATIC_KEY_CONTEXT.to_vec();
    signed.extend_from_slice(&[0x11; 32]);
    let mut payload = Vec::new();
    IdentityPayload {
        public_key: identity.public_key().to_bytes(),
        signature: identity.sign(&signed),
        protocols: &list,
    }
    .emit(&mut payload);
    write("handshake_messages", "identity", &payload);

    for (name, s) in [
        ("accepted", StreamStatus::Accepted),
        ("no-handler", StreamStatus::NoHandler),
        ("overloaded", StreamStatus::Overloaded),
    ] {
        write("stream_status", name, &s.to_bytes());
    }
    let header = StreamHeader {
        protocol: 1024,
        version: 2,
    };
    write("stream_status", "header", &header.to_bytes());

    let envelopes = [
        (
            "data",
            Envelope::Data {
                counter: 7,
                body: b"sealed",
            },
        ),
        (
            "step",
            Envelope::Handshake {
                step: 2,
                body: b"noise",
            },
        ),
        ("hello", Envelope::Hello(b"hello")),
        ("refusal", Envelope::Refusal(b"hawser-refusal")),
    ];
    for (name, e) in envelopes {
        let mut out = Vec::new();
        e.emit(&mut out);
        write("session_envelope", name, &out);
    }
}
