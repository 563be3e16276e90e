//! Unit tests of the engine on its own (no network: answers have nowhere to go).

use super::*;
use bytes::BytesMut;

fn engine() -> Arc<RpcEngine> {
    Arc::new(RpcEngine::new(
        NodeId(1),
        RpcSettings::default(),
        Vec::new(),
    ))
}

#[test]
fn a_request_reaches_its_handler_and_a_cancel_its_token() {
    let rpc = engine();
    let mut inbound = rpc.serve(ProtocolId(1024)).unwrap();
    let mut frame = BytesMut::new();
    Rpc::Request {
        id: 9,
        protocol: 1024,
        timeout_ms: 60_000,
        payload: b"hi",
    }
    .emit(&mut frame);
    rpc.handle_frame(NodeId(2), frame.freeze());
    let req = inbound.rx.try_recv().unwrap();
    assert_eq!((req.from(), &req.payload()[..]), (NodeId(2), &b"hi"[..]));
    assert_eq!(rpc.stats().inbound_in_flight, 1);
    let mut cancel = BytesMut::new();
    Rpc::Cancel { id: 9 }.emit(&mut cancel);
    rpc.handle_frame(NodeId(2), cancel.freeze());
    assert!(req.is_cancelled());
    assert_eq!(req.respond("late"), Err(RespondError::Cancelled));
    assert_eq!(rpc.stats().inbound_in_flight, 0);
}

proptest::proptest! {
    /// Whatever bytes a peer sends as an rpc frame, the engine never panics: a frame that
    /// does not parse is counted, anything else is handled (and its tables stay bounded).
    #[test]
    fn any_frame_is_handled_or_counted_never_a_panic(
        frames in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..20),
        from in 1u64..4,
    ) {
        let rpc = engine();
        let _inbound = rpc.serve(ProtocolId(1024)).unwrap();
        for f in frames {
            let parses = Rpc::parse(&f).is_ok();
            let bad = rpc.stats().bad_frames;
            rpc.handle_frame(NodeId(from), Bytes::from(f));
            if !parses {
                proptest::prop_assert_eq!(rpc.stats().bad_frames, bad + 1);
            }
        }
        proptest::prop_assert!(rpc.stats().inbound_in_flight <= 20);
    }
}
