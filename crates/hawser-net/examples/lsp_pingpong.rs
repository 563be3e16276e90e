//! 64-byte ping-pong over 127.0.0.1 on one current-thread runtime: an LSP client and an echo
//! server, or the same with two plain UDP sockets; prints the p50 round trip.
//! `cargo run --release -p hawser-net --example lsp_pingpong -- [lsp|lsp-json|udp] [ROUND_TRIPS]`
//!
//! A probe for profiling the ping-pong path (`valgrind --tool=callgrind` counts its
//! instructions per round trip: run it at two counts and divide the difference); the
//! comparative benchmark is `hawser-bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hawser_net::lsp::{Client, Codec, Config, Params, Server};
use tokio::net::UdpSocket;

const SIZE: usize = 64;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "lsp".into());
    let trips: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let mut rtts = Vec::with_capacity(trips);
    match mode.as_str() {
        "udp" => udp(trips, &mut rtts).await?,
        "lsp-json" => lsp(Codec::Json, trips, &mut rtts).await?,
        _ => lsp(Codec::Binary, trips, &mut rtts).await?,
    }
    rtts.sort();
    let p50 = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
    println!("{mode}: {trips} round trips of {SIZE} B, p50 {p50:?}");
    Ok(())
}

async fn lsp(
    codec: Codec,
    trips: usize,
    rtts: &mut Vec<Duration>,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::new(Params::throughput()).with_codec(codec);
    let server = Arc::new(Server::bind_with(
        config.clone(),
        UdpSocket::bind("127.0.0.1:0").await?,
    )?);
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let client = Client::connect_with(server.local_addr(), 1, config, socket).await?;
    let echo = server.clone();
    let echo = tokio::spawn(async move {
        while let Ok((conn, msg)) = echo.read().await {
            let _ = echo.try_send(conn, msg);
        }
    });
    let payload = bytes::Bytes::from(vec![7u8; SIZE]);
    for _ in 0..trips {
        let t0 = Instant::now();
        client.try_send(payload.clone())?;
        client.read().await?;
        rtts.push(t0.elapsed());
    }
    echo.abort();
    Ok(())
}

async fn udp(trips: usize, rtts: &mut Vec<Duration>) -> Result<(), Box<dyn std::error::Error>> {
    let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let client = UdpSocket::bind("127.0.0.1:0").await?;
    client.connect(server.local_addr()?).await?;
    let echo = server.clone();
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..len], from).await;
        }
    });
    let payload = [7u8; SIZE];
    let mut buf = vec![0u8; 65_536];
    for _ in 0..trips {
        let t0 = Instant::now();
        client.send(&payload).await?;
        client.recv(&mut buf).await?;
        rtts.push(t0.elapsed());
    }
    echo.abort();
    Ok(())
}
