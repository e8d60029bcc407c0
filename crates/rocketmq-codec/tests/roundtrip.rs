//! Property round trips and hostile-input checks for every decoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use fjord_rocketmq_codec::frame::{DEFAULT_MAX_FRAME, decode_stream};
use fjord_rocketmq_codec::message::{
    BatchEntry, MessageExt, decode_batch, decode_offset_msg_id, decode_properties, encode_batch, encode_offset_msg_id,
    encode_properties,
};
use fjord_rocketmq_codec::{CodecError, Language, RemotingCommand, SerializeType};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Property names and values never contain the two separators.
    "[a-zA-Z0-9_ .:%{}\"\\\\-]{0,24}"
}

fn command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        0u8..13,
        any::<i16>(),
        any::<i32>(),
        0i32..4,
        proptest::option::of("[a-zA-Z0-9 ]{1,40}"),
        proptest::collection::btree_map("[a-zA-Z]{1,12}", text(), 0..8),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(code, lang, version, opaque, flag, remark, ext, body, json)| RemotingCommand {
            code: i32::from(code),
            language: Language(lang),
            version: i32::from(version),
            opaque,
            flag,
            remark,
            ext_fields: ext.into_iter().collect(),
            body: Bytes::from(body),
            serialize_type: if json { SerializeType::Json } else { SerializeType::RocketMq },
        })
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), p)),
    ]
}

fn props() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[A-Za-z_]{1,16}", text()), 0..6)
}

proptest! {
    #[test]
    fn commands_round_trip_in_both_serializations(cmd in command()) {
        let wire = cmd.encode();
        let mut buf = BytesMut::from(&wire[..]);
        let back = decode_stream(&mut buf, DEFAULT_MAX_FRAME).expect("decode").expect("whole frame");
        prop_assert!(buf.is_empty());
        // JSON headers sort extFields by name (a JSON object); compare as sets.
        let mut a = cmd.ext_fields.clone();
        let mut b = back.ext_fields.clone();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
        prop_assert_eq!((back.code, back.opaque, back.flag, back.version), (cmd.code, cmd.opaque, cmd.flag, cmd.version));
        prop_assert_eq!(back.language, cmd.language);
        prop_assert_eq!(back.remark, cmd.remark);
        prop_assert_eq!(back.body, cmd.body);
        prop_assert_eq!(back.serialize_type, cmd.serialize_type);
    }

    #[test]
    fn a_split_frame_waits_for_the_rest(cmd in command(), cut in 0usize..200) {
        let wire = cmd.encode();
        let cut = cut.min(wire.len() - 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        prop_assert!(decode_stream(&mut buf, DEFAULT_MAX_FRAME).expect("no error on a prefix").is_none());
        buf.extend_from_slice(&wire[cut..]);
        prop_assert!(decode_stream(&mut buf, DEFAULT_MAX_FRAME).expect("decode").is_some());
    }

    #[test]
    fn messages_round_trip(
        topic in "[a-zA-Z0-9%_-]{1,300}",
        queue_id in any::<i32>(), flag in any::<i32>(), qo in any::<i64>(), po in any::<i64>(),
        born in any::<i64>(), store in any::<i64>(), born_host in addr(), store_host in addr(),
        reconsume in any::<i32>(), prepared in any::<i64>(),
        body in proptest::collection::vec(any::<u8>(), 0..256), properties in props(),
    ) {
        let m = MessageExt {
            topic, queue_id, flag, queue_offset: qo, commit_log_offset: po, sys_flag: 0,
            born_timestamp: born, born_host, store_timestamp: store, store_host,
            reconsume_times: reconsume, prepared_transaction_offset: prepared,
            body: Bytes::from(body), properties,
        };
        let mut out = BytesMut::new();
        m.encode_into(&mut out);
        m.encode_into(&mut out);
        let back = MessageExt::decode_all(out.freeze()).expect("decode");
        prop_assert_eq!(back.len(), 2);
        let mut expect = m.clone();
        expect.sys_flag = back[0].sys_flag;
        prop_assert_eq!(&back[0], &expect);
        prop_assert_eq!(back[0].sys_flag & 0x10 != 0, m.born_host.is_ipv6());
        prop_assert_eq!(back[0].sys_flag & 0x20 != 0, m.store_host.is_ipv6());
    }

    #[test]
    fn batches_round_trip(entries in proptest::collection::vec(
        (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..64), props())
            .prop_map(|(flag, body, properties)| BatchEntry { flag, body: Bytes::from(body), properties }),
        0..8,
    )) {
        prop_assert_eq!(decode_batch(encode_batch(&entries)).expect("decode"), entries);
    }

    #[test]
    fn properties_round_trip(p in props()) {
        let p: Vec<_> = p.into_iter().filter(|(k, _)| !k.is_empty()).collect();
        prop_assert_eq!(decode_properties(&encode_properties(&p)), p);
    }

    #[test]
    fn offset_message_ids_round_trip(a in addr(), pos in any::<i64>()) {
        let id = encode_offset_msg_id(&a, pos);
        prop_assert_eq!(id.len(), if a.is_ipv6() { 56 } else { 32 });
        prop_assert_eq!(decode_offset_msg_id(&id).expect("decode"), (a, pos));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(data);
        let _ = RemotingCommand::decode(b.clone());
        let _ = MessageExt::decode_all(b.clone());
        let _ = decode_batch(b);
    }
}

