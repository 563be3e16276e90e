//! [`Settings`] as the engine's [`EngineConfig`], and the incarnation a fresh start announces.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hawser_proto::node::engine::{EngineConfig, RpcConfig};

use super::config::Settings;

/// The engine's settings for a node started with `settings`: the same queues, frame and
/// datagram bounds, timers and caps; reachability with its incarnation set (Unix
/// milliseconds at start unless given) or `None` when disabled.
pub(crate) fn engine_config(settings: &Settings) -> EngineConfig {
    let s = settings;
    let rpc_settings = s.rpc.within_frame(s.max_frame);
    let mut rpc = RpcConfig::default();
    rpc.default_timeout = rpc_settings.default_timeout;
    rpc.max_request = rpc_settings.max_request;
    rpc.max_response = rpc_settings.max_response;
    rpc.max_pending = rpc_settings.max_outbound.max(1);
    rpc.max_pending_per_peer = rpc_settings.max_outbound_per_peer.clamp(1, rpc.max_pending);
    rpc.max_inbound = rpc_settings.max_inbound;
    rpc.max_inbound_per_peer = rpc_settings.max_inbound_per_peer;
    let mut c = EngineConfig::default();
    c.queue = s.queue;
    // The kind byte comes on top of a payload of up to `max_frame`.
    c.max_frame = s.max_frame.saturating_add(1);
    c.max_datagram = s.datagram_limit;
    c.oversize_datagram = s.oversize_datagram;
    c.idle_timeout = s.idle_timeout;
    c.backoff_initial = s.backoff_initial;
    c.backoff_max = s.backoff_max;
    c.connect_timeout = s.connect_timeout;
    c.max_control_frames = s.reach.max_control_frames.max(1);
    c.max_inbound_connections = s.max_inbound_connections;
    c.rpc = rpc;
    c.reach = s.reach.enabled.then(|| {
        let mut r = s.reach.engine.clone();
        if r.incarnation == 0 {
            r.incarnation = incarnation();
        }
        r
    });
    c.learn_peers = s.reach.learn_peers;
    c.admit_unknown = s.reach.admit_unknown;
    c
}

/// An incarnation from the wall clock (Unix milliseconds), growing within the process even
/// across restarts in the same millisecond.
fn incarnation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now_ms.max(prev.saturating_add(1));
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}
