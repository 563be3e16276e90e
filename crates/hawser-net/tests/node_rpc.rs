//! Requests, responses and streams to node ids, on every network and reliable transport a
//! node supports (in-memory, TCP, LSP, and sessions over WebSocket, in-memory, LSP and Unix
//! domain socket transports), with the default encrypted sessions.
//!
//! Requests in flight, large requests and messages, and streams run on every network. The
//! engine's rules (refusals, deadlines, this node's own errors, dead peers) are asserted on
//! simulated time in `hawser-sim` (`tests/node_rpc.rs`), and run here on the in-memory network
//! only, for the shell's side of them: handlers, the serving queue, cancel on drop.

mod node_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use hawser_net::node::{
    Delivery, InboundRequest, Member, MembershipChange, Node, NodeId, Part, RequestError,
    RequestOptions, RespondError, ServeError, StreamError,
};
use hawser_net::session::{Protocol, ProtocolId};
use node_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: ProtocolId = ProtocolId(1024);
const HOLD: ProtocolId = ProtocolId(1025);
const BULK: ProtocolId = ProtocolId(1026);
const NOBODY: ProtocolId = ProtocolId(1027);
const SLOW: ProtocolId = ProtocolId(1028);

fn opts(ms: u64) -> RequestOptions {
    RequestOptions::timeout(Duration::from_millis(ms))
}

fn with_protocols(mut c: Cluster) -> Cluster {
    for (id, name) in [
        (BULK, "test/bulk"),
        (NOBODY, "test/nobody"),
        (SLOW, "test/slow"),
    ] {
        c.settings
            .protocols
            .push(Protocol::new(id, name, &[1]).unwrap());
    }
    c
}

/// Serves ECHO on `node`: answers every request with its payload.
fn serve_echo(node: &Node) {
    node.serve_with(ECHO, |req: InboundRequest| async move {
        let payload = req.payload().clone();
        let _ = req.respond(payload);
    })
    .unwrap();
}

/// Starts node `id` with `edit` applied to the cluster's settings for it alone, and tells
/// every running node its address.
async fn start_with(
    c: &mut Cluster,
    nodes: &[Node],
    id: u64,
    edit: impl FnOnce(&mut hawser_net::node::Settings),
) -> Node {
    let saved = c.settings.clone();
    edit(&mut c.settings);
    let node = c.start(id).await;
    c.settings = saved;
    let all: Vec<Member> = c.membership();
    for n in nodes.iter().chain(std::iter::once(&node)) {
        for m in &all {
            n.change_membership(MembershipChange::Add(m.clone()))
                .unwrap();
        }
    }
    node
}

