//! The async shell of the secure channel: runs the [`noise`](super::noise) handshake (or the
//! plaintext hello) over a [`RawConnection`], then hands yamux an I/O object that seals what it writes
//! and opens what it reads (`super::sealed`), with no task in between.
//!
//! ```text
//! yamux <-> SealedStream   (byte streams: length-prefixed Noise messages, or raw plaintext)
//!       <-> SealedMessages (message transports: one envelope per Noise message)
//! ```
//! Back-pressure passes through: yamux stops reading when its windows are full, and its
//! writes wait while the transport has not taken `SessionConfig::pipe_buffer` sealed bytes.
//! Plaintext mode over a byte stream writes yamux's bytes as they are (yamux's bytes are the
//! wire format), buffered so that the socket sees one write per yamux flush rather than a
//! header write and a body write per frame.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hawser_proto::wire::refusal::{is_refusal, Refusal, RefusalReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec, LengthDelimitedCodecError};
use tracing::debug;

use super::config::SessionConfig;
use super::error::HandshakeError;
use super::framing::{
    byte_codec, length_prefix, prefixed_len, Envelope, DATA_HEADER_LEN, LENGTH_PREFIX_LEN,
};
use super::identity::PeerId;
use super::noise::{
    foreign_mode_error, parse_plaintext_hello, plaintext_hello, Cipher, Handshake, NoiseCipher,
    Remote, Role, MAX_NOISE_MESSAGE, MAX_PLAINTEXT, PROTOCOL_VERSION, TAG_LEN,
};
use super::sealed::{SealedMessages, SealedStream};
use super::status::Status;
use super::transport::{ByteStream, MessageTransport, RawConnection};

/// An established channel, ready for the multiplexer.
pub(crate) struct Channel {
    pub io: Box<dyn ByteStream>,
    pub remote: Remote,
    /// The Noise cipher; `None` in plaintext mode.
    pub cipher: Option<NoiseCipher>,
    pub status: Arc<Status>,
}

/// Runs the handshake over `link` (no timeout: the caller applies it).
pub(crate) async fn establish(
    link: RawConnection,
    role: Role,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    match (link, config.security.cipher()) {
        (RawConnection::Bytes(s), Some(c)) => noise_bytes(s, role, c, config, expected).await,
        (RawConnection::Messages(m), Some(c)) => noise_messages(m, role, c, config, expected).await,
        (RawConnection::Bytes(s), None) => plain_bytes(s, config, expected).await,
        (RawConnection::Messages(m), None) => plain_messages(m, config, expected).await,
    }
}

fn handshake(
    role: Role,
    cipher: NoiseCipher,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Handshake, HandshakeError> {
    Handshake::new(
        role,
        cipher,
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
    cipher: NoiseCipher,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    let mut hs = handshake(role, cipher, config, expected)?;
    // Handshake messages are bounded by `max_handshake_message`, checked on the length
    // prefix itself: a peer announcing more is refused before its bytes are awaited.
    let max = config.max_handshake_message;
    let mut framed = Framed::new(stream, byte_codec(max));
    // Only the first message received may be answered with a refusal: the peer then waits
    // for a handshake message (see `refuse_bytes`).
    let mut first = true;
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
                let len = prefixed_len(framed.read_buffer()).unwrap_or(max + 1);
                let err = HandshakeError::TooLarge { len, max };
                return Err(refuse_bytes(&mut framed, first, err).await);
            }
            Err(e) => return Err(e.into()),
        };
        if is_refusal(&m) {
            return Err(refused(config, &m));
        }
        if let Err(err) = hs.handle_message(&m) {
            return Err(refuse_bytes(&mut framed, first, err).await);
        }
        first = false;
    }
    framed.codec_mut().set_max_frame_length(MAX_NOISE_MESSAGE);
    let (cipher, remote) = hs.into_established()?;
    // Every handshake message was flushed by `send`, so nothing waits in the write buffer;
    // what was read beyond the handshake goes to the sealed stream.
    let parts = framed.into_parts();
    Ok(sealed_stream(
        config,
        cipher,
        remote,
        parts.io,
        parts.read_buf,
    ))
}

