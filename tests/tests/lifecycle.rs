//! Broker lifecycle seen from a client: graceful shutdown closes every connection with 320.

use warren_tests::raw::{Closed, RawClient};
use warren_tests::TestBroker;

#[test]
fn shutdown_closes_connections_with_320() {
    let mut broker = TestBroker::start();
    let mut a = RawClient::handshake(broker.addr, 0);
    let mut b = RawClient::handshake(broker.addr, 0);
    let readers = std::thread::spawn(move || (a.expect_close(), b.expect_close()));
    broker.stop();
    let (ca, cb) = readers.join().expect("reader thread");
    for c in [ca, cb] {
        match c {
            Closed::Connection(320, text) => assert!(text.contains("CONNECTION_FORCED"), "{text}"),
            other => panic!("expected connection.close 320, got {other:?}"),
        }
    }
    assert!(
        std::net::TcpStream::connect(broker.addr).is_err(),
        "no longer accepting"
    );
}
