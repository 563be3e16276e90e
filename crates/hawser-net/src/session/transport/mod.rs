//! Transports under the secure channel: byte streams ([`ByteStream`]: TCP, in-memory duplex)
//! and message transports ([`MessageTransport`]: LSP, WebSocket, in-memory channels). A
//! connected transport is a [`RawConnection`].
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
//!
//! Host names are not resolved: give an IP address and port.

mod lsp;
mod memory;
mod ws;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

pub use self::memory::{memory_duplex_pair, memory_message_pair};

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
pub type PendingLink = Pin<Box<dyn Future<Output = io::Result<RawConnection>> + Send>>;

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
}

impl fmt::Display for TransportAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportAddr::Tcp(a) => write!(f, "tcp://{a}"),
            TransportAddr::Lsp(a) => write!(f, "lsp://{a}"),
            TransportAddr::Ws(a) => write!(f, "ws://{a}"),
            TransportAddr::Mem(n) => write!(f, "mem://{n}"),
        }
    }
}

/// Why a [`TransportAddr`] did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport address {0:?}: expected tcp://IP:PORT, lsp://IP:PORT, ws://IP:PORT or mem://NAME")]
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
}

/// Connects to `addr`.
///
/// # Errors
/// The transport's connection error (refused, unreachable, LSP connect timeout, WebSocket
/// upgrade failure, unknown `mem://` name).
///
/// # Cancel safety
/// Dropping the future abandons the attempt.
pub async fn dial(addr: &TransportAddr, config: &TransportConfig) -> io::Result<RawConnection> {
    match addr {
        TransportAddr::Tcp(a) => {
            let s = TcpStream::connect(a).await?;
            tune_tcp(&s, config)?;
            Ok(RawConnection::bytes(s))
        }
        TransportAddr::Lsp(a) => lsp::dial(*a, config).await,
        TransportAddr::Ws(a) => ws::dial(*a, config).await,
        TransportAddr::Mem(name) => memory::dial(name, config),
    }
}

/// Sets `TCP_NODELAY` and the configured send buffer.
pub(crate) fn tune_tcp(s: &TcpStream, config: &TransportConfig) -> io::Result<()> {
    s.set_nodelay(true)?;
    if let Some(n) = config.tcp_send_buffer {
        socket2::SockRef::from(s).set_send_buffer_size(n)?;
    }
    Ok(())
}

/// A bound transport listener, yielding raw [`PendingLink`]s.
pub struct RawListener {
    inner: RawInner,
    local: TransportAddr,
}

enum RawInner {
    Tcp(TcpListener, TransportConfig),
    Ws(TcpListener, TransportConfig),
    Queue(
        mpsc::Receiver<RawConnection>,
        #[allow(dead_code)] Option<lsp::ServerGuard>,
    ),
}

impl RawListener {
    /// Binds `addr` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    /// The OS's bind error; `AddrInUse` for a taken `mem://` name.
    pub async fn bind(addr: &TransportAddr, config: &TransportConfig) -> io::Result<RawListener> {
        let (inner, local) = match addr {
            TransportAddr::Tcp(a) => {
                let l = TcpListener::bind(a).await?;
                let local = TransportAddr::Tcp(l.local_addr()?);
                (RawInner::Tcp(l, config.clone()), local)
            }
            TransportAddr::Ws(a) => {
                let l = TcpListener::bind(a).await?;
                let local = TransportAddr::Ws(l.local_addr()?);
                (RawInner::Ws(l, config.clone()), local)
            }
            TransportAddr::Lsp(a) => {
                let (rx, guard, local) = lsp::bind(*a, config).await?;
                (RawInner::Queue(rx, Some(guard)), TransportAddr::Lsp(local))
            }
            TransportAddr::Mem(name) => {
                let rx = memory::bind(name, config)?;
                (RawInner::Queue(rx, None), addr.clone())
            }
        };
        Ok(RawListener { inner, local })
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
    pub async fn accept(&mut self) -> io::Result<PendingLink> {
        match &mut self.inner {
            RawInner::Tcp(l, config) => {
                let (s, _) = l.accept().await?;
                tune_tcp(&s, config)?;
                Ok(Box::pin(async move { Ok(RawConnection::bytes(s)) }))
            }
            RawInner::Ws(l, config) => {
                let (s, _) = l.accept().await?;
                tune_tcp(&s, config)?;
                let config = config.clone();
                Ok(Box::pin(ws::upgrade(s, config)))
            }
            RawInner::Queue(rx, _) => match rx.recv().await {
                Some(link) => Ok(Box::pin(async move { Ok(link) })),
                None => Err(io::ErrorKind::NotConnected.into()),
            },
        }
    }
}

impl Drop for RawListener {
    fn drop(&mut self) {
        if let TransportAddr::Mem(name) = &self.local {
            memory::unbind(name);
        }
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
