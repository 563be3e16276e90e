//! Transports under the secure channel: byte streams ([`ByteStream`]: TCP, in-memory duplex)
//! and message transports ([`MessageTransport`]: LSP, WebSocket, in-memory channels). A
//! connected transport is a [`RawConnection`].
//!
//! # Organization
//! - [`Transport`]: dials and listens on the addresses of one scheme, returning
//!   [`RawConnection`]s; its listener is a [`TransportListener`]. hawser's four transports
//!   implement it, and so can an application's (the trait's docs have a complete one).
//! - [`TransportRegistry`]: the transports an application adds, by scheme (at most
//!   [`MAX_TRANSPORTS`]), in [`TransportConfig::custom_transports`].
//! - [`dial`] and [`RawListener::bind`]: look up the transport of an address's scheme
//!   ([`TransportConfig::transport`]) and use it; a scheme without one is an
//!   [`UnknownTransport`] error.
//! - [`TransportConfig`]: the bounds of hawser's transports.
//!
//! # Addresses
//! [`TransportAddr`] parses and prints:
//!
//! | form | transport |
//! | --- | --- |
//! | `tcp://127.0.0.1:7000` | TCP (byte stream, `TCP_NODELAY`) |
//! | `lsp://127.0.0.1:7001` | LSP over UDP (`hawser_net::lsp`, message transport) |
//! | `ws://127.0.0.1:7002` | WebSocket over TCP, path `/hawser` (message transport) |
//! | `mem://name` | in-process duplex pipe (byte stream), for tests |
//! | `uds:///run/app.sock` | any other scheme: [`TransportAddr::Other`], for the transport registered for it |
//!
//! Host names are not resolved: give an IP address and port. A scheme is a lowercase ASCII
//! letter, then lowercase letters, digits, `+`, `-` or `.`, at most [`MAX_SCHEME_LEN`] bytes;
//! an address of another scheme is at most [`MAX_ADDR_LEN`] bytes, with no space or control
//! character.

mod lsp;
mod memory;
mod seam;
mod tcp;
mod ws;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

pub use self::memory::{memory_duplex_pair, memory_message_pair};
pub use self::seam::{
    BoxFuture, RegisterError, Transport, TransportListener, TransportRegistry, UnknownTransport,
    BUILTIN_SCHEMES, MAX_TRANSPORTS,
};
pub(crate) use self::tcp::tune_tcp;

/// A reliable, ordered byte stream (TCP, in-memory duplex).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A reliable, ordered message transport (LSP, WebSocket, in-memory channel): a stream of
/// received messages and a sink of messages to send, each at most
/// [`max_message`](Self::max_message) bytes.
pub trait MessageTransport:
    Stream<Item = io::Result<Bytes>> + Sink<Bytes, Error = io::Error> + Send + Unpin + 'static
{
    /// Largest message the transport carries, in bytes.
    fn max_message(&self) -> usize;
}

/// A connected transport, ready for a session handshake.
pub enum RawConnection {
    /// A byte stream.
    Bytes(Box<dyn ByteStream>),
    /// A message transport.
    Messages(Box<dyn MessageTransport>),
}

impl RawConnection {
    /// Wraps a byte stream.
    pub fn bytes(stream: impl ByteStream) -> RawConnection {
        RawConnection::Bytes(Box::new(stream))
    }

    /// Wraps a message transport.
    pub fn messages(transport: impl MessageTransport) -> RawConnection {
        RawConnection::Messages(Box::new(transport))
    }
}

impl fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawConnection::Bytes(_) => f.write_str("RawConnection::Bytes"),
            RawConnection::Messages(m) => {
                write!(f, "RawConnection::Messages(max {})", m.max_message())
            }
        }
    }
}

/// An accepted transport connection whose own setup (a WebSocket upgrade) may still be
/// running; session listeners await it under the handshake timeout.
pub type PendingConnection = Pin<Box<dyn Future<Output = io::Result<RawConnection>> + Send>>;

/// Where a node listens or is dialed (see the [module docs](self) for the formats).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransportAddr {
    /// TCP.
    Tcp(SocketAddr),
    /// LSP over UDP.
    Lsp(SocketAddr),
    /// WebSocket over TCP.
    Ws(SocketAddr),
    /// An in-process duplex pipe, by name.
    Mem(String),
    /// An address of a transport hawser does not have built in (`uds:///run/app.sock`),
    /// dialled through the [`Transport`] registered for its scheme. Parse it (or build it
    /// with [`TransportAddr::other`]) so that it prints back as it was parsed.
    Other {
        /// The scheme, before `://` (see [`Transport::scheme`]).
        scheme: String,
        /// Everything after `://`, not empty.
        rest: String,
    },
}

