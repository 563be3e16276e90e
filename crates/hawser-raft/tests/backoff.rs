//! openraft's back-off towards a peer over hawser: doubling while the peer is down, back to
//! the first delay as soon as hawser's reachability sees it alive again.

use std::time::Duration;

use hawser_net::node::{Member, MemoryHub, Node, ReachSettings, Role, Settings};
use hawser_raft::net::ReachBackoff;

async fn start(hub: &MemoryHub, id: u64) -> Node {
    let mut settings = Settings::default();
    settings.reach = ReachSettings::with_lease(Duration::from_millis(200));
    let members = [
        Member::without_addr(1, Role::Member),
        Member::without_addr(2, Role::Member),
    ];
    Node::builder(id)
        .settings(settings)
        .members(members)
        .in_memory(hub)
        .start()
        .await
        .unwrap()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_back_off_doubles_while_the_peer_is_dead_and_restarts_when_it_is_alive() {
    let hub = MemoryHub::new();
    let a = start(&hub, 1).await;
    let b = start(&hub, 2).await;
    until("2 alive", || a.is_alive(2)).await;
    b.stop().await;
    until("2 dead", || !a.is_alive(2)).await;
    let mut backoff = ReachBackoff::new(a.clone(), 2);
    let delays: Vec<Duration> = (&mut backoff).take(6).collect();
    let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [50, 100, 200, 400, 800, 1000]);
    let b = start(&hub, 2).await;
    until("2 alive again", || a.is_alive(2)).await;
    assert_eq!(
        backoff.next(),
        Some(ReachBackoff::INITIAL),
        "reset once alive"
    );
    assert_eq!(backoff.next(), Some(ReachBackoff::INITIAL * 2));
    a.stop().await;
    b.stop().await;
}