/// Echo requests, many at once, both ways, and to the node itself.
async fn request_response(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    let nodes = c.start_all().await;
    for n in &nodes {
        serve_echo(n);
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let r = a.request(2, ECHO, "hello", opts(5_000)).await.unwrap();
    assert_eq!(&r[..], b"hello");
    let r = b.request(1, ECHO, "back", opts(5_000)).await.unwrap();
    assert_eq!(&r[..], b"back");
    let r = a.request(1, ECHO, "self", opts(5_000)).await.unwrap();
    assert_eq!(&r[..], b"self");
    // 200 in flight at once, each answered with its own payload.
    let calls = (0..200u32).map(|i| {
        let a = a.clone();
        async move {
            let r = a
                .request(2, ECHO, i.to_be_bytes().to_vec(), opts(10_000))
                .await;
            (i, r)
        }
    });
    for (i, r) in futures_util::future::join_all(calls).await {
        assert_eq!(&r.unwrap()[..], &i.to_be_bytes());
    }
    // A request as large as a message may be (1 MiB here), over every transport.
    let big: Bytes = (0..1 << 20).map(|i| i as u8).collect::<Vec<u8>>().into();
    let r = a.request(2, ECHO, big.clone(), opts(20_000)).await.unwrap();
    assert_eq!(r, big);
    let s = a.rpc_stats();
    assert_eq!(s.requests_sent, 203);
    assert_eq!(s.responses_received, 203);
    assert_eq!(s.outbound_in_flight, 0);
    assert_eq!(b.rpc_stats().requests_received, 202);
    assert_eq!(a.rpc_stats().late_responses, 0);
    stop_all(&nodes).await;
}

/// Every refusal the peer can give is its own error: no handler, refused, omitted, too
/// large (request and response), overloaded.
async fn refusals(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    let a = c.start(1).await;
    let b = start_with(&mut c, std::slice::from_ref(&a), 2, |s| {
        s.rpc.max_request = 1000;
        s.rpc.max_inbound_per_peer = 2;
    })
    .await;
    serve_echo(&b);
    b.serve_with(HOLD, |req: InboundRequest| async move {
        match req.payload().as_ref() {
            b"refuse" => {
                req.refuse(7, "not the leader").unwrap();
            }
            b"omit" => drop(req),
            b"big" => {
                let err = req.respond(vec![0u8; 9 << 20]).unwrap_err();
                assert!(matches!(err, RespondError::TooLarge { .. }));
            }
            // "hold": answer only once the caller cancels.
            _ => req.cancelled().await,
        }
    })
    .unwrap();
    let err = a.request(2, NOBODY, "x", opts(5_000)).await.unwrap_err();
    assert_eq!(err, RequestError::NoHandler(NOBODY));
    let err = a.request(2, HOLD, "refuse", opts(5_000)).await.unwrap_err();
    assert_eq!(
        err,
        RequestError::Refused {
            code: 7,
            message: "not the leader".into()
        }
    );
    let err = a.request(2, HOLD, "omit", opts(5_000)).await.unwrap_err();
    assert_eq!(err, RequestError::ResponseOmitted);
    // Above the peer's maximum: refused by the peer, the connection kept.
    let err = a
        .request(2, ECHO, vec![1u8; 1001], opts(5_000))
        .await
        .unwrap_err();
    let (part, len, max) = (Part::Request, 1001, 1000);
    assert_eq!(err, RequestError::TooLarge { part, len, max });
    // Above this node's maximum: refused at once.
    let err = a
        .request(2, ECHO, vec![1u8; (8 << 20) + 1], opts(5_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::TooLarge {
                part: Part::Request,
                ..
            }
        ),
        "{err}"
    );
    let err = a.request(2, HOLD, "big", opts(5_000)).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::TooLarge {
                part: Part::Response,
                ..
            }
        ),
        "{err}"
    );
    // Two held requests fill the peer's cap for this node: the third is answered Overloaded.
    let hold1 = tokio::spawn({
        let a = a.clone();
        async move { a.request(2, HOLD, "hold", opts(300)).await }
    });
    let hold2 = tokio::spawn({
        let a = a.clone();
        async move { a.request(2, HOLD, "hold", opts(300)).await }
    });
    eventually("two held", || b.rpc_stats().requests_received >= 5).await;
    let err = a.request(2, ECHO, "third", opts(5_000)).await.unwrap_err();
    assert_eq!(err, RequestError::Overloaded { local: false });
    assert_eq!(hold1.await.unwrap(), Err(RequestError::Timeout));
    assert_eq!(hold2.await.unwrap(), Err(RequestError::Timeout));
    // Once they are cancelled (or their deadline passed there), the peer serves again; the
    // connection never broke.
    eventually("held requests released", || {
        b.rpc_stats().inbound_in_flight == 0
    })
    .await;
    let r = a.request(2, ECHO, "again", opts(5_000)).await.unwrap();
    assert_eq!(&r[..], b"again");
    assert_eq!(a.peer_stats(2).unwrap().reconnects, 0);
    assert_eq!(b.stats().oversized_frames, 0);
    stop_all(&[a, b]).await;
}

/// Deadlines: a handler that never answers costs the caller its deadline, not more; the
/// handler is told; a request whose deadline passed before the handler took it is never
/// handed to it.
async fn deadlines(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    let nodes = c.start_all().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut held = b.serve(HOLD).unwrap();
    // Answered only after the deadline: the caller has given up by then.
    let start = Instant::now();
    let err = a.request(2, HOLD, "first", opts(200)).await.unwrap_err();
    let waited = start.elapsed();
    assert_eq!(err, RequestError::Timeout);
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    // The request waited unread past its deadline: skipped, and counted.
    let err = a.request(2, HOLD, "second", opts(100)).await.unwrap_err();
    assert_eq!(err, RequestError::Timeout);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = tokio::time::timeout(Duration::from_millis(300), held.recv()).await;
    assert!(r.is_err(), "an expired request was handed out");
    assert_eq!(b.rpc_stats().expired, 2);
    // A handler holding a request sees the caller's cancel, or its deadline.
    let call = tokio::spawn({
        let a = a.clone();
        async move { a.request(2, HOLD, "third", opts(10_000)).await }
    });
    let req = tokio::time::timeout(WAIT, held.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.from(), NodeId(1));
    assert!(!req.is_cancelled());
    call.abort(); // the caller's future is dropped
    tokio::time::timeout(WAIT, req.cancelled())
        .await
        .expect("cancel seen");
    assert!(req.is_cancelled());
    assert_eq!(req.respond("late"), Err(RespondError::Cancelled));
    eventually("cancel counted", || a.rpc_stats().cancelled == 1).await;
    // Every request that timed out or was dropped was cancelled at the peer.
    assert_eq!(b.rpc_stats().cancels_received, 3);
    assert_eq!(b.rpc_stats().inbound_in_flight, 0);
    stop_all(&nodes).await;
}