#[test]
fn an_oversized_frame_is_refused_from_its_prefix() {
    let mut buf = BytesMut::from(&[0x7F, 0xFF, 0xFF, 0xFF][..]);
    assert_eq!(
        decode_stream(&mut buf, DEFAULT_MAX_FRAME),
        Err(CodecError::FrameTooLarge { size: 0x7FFF_FFFF, max: DEFAULT_MAX_FRAME })
    );
    // Nothing was reserved for the announced body.
    assert!(buf.capacity() < 1 << 20);
}

#[test]
fn hostile_lengths_are_errors_not_allocations() {
    // Binary header whose extFields length claims 2 GiB.
    let mut h = vec![0u8, 10, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    h.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    let mut frame = Vec::new();
    frame.extend_from_slice(&((1u32 << 24) | h.len() as u32).to_be_bytes());
    frame.extend_from_slice(&h);
    let err = RemotingCommand::decode(Bytes::from(frame)).expect_err("refused");
    assert!(matches!(err, CodecError::Truncated { what: "extFields", .. }), "{err}");
    // A header length past the frame.
    let err = RemotingCommand::decode(Bytes::from_static(&[0, 0, 0, 200, b'{', b'}'])).expect_err("refused");
    assert!(matches!(err, CodecError::Truncated { what: "header", len: 200, .. }), "{err}");
    // A message claiming a negative size.
    let err = MessageExt::decode_all(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xF0])).expect_err("refused");
    assert!(matches!(err, CodecError::Truncated { what: "message", .. }), "{err}");
}

#[test]
fn json_headers_look_like_a_java_brokers() {
    let req = RemotingCommand::request(105).with_field("topic", "TopicTest");
    let resp =
        RemotingCommand::response_to(&RemotingCommand { opaque: 7, version: 317, ..req }, 17, Some("no route".into()));
    let wire = resp.encode();
    let header_len = u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]]) as usize;
    assert_eq!(wire[4], 0, "JSON serialization type byte");
    let json: serde_json::Value = serde_json::from_slice(&wire[8..8 + header_len]).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"code": 17, "flag": 1, "language": "JAVA", "opaque": 7, "remark": "no route",
            "serializeTypeCurrentRPC": "JSON", "version": 317})
    );
}

#[test]
fn a_corrupt_body_crc_is_refused() {
    let m = MessageExt {
        topic: "t".into(),
        queue_id: 0,
        flag: 0,
        queue_offset: 0,
        commit_log_offset: 0,
        sys_flag: 0,
        born_timestamp: 0,
        born_host: "127.0.0.1:1".parse().expect("addr"),
        store_timestamp: 0,
        store_host: "127.0.0.1:2".parse().expect("addr"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from_static(b"hello"),
        properties: vec![],
    };
    let mut out = BytesMut::new();
    m.encode_into(&mut out);
    let pos = out.len() - 2 - 1 - 1 - 3; // inside "hello"
    out[pos] ^= 0xFF;
    let err = MessageExt::decode_all(out.freeze()).expect_err("refused");
    assert_eq!(err, CodecError::Invalid("message body CRC mismatch".into()));
}
