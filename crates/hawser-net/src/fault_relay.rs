//! A UDP relay that injects faults between two endpoints that cannot be given a
//! [`FaultySocket`] themselves (a node's LSP sessions, say): point one side at the relay, and
//! the relay forwards to the other side through a [`FaultySocket`] per sender, its faults
//! applied both ways.
//!
//! ```
//! use hawser_net::fault_relay::FaultyRelay;
//! use hawser_net::fault_socket::FaultConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! let relay = FaultyRelay::start(
//!     "127.0.0.1:0".parse().unwrap(),
//!     server.local_addr()?,
//!     FaultConfig::none(),
//!     7,
//! )
//! .await?;
//! let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! client.send_to(b"hello", relay.local_addr()).await?;
//! let mut buf = [0; 16];
//! let (n, from) = server.recv_from(&mut buf).await?;
//! server.send_to(&buf[..n], from).await?; // back through the relay
//! let (n, from) = client.recv_from(&mut buf).await?;
//! assert_eq!((&buf[..n], from), (&b"hello"[..], relay.local_addr()));
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hawser_proto::wire::Codec;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::fault_socket::{FaultConfig, FaultStats, FaultySocket, FaultySocketStats};

/// The most senders one relay serves at once; datagrams of further senders are dropped.
pub const MAX_RELAY_SENDERS: usize = 64;

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_536;

struct Shared {
    faults: FaultConfig,
    /// One upstream socket per sender, bounded by [`MAX_RELAY_SENDERS`].
    upstream: HashMap<SocketAddr, FaultySocket>,
}

/// A running relay; dropping it stops it.
pub struct FaultyRelay {
    local: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for FaultyRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyRelay")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultyRelay {
    /// Listens on `listen` and forwards every datagram to `upstream` (and the answers back to
    /// their sender) with `faults` applied each way; `seed` seeds the injectors.
    ///
    /// # Errors
    /// The OS's bind error.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        faults: FaultConfig,
        seed: u64,
    ) -> io::Result<FaultyRelay> {
        let front = Arc::new(UdpSocket::bind(listen).await?);
        let local = front.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            faults,
            upstream: HashMap::new(),
        }));
        let mut tasks = JoinSet::new();
        tasks.spawn(forward(front, upstream, shared.clone(), seed));
        Ok(FaultyRelay {
            local,
            shared,
            tasks,
        })
    }

    /// Where the relay listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Changes the faults, for every sender from now on.
    pub fn set_faults(&self, faults: FaultConfig) {
        let mut s = lock(&self.shared);
        for socket in s.upstream.values() {
            socket.set_outbound(faults.clone());
            socket.set_inbound(faults.clone());
        }
        s.faults = faults;
    }

    /// What the faults did so far, summed over the senders.
    pub fn stats(&self) -> FaultySocketStats {
        let s = lock(&self.shared);
        let mut total = FaultySocketStats::default();
        for socket in s.upstream.values() {
            let one = socket.stats();
            add(&mut total.outbound, &one.outbound);
            add(&mut total.inbound, &one.inbound);
            total.overflowed += one.overflowed;
        }
        total
    }

    /// Stops relaying.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

fn add(total: &mut FaultStats, one: &FaultStats) {
    total.seen += one.seen;
    total.dropped += one.dropped;
    total.delayed += one.delayed;
    total.duplicated += one.duplicated;
    total.reordered += one.reordered;
    total.corrupted += one.corrupted;
    total.shortened += one.shortened;
    total.lengthened += one.lengthened;
    total.hooked_drops += one.hooked_drops;
}

/// Forwards datagrams from the front socket upstream, one upstream socket per sender, each
/// with a task relaying its answers back.
async fn forward(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    seed: u64,
) {
    let mut back = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let any: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let mut next_seed = seed;
    loop {
        let Ok((n, from)) = front.recv_from(&mut buf).await else {
            return;
        };
        let known = lock(&shared).upstream.get(&from).cloned();
        let socket = match known {
            Some(s) => s,
            None => {
                if lock(&shared).upstream.len() >= MAX_RELAY_SENDERS {
                    continue;
                }
                let Ok(socket) = FaultySocket::bind(any, Codec::Binary, next_seed).await else {
                    continue;
                };
                next_seed = next_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let faults = lock(&shared).faults.clone();
                socket.set_outbound(faults.clone());
                socket.set_inbound(faults);
                lock(&shared).upstream.insert(from, socket.clone());
                back.spawn(relay_back(socket.clone(), front.clone(), from));
                socket
            }
        };
        let _ = socket.send_to(&buf[..n], upstream).await;
    }
}

/// Relays what `socket` receives back to `to` through the front socket.
async fn relay_back(socket: FaultySocket, front: Arc<UdpSocket>, to: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
        let _ = front.send_to(&buf[..n], to).await;
    }
}
