//! The async shell of the secure channel: runs the [`noise`](super::noise) handshake (or the
//! plaintext hello) over a [`Link`], then two pump tasks move bytes between the transport and
//! an in-memory pipe, encrypting and decrypting; the multiplexer runs on the pipe's other end.
//!
//! ```text
//! yamux <-> duplex pipe (SessionConfig::pipe_buffer) <-> write pump: read, seal, frame, send
//!                                                    <-> read pump: receive, open, write
//! ```
//! Back-pressure passes through: a full pipe stops the read pump, which stops reading the
//! transport. Plaintext mode over a byte stream has the same pipe and pumps that only copy
//! (no framing: yamux's bytes are the wire format), so the socket sees one write per
//! pipe-full rather than two per yamux frame.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::DuplexStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_util::codec::{Framed, FramedRead, LengthDelimitedCodecError};
use tracing::{debug, warn};

use super::error::{CloseReason, CryptoError, HandshakeError};
use super::framing::{byte_codec, Envelope, DATA_HEADER_LEN, LENGTH_PREFIX_LEN};
use super::identity::PeerId;
use super::noise::{
    parse_plaintext_hello, plaintext_hello, Cipher, Handshake, Opened, Opener, Remote, Role,
    Sealer, MAX_NOISE_MESSAGE, MAX_PLAINTEXT, TAG_LEN,
};
use super::session::{Security, SessionConfig};
use super::transport::{ByteStream, Link, MessageTransport};

/// What the pumps report to the session.
#[derive(Default)]
pub(crate) struct Status {
    reason: Mutex<Option<CloseReason>>,
    duplicates: AtomicU64,
}

impl Status {
    /// Records why the channel failed (the first reason wins).
    pub(crate) fn fail(&self, reason: CloseReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
    }

