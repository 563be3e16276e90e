//! The data path of the secure channel: I/O objects that yamux reads and writes directly,
//! sealing what it writes and opening what it reads, with no task or pipe in between.
//!
//! ```text
//! yamux <-> SealedStream   (byte stream: u16 length | Noise message, or raw in plaintext)
//!       <-> SealedMessages (message transport: one envelope per Noise message)
//! ```
//! yamux flushes after every frame, and each flush seals what was written since the last one
//! into one message (a larger write is cut into messages of at most `chunk` bytes). Sealed
//! bytes the transport has not taken yet are bounded by `SessionConfig::pipe_buffer` plus
//! one message: beyond, writes wait (back-pressure to yamux); a message transport holds at
//! most one sealed message and one being filled. On the read side, whole messages are opened
//! as they arrive and yamux's reads are served from the opened bytes; at most one read of
//! [`READ_CHUNK`] bytes (or one message) is buffered ahead. Messages are sealed where yamux
//! wrote them and opened where they were received (no copy): on a byte stream in the receive
//! buffer, on a message transport in the received message itself, taken over from the
//! transport when nothing else holds it.
//!
//! A failure is recorded in the session's [`Status`] (so the session reports a crypto or
//! transport reason, not a mux one) and returned to yamux as an I/O error, which ends the
//! session.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

use super::error::{CloseReason, CryptoError};
use super::framing::{
    length_prefix, prefixed_len, put_data_header, Envelope, DATA_HEADER_LEN, LENGTH_PREFIX_LEN,
};
use super::noise::{Opener, Sealer, TAG_LEN};
use super::status::Status;
use super::transport::{ByteStream, MessageTransport};

