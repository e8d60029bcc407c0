//! Frames captured from pika 1.3.2 (tests/capture/amqp_proxy.py against
//! `fjord serve`, running the flow in the file names): each decodes to the
//! method and arguments pika sent, and re-encodes to a frame of the same
//! length that decodes to the same value (field tables are maps: entries
//! come back sorted by name, so the bytes may differ in order).

#![allow(clippy::unwrap_used)]

use fjord_amqp_codec::protocol::{basic, connection, exchange, queue};
use fjord_amqp_codec::{AMQPClass, AMQPFrame, AMQPValue, FrameHeader, decode, encode};

fn golden(name: &str) -> (Vec<u8>, AMQPFrame) {
    let path = format!("{}/tests/golden/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex = std::fs::read_to_string(&path).expect("golden file");
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let h = FrameHeader::parse(bytes[..7].try_into().unwrap());
    h.check(131_072).unwrap();
    let f = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    (bytes, f)
}

#[test]
fn every_captured_frame_decodes_and_re_encodes_to_an_equal_frame() {
    let dir = format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let name = name.trim_end_matches(".hex");
        let (bytes, f) = golden(name);
        let mut out = Vec::new();
        encode(&f, &mut out).unwrap();
        assert_eq!(out.len(), bytes.len(), "{name}");
        assert_eq!(decode(&out).unwrap(), f, "{name}");
        n += 1;
    }
    assert!(n >= 20);
}

#[test]
fn the_methods_carry_what_pika_sent() {
    match golden("pika_connection_start_ok").1 {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::StartOk(s))) => {
            assert_eq!(s.mechanism.as_str(), "PLAIN");
            assert_eq!(s.response.as_bytes(), b"\0guest\0guest");
            assert!(matches!(s.client_properties.inner().get("capabilities"), Some(AMQPValue::FieldTable(_))));
        }
        other => panic!("{other:?}"),
    }
    match golden("pika_exchange_declare").1 {
        AMQPFrame::Method(1, AMQPClass::Exchange(exchange::AMQPMethod::Declare(d))) => {
            assert_eq!((d.exchange.as_str(), d.kind.as_str(), d.durable), ("golden-x", "topic", true));
            assert!(d.arguments.inner().contains_key("alternate-exchange"));
        }
        other => panic!("{other:?}"),
    }
    match golden("pika_queue_declare").1 {
        AMQPFrame::Method(1, AMQPClass::Queue(queue::AMQPMethod::Declare(d))) => {
            assert_eq!(d.queue.as_str(), "golden-q");
            assert_eq!(d.arguments.inner().get("x-max-priority"), Some(&AMQPValue::LongInt(5)));
        }
        other => panic!("{other:?}"),
    }
    match golden("pika_basic_publish").1 {
        AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(p))) => {
            assert_eq!((p.exchange.as_str(), p.routing_key.as_str(), p.mandatory), ("golden-x", "a.b.c", true));
        }
        other => panic!("{other:?}"),
    }
    match golden("pika_content_header").1 {
        AMQPFrame::Header(1, h) => {
            assert_eq!(h.body_size, b"golden body".len() as u64);
            assert_eq!(h.properties.delivery_mode(), &Some(2));
            assert_eq!(h.properties.priority(), &Some(4));
            let headers = h.properties.headers().clone().unwrap();
            assert!(matches!(headers.inner().get("nested"), Some(AMQPValue::FieldTable(_))));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(golden("pika_content_body").1, AMQPFrame::Body(1, b"golden body".to_vec()));
}