/// Longest scheme of a [`TransportAddr`], in bytes.
pub const MAX_SCHEME_LEN: usize = 32;

/// Longest [`TransportAddr`] of another transport ([`TransportAddr::Other`]), in bytes,
/// `scheme://` included.
pub const MAX_ADDR_LEN: usize = 256;

/// Whether `s` is a scheme: a lowercase ASCII letter, then lowercase letters, digits, `+`,
/// `-` or `.`, at most [`MAX_SCHEME_LEN`] bytes.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_SCHEME_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        })
}

impl TransportAddr {
    /// An address of another transport: `scheme://rest`.
    ///
    /// # Errors
    /// The same as parsing `scheme://rest`: an invalid scheme, an empty `rest`, a control
    /// character or space in it, more than [`MAX_ADDR_LEN`] bytes in all, or one of
    /// hawser's schemes (whose addresses have their own variants).
    pub fn other(scheme: &str, rest: &str) -> Result<TransportAddr, AddrParseError> {
        let addr = format!("{scheme}://{rest}");
        if BUILTIN_SCHEMES.contains(&scheme) {
            return Err(AddrParseError(addr));
        }
        addr.parse()
    }

    /// The scheme: `tcp`, `lsp`, `ws`, `mem`, or another transport's.
    pub fn scheme(&self) -> &str {
        match self {
            TransportAddr::Tcp(_) => "tcp",
            TransportAddr::Lsp(_) => "lsp",
            TransportAddr::Ws(_) => "ws",
            TransportAddr::Mem(_) => "mem",
            TransportAddr::Other { scheme, .. } => scheme,
        }
    }
}

impl fmt::Display for TransportAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportAddr::Tcp(a) => write!(f, "tcp://{a}"),
            TransportAddr::Lsp(a) => write!(f, "lsp://{a}"),
            TransportAddr::Ws(a) => write!(f, "ws://{a}"),
            TransportAddr::Mem(n) => write!(f, "mem://{n}"),
            TransportAddr::Other { scheme, rest } => write!(f, "{scheme}://{rest}"),
        }
    }
}

/// Why a [`TransportAddr`] did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport address {0:?}: expected tcp://IP:PORT, lsp://IP:PORT, ws://IP:PORT, mem://NAME or SCHEME://ADDRESS")]
pub struct AddrParseError(String);

impl FromStr for TransportAddr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<TransportAddr, AddrParseError> {
        let err = || AddrParseError(s.to_owned());
        let (scheme, rest) = s.split_once("://").ok_or_else(err)?;
        let sock = || {
            let host = rest.strip_suffix("/hawser").unwrap_or(rest);
            host.parse::<SocketAddr>().map_err(|_| err())
        };
        match scheme {
            "tcp" => Ok(TransportAddr::Tcp(sock()?)),
            "lsp" => Ok(TransportAddr::Lsp(sock()?)),
            "ws" => Ok(TransportAddr::Ws(sock()?)),
            "mem" if !rest.is_empty() && rest.len() <= 64 => {
                Ok(TransportAddr::Mem(rest.to_owned()))
            }
            "mem" => Err(err()),
            _ if is_scheme(scheme)
                && !rest.is_empty()
                && s.len() <= MAX_ADDR_LEN
                && !rest.chars().any(|c| c.is_control() || c.is_whitespace()) =>
            {
                Ok(TransportAddr::Other {
                    scheme: scheme.to_owned(),
                    rest: rest.to_owned(),
                })
            }
            _ => Err(err()),
        }
    }
}

