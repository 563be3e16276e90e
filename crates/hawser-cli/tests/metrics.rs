//! `--metrics-addr`: two `hawser node` processes exchange lines while their `/metrics`
//! endpoints are scraped over HTTP; the message counters move, per peer.

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hawser");

/// A child process that is killed (and reaped) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("local_addr").port()
}

/// `hawser node` with stdin piped and the rest discarded.
fn node(id: u64, listen: &str, peer: &str, metrics: &str) -> Guard {
    let child = Command::new(BIN)
        .args(["node", "--id", &id.to_string(), "--listen", listen])
        .args(["--peer", peer, "--metrics-addr", metrics])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn hawser");
    Guard(child)
}

/// The body of `GET /metrics`, with the content type, or `None` while nothing answers.
fn scrape(addr: &str) -> Option<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))?
        .to_owned();
    Some((content_type, body.to_owned()))
}

/// The value of the series `series` (name and labels as rendered), if present.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `addr` until `series` reaches `at_least`; panics with the last scrape after 20 s.
fn wait_for(addr: &str, series: &str, at_least: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some((_, body)) = scrape(addr) {
            if value(&body, series).is_some_and(|v| v >= at_least) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{series} never reached {at_least} at {addr}; last scrape:\n{last}");
}

#[test]
fn two_nodes_publish_moving_message_counters_at_slash_metrics() {
    let (l1, l2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (m1, m2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut receiver = node(2, &l2, &format!("1={l1}"), &m2);
    let mut sender = node(1, &l1, &format!("2={l2}"), &m1);

    // Before any message: the series exist, at zero, in the Prometheus text format.
    let sent = r#"hawser_peer_messages_sent_total{node="1",peer="2"}"#;
    let before = wait_for(&m1, sent, 0.0);
    assert_eq!(value(&before, sent), Some(0.0), "{before}");
    assert!(before.contains("# TYPE hawser_peer_messages_sent_total counter"));
    assert!(before.contains("# HELP hawser_node_handshake_failures_total "));
    let (content_type, _) = scrape(&m1).expect("a second scrape");
    assert!(content_type.starts_with("text/plain; version=0.0.4"));

    let mut stdin = sender.0.stdin.take().expect("stdin of node 1");
    for i in 0..3 {
        writeln!(stdin, "@2 line {i}").expect("write a line");
    }
    stdin.flush().expect("flush");
    let after = wait_for(&m1, sent, 3.0);
    assert!(
        value(&after, r#"hawser_peer_bytes_sent_total{node="1",peer="2"}"#) >= Some(18.0),
        "{after}"
    );
    let received = r#"hawser_peer_messages_received_total{node="2",peer="1"}"#;
    wait_for(&m2, received, 3.0);
    wait_for(&m2, r#"hawser_node_members{node="2"}"#, 2.0);

    drop(stdin);
    drop(receiver.0.stdin.take());
}
