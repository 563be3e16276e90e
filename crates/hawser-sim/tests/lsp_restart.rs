//! A client that restarts on the same address with a new ISN gets a new connection at once; the
//! old one is reported lost after its buffered data. A repeated Connect with the same ISN is
//! re-acknowledged and never makes a second connection.

use std::time::Duration;

use bytes::Bytes;
use hawser_proto::lsp::{
    ClientEndpoint, ClientState, Config, EndReason, Params, ServerEndpoint, ServerRead,
};
use hawser_proto::wire::SeqNum;
use hawser_sim::{fake_addr, SimNet};

/// How many seeds each test runs on (`hawser_sim::for_each_seed`; `HAWSER_SEEDS` overrides it).
const SEEDS: usize = 8;

fn connect(net: &mut SimNet, isn: u64, config: &Config) {
    let (s, c) = (fake_addr(0), fake_addr(1));
    let client = ClientEndpoint::new(config.clone(), s, SeqNum(isn), net.now()).unwrap();
    net.add(c, client).unwrap();
    assert!(net.run_until_cond(Duration::from_secs(1), |net| {
        matches!(
            net.endpoint::<ClientEndpoint>(c).unwrap().state(),
            ClientState::Connected(_)
        )
    }));
}

#[test]
fn a_restarted_client_reconnects_and_the_old_connection_is_reported_lost() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let config = Config::new(Params::reference().with_epoch(Duration::from_millis(500)));
        let mut net = SimNet::new(hawser_sim::seed());
        let (s, c) = (fake_addr(0), fake_addr(1));
        net.add(s, ServerEndpoint::new(config.clone()).unwrap())
            .unwrap();
        connect(&mut net, 7, &config);
        net.with::<ClientEndpoint, _>(c, |ep, now| ep.write(now, Bytes::from_static(b"before")))
            .unwrap()
            .unwrap();
        net.run_for(Duration::from_millis(10));
        // The process dies; a new one binds the same address and connects with another ISN.
        net.remove::<ClientEndpoint>(c).unwrap();
        connect(&mut net, 9_000, &config);
        let server = net.endpoint::<ServerEndpoint>(s).unwrap();
        assert_eq!(server.live_connections(), 1);
        net.with::<ServerEndpoint, _>(s, |ep, _| {
            assert_eq!(
                ep.read(),
                Some(ServerRead::Data(
                    hawser_proto::wire::ConnId(1),
                    Bytes::from_static(b"before")
                ))
            );
            assert_eq!(
                ep.read(),
                Some(ServerRead::Ended(
                    hawser_proto::wire::ConnId(1),
                    EndReason::Lost
                ))
            );
            assert_eq!(ep.read(), None);
            assert_eq!(ep.stats().connections_opened, 2);
        })
        .unwrap();
        let new_id = net
            .endpoint::<ClientEndpoint>(c)
            .unwrap()
            .conn_id()
            .unwrap();
        assert_eq!(new_id.0, 2);
    });
}

#[test]
fn a_stale_connect_never_disturbs_a_live_connection() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        use hawser_proto::DatagramEndpoint as _;
        let config = Config::new(Params::reference().with_epoch(Duration::from_millis(500)));
        let codec = config.codec;
        let mut net = SimNet::new(hawser_sim::seed());
        let (s, c) = (fake_addr(0), fake_addr(1));
        net.add(s, ServerEndpoint::new(config.clone()).unwrap())
            .unwrap();
        connect(&mut net, 7, &config);
        net.run_for(Duration::from_secs(3)); // heartbeats flow both ways
                                             // A delayed (or forged) Connect with another ISN arrives from the client's address.
        let mut stale = bytes::BytesMut::new();
        codec.encode(&hawser_proto::wire::Message::connect(SeqNum(1)), &mut stale);
        net.with::<ServerEndpoint, _>(s, |ep, now| ep.handle_datagram(now, c, &stale))
            .unwrap();
        net.run_for(Duration::from_secs(3));
        let server = net.endpoint::<ServerEndpoint>(s).unwrap();
        assert_eq!(server.live_connections(), 1);
        assert_eq!(server.stats().connections_opened, 1);
        assert!(matches!(
            net.endpoint::<ClientEndpoint>(c).unwrap().state(),
            ClientState::Connected(_)
        ));
    });
}