/// Most bytes asked of a byte stream per read.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The failure of a sealed I/O object, recorded in `status`, as an I/O error for yamux.
fn crypto_failure(status: &Status, e: CryptoError) -> io::Error {
    status.fail(CloseReason::Crypto(e.clone()));
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn transport_failure(status: &Status, e: io::Error) -> io::Error {
    status.fail(CloseReason::Transport(e.to_string()));
    e
}

/// A byte stream under yamux: Noise messages behind a 2-byte length, or yamux's bytes as
/// they are in plaintext mode (`raw`).
pub(crate) struct SealedStream {
    io: Box<dyn ByteStream>,
    sealer: Sealer,
    opener: Opener,
    /// Plaintext mode over a byte stream: no framing, no sealing.
    raw: bool,
    /// Largest plaintext per message.
    chunk: usize,
    /// Sealed (or raw) bytes up to `sealed_end`, taken by the stream up to `out_pos`; after
    /// `sealed_end`, when `open`, a message being written: its 2-byte length (filled in when
    /// sealed), then plaintext (at most `chunk` bytes), sealed in place.
    out: Vec<u8>,
    out_pos: usize,
    sealed_end: usize,
    open: bool,
    /// Most sealed bytes held before writes wait (one message more may be added).
    max_out: usize,
    /// Received bytes. When `msg_end` is not 0, the message in front was opened in place:
    /// its plaintext not yet read lies at `plain_at..plain_end`.
    rbuf: BytesMut,
    plain_at: usize,
    plain_end: usize,
    msg_end: usize,
    eof: bool,
    status: Arc<Status>,
}

impl SealedStream {
    /// A sealed stream over `io`; `received` holds bytes already read from it (after the
    /// handshake). `raw` when the cipher is the plaintext one.
    pub(crate) fn new(
        io: Box<dyn ByteStream>,
        (sealer, opener): (Sealer, Opener),
        chunk: usize,
        max_out: usize,
        received: BytesMut,
        status: Arc<Status>,
    ) -> SealedStream {
        let raw = !sealer.is_encrypted();
        SealedStream {
            io,
            sealer,
            opener,
            raw,
            chunk,
            out: Vec::new(),
            out_pos: 0,
            sealed_end: 0,
            open: false,
            max_out,
            rbuf: received,
            plain_at: 0,
            plain_end: 0,
            msg_end: 0,
            eof: false,
            status,
        }
    }

    fn pending_out(&self) -> usize {
        self.sealed_end - self.out_pos
    }

    /// Drops the bytes of `out` already written once they are `max_out` or more, so that
    /// `out` stays under twice `max_out` plus one message. Only between messages.
    fn compact(&mut self) {
        if self.out_pos >= self.max_out && !self.open {
            self.out.drain(..self.out_pos);
            self.sealed_end -= self.out_pos;
            self.out_pos = 0;
        }
    }

    /// Writes the sealed bytes to the stream until none is left (then resets `out`, between
    /// messages) or the stream waits.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.sealed_end {
            let rest = self
                .out
                .get(self.out_pos..self.sealed_end)
                .unwrap_or_default();
            match ready!(Pin::new(&mut self.io).poll_write(cx, rest)) {
                Ok(0) => {
                    let e = io::ErrorKind::WriteZero.into();
                    return Poll::Ready(Err(transport_failure(&self.status, e)));
                }
                Ok(n) => self.out_pos += n,
                Err(e) => return Poll::Ready(Err(transport_failure(&self.status, e))),
            }
        }
        if !self.open {
            self.out.clear();
            self.out_pos = 0;
            self.sealed_end = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Starts a message at the end of `out`, first draining `out` if it is full.
    fn poll_begin(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending_out() >= self.max_out {
            ready!(self.poll_drain(cx))?;
        }
        self.compact();
        self.out.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
        self.open = true;
        Poll::Ready(Ok(()))
    }

    /// Seals the message being written, in place, and fills in its length.
    fn seal_open(&mut self) -> io::Result<()> {
        if !self.open {
            return Ok(());
        }
        let start = self.sealed_end;
        self.open = false;
        if let Err(e) = self
            .sealer
            .seal_in_place(&mut self.out, start + LENGTH_PREFIX_LEN)
        {
            self.out.truncate(start);
            return Err(crypto_failure(&self.status, e));
        }
        // `chunk` is at most `MAX_PLAINTEXT`, so a sealed message fits in the prefix.
        let len = self.out.len() - start - LENGTH_PREFIX_LEN;
        let prefix = length_prefix(len).unwrap_or([0xff; LENGTH_PREFIX_LEN]);
        self.out[start..start + LENGTH_PREFIX_LEN].copy_from_slice(&prefix);
        self.sealed_end = self.out.len();
        Ok(())
    }

    /// Opens the next whole message of `rbuf` in place; `false` if none is whole yet.
    fn open_next(&mut self) -> io::Result<bool> {
        let Some(len) = prefixed_len(&self.rbuf) else {
            return Ok(false);
        };
        let end = LENGTH_PREFIX_LEN + len;
        let Some(msg) = self.rbuf.get_mut(LENGTH_PREFIX_LEN..end) else {
            self.rbuf.reserve(end);
            return Ok(false);
        };
        match self.opener.open_in_place(msg) {
            Ok(n) => {
                self.plain_at = LENGTH_PREFIX_LEN;
                self.plain_end = LENGTH_PREFIX_LEN + n;
                self.msg_end = end;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(error = %e, "closing session: inbound message rejected");
                Err(crypto_failure(&self.status, e))
            }
        }
    }
}

impl AsyncWrite for SealedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.raw {
            if this.pending_out() >= this.max_out {
                ready!(this.poll_drain(cx))?;
            }
            this.compact();
            let n = buf.len().min(this.max_out - this.pending_out());
            this.out.extend_from_slice(&buf[..n]);
            this.sealed_end = this.out.len();
            return Poll::Ready(Ok(n));
        }
        loop {
            if !this.open {
                ready!(this.poll_begin(cx))?;
            }
            let written = this.out.len() - this.sealed_end - LENGTH_PREFIX_LEN;
            let room = this.chunk - written;
            if room > 0 {
                let n = buf.len().min(room);
                this.out.extend_from_slice(&buf[..n]);
                return Poll::Ready(Ok(n));
            }
            this.seal_open()?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.seal_open()?;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io)
            .poll_flush(cx)
            .map_err(|e| transport_failure(&this.status, e))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl AsyncRead for SealedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.raw && !this.rbuf.is_empty() {
                let n = this.rbuf.len().min(buf.remaining());
                buf.put_slice(&this.rbuf[..n]);
                this.rbuf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.msg_end > 0 {
                if this.plain_at < this.plain_end {
                    let n = (this.plain_end - this.plain_at).min(buf.remaining());
                    buf.put_slice(&this.rbuf[this.plain_at..this.plain_at + n]);
                    this.plain_at += n;
                    if this.plain_at == this.plain_end {
                        this.rbuf.advance(this.msg_end);
                        this.msg_end = 0;
                    }
                    return Poll::Ready(Ok(()));
                }
                // An empty message.
                this.rbuf.advance(this.msg_end);
                this.msg_end = 0;
            }
            if !this.raw && this.open_next()? {
                continue;
            }
            if this.eof {
                if !this.rbuf.is_empty() {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "truncated message");
                    return Poll::Ready(Err(transport_failure(&this.status, e)));
                }
                return Poll::Ready(Ok(()));
            }
            if this.rbuf.capacity() - this.rbuf.len() < READ_CHUNK / 4 {
                this.rbuf.reserve(READ_CHUNK);
            }
            match ready!(poll_read_buf(Pin::new(&mut this.io), cx, &mut this.rbuf)) {
                Ok(0) => this.eof = true,
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(transport_failure(&this.status, e))),
            }
        }
    }
}

