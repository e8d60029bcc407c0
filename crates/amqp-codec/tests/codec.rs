//! Round trips through amq-protocol's generator and our decoder, and the
//! guards in front of the parser.

#![allow(clippy::unwrap_used)]

use fjord_amqp_codec::protocol::{basic, queue};
use fjord_amqp_codec::{
    AMQPClass, AMQPFrame, AMQPValue, BasicProperties, CodecError, FieldTable, FrameHeader, MAX_NESTING, decode, encode,
    reply,
};
use proptest::prelude::*;

fn round_trip(f: &AMQPFrame) -> AMQPFrame {
    let mut out = Vec::new();
    encode(f, &mut out).unwrap();
    let h = FrameHeader::parse(out[..7].try_into().unwrap());
    h.check(0).unwrap();
    assert_eq!(h.frame_len(), out.len() as u64);
    decode(&out).unwrap()
}

/// basic.consume with its arguments table nested `depth` levels deep.
fn nested_consume(depth: usize) -> Vec<u8> {
    let mut table: Vec<u8> = Vec::new();
    for _ in 0..depth {
        let mut t = vec![1u8, b'a', b'F'];
        t.extend_from_slice(&(table.len() as u32).to_be_bytes());
        t.extend_from_slice(&table);
        table = t;
    }
    let mut p = vec![0, 60, 0, 20, 0, 0, 1, b'q', 0, 0];
    p.extend_from_slice(&(table.len() as u32).to_be_bytes());
    p.extend_from_slice(&table);
    let mut f = vec![1u8, 0, 1];
    f.extend_from_slice(&(p.len() as u32).to_be_bytes());
    f.extend_from_slice(&p);
    f.push(0xCE);
    f
}

#[test]
fn tables_nested_past_the_limit_are_refused_without_recursion() {
    // The top-level arguments table is level 1: MAX_NESTING - 1 inner ones fit.
    assert!(decode(&nested_consume(MAX_NESTING - 1)).is_ok());
    let err = decode(&nested_consume(MAX_NESTING)).unwrap_err();
    assert!(matches!(err, CodecError::TooDeep { .. }), "{err}");
    // 18,000 levels fit in a 128 KiB frame and would overflow the parser's stack.
    let err = decode(&nested_consume(18_000)).unwrap_err();
    assert_eq!(err.reply_code(), reply::SYNTAX_ERROR);
}

/// basic.qos on channel 1 with this prefetch_size and count 10.
fn qos(prefetch_size: u32) -> Vec<u8> {
    let mut payload = vec![0, 60, 0, 10];
    payload.extend_from_slice(&prefetch_size.to_be_bytes());
    payload.extend_from_slice(&10u16.to_be_bytes());
    payload.push(0);
    let mut f = vec![1, 0, 1];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(&payload);
    f.push(0xCE);
    f
}

#[test]
fn a_qos_prefetch_size_is_not_implemented_as_in_rabbitmq() {
    assert!(decode(&qos(0)).is_ok());
    let err = decode(&qos(4096)).unwrap_err();
    assert_eq!(err.reply_code(), reply::NOT_IMPLEMENTED);
    assert_eq!(err.to_string(), "prefetch_size!=0 (4096)");
}

#[test]
fn unknown_methods_and_frame_types_get_their_reply_codes() {
    let mut f = nested_consume(0);
    f[7..11].copy_from_slice(&[0, 99, 0, 1]);
    let err = decode(&f).unwrap_err();
    assert!(matches!(err, CodecError::UnknownMethod { class_id: 99, method_id: 1 }));
    assert_eq!(err.reply_code(), reply::NOT_IMPLEMENTED);
    let h = FrameHeader { kind: 7, channel: 0, size: 0 };
    assert_eq!(h.check(0).unwrap_err().reply_code(), reply::FRAME_ERROR);
    let big = FrameHeader { kind: 3, channel: 1, size: 131_072 };
    assert!(matches!(big.check(131_072), Err(CodecError::FrameTooLarge { .. })));
    let mut f = nested_consume(1);
    *f.last_mut().unwrap() = 0;
    assert!(matches!(decode(&f), Err(CodecError::BadFrameEnd(0))));
}

