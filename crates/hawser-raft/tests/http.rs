//! The HTTP API over real sockets on 127.0.0.1, with a minimal HTTP/1.1 client.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{within, Cluster};
use hawser_raft::http::{self, HttpLimits};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(3);

/// Sends one request with `Connection: close` and returns the status and JSON body.
async fn call(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status: u16 = head.split(' ').nth(1).expect("status").parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("json body {body:?}: {e}"));
    (status, json)
}

async fn serve(c: &Cluster, id: u64, limits: HttpLimits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve(listener, c.node(id), limits));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_accepts_writes_and_linearizable_reads_over_http() {
    within(8, async {
        let c = Cluster::start(3, false, |_| {}).await;
        let leader = c.leader(LIMIT).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let f = serve(&c, follower, HttpLimits::default()).await;
        let l = serve(&c, leader, HttpLimits::default()).await;

        let (status, body) = call(f, "PUT", "/kv/color", b"blue").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["value"], "blue");
        assert_eq!(body["previous"], Value::Null);
        let (status, body) = call(l, "PUT", "/kv/color", b"green").await;
        assert_eq!((status, &body["previous"]), (200, &Value::from("blue")));

        for addr in [f, l] {
            let (status, body) = call(addr, "GET", "/kv/color", b"").await;
            assert_eq!((status, &body["value"]), (200, &Value::from("green")));
            let (status, body) = call(addr, "GET", "/kv/nothing", b"").await;
            assert_eq!(status, 404);
            assert!(body["error"].is_string());
        }

        let (status, body) = call(f, "GET", "/status", b"").await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], follower);
        assert_eq!(body["leader"], leader);
        assert_eq!(body["members"].as_array().unwrap().len(), 3);
        assert_eq!(body["may_vote"], true);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_with_400_and_413() {
    within(8, async {
        let c = Cluster::start(1, false, |_| {}).await;
        let mut limits = HttpLimits::default();
        limits.max_body = 16;
        limits.max_key = 8;
        let a = serve(&c, 1, limits).await;
        let (status, body) = call(a, "PUT", "/kv/k", &[b'x'; 17]).await;
        assert_eq!(status, 413, "{body}");
        assert!(body["error"].is_string());
        let (status, body) = call(a, "PUT", "/kv/k", &[0xff, 0xfe]).await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = call(a, "PUT", "/kv/waytoolongkey", b"v").await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = call(a, "PUT", "/kv/k", &[b'x'; 16]).await;
        assert_eq!(status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_quorum_answers_503_or_504_in_json() {
    within(8, async {
        let c = Cluster::start(3, false, |cfg| {
            cfg.request_timeout = Duration::from_millis(800)
        })
        .await;
        let leader = c.leader(LIMIT).await;
        let a = serve(&c, leader, HttpLimits::default()).await;
        for id in 1..=3 {
            if id != leader {
                c.router.set_down(id, true);
            }
        }
        let (status, body) = call(a, "GET", "/kv/k", b"").await;
        assert!(status == 503 || status == 504, "{status} {body}");
        assert!(body["error"].is_string());
        let (status, body) = call(a, "PUT", "/kv/k", b"v").await;
        assert!(status == 503 || status == 504, "{status} {body}");
        assert_eq!(body["outcome"], "unknown");
    })
    .await;
}