/// Settings of the transports; every buffer is bounded here.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// LSP endpoint settings (both dialers and listeners). Default: the binary codec with
    /// [`Params::throughput`](crate::lsp::Params::throughput) and `max_payload` 1,400
    /// (one MTU-sized datagram). Every handshake message must fit in one LSP message.
    pub lsp: crate::lsp::Config,
    /// Largest WebSocket message accepted or sent. Default 65,544: one Noise message and
    /// its 9-byte envelope (tungstenite's default is 64 MiB).
    pub ws_max_message: usize,
    /// Largest LSP message, in bytes, on a link whose peer is a loopback address
    /// (127.0.0.0/8, `::1`), instead of `lsp.max_payload`. Such a path never leaves the host,
    /// and the loopback interface carries datagrams of up to 64 KiB without fragmenting them
    /// (as TCP's 64 KiB segments there show), so the secure channel packs up to this much into
    /// one LSP message and one datagram: a tenth of the datagrams, acknowledgements and cipher
    /// calls of MTU-sized messages. Every other link keeps `lsp.max_payload`, and bundles
    /// never exceed `lsp.max_datagram`. Values above [`lsp::MAX_PAYLOAD_LIMIT`] (48 KiB) are
    /// taken as it; a value at most `lsp.max_payload` (0, say) turns this off. A peer
    /// receives any message up to 64 KiB whatever its own setting. Default 32 KiB.
    ///
    /// [`lsp::MAX_PAYLOAD_LIMIT`]: crate::lsp::MAX_PAYLOAD_LIMIT
    pub lsp_loopback_message: usize,
    /// Bytes of the in-memory duplex pipe (`mem://`). Default 64 KiB.
    pub mem_buffer: usize,
    /// Messages queued per direction between a message transport's background task and the
    /// session (received LSP messages move in batches of up to 64, each batch taking one
    /// place). Default 32.
    pub channel_depth: usize,
    /// `SO_SNDBUF` of TCP and WebSocket connections, in bytes, or `None` for the OS's
    /// auto-tuning (several MiB on Linux). Every byte queued there delays other protocols'
    /// frames behind a bulk transfer. Default 256 KiB.
    pub tcp_send_buffer: Option<usize>,
    /// Connections accepted by a listener's transport but not yet taken by its session
    /// layer (LSP and `mem://` queue them). Default 64.
    pub accept_backlog: usize,
    /// Transports besides hawser's own, by scheme (at most [`MAX_TRANSPORTS`]): [`dial`] and
    /// [`RawListener::bind`] use them for [`TransportAddr::Other`] addresses. Default none.
    pub custom_transports: TransportRegistry,
}

impl Default for TransportConfig {
    fn default() -> TransportConfig {
        TransportConfig {
            lsp: crate::lsp::Config::new(crate::lsp::Params::throughput()),
            lsp_loopback_message: 32 * 1024,
            ws_max_message: crate::session::noise::MAX_NOISE_MESSAGE
                + crate::session::framing::DATA_HEADER_LEN,
            mem_buffer: 64 * 1024,
            channel_depth: 32,
            tcp_send_buffer: Some(256 * 1024),
            accept_backlog: 64,
            custom_transports: TransportRegistry::new(),
        }
    }
}

impl TransportConfig {
    /// Largest LSP message on a link to or from `peer`:
    /// [`lsp_largest_message`](Self::lsp_largest_message) for a loopback peer, otherwise
    /// `lsp.max_payload`.
    pub fn lsp_message_limit(&self, peer: SocketAddr) -> usize {
        if peer.ip().to_canonical().is_loopback() {
            self.lsp_largest_message()
        } else {
            self.lsp.max_payload
        }
    }

    /// Largest LSP message on any link (what a listener must accept): `lsp_loopback_message`,
    /// at most [`MAX_PAYLOAD_LIMIT`](crate::lsp::MAX_PAYLOAD_LIMIT), when it is larger than
    /// `lsp.max_payload`.
    pub fn lsp_largest_message(&self) -> usize {
        self.lsp
            .max_payload
            .max(self.lsp_loopback_message.min(crate::lsp::MAX_PAYLOAD_LIMIT))
    }

    /// The transport of `scheme`: one of hawser's (set up with this configuration) or one of
    /// [`custom_transports`](Self::custom_transports).
    ///
    /// # Errors
    /// [`UnknownTransport`] when neither has the scheme.
    pub fn transport(&self, scheme: &str) -> Result<Arc<dyn Transport>, UnknownTransport> {
        let builtin: Arc<dyn Transport> = match scheme {
            "tcp" => Arc::new(tcp::Tcp(self.clone())),
            "lsp" => Arc::new(lsp::Lsp(self.clone())),
            "ws" => Arc::new(ws::Ws(self.clone())),
            "mem" => Arc::new(memory::Mem(self.clone())),
            _ => {
                return self.custom_transports.get(scheme).cloned().ok_or_else(|| {
                    UnknownTransport {
                        scheme: scheme.to_owned(),
                    }
                })
            }
        };
        Ok(builtin)
    }
}

