//! TCP byte streams (`tcp://IP:PORT`), with `TCP_NODELAY` and the configured send buffer.

use std::io;

use tokio::net::{TcpListener, TcpStream};

use super::seam::{BoxFuture, Transport, TransportListener};
use super::{PendingConnection, RawConnection, TransportAddr, TransportConfig};

/// hawser's TCP transport.
pub(super) struct Tcp(pub(super) TransportConfig);

impl Transport for Tcp {
    fn scheme(&self) -> &str {
        "tcp"
    }

    fn dial<'a>(&'a self, addr: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>> {
        Box::pin(async move {
            let TransportAddr::Tcp(a) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            let s = TcpStream::connect(a).await?;
            tune_tcp(&s, &self.0)?;
            Ok(RawConnection::bytes(s))
        })
    }

    fn listen<'a>(
        &'a self,
        addr: &'a TransportAddr,
    ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>> {
        Box::pin(async move {
            let TransportAddr::Tcp(a) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            listen_tcp(*a, TransportAddr::Tcp, &self.0, |s, _| {
                Box::pin(async move { Ok(RawConnection::bytes(s)) })
            })
            .await
        })
    }
}

/// Binds a TCP listener at `addr` whose connections are tuned (`tune_tcp`) and then turned
/// into raw connections by `upgrade`; `kind` names its bound address (`tcp://`, `ws://`).
pub(super) async fn listen_tcp(
    addr: std::net::SocketAddr,
    kind: fn(std::net::SocketAddr) -> TransportAddr,
    config: &TransportConfig,
    upgrade: Upgrade,
) -> io::Result<Box<dyn TransportListener>> {
    let listener = TcpListener::bind(addr).await?;
    let local = kind(listener.local_addr()?);
    let config = config.clone();
    Ok(Box::new(TcpAccept {
        listener,
        local,
        config,
        upgrade,
    }))
}

/// What a TCP-based transport makes of an accepted, tuned stream.
pub(super) type Upgrade = fn(TcpStream, TransportConfig) -> PendingConnection;

/// The listener of every TCP-based transport.
struct TcpAccept {
    listener: TcpListener,
    local: TransportAddr,
    config: TransportConfig,
    upgrade: Upgrade,
}

impl TransportListener for TcpAccept {
    fn local_addr(&self) -> TransportAddr {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<PendingConnection>> {
        Box::pin(async move {
            let (s, _) = self.listener.accept().await?;
            tune_tcp(&s, &self.config)?;
            Ok((self.upgrade)(s, self.config.clone()))
        })
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
