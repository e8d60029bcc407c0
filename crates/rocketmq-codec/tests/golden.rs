//! Frames captured from the real RocketMQ C++ client (rocketmq-client-cpp
//! 1.2.x, as bundled by PyPI rocketmq-client-python 0.5.0rc2) talking to a
//! recording server: each decodes, with the fields the gateway reads.

use bytes::{Bytes, BytesMut};
use fjord_rocketmq_codec::bodies::{HeartbeatData, LockBatchRequest, from_json};
use fjord_rocketmq_codec::frame::{DEFAULT_MAX_FRAME, decode_stream};
use fjord_rocketmq_codec::message::{decode_offset_msg_id, decode_properties, prop};
use fjord_rocketmq_codec::{Language, RemotingCommand, SerializeType};

fn golden(name: &str) -> RemotingCommand {
    let path = format!("{}/tests/golden/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex = std::fs::read_to_string(&path).expect("golden file");
    let bytes: Vec<u8> =
        (0..hex.trim().len()).step_by(2).map(|i| u8::from_str_radix(&hex.trim()[i..i + 2], 16).expect("hex")).collect();
    let mut buf = BytesMut::from(&bytes[..]);
    let cmd = decode_stream(&mut buf, DEFAULT_MAX_FRAME).expect("decodes").expect("a whole frame");
    assert!(buf.is_empty(), "{name}: one frame, nothing left over");
    assert_eq!((cmd.language, cmd.version, cmd.serialize_type), (Language(1), 63, SerializeType::Json), "{name}");
    assert!(!cmd.is_response());
    cmd
}

#[test]
fn route_request() {
    let c = golden("cpp_get_route");
    assert_eq!((c.code, c.field("topic")), (105, Some("TopicT")));
    // The C++ client always sends empty ACL fields; they are ignored.
    assert_eq!(c.field("OnsChannel"), Some("ALIYUN"));
}

#[test]
fn transactional_send_with_numbers_and_strings_mixed() {
    let c = golden("cpp_send_message");
    assert_eq!(c.code, 10);
    assert_eq!(c.field("producerGroup"), Some("TPG"));
    // Numbers arrive as JSON numbers, others as strings: both read as text.
    assert_eq!(c.parse::<i32>("defaultTopicQueueNums").expect("number"), 4);
    assert_eq!(c.parse::<i64>("bornTimestamp").expect("string"), 1_795_311_542_865);
    assert!(!c.flag_field("batch").expect("0 is false"));
    let props = decode_properties(c.field("properties").expect("properties"));
    assert_eq!(prop(&props, "TRAN_MSG"), Some("true"));
    assert_eq!(prop(&props, "PGROUP"), Some("TPG"));
    assert_eq!(prop(&props, "UNIQ_KEY").map(str::len), Some(32));
    assert_eq!(c.body, Bytes::from_static(b"tx-body"));
}

#[test]
fn end_transaction_names_the_offset_from_the_send_response() {
    let c = golden("cpp_end_transaction");
    assert_eq!(c.code, 37);
    assert_eq!(c.parse::<i64>("commitLogOffset").expect("offset"), 48_879);
    assert_eq!(c.parse::<i32>("commitOrRollback").expect("kind"), 0);
    assert!(!c.flag_field("fromTransactionCheck").expect("0"));
    // The C++ client marks nothing one-way, even this.
    assert!(!c.is_oneway());
}

#[test]
fn consumer_heartbeat_pull_and_offsets() {
    let hb = golden("cpp_heart_beat_consumer");
    let data: HeartbeatData = from_json(&hb.body).expect("heartbeat body");
    let cg = &data.consumer_data_set[0];
    assert_eq!(cg.group_name, "CG2");
    assert!(!cg.is_broadcasting());
    let topics: Vec<&str> = cg.subscription_data_set.iter().map(|s| s.topic.as_str()).collect();
    assert!(topics.contains(&"%RETRY%CG2") && topics.contains(&"TopicA"), "{topics:?}");

    let pull = golden("cpp_pull_message");
    assert_eq!(pull.code, 11);
    assert_eq!(pull.parse::<i32>("sysFlag").expect("flag"), 6);
    assert_eq!(pull.parse::<i64>("suspendTimeoutMillis").expect("suspend"), 15_000);
    assert_eq!(pull.field("subscription"), Some("tagA"));
    assert_eq!(pull.field("expressionType"), None);

    for (name, code) in [
        ("cpp_query_consumer_offset", 14),
        ("cpp_update_consumer_offset", 15),
        ("cpp_get_max_offset", 30),
        ("cpp_get_consumer_list", 38),
        ("cpp_send_back", 36),
        ("cpp_unregister_client", 35),
        ("cpp_heart_beat", 34),
    ] {
        assert_eq!(golden(name).code, code, "{name}");
    }
}

#[test]
fn lock_and_unlock_bodies() {
    for name in ["cpp_lock_batch_mq", "cpp_unlock_batch_mq"] {
        let c = golden(name);
        let r: LockBatchRequest = from_json(&c.body).expect("lock body");
        assert_eq!(r.consumer_group, "CG2");
        assert!(r.client_id.ends_with("@DEFAULT"));
        assert!(r.mq_set.iter().all(|q| q.topic == "TopicA"), "{name}");
    }
}

#[test]
fn offset_ids_decode_as_the_client_does() {
    // From the send response the C++ client took commitLogOffset 48879
    // (0xBEEF): the last 16 hex digits.
    let (addr, pos) = decode_offset_msg_id("7F00000100002A9F000000000000BEEF").expect("id");
    assert_eq!((addr.to_string(), pos), ("127.0.0.1:10911".to_string(), 48_879));
}