    pub(crate) fn reason(&self) -> Option<CloseReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// An established channel, ready for the multiplexer.
pub(crate) struct Channel {
    pub io: Box<dyn ByteStream>,
    pub remote: Remote,
    pub encrypted: bool,
    pub status: Arc<Status>,
    pub pumps: Vec<JoinHandle<()>>,
}

/// Runs the handshake over `link` (no timeout: the caller applies it).
pub(crate) async fn establish(
    link: Link,
    role: Role,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    match (link, config.security) {
        (Link::Bytes(s), Security::Noise) => noise_bytes(s, role, config, expected).await,
        (Link::Messages(m), Security::Noise) => noise_messages(m, role, config, expected).await,
        (Link::Bytes(s), Security::DangerPlaintext) => plain_bytes(s, config, expected).await,
        (Link::Messages(m), Security::DangerPlaintext) => plain_messages(m, config, expected).await,
    }
}

fn handshake(
    role: Role,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Handshake, HandshakeError> {
    Handshake::new(
        role,
        &config.identity,
        &config.network_id,
        &config.protocols,
        config.max_handshake_message,
        expected,
    )
}

async fn noise_bytes(
    stream: Box<dyn ByteStream>,
    role: Role,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    let mut hs = handshake(role, config, expected)?;
    // Handshake messages are bounded by `max_handshake_message`, checked on the length
    // prefix itself: a peer announcing more is refused before its bytes are awaited.
    let max = config.max_handshake_message;
    let mut framed = Framed::new(stream, byte_codec(max));
    while !hs.is_finished() {
        if let Some(m) = hs.poll_transmit()? {
            framed.send(Bytes::from(m)).await?;
            continue;
        }
        let m = match framed.next().await.ok_or(HandshakeError::Closed)? {
            Ok(m) => m,
            Err(e)
                if e.get_ref()
                    .is_some_and(|e| e.is::<LengthDelimitedCodecError>()) =>
            {
                // The codec refused the prefix without consuming it: it is still buffered.
                let len = framed
                    .read_buffer()
                    .get(..LENGTH_PREFIX_LEN)
                    .map_or(max + 1, |h| usize::from(u16::from_be_bytes([h[0], h[1]])));
                return Err(HandshakeError::TooLarge { len, max });
            }
            Err(e) => return Err(e.into()),
        };
        hs.handle_message(&m)?;
    }
    framed.codec_mut().set_max_frame_length(MAX_NOISE_MESSAGE);
    let (cipher, remote) = hs.into_established()?;
    // Each pump gets a half of its own: the reader keeps the codec and whatever it has
    // buffered beyond the handshake; the writer frames its messages itself (every handshake
    // message was flushed by `send`, so nothing waits in the write buffer).
    let parts = framed.into_parts();
    let (read_half, write_half) = tokio::io::split(parts.io);
    let mut stream = FramedRead::new(read_half, parts.codec);
    stream.read_buffer_mut().extend_from_slice(&parts.read_buf);
    Ok(pumped_channel(
        config,
        MAX_PLAINTEXT,
        cipher,
        remote,
        StreamOut(write_half),
        stream,
        Framing::Bytes,
    ))
}

async fn noise_messages(
    mut transport: Box<dyn MessageTransport>,
    role: Role,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    let chunk = chunk_size(transport.max_message(), true)?;
    let mut hs = handshake(role, config, expected)?;
    // Steps: the initiator sends 1 and 3, the responder 2.
    let (mut tx_step, mut rx_step) = match role {
        Role::Initiator => (1u8, 2u8),
        Role::Responder => (2, 1),
    };
    while !hs.is_finished() {
        if let Some(m) = hs.poll_transmit()? {
            let env = Envelope::Handshake {
                step: tx_step,
                body: &m,
            };
            let mut out = Vec::with_capacity(env.buffer_len());
            env.emit(&mut out);
            transport.send(Bytes::from(out)).await?;
            tx_step += 2;
            continue;
        }
        let m = transport.next().await.ok_or(HandshakeError::Closed)??;
        match Envelope::parse(&m) {
            Ok(Envelope::Handshake { step, body }) if step == rx_step => {
                hs.handle_message(body)?;
                rx_step += 2;
            }
            Ok(Envelope::Handshake { step, .. }) if step < rx_step => {
                debug!(step, "dropped a duplicate handshake message");
            }
            _ => {
                return Err(HandshakeError::Malformed(
                    "unexpected message during handshake",
                ))
            }
        }
    }
    let (cipher, remote) = hs.into_established()?;
    let (sink, stream) = transport.split();
    Ok(pumped_channel(
        config,
        chunk,
        cipher,
        remote,
        SinkOut(sink),
        stream,
        Framing::Messages,
    ))
}

/// Largest plaintext per message on a message transport.
fn chunk_size(max_message: usize, encrypted: bool) -> Result<usize, HandshakeError> {
    let overhead = DATA_HEADER_LEN + if encrypted { TAG_LEN } else { 0 };
    let max = max_message.min(MAX_NOISE_MESSAGE + DATA_HEADER_LEN);
    match max.checked_sub(overhead) {
        Some(n) if n >= 64 => Ok(n.min(MAX_PLAINTEXT)),
        _ => Err(HandshakeError::Malformed(
            "transport messages are too small",
        )),
    }
}

async fn plain_bytes(
    mut stream: Box<dyn ByteStream>,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    let hello = plaintext_hello(&config.identity, &config.network_id, &config.protocols);
    let len =
        u16::try_from(hello.len()).map_err(|_| HandshakeError::Malformed("hello too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut head = [0u8; LENGTH_PREFIX_LEN];
    read_exact(&mut stream, &mut head).await?;
    let len = usize::from(u16::from_be_bytes(head));
    if len > config.max_handshake_message {
        return Err(HandshakeError::TooLarge {
            len,
            max: config.max_handshake_message,
        });
    }
    let mut theirs = vec![0u8; len];
    read_exact(&mut stream, &mut theirs).await?;
    let remote = parse_plaintext_hello(&config.network_id, &theirs, expected)?;
    Ok(piped_plain_channel(config, stream, remote))
}

/// The plaintext channel to `remote` over a byte stream: yamux's bytes go through a pipe
/// unchanged (the wire format is yamux on the stream), so that its many small writes (a
/// header and a body per frame, a flush after each) reach the socket as one write per
/// pipe-full, and its small reads come from the pipe rather than from the socket.
fn piped_plain_channel(
    config: &SessionConfig,
    stream: Box<dyn ByteStream>,
    remote: Remote,
) -> Channel {
    let status = Arc::new(Status::default());
    let (mux_end, pump_end) = tokio::io::duplex(config.pipe_buffer);
    let (pipe_r, pipe_w) = tokio::io::split(pump_end);
    let (sock_r, sock_w) = tokio::io::split(stream);
    let read = tokio::spawn(copy_in(sock_r, pipe_w, config.pipe_buffer, status.clone()));
    let write = tokio::spawn(copy_out(pipe_r, sock_w, config.pipe_buffer, status.clone()));
    Channel {
        io: Box::new(mux_end),
        remote,
        encrypted: false,
        status,
        pumps: vec![read, write],
    }
}

/// Copies the transport's bytes into the pipe, `chunk` bytes at most per read, until either
/// ends; then ends the pipe.
async fn copy_in(
    mut sock: ReadHalf<Box<dyn ByteStream>>,
    mut pipe: WriteHalf<DuplexStream>,
    chunk: usize,
    status: Arc<Status>,
) {
    let mut buf = vec![0u8; chunk];
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                status.fail(CloseReason::Transport(e.to_string()));
                break;
            }
        };
        // `n` is at most `buf.len()`.
        if pipe.write_all(&buf[..n]).await.is_err() {
            return; // the multiplexer has gone
        }
    }
    let _ = pipe.shutdown().await;
}

/// Copies the pipe's bytes to the transport, as much as is buffered (up to `chunk` bytes)
/// per write, until either ends; then shuts the transport down.
async fn copy_out(
    mut pipe: ReadHalf<DuplexStream>,
    mut sock: WriteHalf<Box<dyn ByteStream>>,
    chunk: usize,
    status: Arc<Status>,
) {
    let mut buf = vec![0u8; chunk];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // `n` is at most `buf.len()`.
        let written = async {
            sock.write_all(&buf[..n]).await?;
            sock.flush().await
        };
        if let Err(e) = written.await {
            status.fail(CloseReason::Transport(e.to_string()));
            return;
        }
    }
    let _ = sock.shutdown().await;
}