/// Connects to `addr` with the transport of its scheme ([`TransportConfig::transport`]).
///
/// # Errors
/// The transport's connection error (refused, unreachable, LSP connect timeout, WebSocket
/// upgrade failure, unknown `mem://` name); `Unsupported` with an [`UnknownTransport`]
/// inside for a scheme without a transport.
///
/// # Cancel safety
/// Dropping the future abandons the attempt.
pub async fn dial(addr: &TransportAddr, config: &TransportConfig) -> io::Result<RawConnection> {
    config.transport(addr.scheme())?.dial(addr).await
}

/// A bound transport listener, yielding raw [`PendingConnection`]s.
pub struct RawListener {
    inner: Box<dyn TransportListener>,
    local: TransportAddr,
}

impl RawListener {
    /// Binds `addr` with the transport of its scheme ([`TransportConfig::transport`]; port 0
    /// picks a free port, see [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    /// The OS's bind error; `AddrInUse` for a taken `mem://` name; `Unsupported` with an
    /// [`UnknownTransport`] inside for a scheme without a transport.
    pub async fn bind(addr: &TransportAddr, config: &TransportConfig) -> io::Result<RawListener> {
        let inner = config.transport(addr.scheme())?.listen(addr).await?;
        Ok(RawListener::new(inner))
    }

    /// Wraps a listener of any transport.
    pub fn new(inner: Box<dyn TransportListener>) -> RawListener {
        let local = inner.local_addr();
        RawListener { inner, local }
    }

    /// The bound address.
    pub fn local_addr(&self) -> &TransportAddr {
        &self.local
    }

    /// The next incoming connection. Its setup (a WebSocket upgrade) runs when the returned
    /// future is awaited, so a slow peer never blocks this loop.
    ///
    /// # Errors
    /// The OS's accept error; `NotConnected` once an LSP or `mem://` listener has stopped.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> io::Result<PendingConnection> {
        self.inner.accept().await
    }

    /// Stops listening and returns once the address can be bound again (an LSP listener's
    /// socket is shared with its connections' writers, which dropping it only tells to stop).
    pub async fn close(mut self) {
        self.inner.close().await;
    }
}

impl fmt::Debug for RawListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// The next connection a transport's task queued (LSP, `mem://`).
async fn next_queued(rx: &mut mpsc::Receiver<RawConnection>) -> io::Result<PendingConnection> {
    match rx.recv().await {
        Some(link) => Ok(Box::pin(async move { Ok(link) })),
        None => Err(io::ErrorKind::NotConnected.into()),
    }
}

/// A message transport made of two bounded channels to background tasks that own the real
/// transport (LSP, WebSocket) or to the other end (in-memory pair). Dropping it aborts the
/// reading task and lets the writing task finish and close the transport.
pub struct ChannelTransport {
    tx: PollSender<Bytes>,
    rx: mpsc::Receiver<io::Result<Inbound>>,
    /// The rest of the last batch received.
    pending: std::vec::IntoIter<Bytes>,
    max_message: usize,
    reader: Option<JoinHandle<()>>,
}

/// What a message transport's background task hands to its [`ChannelTransport`]: one message,
/// or several received together (LSP hands over what one read returned, up to 64 messages,
/// with one channel operation and at most one wake-up).
pub(crate) enum Inbound {
    /// One message.
    One(Bytes),
    /// Messages in order.
    Many(Vec<Bytes>),
}

impl ChannelTransport {
    pub(crate) fn new(
        tx: mpsc::Sender<Bytes>,
        rx: mpsc::Receiver<io::Result<Inbound>>,
        max_message: usize,
        reader: Option<JoinHandle<()>>,
    ) -> ChannelTransport {
        ChannelTransport {
            tx: PollSender::new(tx),
            rx,
            pending: Vec::new().into_iter(),
            max_message,
            reader,
        }
    }
}