/// Sends the refusal of `err` (if it refuses the peer) as a frame of its own when `first` (this
/// end has received only one handshake message, so the peer waits for the next: the
/// responder after message 1, the initiator after message 2), then ends the write side;
/// returns `err`. Later, the peer has finished its handshake and would read the refusal as
/// transport data, so nothing is sent. Best effort: a failed write is only traced.
async fn refuse_bytes(
    framed: &mut Framed<Box<dyn ByteStream>, LengthDelimitedCodec>,
    first: bool,
    err: HandshakeError,
) -> HandshakeError {
    if let Some(refusal) = err.refusal().filter(|_| first) {
        let sent = framed.send(Bytes::from(refusal.to_vec())).await;
        let stream = framed.get_mut();
        let _ = stream.shutdown().await;
        match sent {
            // Closing a TCP socket with unread bytes (a message over the limit) resets the
            // connection, and the peer may lose the refusal: read until the peer closes.
            Ok(()) => {
                let _ = tokio::time::timeout(REFUSAL_LINGER, drain(stream)).await;
            }
            Err(e) => debug!(error = %e, "refusal not sent"),
        }
    }
    err
}

/// Longest a refusing end reads a byte stream after its refusal, waiting for the peer to
/// close (each handshake is bounded by `handshake_timeout` too).
const REFUSAL_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and drops what `stream` still delivers, up to one Noise message, until its end.
async fn drain(stream: &mut Box<dyn ByteStream>) {
    let mut buf = [0u8; 1024];
    let mut left = MAX_NOISE_MESSAGE + LENGTH_PREFIX_LEN;
    while left > 0 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Sends the refusal of `err` (if it refuses the peer) in a refusal envelope when `first` (as
/// [`refuse_bytes`]); returns `err`.
async fn refuse_messages(
    transport: &mut Box<dyn MessageTransport>,
    first: bool,
    err: HandshakeError,
) -> HandshakeError {
    if let Some(refusal) = err.refusal().filter(|_| first) {
        let body = refusal.to_vec();
        let env = Envelope::Refusal(&body);
        let mut out = Vec::with_capacity(env.buffer_len());
        env.emit(&mut out);
        if let Err(e) = transport.send(Bytes::from(out)).await {
            debug!(error = %e, "refusal not sent");
        }
    }
    err
}

/// The error of a refusal received from the peer: [`HandshakeError::Refused`], whose detail
/// gives both values of a mismatch from this end's point of view (the peer sent its own), or
/// [`HandshakeError::Malformed`] if `bytes` do not decode.
fn refused(config: &SessionConfig, bytes: &[u8]) -> HandshakeError {
    let Ok(refusal) = Refusal::parse(bytes) else {
        return HandshakeError::Malformed("refusal");
    };
    let theirs = refusal.detail();
    let detail = match refusal.reason() {
        RefusalReason::VersionMismatch => format!("ours {PROTOCOL_VERSION}, theirs {theirs}"),
        RefusalReason::CipherMismatch => format!(
            "ours {}, theirs {theirs}",
            hawser_proto::session::security_name(config.security.cipher())
        ),
        RefusalReason::NetworkMismatch => {
            format!("ours {:?}, theirs {theirs:?}", config.network_id.as_str())
        }
        _ => theirs.to_owned(),
    };
    HandshakeError::Refused {
        reason: refusal.reason(),
        detail,
    }
}

/// The channel to `remote` over a byte stream, through `cipher` (raw when it is the
/// plaintext one); `received`: bytes already read from the stream.
fn sealed_stream(
    config: &SessionConfig,
    cipher: Cipher,
    remote: Remote,
    stream: Box<dyn ByteStream>,
    received: BytesMut,
) -> Channel {
    let status = Arc::new(Status::default());
    let noise_cipher = cipher.noise_cipher();
    let halves = cipher.split();
    let io = SealedStream::new(
        stream,
        halves,
        MAX_PLAINTEXT,
        config.pipe_buffer,
        received,
        status.clone(),
    );
    Channel {
        io: Box::new(io),
        remote,
        cipher: noise_cipher,
        status,
    }
}

/// The channel to `remote` over a message transport, through `cipher`, in messages of at
/// most `chunk` bytes of plaintext.
fn sealed_messages(
    cipher: Cipher,
    remote: Remote,
    transport: Box<dyn MessageTransport>,
    chunk: usize,
) -> Channel {
    let status = Arc::new(Status::default());
    let noise_cipher = cipher.noise_cipher();
    let halves = cipher.split();
    let io = SealedMessages::new(transport, halves, chunk, status.clone());
    Channel {
        io: Box::new(io),
        remote,
        cipher: noise_cipher,
        status,
    }
}

async fn noise_messages(
    mut transport: Box<dyn MessageTransport>,
    role: Role,
    cipher: NoiseCipher,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Channel, HandshakeError> {
    let chunk = chunk_size(transport.max_message(), true)?;
    let mut hs = handshake(role, cipher, config, expected)?;
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
        // As on byte streams, only the first message received may be answered with a refusal.
        let first = rx_step <= 2;
        let handled = match Envelope::parse(&m) {
            Ok(Envelope::Handshake { step, body }) if step == rx_step => {
                rx_step += 2;
                hs.handle_message(body)
            }
            Ok(Envelope::Handshake { step, .. }) if step < rx_step => {
                debug!(step, "dropped a duplicate handshake message");
                Ok(())
            }
            Ok(Envelope::Refusal(body)) => return Err(refused(config, body)),
            Ok(Envelope::Hello(body)) => {
                Err(
                    foreign_mode_error(&config.network_id, Some(cipher), body).unwrap_or(
                        HandshakeError::Malformed("plaintext hello during a noise handshake"),
                    ),
                )
            }
            _ => Err(HandshakeError::Malformed(
                "unexpected message during handshake",
            )),
        };
        if let Err(err) = handled {
            return Err(refuse_messages(&mut transport, first, err).await);
        }
    }
    let (cipher, remote) = hs.into_established()?;
    Ok(sealed_messages(cipher, remote, transport, chunk))
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
    let prefix = length_prefix(hello.len()).ok_or(HandshakeError::Malformed("hello too large"))?;
    stream.write_all(&prefix).await?;
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut head = [0u8; LENGTH_PREFIX_LEN];
    read_exact(&mut stream, &mut head).await?;
    let len = prefixed_len(&head).unwrap_or_default();
    if len > config.max_handshake_message {
        return Err(HandshakeError::TooLarge {
            len,
            max: config.max_handshake_message,
        });
    }
    let mut theirs = vec![0u8; len];
    read_exact(&mut stream, &mut theirs).await?;
    // The peer has sent its hello too and checks ours on its own: a refusal would reach a
    // peer already reading transport data, so plaintext mode sends none. It reads them from
    // Noise peers, and names a Noise first message as a cipher mismatch.
    if is_refusal(&theirs) {
        return Err(refused(config, &theirs));
    }
    if let Some(err) = foreign_mode_error(&config.network_id, None, &theirs) {
        return Err(err);
    }
    let remote = parse_plaintext_hello(&config.network_id, &theirs, expected)?;
    let cipher = Cipher::danger_plaintext();
    Ok(sealed_stream(
        config,
        cipher,
        remote,
        stream,
        BytesMut::new(),
    ))
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
    // As on byte streams: refusals are read, never sent.
    let remote = match Envelope::parse(&m) {
        Ok(Envelope::Hello(body)) => parse_plaintext_hello(&config.network_id, body, expected)?,
        Ok(Envelope::Refusal(body)) => return Err(refused(config, body)),
        Ok(Envelope::Handshake { step: 1, body }) => {
            return Err(foreign_mode_error(&config.network_id, None, body)
                .unwrap_or(HandshakeError::Malformed("expected a plaintext hello")))
        }
        _ => return Err(HandshakeError::Malformed("expected a plaintext hello")),
    };
    Ok(sealed_messages(
        Cipher::danger_plaintext(),
        remote,
        transport,
        chunk,
    ))
}