async fn read_exact(
    stream: &mut Box<dyn ByteStream>,
    buf: &mut [u8],
) -> Result<(), HandshakeError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(HandshakeError::Closed),
        Err(e) => Err(e.into()),
    }
}

async fn plain_messages(
    mut transport: Box<dyn MessageTransport>,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    let chunk = chunk_size(transport.max_message(), false)?;
    let hello = plaintext_hello(&config.identity, &config.network_id, &config.protocols);
    let mut out = Vec::new();
    Envelope::Hello(&hello).emit(&mut out);
    transport.send(Bytes::from(out)).await?;
    let m = transport.next().await.ok_or(HandshakeError::Closed)??;
    if m.len() > config.max_handshake_message {
        return Err(HandshakeError::TooLarge {
            len: m.len(),
            max: config.max_handshake_message,
        });
    }
    let remote = match Envelope::parse(&m) {
        Ok(Envelope::Hello(body)) => parse_plaintext_hello(&config.network_id, body, expected)?,
        _ => return Err(HandshakeError::Malformed("expected a plaintext hello")),
    };
    let (sink, stream) = transport.split();
    Ok(pumped_channel(
        config,
        chunk,
        Cipher::danger_plaintext(),
        remote,
        SinkOut(sink),
        stream,
        Framing::Messages,
    ))
}

#[derive(Clone, Copy)]
enum Framing {
    /// Length-prefixed frames, implicit nonce.
    Bytes,
    /// Envelopes with explicit counters.
    Messages,
}

/// The channel to `remote` whose bytes the pumps carry through `cipher` over the two halves
/// of a transport (`out` and `stream`), in chunks of at most `chunk` bytes. It is encrypted
/// unless `cipher` is the plaintext one.
fn pumped_channel<O, St, E>(
    config: &SessionConfig,
    chunk: usize,
    cipher: Cipher,
    remote: Remote,
    out: O,
    stream: St,
    framing: Framing,
) -> Channel
where
    O: SealedOut,
    St: Stream<Item = Result<E, io::Error>> + Send + Unpin + 'static,
    E: AsRef<[u8]> + Send + 'static,
{
    let (sealer, opener) = cipher.split();
    let encrypted = sealer.is_encrypted();
    let status = Arc::new(Status::default());
    let (mux_end, pump_end) = tokio::io::duplex(config.pipe_buffer);
    let (pipe_r, pipe_w) = tokio::io::split(pump_end);
    let read = tokio::spawn(read_pump(stream, opener, pipe_w, framing, status.clone()));
    let write = tokio::spawn(write_pump(
        pipe_r,
        sealer,
        out,
        chunk,
        framing,
        status.clone(),
    ));
    Channel {
        io: Box::new(mux_end),
        remote,
        encrypted,
        status,
        pumps: vec![read, write],
    }
}

/// Where the write pump sends its messages.
trait SealedOut: Send + Unpin + 'static {
    /// Bytes the pump leaves at the front of each message for this output's framing.
    const HEAD: usize;

    /// Sends `msg`: [`HEAD`](Self::HEAD) bytes for the framing, then the message. May take
    /// the buffer (it is cleared for the next message either way).
    fn send(&mut self, msg: &mut Vec<u8>) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends the output.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// A byte stream: each message behind its 2-byte length, written straight from the pump's