/// A message transport under yamux: one envelope (kind, counter, sealed bytes) per message.
pub(crate) struct SealedMessages {
    io: Box<dyn MessageTransport>,
    sealer: Sealer,
    opener: Opener,
    /// Largest plaintext per message.
    chunk: usize,
    /// The message being filled: room for the envelope's header, then what was written and
    /// not yet sealed (at most `chunk` bytes); empty when nothing is written. It is sealed
    /// where it was written and handed on whole.
    plain: Vec<u8>,
    /// Plaintext bytes of the last message sealed: the next one's first allocation.
    last_plain: usize,
    /// A sealed message the transport has not taken yet.
    pending: Option<Bytes>,
    /// The last message received, opened in place, not yet read by yamux.
    opened: BytesMut,
    eof: bool,
    status: Arc<Status>,
}

impl SealedMessages {
    /// A sealed channel over `io`, in messages of at most `chunk` bytes of plaintext.
    pub(crate) fn new(
        io: Box<dyn MessageTransport>,
        (sealer, opener): (Sealer, Opener),
        chunk: usize,
        status: Arc<Status>,
    ) -> SealedMessages {
        SealedMessages {
            io,
            sealer,
            opener,
            chunk,
            plain: Vec::new(),
            last_plain: 0,
            pending: None,
            opened: BytesMut::new(),
            eof: false,
            status,
        }
    }

    /// Hands the pending message to the transport, if it takes one.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_none() {
            return Poll::Ready(Ok(()));
        }
        let mut io = Pin::new(&mut self.io);
        if let Err(e) = ready!(io.as_mut().poll_ready(cx)) {
            return Poll::Ready(Err(transport_failure(&self.status, e)));
        }
        if let Some(m) = self.pending.take() {
            if let Err(e) = io.start_send(m) {
                return Poll::Ready(Err(transport_failure(&self.status, e)));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Seals `plain` into the pending message, first handing the previous one on.
    fn poll_seal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.plain.len() <= DATA_HEADER_LEN {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_push(cx))?;
        let counter = self.sealer.next_nonce();
        self.last_plain = self.plain.len() - DATA_HEADER_LEN;
        put_data_header(&mut self.plain, counter);
        self.plain.reserve_exact(TAG_LEN);
        if let Err(e) = self.sealer.seal_in_place(&mut self.plain, DATA_HEADER_LEN) {
            return Poll::Ready(Err(crypto_failure(&self.status, e)));
        }
        self.pending = Some(Bytes::from(std::mem::take(&mut self.plain)));
        Poll::Ready(Ok(()))
    }

    /// Opens one received message in place into `opened` (a duplicate is counted and
    /// dropped). The transport's message is taken over without a copy when nothing else
    /// holds it.
    fn open(&mut self, m: Bytes) -> io::Result<()> {
        let (counter, offset) = match Envelope::parse(&m) {
            // The body is the end of `m`: its offset is what comes before it.
            Ok(Envelope::Data { counter, body }) => (counter, m.len() - body.len()),
            // A late duplicate of a handshake step.
            Ok(Envelope::Handshake { .. }) => {
                self.status.note_duplicate();
                return Ok(());
            }
            _ => return Err(self.reject(CryptoError::Malformed)),
        };
        let mut msg = m.try_into_mut().unwrap_or_else(|m| BytesMut::from(&m[..]));
        msg.advance(offset);
        match self.opener.open_counted_in_place(counter, &mut msg) {
            Ok(Some(len)) => {
                msg.truncate(len);
                self.opened = msg;
                Ok(())
            }
            Ok(None) => {
                self.status.note_duplicate();
                Ok(())
            }
            Err(e) => Err(self.reject(e)),
        }
    }

    fn reject(&self, e: CryptoError) -> io::Error {
        tracing::warn!(error = %e, "closing session: inbound message rejected");
        crypto_failure(&self.status, e)
    }
}

impl AsyncWrite for SealedMessages {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.plain.is_empty() {
                // As large as the last message, or as this write, within `chunk`.
                let hint = this.last_plain.max(buf.len()).min(this.chunk);
                this.plain.reserve_exact(DATA_HEADER_LEN + hint + TAG_LEN);
                this.plain.resize(DATA_HEADER_LEN, 0);
            }
            let room = this.chunk - (this.plain.len() - DATA_HEADER_LEN);
            if room > 0 {
                let n = buf.len().min(room);
                this.plain.extend_from_slice(&buf[..n]);
                return Poll::Ready(Ok(n));
            }
            ready!(this.poll_seal(cx))?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_seal(cx))?;
        ready!(this.poll_push(cx))?;
        Pin::new(&mut this.io)
            .poll_flush(cx)
            .map_err(|e| transport_failure(&this.status, e))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}

impl AsyncRead for SealedMessages {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.opened.is_empty() {
                let n = this.opened.len().min(buf.remaining());
                buf.put_slice(&this.opened[..n]);
                this.opened.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.io).poll_next(cx)) {
                Some(Ok(m)) => this.open(m)?,
                Some(Err(e)) => return Poll::Ready(Err(transport_failure(&this.status, e))),
                None => this.eof = true,
            }
        }
    }
}
