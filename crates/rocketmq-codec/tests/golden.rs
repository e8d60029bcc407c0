//! Frames captured from the real RocketMQ C++ client (rocketmq-client-cpp
//! 1.2.x, as bundled by PyPI rocketmq-client-python 0.5.0rc2) and the Java
//! client 4.9.8 (`mqadmin` and `DefaultMQPullConsumer`) talking to a
//! recording server: each decodes, with the fields the gateway reads.

use bytes::{Bytes, BytesMut};
use fjord_rocketmq_codec::bodies::{HeartbeatData, LockBatchRequest, from_json};
use fjord_rocketmq_codec::frame::{DEFAULT_MAX_FRAME, decode_stream};
use fjord_rocketmq_codec::message::{decode_offset_msg_id, decode_properties, prop};
use fjord_rocketmq_codec::{Language, RemotingCommand, SerializeType};

fn golden(name: &str) -> RemotingCommand {
    let cmd = frame(name);
    assert_eq!((cmd.language, cmd.version, cmd.serialize_type), (Language(1), 63, SerializeType::Json), "{name}");
    assert!(!cmd.is_response());
    cmd
}

/// A frame captured from the Java client 4.9.8 (rocketmq-client and
/// rocketmq-tools' mqadmin, through tests/capture/remoting_proxy.py).
fn golden_java(name: &str) -> RemotingCommand {
    let cmd = frame(name);
    assert_eq!((cmd.language, cmd.version, cmd.serialize_type), (Language::JAVA, 409, SerializeType::Json), "{name}");
    assert!(!cmd.is_response());
    cmd
}

fn frame(name: &str) -> RemotingCommand {
    let path = format!("{}/tests/golden/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex = std::fs::read_to_string(&path).expect("golden file");
    let bytes: Vec<u8> =
        (0..hex.trim().len()).step_by(2).map(|i| u8::from_str_radix(&hex.trim()[i..i + 2], 16).expect("hex")).collect();
    let mut buf = BytesMut::from(&bytes[..]);
    let cmd = decode_stream(&mut buf, DEFAULT_MAX_FRAME).expect("decodes").expect("a whole frame");
    assert!(buf.is_empty(), "{name}: one frame, nothing left over");
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

#[test]
fn java_admin_requests_carry_the_fields_the_gateway_reads() {
    use fjord_rocketmq_codec::codes::request as rq;
    assert_eq!(golden_java("java_get_broker_runtime_info").code, rq::GET_BROKER_RUNTIME_INFO);
    assert_eq!(golden_java("java_get_broker_config").code, rq::GET_BROKER_CONFIG);
    let stats = golden_java("java_get_topic_stats_info");
    assert_eq!(stats.code, rq::GET_TOPIC_STATS_INFO);
    assert!(stats.field("topic").is_some_and(|t| t.starts_with("AdminTopic_")));
    let consume = golden_java("java_get_consume_stats");
    assert_eq!(consume.code, rq::GET_CONSUME_STATS);
    assert!(consume.field("consumerGroup").is_some_and(|g| g.starts_with("AdminGroup_")));
    assert_eq!(consume.field("topic"), None, "no topic: every topic of the group");
    let conns = golden_java("java_get_consumer_connection_list");
    assert_eq!(conns.code, rq::GET_CONSUMER_CONNECTION_LIST);
    assert!(conns.field("consumerGroup").is_some());
    let who = golden_java("java_query_topic_consume_by_who");
    assert_eq!(who.code, rq::QUERY_TOPIC_CONSUME_BY_WHO);
    assert!(who.field("topic").is_some());
    let reset = golden_java("java_invoke_broker_to_reset_offset");
    assert_eq!(reset.code, rq::INVOKE_BROKER_TO_RESET_OFFSET);
    assert_eq!(reset.parse::<i64>("timestamp").expect("timestamp"), 0);
    assert!(reset.flag_field("isForce").expect("isForce"));
    assert!(reset.field("group").is_some() && reset.field("topic").is_some());
}

#[test]
fn java_persists_offsets_one_way() {
    // RemoteBrokerOffsetStore.persist: one-way, so the gateway must finish
    // it before reading the next request (a read-back follows at once).
    let c = golden_java("java_update_consumer_offset_oneway");
    assert_eq!(c.code, fjord_rocketmq_codec::codes::request::UPDATE_CONSUMER_OFFSET);
    assert!(c.is_oneway());
    assert_eq!(c.parse::<i64>("commitOffset").expect("offset"), 5);
    assert_eq!(c.parse::<i32>("queueId").expect("queue"), 0);
    // 4.9.8 also names the broker (`bname`); the gateway ignores it.
    assert_eq!(c.field("bname"), Some("broker-0"));
}

#[test]
fn java5_lite_pull_is_a_pull_with_its_own_code() {
    // rocketmq-client 5.5.0's DefaultLitePullConsumer (version 513): the
    // PULL_MESSAGE header under LITE_PULL_MESSAGE, plus the 5.x fields
    // `maxMsgBytes` and `bname`; sysFlag 22 = suspend | subscription | lite.
    let c = frame("java5_lite_pull_message");
    assert_eq!((c.language, c.version, c.serialize_type), (Language::JAVA, 513, SerializeType::Json));
    assert_eq!(c.code, fjord_rocketmq_codec::codes::request::LITE_PULL_MESSAGE);
    assert!(!c.is_response() && !c.is_oneway());
    assert_eq!(c.field("topic"), Some("Lite_e54bda53c21"));
    assert_eq!(c.parse::<i32>("queueId").expect("queue"), 1);
    assert_eq!(c.parse::<i64>("queueOffset").expect("offset"), 2);
    assert_eq!(c.parse::<i32>("maxMsgNums").expect("max"), 10);
    assert_eq!(c.parse::<i32>("sysFlag").expect("flags"), 22);
    assert_eq!(c.parse::<i64>("suspendTimeoutMillis").expect("suspend"), 20_000);
    assert_eq!((c.field("subscription"), c.field("expressionType")), (Some("*"), Some("TAG")));
    assert_eq!(c.field("maxMsgBytes"), Some("2147483647"));
}