#[test]
fn truncated_and_lying_lengths_are_malformed_not_panics() {
    let f = nested_consume(3);
    for cut in 8..f.len() - 1 {
        // Re-announce the shorter payload so only the arguments lie.
        let mut g = f[..cut].to_vec();
        let size = (g.len() - 7) as u32;
        g[3..7].copy_from_slice(&size.to_be_bytes());
        g.push(0xCE);
        let _ = decode(&g);
    }
    let mut g = f.clone();
    // The arguments table claims more bytes than the frame has.
    g[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(decode(&g), Err(CodecError::Malformed { .. })));
}

fn value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        ".{0,20}".prop_map(|s: String| AMQPValue::LongString(s.into())),
        Just(AMQPValue::Void),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| AMQPValue::FieldArray(v.into())),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4).prop_map(|m| {
                let mut t = FieldTable::default();
                for (k, v) in m {
                    t.insert(k.into(), v);
                }
                AMQPValue::FieldTable(t)
            }),
        ]
    })
}

fn table() -> impl Strategy<Value = FieldTable> {
    prop::collection::btree_map("[a-z-]{1,12}", value(), 0..6).prop_map(|m| {
        let mut t = FieldTable::default();
        for (k, v) in m {
            t.insert(k.into(), v);
        }
        t
    })
}

proptest! {
    #[test]
    fn queue_declare_round_trips(name in "[a-z.]{0,40}", durable: bool, exclusive: bool, args in table()) {
        let m = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(), passive: false, durable, exclusive, auto_delete: false, nowait: false, arguments: args,
        }));
        let f = AMQPFrame::Method(3, m);
        prop_assert_eq!(round_trip(&f), f);
    }

    #[test]
    fn content_headers_round_trip(headers in table(), mode in 1u8..=2, prio in 0u8..10, id in "[a-z0-9]{0,20}") {
        let props = BasicProperties::default().with_headers(headers).with_delivery_mode(mode)
            .with_priority(prio).with_message_id(id.into());
        let f = AMQPFrame::Header(1, fjord_amqp_codec::AMQPContentHeader { class_id: 60, body_size: 5, properties: props });
        prop_assert_eq!(round_trip(&f), f);
    }

    #[test]
    fn tables_round_trip_on_their_own(t in table()) {
        let bytes = fjord_amqp_codec::encode_table(&t).unwrap();
        prop_assert_eq!(fjord_amqp_codec::decode_table(&bytes).unwrap(), t);
    }

    #[test]
    fn arbitrary_bytes_never_panic(kind in prop_oneof![Just(1u8), Just(2u8), Just(3u8), Just(8u8)], payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut f = vec![kind, 0, 1];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(&payload);
        f.push(0xCE);
        let _ = decode(&f);
    }
}

#[test]
fn content_is_split_into_frames_of_frame_max() {
    let mut out = Vec::new();
    let deliver = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
        consumer_tag: "c".into(),
        delivery_tag: 7,
        redelivered: true,
        exchange: "".into(),
        routing_key: "q".into(),
    }));
    let body = vec![7u8; 10_000];
    fjord_amqp_codec::encode_content(2, deliver.clone(), BasicProperties::default(), &body, 4096, &mut out).unwrap();
    let mut frames = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let h = FrameHeader::parse(rest[..7].try_into().unwrap());
        h.check(4096).unwrap();
        let n = h.frame_len() as usize;
        frames.push(decode(&rest[..n]).unwrap());
        rest = &rest[n..];
    }
    assert_eq!(frames.len(), 2 + 3);
    assert_eq!(frames[0], AMQPFrame::Method(2, deliver));
    let got: Vec<u8> = frames[2..]
        .iter()
        .flat_map(|f| match f {
            AMQPFrame::Body(2, b) => b.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, body);
}
