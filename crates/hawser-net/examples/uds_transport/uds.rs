//! A transport written outside hawser, through its public seam only: Unix domain sockets
//! (`uds://PATH`), byte streams like TCP.

use std::io;
use std::path::PathBuf;

use hawser_net::session::transport::{BoxFuture, PendingConnection, Transport, TransportListener};
use hawser_net::session::{RawConnection, TransportAddr};
use tokio::net::{UnixListener, UnixStream};

/// Unix domain sockets under the scheme `uds`; the address is the socket file's path.
pub struct Uds;

fn path(addr: &TransportAddr) -> io::Result<PathBuf> {
    match addr {
        TransportAddr::Other { scheme, rest } if scheme == "uds" => Ok(PathBuf::from(rest)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a uds:// address: {addr}"),
        )),
    }
}

impl Transport for Uds {
    fn scheme(&self) -> &str {
        "uds"
    }

    fn dial<'a>(&'a self, addr: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>> {
        Box::pin(async move {
            let stream = UnixStream::connect(path(addr)?).await?;
            Ok(RawConnection::bytes(stream))
        })
    }

    fn listen<'a>(
        &'a self,
        addr: &'a TransportAddr,
    ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>> {
        Box::pin(async move {
            let path = path(addr)?;
            // A socket file nobody listens on any more (a stopped node's) is stale.
            if path.exists() && UnixStream::connect(&path).await.is_err() {
                std::fs::remove_file(&path)?;
            }
            let listener = UnixListener::bind(&path)?;
            Ok(Box::new(UdsListener {
                listener,
                addr: addr.clone(),
                path,
            }) as Box<dyn TransportListener>)
        })
    }
}

/// A bound socket file; dropping it removes the file.
struct UdsListener {
    listener: UnixListener,
    addr: TransportAddr,
    path: PathBuf,
}

impl TransportListener for UdsListener {
    fn local_addr(&self) -> TransportAddr {
        self.addr.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<PendingConnection>> {
        Box::pin(async move {
            let (stream, _) = self.listener.accept().await?;
            let link: PendingConnection = Box::pin(async move { Ok(RawConnection::bytes(stream)) });
            Ok(link)
        })
    }
}

impl Drop for UdsListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
