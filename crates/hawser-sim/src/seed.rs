//! Seeds: where a run's seed comes from, how each link's seed derives from it, and how a failing
//! test tells which seed to replay.

use std::cell::Cell;
use std::net::SocketAddr;

/// The seed [`seed`] returns when `HAWSER_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x4841_5753_4552; // "HAWSER"

/// The environment variable that overrides the seed of every test using [`seed`].
pub const SEED_ENV: &str = "HAWSER_SEED";

thread_local! {
    /// The seed of the [`for_each_seed`] run this thread is in, if any.
    static CURRENT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The seed for this run: inside [`for_each_seed`], the seed of the current round; else
/// `HAWSER_SEED` (decimal, or hex with `0x`) if set, else [`DEFAULT_SEED`]. An unparsable value
/// is reported on stderr and the default is used.
///
/// ```
/// let net = hawser_sim::SimNet::new(hawser_sim::seed());
/// # drop(net);
/// ```
pub fn seed() -> u64 {
    CURRENT.with(Cell::get).unwrap_or_else(base_seed)
}

/// `HAWSER_SEED`, or [`DEFAULT_SEED`].
fn base_seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => parse_seed(&text).unwrap_or_else(|| {
            eprintln!("{SEED_ENV}={text:?} is not a u64; using {DEFAULT_SEED}");
            DEFAULT_SEED
        }),
        Err(_) => DEFAULT_SEED,
    }
}

/// The environment variable that sets how many seeds [`seeds`] gives (at least one).
pub const SEEDS_ENV: &str = "HAWSER_SEEDS";

/// `n` seeds for a test to run one after the other (`HAWSER_SEEDS` overrides `n`):
/// `HAWSER_SEED` (or [`DEFAULT_SEED`]) first, then seeds derived from it. A failing run prints
/// its seed (through a [`SeedGuard`], which every [`SimNet`](crate::SimNet) holds);
/// `HAWSER_SEED=<that seed>` makes it the first one run, so the failure comes back at once.
///
/// ```
/// for seed in hawser_sim::seeds(8) {
///     let net = hawser_sim::SimNet::new(seed);
///     # drop(net);
/// }
/// ```
pub fn seeds(n: usize) -> impl Iterator<Item = u64> {
    let base = base_seed();
    let n = match std::env::var(SEEDS_ENV) {
        Ok(text) => text.trim().parse::<usize>().unwrap_or_else(|_| {
            eprintln!("{SEEDS_ENV}={text:?} is not a count; running {n} seeds");
            n
        }),
        Err(_) => n,
    };
    (0..n.max(1) as u64).map(move |i| match i {
        0 => base,
        _ => splitmix64(base ^ splitmix64(i)),
    })
}

/// Runs `round` once per seed of [`seeds(n)`](seeds), in order; within a round, [`seed`]
/// returns that round's seed, so a test written against [`seed`] runs on every one of them.
/// A failing round prints `HAWSER_SEED=<its seed> to replay`.
///
/// ```
/// let mut seen = Vec::new();
/// hawser_sim::for_each_seed(3, |seed| {
///     assert_eq!(hawser_sim::seed(), seed);
///     seen.push(seed);
/// });
/// assert_eq!(seen.len(), 3);
/// assert_eq!(seen, hawser_sim::seeds(3).collect::<Vec<_>>());
/// ```
pub fn for_each_seed(n: usize, mut round: impl FnMut(u64)) {
    /// Restores the seed around a round, however it ends.
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    for seed in seeds(n) {
        let _guard = SeedGuard::new(seed);
        let _restore = Restore(CURRENT.with(|c| c.replace(Some(seed))));
        round(seed);
    }
}

/// Parses a seed written in decimal or as `0x`-prefixed hex (underscores allowed).
pub fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Prints `HAWSER_SEED=<seed> to replay` on stderr if it is dropped while its thread panics, so
/// a failing test names its seed. Every [`SimNet`](crate::SimNet) holds one; hold one yourself
/// in a test that draws from a seed without a `SimNet`.
///
/// ```
/// let _guard = hawser_sim::SeedGuard::new(hawser_sim::seed());
/// // ... a failing assertion here prints the seed.
/// ```
#[derive(Debug)]
pub struct SeedGuard {
    seed: u64,
}

impl SeedGuard {
    /// A guard reporting `seed`.
    pub fn new(seed: u64) -> SeedGuard {
        SeedGuard { seed }
    }

    /// The seed it reports.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{SEED_ENV}={} to replay", self.seed);
        }
    }
}

/// The seed of the directed link `from -> to`: a mix of the net's seed and both addresses, so
/// each direction draws its own stream and adding an endpoint never disturbs another link.
pub fn link_seed(net_seed: u64, from: SocketAddr, to: SocketAddr) -> u64 {
    let mut h = splitmix64(net_seed);
    for addr in [from, to] {
        h = splitmix64(h ^ addr_word(addr));
        if let SocketAddr::V6(v6) = addr {
            let bits = u128::from_be_bytes(v6.ip().octets());
            h = splitmix64(h ^ (bits >> 64) as u64);
            h = splitmix64(h ^ bits as u64);
        }
    }
    h
}

/// Packs an address's family, port and (for IPv4) host into one word.
fn addr_word(addr: SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(v4) => {
            (4 << 48) | (u64::from(v4.port()) << 32) | u64::from(u32::from(*v4.ip()))
        }
        SocketAddr::V6(v6) => (6 << 48) | (u64::from(v6.port()) << 32),
    }
}

/// The SplitMix64 finaliser: a cheap, well-mixed bijection on `u64`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
