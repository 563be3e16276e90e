//! The node layer's frame formats: hellos, the kind byte of framed connections and the two
//! datagram envelopes. Every parser is strict, so what parses emits the input byte for byte.
#![no_main]

use bytes::BytesMut;
use hawser_proto::wire::node::{
    AnyHello, Datagram, FrameKind, FramedHello, Hello, SealedDatagram, DATAGRAM_KEY_LEN,
    SEALED_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Hello::parse(data) {
        let mut out = BytesMut::new();
        h.emit(&mut out);
        assert_eq!(&out[..], data);
        assert_eq!(h.buffer_len(), data.len());
    }
    if let Ok(h) = FramedHello::parse(data) {
        let mut out = BytesMut::new();
        h.emit(&mut out);
        assert_eq!(&out[..], data);
        assert_eq!(h.buffer_len(), data.len());
    }
    if let Ok(h) = AnyHello::parse(data) {
        let from = match h {
            AnyHello::Plain(p) => p.from,
            AnyHello::Framed(f) => f.from,
        };
        assert_eq!(h.from(), from);
    }
    if let Ok(d) = Datagram::parse(data) {
        let mut out = BytesMut::new();
        d.emit(&mut out);
        assert_eq!(&out[..], data);
        assert_eq!(d.buffer_len(), data.len());
    }
    if let Ok(d) = SealedDatagram::parse(data) {
        let mut out = BytesMut::new();
        d.emit(&mut out);
        assert_eq!(&out[..], data);
        assert_eq!(&d.header()[..], &data[..SEALED_HEADER_LEN]);
    }
    if let Ok(kind) = FrameKind::of(data) {
        assert_eq!(kind.byte(), data[0]);
        match kind {
            FrameKind::Ping => assert_eq!(data.len(), 1),
            FrameKind::DatagramKey => assert_eq!(data.len(), 1 + DATAGRAM_KEY_LEN),
            FrameKind::Rpc => assert!(data.len() > 1),
            FrameKind::App | FrameKind::Reach => {}
        }
    }
});
