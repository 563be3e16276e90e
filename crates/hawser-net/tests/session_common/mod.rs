//! Helpers shared by the session tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hawser_net::session::{
    Identity, NetworkId, Protocol, ProtocolId, Security, Session, SessionConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The echo protocol used by most tests.
pub const ECHO: ProtocolId = ProtocolId(1024);
/// A bulk-transfer protocol.
pub const BULK: ProtocolId = ProtocolId(1025);
/// A ping protocol.
pub const PING: ProtocolId = ProtocolId(1026);

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

/// A config for the identity with secret `[secret; 32]` on network `net`, offering
/// `protocols` as (id, name, versions).
pub fn config_with(
    secret: u8,
    net: &str,
    protocols: &[(ProtocolId, &str, &[u16])],
) -> SessionConfig {
    let mut c = SessionConfig::new(
        Arc::new(Identity::from_secret_bytes(&[secret; 32])),
        NetworkId::new(net).unwrap(),
    );
    for (id, name, versions) in protocols {
        c.protocols
            .register(Protocol::new(*id, name, versions).unwrap())
            .unwrap();
    }
    c
}

/// A config offering ECHO, BULK and PING (version 1 each).
pub fn config(secret: u8) -> SessionConfig {
    config_with(
        secret,
        "test-net",
        &[
            (ECHO, "echo", &[1]),
            (BULK, "bulk", &[1]),
            (PING, "ping", &[1]),
        ],
    )
}

/// The same, in plaintext mode.
pub fn plaintext(mut c: SessionConfig) -> SessionConfig {
    c.security = Security::DangerPlaintext;
    c
}

/// Serves ECHO on `session`: every inbound stream echoes until EOF.
pub fn serve_echo(session: &Session) {
    let mut incoming = session.accept_streams(ECHO).unwrap();
    tokio::spawn(async move {
        while let Some(stream) = incoming.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
}

/// Opens `streams` ECHO streams at once, sends `bytes` on each and checks the echo.
pub async fn echo_roundtrip(session: &Session, streams: usize, bytes: usize) {
    let mut tasks = Vec::new();
    for i in 0..streams {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let stream = session.open(ECHO).await.unwrap();
            let (mut r, mut w) = tokio::io::split(stream);
            let data: Vec<u8> = (0..bytes).map(|j| (i * 31 + j) as u8).collect();
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert_eq!(back.len(), data.len());
            assert!(back == data, "echo differs on stream {i}");
        }));
    }
    for t in tasks {
        tokio::time::timeout(STEP, t)
            .await
            .expect("echo timed out")
            .unwrap();
    }
}