/// This node's own caps, unknown and unreachable peers, and a stopped node: errors at once.
async fn local_errors(kind: Kind) {
    let mut c = Cluster::members(kind, 3);
    c.settings.rpc.max_outbound_per_peer = 2;
    c.settings.connect_timeout = Duration::from_millis(500);
    let mut nodes = c.start_all().await;
    let third = nodes.pop().unwrap();
    third.stop().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut held = b.serve(HOLD).unwrap();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.request(2, HOLD, "hold", opts(10_000)).await })
        })
        .collect();
    let _r1 = tokio::time::timeout(WAIT, held.recv())
        .await
        .unwrap()
        .unwrap();
    let _r2 = tokio::time::timeout(WAIT, held.recv())
        .await
        .unwrap()
        .unwrap();
    let err = a.request(2, ECHO, "x", opts(5_000)).await.unwrap_err();
    assert_eq!(err, RequestError::Overloaded { local: true });
    assert_eq!(a.rpc_stats().outbound_overloaded, 1);
    for call in calls {
        call.abort();
    }
    let err = a.request(9, ECHO, "x", opts(5_000)).await.unwrap_err();
    assert_eq!(err, RequestError::UnknownNode(NodeId(9)));
    // A member that is not running: unreachable once the connection fails, before the 60 s
    // deadline (which would have answered `Timeout`, and the test's own limit comes first).
    let err = tokio::time::timeout(WAIT, a.request(3, ECHO, "x", opts(60_000)))
        .await
        .expect("the request waited for its deadline")
        .unwrap_err();
    assert_eq!(err, RequestError::Unreachable(NodeId(3)));
    assert_eq!(b.serve(HOLD).unwrap_err(), ServeError::AlreadyServed(HOLD));
    assert_eq!(
        b.serve(ProtocolId(3)).unwrap_err(),
        ServeError::Reserved(ProtocolId(3))
    );
    stop_all(&nodes).await;
    let err = a.request(2, ECHO, "x", opts(5_000)).await.unwrap_err();
    assert_eq!(err, RequestError::Stopped);
    assert_eq!(b.serve(ECHO).unwrap_err(), ServeError::Stopped);
}

/// A peer that reachability finds dead fails the requests in flight to it, and new ones at
/// once, with `Unreachable`; alive again, it is called again.
async fn dead_peers(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.reach = hawser_net::node::ReachSettings::with_lease(Duration::from_millis(300));
    let mut nodes = c.start_all().await;
    let a = nodes[0].clone();
    // Requests of HOLD are taken by nobody: they wait until the caller gives up.
    let _held = nodes[1].serve(HOLD).unwrap();
    serve_echo(&nodes[1]);
    a.request(2, ECHO, "warm", opts(5_000)).await.unwrap();
    eventually("2 alive", || a.is_alive(2)).await;
    // A request held by node 2 when it stops: failed when the connection breaks or the lease
    // runs out, not at its 30 s deadline.
    let held = tokio::spawn({
        let a = a.clone();
        async move { a.request(2, HOLD, "held", opts(30_000)).await }
    });
    eventually("held", || nodes[1].rpc_stats().requests_received >= 2).await;
    nodes.pop().unwrap().stop().await;
    // (Its 30 s deadline would answer `Timeout`, after the test's own limit.)
    let r = tokio::time::timeout(WAIT, held).await.unwrap().unwrap();
    assert_eq!(r, Err(RequestError::Unreachable(NodeId(2))));
    eventually("2 dead", || !a.is_alive(2)).await;
    // A new request to a dead peer fails at once: on its first poll, nothing sent.
    let sent = a.rpc_stats().requests_sent;
    let err = a.request(2, ECHO, "x", opts(30_000)).now_or_never();
    assert_eq!(err, Some(Err(RequestError::Unreachable(NodeId(2)))));
    assert_eq!(a.rpc_stats().requests_sent, sent);
    // Back: alive again, answered again.
    let b = c.start(2).await;
    serve_echo(&b);
    eventually("2 alive again", || a.is_alive(2)).await;
    let r = a.request(2, ECHO, "back", opts(5_000)).await.unwrap();
    assert_eq!(&r[..], b"back");
    stop_all(&[a, b]).await;
}

