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
            let listener = TcpListener::bind(a).await?;
            let local = TransportAddr::Tcp(listener.local_addr()?);
            let config = self.0.clone();
            Ok(Box::new(TcpAccept {
                listener,
                local,
                config,
            }) as Box<dyn TransportListener>)
        })
    }
}

struct TcpAccept {
    listener: TcpListener,
    local: TransportAddr,
    config: TransportConfig,
}

impl TransportListener for TcpAccept {
    fn local_addr(&self) -> TransportAddr {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<PendingConnection>> {
        Box::pin(async move {
            let (s, _) = self.listener.accept().await?;
            tune_tcp(&s, &self.config)?;
            let link: PendingConnection = Box::pin(async move { Ok(RawConnection::bytes(s)) });
            Ok(link)
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
