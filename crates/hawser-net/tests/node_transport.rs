//! Transports of the application's own (`node_common::uds`, Unix domain sockets) through the
//! session API and the node builder: registration, unknown schemes, a session over one.

mod node_common;

use std::sync::Arc;

use hawser_net::node::{Node, SettingsError, StartError};
use hawser_net::session::transport::RegisterError;
use hawser_net::session::{
    dial, DialError, Identity, Listener, NetworkId, SessionConfig, TransportAddr, TransportConfig,
    UnknownTransport,
};
use node_common::uds::Uds;
use node_common::WAIT;

fn session_config(secret: u8) -> SessionConfig {
    SessionConfig::new(
        Arc::new(Identity::from_secret_bytes(&[secret; 32])),
        NetworkId::new("node-transport").unwrap(),
    )
}

fn socket_addr(name: &str) -> (std::path::PathBuf, TransportAddr) {
    let dir = std::env::temp_dir().join(format!("hawser-t-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let addr = TransportAddr::other("uds", &dir.join("s.sock").display().to_string()).unwrap();
    (dir, addr)
}

#[tokio::test]
async fn a_session_runs_over_a_registered_transport_and_not_without_it() {
    let (dir, addr) = socket_addr("session");
    let mut transport = TransportConfig::default();
    let err = dial(&addr, &transport, &session_config(1), None)
        .await
        .unwrap_err();
    let DialError::Transport(io) = err else {
        panic!("not a transport error: {err}");
    };
    let unknown = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<UnknownTransport>());
    assert_eq!(unknown.map(|u| u.scheme.as_str()), Some("uds"));

    transport.custom_transports.register(Arc::new(Uds)).unwrap();
    let server = session_config(2);
    let server_id = server.identity.peer_id();
    let mut listener = Listener::bind(&addr, &transport, server).await.unwrap();
    assert_eq!(listener.local_addr(), &addr);
    let client = session_config(1);
    let client_id = client.identity.peer_id();
    let (session, accepted) = tokio::time::timeout(WAIT, async {
        tokio::join!(
            dial(&addr, &transport, &client, Some(server_id)),
            listener.accept()
        )
    })
    .await
    .unwrap();
    assert_eq!(session.unwrap().peer_id(), server_id);
    assert_eq!(accepted.unwrap().peer_id(), client_id);
    drop(listener);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_node_refuses_to_start_with_a_scheme_it_has_no_transport_for() {
    let (dir, addr) = socket_addr("node");
    let err = Node::builder(1)
        .listen(([127, 0, 0, 1], 0).into())
        .listen_on(addr.clone())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StartError::Settings(SettingsError::UnknownTransport(s)) if s == "uds"),
        "{err}"
    );
    let err = Node::builder(1)
        .listen(([127, 0, 0, 1], 0).into())
        .transport(Arc::new(Uds))
        .transport(Arc::new(Uds))
        .transport_to(2, addr)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StartError::Transport(RegisterError::Taken(s)) if s == "uds"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
