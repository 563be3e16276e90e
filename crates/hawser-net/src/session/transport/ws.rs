//! WebSocket message transport (tokio-tungstenite) with lowered limits: binary messages only,
//! at most `TransportConfig::ws_max_message` bytes each.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::seam::{BoxFuture, Transport, TransportListener};
use super::tcp::{listen_tcp, tune_tcp};
use super::{ChannelTransport, Inbound, RawConnection, TransportAddr, TransportConfig};

/// hawser's WebSocket transport (`ws://IP:PORT`, path `/hawser`).
pub(super) struct Ws(pub(super) TransportConfig);

impl Transport for Ws {
    fn scheme(&self) -> &str {
        "ws"
    }

    fn dial<'a>(&'a self, addr: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>> {
        Box::pin(async move {
            let TransportAddr::Ws(a) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            dial(*a, &self.0).await
        })
    }

    fn listen<'a>(
        &'a self,
        addr: &'a TransportAddr,
    ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>> {
        Box::pin(async move {
            let TransportAddr::Ws(a) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            listen_tcp(*a, TransportAddr::Ws, &self.0, |s, config| {
                Box::pin(upgrade(s, config))
            })
            .await
        })
    }
}

fn ws_config(config: &TransportConfig) -> WebSocketConfig {
    let max = config.ws_max_message;
    WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * max.max(1024))
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

fn to_io(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    match e {
        tokio_tungstenite::tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// Connects and upgrades to a WebSocket at `ws://addr/hawser`.
async fn dial(addr: SocketAddr, config: &TransportConfig) -> io::Result<RawConnection> {
    let tcp = TcpStream::connect(addr).await?;
    tune_tcp(&tcp, config)?;
    let url = format!("ws://{addr}/hawser");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(ws_config(config)))
        .await
        .map_err(to_io)?;
    Ok(wrap(ws, config))
}

/// The server side of the upgrade, on an accepted TCP connection.
async fn upgrade(tcp: TcpStream, config: TransportConfig) -> io::Result<RawConnection> {
    let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config(&config)))
        .await
        .map_err(to_io)?;
    Ok(wrap(ws, &config))
}

fn wrap(ws: WebSocketStream<TcpStream>, config: &TransportConfig) -> RawConnection {
    let depth = config.channel_depth.max(1);
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(depth);
    let (in_tx, in_rx) = mpsc::channel(depth);
    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let item = match msg {
                Ok(Message::Binary(b)) => Ok(b),
                Ok(Message::Close(_)) => break,
                // Control frames are answered by tungstenite; text is not ours.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Text(_)) => {
                    Err(io::Error::new(io::ErrorKind::InvalidData, "text frame"))
                }
                Err(e) => Err(to_io(e)),
            };
            let stop = item.is_err();
            if in_tx.send(item.map(Inbound::One)).await.is_err() || stop {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if let Err(e) = sink.send(Message::Binary(m)).await {
                debug!(error = %e, "websocket send failed");
                return;
            }
        }
        let _ = sink.close().await;
    });
    RawConnection::messages(ChannelTransport::new(
        out_tx,
        in_rx,
        config.ws_max_message,
        Some(reader),
    ))
}
