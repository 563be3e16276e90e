//! Logs carry the span of the peer or connection they concern: a dialling node's events
//! inside `peer{node=.. peer=..}`, an accepting node's inside `conn{node=.. addr=..
//! peer_id=..}`, so one peer's lines can be filtered.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hawser_net::node::{Delivery, Member, Node, Role};

/// Every formatted log line, kept for the test.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn free_addr() -> SocketAddr {
    let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_peers_log_lines_carry_its_id_and_address() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (a1, a2) = (free_addr(), free_addr());
    let members = vec![
        Member::new(1, Role::Member, a1),
        Member::new(2, Role::Member, a2),
    ];
    let start = |id: u64, addr| {
        Node::builder(id)
            .listen(addr)
            .members(members.clone())
            .start()
    };
    let n1 = start(1, a1).await.unwrap();
    let n2 = start(2, a2).await.unwrap();
    let mut inbox = n2.incoming();
    n1.try_send(2, "hello", Delivery::Reliable).unwrap();
    tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .expect("delivered")
        .unwrap();
    n1.stop().await;
    n2.stop().await;

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let dialled = text
        .lines()
        .find(|l| l.contains("peer{node=1 peer=2}") && l.contains("session established"));
    assert!(
        dialled.is_some(),
        "no dialler line in the peer span:\n{text}"
    );
    let accepted = text.lines().find(|l| {
        l.contains("conn{node=2 addr=127.0.0.1:")
            && l.contains(" peer_id=")
            && l.contains("session accepted")
    });
    assert!(
        accepted.is_some(),
        "no acceptor line in the conn span:\n{text}"
    );
}