/// A bulk stream moves megabytes while requests on the same pair of nodes keep being
/// answered quickly; refused streams say why.
async fn streams(kind: Kind) {
    let mut c = with_protocols(Cluster::members(kind, 2));
    c.settings.rpc.stream_backlog = 1;
    let nodes = c.start_all().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    serve_echo(b);
    let mut inbound = b.accept_streams(BULK).unwrap();
    const TOTAL: usize = 10 << 20;
    // Stream bytes the reader has taken so far.
    let progress = Arc::new(AtomicUsize::new(0));
    let read = progress.clone();
    let reader = tokio::spawn(async move {
        let (from, mut s) = inbound.accept().await.unwrap();
        let mut sum = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0;
        loop {
            let got = s.read(&mut buf).await.unwrap();
            if got == 0 {
                break;
            }
            sum += buf[..got].iter().map(|&x| u64::from(x)).sum::<u64>();
            n += got;
            read.fetch_add(got, Ordering::SeqCst);
        }
        s.write_all(&sum.to_be_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        (from, n, sum)
    });
    let mut s = a.open_stream(2, BULK).await.unwrap();
    assert_eq!(s.protocol(), BULK);
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i * 7) as u8).collect();
    let chunk_sum: u64 = chunk.iter().map(|&x| u64::from(x)).sum();
    let writer = async {
        for _ in 0..TOTAL / chunk.len() {
            s.write_all(&chunk).await.unwrap();
        }
        s.shutdown().await.unwrap();
        let mut sum = [0u8; 8];
        s.read_exact(&mut sum).await.unwrap();
        u64::from_be_bytes(sum)
    };
    // Requests during the transfer: each answered while less than half of the stream's bytes
    // reach the reader, so none waits behind the stream (measured in bytes, not time).
    let pings = async {
        let mut worst = 0;
        for _ in 0..20 {
            let before = progress.load(Ordering::SeqCst);
            a.request(2, ECHO, "ping", opts(30_000)).await.unwrap();
            worst = worst.max(progress.load(Ordering::SeqCst) - before);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worst
    };
    let (sum, worst) = tokio::join!(writer, pings);
    let (from, n, their_sum) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!((from, n), (NodeId(1), TOTAL));
    assert_eq!(sum, their_sum);
    assert_eq!(sum, chunk_sum * (TOTAL / chunk.len()) as u64);
    assert!(
        worst < TOTAL / 2,
        "a request waited for {worst} bytes of the stream"
    );
    // Nobody accepts NOBODY's streams; ECHO is not a stream protocol.
    let err = a.open_stream(2, NOBODY).await.unwrap_err();
    assert!(matches!(err, StreamError::NoHandler(NOBODY)), "{err}");
    let err = a.open_stream(2, ECHO).await.unwrap_err();
    assert!(matches!(err, StreamError::NotRegistered(ECHO)), "{err}");
    // An acceptor that takes nothing: one stream waits in its backlog, the next is refused.
    let mut slow = b.accept_streams(SLOW).unwrap();
    let _waiting = a.open_stream(2, SLOW).await.unwrap();
    let err = a.open_stream(2, SLOW).await.unwrap_err();
    assert!(matches!(err, StreamError::Overloaded), "{err}");
    let (from, _) = tokio::time::timeout(WAIT, slow.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, NodeId(1));
    assert_eq!(b.rpc_stats().streams_accepted, 2);
    assert_eq!(
        b.rpc_stats().streams_refused,
        2,
        "NOBODY's and SLOW's second"
    );
    assert_eq!(a.rpc_stats().streams_opened, 2);
    stop_all(&nodes).await;
}

/// Reliable messages as large as `max_frame` allows, over every transport (LSP included).
async fn large_messages(kind: Kind) {
    let mut c = Cluster::members(kind, 2);
    c.settings.max_frame = 2 << 20;
    let nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    for len in [16 * 1024, 100_000, 2 << 20] {
        let payload: Bytes = (0..len)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        nodes[0]
            .try_send(2, payload.clone(), Delivery::Reliable)
            .unwrap();
        let m = next(&mut inbox).await;
        assert_eq!(m.payload, payload, "{len} bytes");
    }
    stop_all(&nodes).await;
}

suite!(Memory: request_response, refusals, deadlines, local_errors, dead_peers, streams,
    large_messages);
suite!(Tcp: request_response, streams, large_messages);
suite!(Lsp: request_response, streams, large_messages);
suite!(SessionWs: request_response, streams, large_messages);
suite!(SessionMem: request_response, streams, large_messages);
suite!(SessionLsp: request_response, streams, large_messages);
suite!(SessionUds: request_response, streams, large_messages);

/// `serve_with` runs at most `max_inbound` handlers at once, counting those still running after
/// they answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_runs_at_most_max_inbound_handlers() {
    let mut c = Cluster::members(Kind::Memory, 2);
    c.settings.rpc.max_inbound = 2;
    let nodes = c.start_all().await;
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, m) = (running.clone(), most.clone());
    nodes[1]
        .serve_with(ECHO, move |req: InboundRequest| {
            let (running, most) = (r.clone(), m.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _ = req.respond("ok");
                // Still running after the answer: the permit, not the inbound cap, bounds it.
                tokio::time::sleep(Duration::from_millis(100)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    for _ in 0..6 {
        nodes[0].request(2, ECHO, "x", opts(5_000)).await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
    stop_all(&nodes).await;
}