/// buffer (no copy, no allocation per message).
struct StreamOut(WriteHalf<Box<dyn ByteStream>>);

impl SealedOut for StreamOut {
    const HEAD: usize = LENGTH_PREFIX_LEN;

    async fn send(&mut self, msg: &mut Vec<u8>) -> io::Result<()> {
        let len = msg.len().saturating_sub(Self::HEAD);
        let len = u16::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
        if let Some(head) = msg.get_mut(..Self::HEAD) {
            head.copy_from_slice(&len.to_be_bytes());
        }
        let written = async {
            self.0.write_all(msg).await?;
            self.0.flush().await
        };
        let result = written.await;
        msg.clear();
        result
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

/// A message transport: one transport message per sealed message (it takes the buffer).
struct SinkOut<Si>(Si);

impl<Si> SealedOut for SinkOut<Si>
where
    Si: Sink<Bytes, Error = io::Error> + Send + Unpin + 'static,
{
    const HEAD: usize = 0;

    async fn send(&mut self, msg: &mut Vec<u8>) -> io::Result<()> {
        self.0.send(Bytes::from(std::mem::take(msg))).await
    }

    async fn close(&mut self) {
        let _ = self.0.close().await;
    }
}

async fn read_pump<St, E>(
    mut stream: St,
    mut opener: Opener,
    mut pipe: WriteHalf<DuplexStream>,
    framing: Framing,
    status: Arc<Status>,
) where
    St: Stream<Item = Result<E, io::Error>> + Unpin,
    E: AsRef<[u8]>,
{
    read_frames(&mut stream, &mut opener, &mut pipe, framing, &status).await;
    // Whatever ended the loop, the multiplexer sees the end of its input and closes; the
    // write pump then sees the end of its own and closes the transport.
    let _ = pipe.shutdown().await;
}

async fn read_frames<St, E>(
    stream: &mut St,
    opener: &mut Opener,
    pipe: &mut WriteHalf<DuplexStream>,
    framing: Framing,
    status: &Status,
) where
    St: Stream<Item = Result<E, io::Error>> + Unpin,
    E: AsRef<[u8]>,
{
    let mut plain = Vec::with_capacity(MAX_NOISE_MESSAGE);
    while let Some(item) = stream.next().await {
        let frame = match item {
            Ok(f) => f,
            Err(e) => {
                status.fail(CloseReason::Transport(e.to_string()));
                return;
            }
        };
        plain.clear();
        let opened = match framing {
            Framing::Bytes => opener
                .open(frame.as_ref(), &mut plain)
                .map(|()| Opened::Data),
            Framing::Messages => match Envelope::parse(frame.as_ref()) {
                Ok(Envelope::Data { counter, body }) => {
                    opener.open_counted(counter, body, &mut plain)
                }
                // A late duplicate of a handshake step.
                Ok(Envelope::Handshake { .. }) => Ok(Opened::Duplicate),
                _ => Err(CryptoError::Malformed),
            },
        };
        match opened {
            Ok(Opened::Data) => {
                if pipe.write_all(&plain).await.is_err() {
                    return; // the multiplexer has gone
                }
            }
            Ok(Opened::Duplicate) => {
                status.duplicates.fetch_add(1, Ordering::Relaxed);
                debug!("dropped a duplicate message");
            }
            Err(e) => {
                warn!(error = %e, "closing session: inbound message rejected");
                status.fail(CloseReason::Crypto(e));
                return;
            }
        }
    }
}

async fn write_pump<O: SealedOut>(
    mut pipe: ReadHalf<DuplexStream>,
    mut sealer: Sealer,
    mut out: O,
    chunk: usize,
    framing: Framing,
    status: Arc<Status>,
) {
    let mut buf = vec![0u8; chunk];
    // Reused from one message to the next unless the output takes it.
    let mut msg = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let counter = sealer.next_nonce();
        msg.clear();
        msg.reserve(O::HEAD + DATA_HEADER_LEN + n + TAG_LEN);
        msg.resize(O::HEAD, 0);
        if let Framing::Messages = framing {
            msg.push(0);
            msg.extend_from_slice(&counter.to_be_bytes());
        }
        // `n` is at most `buf.len()`.
        if let Err(e) = sealer.seal(&buf[..n], &mut msg) {
            status.fail(CloseReason::Crypto(e));
            break;
        }
        if let Err(e) = out.send(&mut msg).await {
            status.fail(CloseReason::Transport(e.to_string()));
            return;
        }
    }
    out.close().await;
}