impl Drop for ChannelTransport {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

impl Stream for ChannelTransport {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.as_mut().get_mut();
        loop {
            if let Some(m) = this.pending.next() {
                return Poll::Ready(Some(Ok(m)));
            }
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(Ok(Inbound::One(m))) => return Poll::Ready(Some(Ok(m))),
                Some(Ok(Inbound::Many(batch))) => this.pending = batch.into_iter(),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }
}

fn closed() -> io::Error {
    io::ErrorKind::BrokenPipe.into()
}

impl Sink<Bytes> for ChannelTransport {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.poll_reserve(cx).map_err(|_| closed())
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> io::Result<()> {
        if item.len() > self.max_message {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message too large",
            ));
        }
        self.tx.send_item(item).map_err(|_| closed())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}

impl MessageTransport for ChannelTransport {
    fn max_message(&self) -> usize {
        self.max_message
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn loopback_lsp_links_take_larger_messages_and_others_keep_max_payload() {
        let mut c = TransportConfig::default();
        let base = c.lsp.max_payload;
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(c.lsp_message_limit(at("127.0.0.1:9")), 32 * 1024);
        assert_eq!(c.lsp_message_limit(at("127.3.2.1:9")), 32 * 1024);
        assert_eq!(c.lsp_message_limit(at("[::1]:9")), 32 * 1024);
        assert_eq!(c.lsp_message_limit(at("[::ffff:127.0.0.1]:9")), 32 * 1024);
        assert_eq!(c.lsp_message_limit(at("10.0.0.1:9")), base);
        assert_eq!(c.lsp_message_limit(at("[fe80::1]:9")), base);
        assert_eq!(c.lsp_message_limit(at("0.0.0.0:9")), base);
        assert_eq!(c.lsp_largest_message(), 32 * 1024);
        c.lsp_loopback_message = 1 << 20;
        assert_eq!(
            c.lsp_message_limit(at("127.0.0.1:9")),
            crate::lsp::MAX_PAYLOAD_LIMIT
        );
        c.lsp_loopback_message = 0;
        assert_eq!(c.lsp_message_limit(at("127.0.0.1:9")), base);
        assert_eq!(c.lsp_largest_message(), base);
    }

    #[tokio::test]
    async fn a_loopback_lsp_link_carries_one_large_message_whole_both_ways() {
        use futures_util::SinkExt;

        let config = TransportConfig::default();
        let addr: TransportAddr = "lsp://127.0.0.1:0".parse().unwrap();
        let mut listener = RawListener::bind(&addr, &config).await.unwrap();
        let target = listener.local_addr().clone();
        let RawConnection::Messages(mut client) = dial(&target, &config).await.unwrap() else {
            panic!("LSP is a message transport");
        };
        assert_eq!(client.max_message(), 32 * 1024);
        let big = Bytes::from(vec![5u8; 30 * 1024]);
        client.send(big.clone()).await.unwrap();
        let step = std::time::Duration::from_secs(5);
        let pending = tokio::time::timeout(step, listener.accept()).await.unwrap();
        let RawConnection::Messages(mut server) = pending.unwrap().await.unwrap() else {
            panic!("LSP is a message transport");
        };
        assert_eq!(server.max_message(), 32 * 1024);
        let got = tokio::time::timeout(step, server.next()).await.unwrap();
        assert_eq!(got.unwrap().unwrap(), big);
        server.send(big.clone()).await.unwrap();
        let got = tokio::time::timeout(step, client.next()).await.unwrap();
        assert_eq!(got.unwrap().unwrap(), big);
        let too_large = Bytes::from(vec![0u8; 32 * 1024 + 1]);
        assert!(client.send(too_large).await.is_err());
    }

    #[test]
    fn addresses_of_other_schemes_parse_and_print_back() {
        for text in [
            "uds:///tmp/hawser/node.sock",
            "quic+x.y-1://[::1]:4433/path?q=1",
            "tcp://127.0.0.1:7000",
            "lsp://[::1]:7001",
            "ws://127.0.0.1:7002",
            "mem://name",
        ] {
            let addr: TransportAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let uds: TransportAddr = "uds:///run/a.sock".parse().unwrap();
        assert_eq!(
            uds,
            TransportAddr::Other {
                scheme: "uds".into(),
                rest: "/run/a.sock".into()
            }
        );
        assert_eq!(uds.scheme(), "uds");
        assert_eq!(TransportAddr::other("uds", "/run/a.sock"), Ok(uds));
        let ws: TransportAddr = "ws://127.0.0.1:7002/hawser".parse().unwrap();
        assert_eq!(ws, TransportAddr::Ws("127.0.0.1:7002".parse().unwrap()));
        let long_scheme = "a".repeat(MAX_SCHEME_LEN + 1);
        let long_addr = format!("uds://{}", "p".repeat(MAX_ADDR_LEN));
        let long_mem = format!("mem://{}", "n".repeat(65));
        for bad in [
            "Uds://x",
            "1ds://x",
            "u_s://x",
            "uds://",
            "uds://a b",
            "uds://a\nb",
            "://x",
            "uds:/x",
            "tcp://nope",
            "lsp://127.0.0.1",
            "mem://",
            &format!("{long_scheme}://x"),
            &long_addr,
            &long_mem,
        ] {
            assert!(bad.parse::<TransportAddr>().is_err(), "{bad:?} parsed");
        }
        assert!(TransportAddr::other("tcp", "127.0.0.1:1").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unknown_scheme_is_a_typed_error_naming_it() {
        let config = TransportConfig::default();
        let addr: TransportAddr = "uds:///nowhere".parse().unwrap();
        for err in [
            dial(&addr, &config).await.unwrap_err(),
            RawListener::bind(&addr, &config).await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), io::ErrorKind::Unsupported);
            let inner = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<UnknownTransport>());
            assert_eq!(inner.map(|e| e.scheme.as_str()), Some("uds"));
        }
    }

    struct Named(&'static str);

    impl Transport for Named {
        fn scheme(&self) -> &str {
            self.0
        }

        fn dial<'a>(&'a self, _: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>> {
            Box::pin(async { Err(io::ErrorKind::ConnectionRefused.into()) })
        }

        fn listen<'a>(
            &'a self,
            _: &'a TransportAddr,
        ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>> {
            Box::pin(async { Err(io::ErrorKind::AddrNotAvailable.into()) })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn registered_transports_are_found_by_scheme_and_bounded() {
        let mut r = TransportRegistry::new();
        assert_eq!(
            r.register(Arc::new(Named("tcp"))),
            Err(RegisterError::Taken("tcp".into()))
        );
        assert_eq!(
            r.register(Arc::new(Named("Bad"))),
            Err(RegisterError::InvalidScheme("Bad".into()))
        );
        r.register(Arc::new(Named("uds"))).unwrap();
        assert_eq!(
            r.register(Arc::new(Named("uds"))),
            Err(RegisterError::Taken("uds".into()))
        );
        const NAMES: [&str; MAX_TRANSPORTS] = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];
        for name in &NAMES[1..] {
            r.register(Arc::new(Named(name))).unwrap();
        }
        assert_eq!(r.register(Arc::new(Named("s9"))), Err(RegisterError::Full));
        assert!(r.contains("uds") && r.contains("mem") && !r.contains("s9"));
        let config = TransportConfig {
            custom_transports: r,
            ..TransportConfig::default()
        };
        let addr: TransportAddr = "uds:///x".parse().unwrap();
        let err = dial(&addr, &config).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let err = RawListener::bind(&addr, &config).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_mem_name_is_free_again_once_its_listener_is_dropped() {
        let config = TransportConfig::default();
        let addr: TransportAddr = "mem://transport-unit-rebind".parse().unwrap();
        let first = RawListener::bind(&addr, &config).await.unwrap();
        let taken = RawListener::bind(&addr, &config).await.unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        let err = dial(&addr, &config).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let _again = RawListener::bind(&addr, &config).await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn batches_and_single_messages_come_out_one_by_one_in_order() {
        let (out_tx, _out_rx) = mpsc::channel(1);
        let (in_tx, in_rx) = mpsc::channel(4);
        let mut t = ChannelTransport::new(out_tx, in_rx, 16, None);
        let m = |s: &'static str| Bytes::from_static(s.as_bytes());
        in_tx
            .try_send(Ok(Inbound::Many(vec![m("a"), m("b")])))
            .unwrap();
        in_tx.try_send(Ok(Inbound::Many(Vec::new()))).unwrap();
        in_tx.try_send(Ok(Inbound::One(m("c")))).unwrap();
        in_tx
            .try_send(Err(io::ErrorKind::BrokenPipe.into()))
            .unwrap();
        drop(in_tx);
        let mut got = Vec::new();
        while let Some(item) = t.next().await {
            got.push(item.map_err(|e| e.kind()));
        }
        assert_eq!(
            got,
            [
                Ok(m("a")),
                Ok(m("b")),
                Ok(m("c")),
                Err(io::ErrorKind::BrokenPipe)
            ]
        );
    }
}
