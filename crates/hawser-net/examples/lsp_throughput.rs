//! One client streams N messages to a server over 127.0.0.1; prints messages/s.
//! `cargo run --release -p hawser-net --example lsp_throughput -- [N] [SIZE] [json|binary] [auto|epoch|adaptive] [auto|per-message|cumulative]`
//! (a quick probe for profiling; the comparative benchmark is `hawser-bench`).

use std::time::{Duration, Instant};

use hawser_net::lsp::{AckPolicy, Client, Codec, Config, Params, RetransmitPolicy, Server};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let codec: Codec = args.next().map_or(Ok(Codec::Binary), |a| a.parse())?;
    let policy = match args.next().as_deref() {
        Some("epoch") => RetransmitPolicy::Epoch,
        Some("adaptive") => RetransmitPolicy::Adaptive,
        _ => RetransmitPolicy::Auto,
    };
    let acks = match args.next().as_deref() {
        Some("per-message") => AckPolicy::PerMessage,
        Some("cumulative") => AckPolicy::Cumulative,
        _ => AckPolicy::Auto,
    };
    let mut config = Config::new(Params::throughput())
        .with_codec(codec)
        .with_retransmit(policy)
        .with_acks(acks);
    config.max_send_queue = 1 << 20;
    config.max_read_queue = 1 << 20;
    let server = Server::bind_with(
        config.clone(),
        tokio::net::UdpSocket::bind("127.0.0.1:0").await?,
    )?;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let client = Client::connect_with(server.local_addr(), 1, config, socket).await?;
    let payload = vec![7u8; size];
    let start = Instant::now();
    let writer = async {
        for _ in 0..n {
            client.send(payload.clone()).await?;
        }
        Ok::<_, hawser_net::lsp::WriteError>(())
    };
    let reader = async {
        for _ in 0..n {
            server.read().await?;
        }
        Ok::<_, hawser_net::lsp::ServerReadError>(())
    };
    let (w, r) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(writer, reader)
    })
    .await?;
    w?;
    r?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} × {size} B ({}) in {secs:.3} s: {:.0} msg/s, {:.1} MB/s; client {:?}",
        codec.name(),
        n as f64 / secs,
        (n * size) as f64 / secs / 1e6,
        client.stats()
    );
    Ok(())
}
