//! Request and connection metrics of the gateway over a real TCP
//! connection, recorded with a test recorder installed on this thread. The
//! whole gateway runs on a current-thread runtime inside
//! `metrics::with_local_recorder`, so its connection tasks record into it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use fjord_broker::{Broker, BrokerConfig};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable};
use fjord_log::SystemClock;
use fjord_metrics_testing::TestRecorder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DURATION: &str = "fjord_request_duration_seconds";
const ERRORS: &str = "fjord_request_errors_total";
const KAFKA: (&str, &str) = ("protocol", "kafka");

/// Sends ApiVersions in version `v` and returns the response's error code.
async fn api_versions(sock: &mut TcpStream, v: i16, correlation_id: i32) -> i16 {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(v)
        .with_correlation_id(correlation_id)
        .encode(&mut body, ApiKey::ApiVersions.request_header_version(v.min(4)))
        .unwrap();
    ApiVersionsRequest::default().encode(&mut body, v.min(4)).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    sock.write_all(&frame).await.unwrap();
    let len = sock.read_i32().await.unwrap();
    let mut resp = vec![0u8; len as usize];
    sock.read_exact(&mut resp).await.unwrap();
    let mut resp = bytes::Bytes::from(resp);
    assert_eq!(resp.get_i32(), correlation_id);
    // An UNSUPPORTED_VERSION answer comes in v0.
    ApiVersionsResponse::decode(&mut resp, if v > 4 { 0 } else { v }).unwrap().error_code
}

#[test]
fn requests_and_connections_are_recorded() {
    let rec = TestRecorder::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&rec, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
            let (stop, rx) = tokio::sync::watch::channel(false);
            let server =
                tokio::spawn(fjord_kafka::serve(fjord_net::Acceptor::with_default_caps(listener, "kafka"), gw, rx));

            let mut sock = TcpStream::connect(addr).await.unwrap();
            assert_eq!(api_versions(&mut sock, 3, 1).await, 0);
            let ok = rec.observations(DURATION, &[KAFKA, ("api", "ApiVersions")]);
            assert_eq!(ok.len(), 1, "one observation per request");
            assert!(ok[0] >= 0.0 && ok[0] < 10.0, "{ok:?}");
            assert_eq!(rec.counter(ERRORS, &[KAFKA, ("api", "ApiVersions")]), 0);
            assert_eq!(rec.gauge_history("fjord_connections", &[KAFKA]), vec![1.0]);
            assert_eq!(rec.counter("fjord_connections_accepted_total", &[KAFKA]), 1);

            // A version Fjord does not speak is answered (KIP-511) with an
            // error code: a request error.
            assert_eq!(api_versions(&mut sock, 99, 2).await, 35);
            assert_eq!(rec.observations(DURATION, &[KAFKA, ("api", "ApiVersions")]).len(), 2);
            assert_eq!(rec.counter(ERRORS, &[KAFKA, ("api", "ApiVersions")]), 1);

            drop(sock);
            assert_eq!(rec.gauge_back_to_zero("fjord_connections", &[KAFKA]).await, vec![1.0, 0.0]);

            // A frame that cannot be decoded closes the connection: it is
            // an error and still one observation, under the API named by
            // its key.
            let mut sock = TcpStream::connect(addr).await.unwrap();
            let garbage = [0, 0, 0, 6, 0, ApiKey::Metadata as u8, 0, 1, 0xff, 0xff];
            sock.write_all(&garbage).await.unwrap();
            let mut rest = Vec::new();
            sock.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "closed without an answer");
            assert_eq!(rec.observations(DURATION, &[KAFKA, ("api", "Metadata")]).len(), 1);
            assert_eq!(rec.counter(ERRORS, &[KAFKA, ("api", "Metadata")]), 1);
            assert_eq!(rec.gauge_back_to_zero("fjord_connections", &[KAFKA]).await, vec![1.0, 0.0, 1.0, 0.0]);
            assert_eq!(rec.counter("fjord_connections_accepted_total", &[KAFKA]), 2);

            // A frame over the size limit is refused before its API is
            // known: an error, not timed.
            let mut sock = TcpStream::connect(addr).await.unwrap();
            sock.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
            let mut rest = Vec::new();
            let _ = sock.read_to_end(&mut rest).await;
            assert_eq!(rec.counter(ERRORS, &[KAFKA, ("api", "Unknown")]), 1);
            assert!(rec.observations(DURATION, &[KAFKA, ("api", "Unknown")]).is_empty());
            rec.gauge_back_to_zero("fjord_connections", &[KAFKA]).await;

            // A connection still open at shutdown is counted out too.
            let mut sock = TcpStream::connect(addr).await.unwrap();
            assert_eq!(api_versions(&mut sock, 0, 3).await, 0);
            stop.send(true).unwrap();
            server.await.unwrap().unwrap();
            assert_eq!(
                rec.gauge_back_to_zero("fjord_connections", &[KAFKA]).await,
                vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
            );
            drop(sock);
            broker.shutdown().await.unwrap();
        });
    });
    // Nothing was recorded under another protocol or a made-up name.
    for e in rec.events() {
        assert!(e.name.starts_with("fjord_"), "{e:?}");
    }
}
