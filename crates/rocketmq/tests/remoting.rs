//! The gateway over TCP with a raw remoting client (the codec): the
//! commands the Python C++ wrapper cannot reach (queries, views, binary
//! headers, SQL filters, dead-lettering, locks) and hostile input.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig};
use fjord_log::SystemClock;
use fjord_messaging::{Messaging, MessagingConfig};
use fjord_rocketmq::{RocketMqConfig, RocketMqGateway};
use fjord_rocketmq_codec::bodies::{ConsumerData, ConsumerList, HeartbeatData, SubscriptionData};
use fjord_rocketmq_codec::bodies::{
    LockBatchRequest, LockBatchResponse, MessageQueue, TopicRouteData, from_json, to_json,
};
use fjord_rocketmq_codec::codes::{request as rq, response};
use fjord_rocketmq_codec::frame::{DEFAULT_MAX_FRAME, decode_stream};
use fjord_rocketmq_codec::message::{BatchEntry, decode_offset_msg_id, encode_batch, encode_properties};
use fjord_rocketmq_codec::{MessageExt, RemotingCommand, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Node {
    addr: String,
    broker: Arc<Broker>,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BrokerConfig::new(dir.path());
    // As `fjord serve` configures it: message keys and ids are indexed.
    config.log_defaults.key_index.header_keys = fjord_messaging::message::indexed_headers();
    let broker = Broker::open(config, Arc::new(SystemClock)).await.expect("broker");
    let messaging = Messaging::open(broker.clone(), MessagingConfig::default()).await.expect("messaging");
    messaging.start();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let gw = RocketMqGateway::new(messaging, RocketMqConfig { broker_addr: addr.clone(), ..Default::default() });
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(fjord_rocketmq::serve(vec![fjord_net::Acceptor::with_default_caps(listener, "rocketmq")], gw, rx));
    Node { addr, broker, _stop: stop, _dir: dir }
}

struct Client {
    sock: TcpStream,
    buf: BytesMut,
    opaque: i32,
    /// Requests the broker sent on its own (notifications, check-backs).
    pushed: Vec<RemotingCommand>,
}

impl Client {
    async fn connect(addr: &str) -> Client {
        Client {
            sock: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            opaque: 0,
            pushed: vec![],
        }
    }

    async fn call(&mut self, mut cmd: RemotingCommand) -> RemotingCommand {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        self.sock.write_all(&cmd.encode()).await.expect("write");
        loop {
            if let Some(resp) = decode_stream(&mut self.buf, DEFAULT_MAX_FRAME).expect("decode") {
                if resp.is_response() && resp.opaque == self.opaque {
                    return resp;
                }
                if !resp.is_response() {
                    self.pushed.push(resp);
                }
                continue;
            }
            let n = tokio::time::timeout(Duration::from_secs(20), self.sock.read_buf(&mut self.buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "connection closed while waiting for a response");
        }
    }

    async fn send(&mut self, topic: &str, queue: i32, body: &str, props: &[(&str, &str)]) -> RemotingCommand {
        let props: Vec<(String, String)> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let cmd = RemotingCommand::request(rq::SEND_MESSAGE_V2)
            .with_field("a", "pg")
            .with_field("b", topic)
            .with_field("c", "TBW102")
            .with_field("d", 4)
            .with_field("e", queue)
            .with_field("f", 0)
            .with_field("g", 1_700_000_000_000i64)
            .with_field("h", 0)
            .with_field("i", encode_properties(&props))
            .with_body(Bytes::from(body.to_string()));
        let r = self.call(cmd).await;
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        r
    }
}

fn pull(topic: &str, queue: i32, offset: i64, sub: &str, kind: &str) -> RemotingCommand {
    RemotingCommand::request(rq::PULL_MESSAGE)
        .with_field("consumerGroup", "cg")
        .with_field("topic", topic)
        .with_field("queueId", queue)
        .with_field("queueOffset", offset)
        .with_field("maxMsgNums", 32)
        .with_field("sysFlag", 4)
        .with_field("commitOffset", -1)
        .with_field("suspendTimeoutMillis", 0)
        .with_field("subscription", sub)
        .with_field("expressionType", kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_views_and_binary_headers() {
    let node = start().await;
    let mut c = Client::connect(&node.addr).await;
    let sent = c.send("orders", 1, "first", &[("KEYS", "order-7 vip"), ("TAGS", "paid"), ("UNIQ_KEY", "AB12")]).await;
    c.send("orders", 1, "second", &[("KEYS", "order-8")]).await;

    // The route names this broker, with the queues the first send created.
    let r = c.call(RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC).with_field("topic", "orders")).await;
    let route: TopicRouteData = from_json(&r.body).expect("route");
    assert_eq!(route.queue_datas[0].write_queue_nums, 4);
    assert_eq!(route.broker_datas[0].broker_addrs["0"], node.addr);

    // By key.
    let q = RemotingCommand::request(rq::QUERY_MESSAGE)
        .with_field("topic", "orders")
        .with_field("key", "order-7")
        .with_field("maxNum", 10)
        .with_field("beginTimestamp", 0)
        .with_field("endTimestamp", i64::MAX);
    let r = c.call(q).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let found = MessageExt::decode_all(r.body).expect("messages");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].body, Bytes::from_static(b"first"));
    assert!(found[0].properties.contains(&("KEYS".into(), "order-7 vip".into())));
    assert!(found[0].properties.contains(&("TAGS".into(), "paid".into())));

    // By unique key.
    let q = RemotingCommand::request(rq::QUERY_MESSAGE)
        .with_field("topic", "orders")
        .with_field("key", "AB12")
        .with_field("maxNum", 10)
        .with_field("_UNIQUE_KEY_QUERY", "true");
    let found = MessageExt::decode_all(c.call(q).await.body).expect("messages");
    assert_eq!(found[0].body, Bytes::from_static(b"first"));
    let q = RemotingCommand::request(rq::QUERY_MESSAGE).with_field("topic", "orders").with_field("key", "nope");
    assert_eq!(c.call(q).await.code, response::QUERY_NOT_FOUND);

    // By offset message id, asked in the binary header serialization: the
    // answer comes back in it too.
    let (host, pos) = decode_offset_msg_id(sent.field("msgId").expect("msgId")).expect("offset id");
    assert_eq!(host.to_string(), node.addr);
    let mut view = RemotingCommand::request(rq::VIEW_MESSAGE_BY_ID).with_field("offset", pos);
    view.serialize_type = SerializeType::RocketMq;
    let r = c.call(view).await;
    assert_eq!(r.serialize_type, SerializeType::RocketMq);
    let m = MessageExt::decode_all(r.body).expect("message").remove(0);
    assert_eq!((m.body.as_ref(), m.queue_id, m.queue_offset, m.commit_log_offset), (&b"first"[..], 1, 0, pos));

    // Queue bounds and lookup by time.
    let q = |code| RemotingCommand::request(code).with_field("topic", "orders").with_field("queueId", 1);
    assert_eq!(c.call(q(rq::GET_MAX_OFFSET)).await.field("offset"), Some("2"));
    assert_eq!(c.call(q(rq::GET_MIN_OFFSET)).await.field("offset"), Some("0"));
    let r = c.call(q(rq::SEARCH_OFFSET_BY_TIMESTAMP).with_field("timestamp", 0)).await;
    assert_eq!(r.field("offset"), Some("0"));

    // Unknown codes are refused, the connection stays.
    let r = c.call(RemotingCommand::request(9999)).await;
    assert_eq!(r.code, response::REQUEST_CODE_NOT_SUPPORTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql92_filters_dead_letters_and_locks() {
    let node = start().await;
    let mut c = Client::connect(&node.addr).await;
    for (i, region) in ["eu", "us", "eu"].iter().enumerate() {
        c.send("events", 0, &format!("e{i}"), &[("region", region), ("TAGS", "T")]).await;
    }
    let r = c.call(pull("events", 0, 0, "region = 'eu' AND TAGS = 'T'", "SQL92")).await;
    assert_eq!(r.code, response::SUCCESS);
    let got: Vec<Bytes> = MessageExt::decode_all(r.body.clone()).expect("msgs").into_iter().map(|m| m.body).collect();
    assert_eq!(got, vec![Bytes::from_static(b"e0"), Bytes::from_static(b"e2")]);
    assert_eq!(r.field("nextBeginOffset"), Some("3"));
    let r = c.call(pull("events", 0, 0, "region = ", "SQL92")).await;
    assert_eq!(r.code, response::SUBSCRIPTION_PARSE_FAILED);
    let r = c.call(pull("events", 0, 99, "*", "TAG")).await;
    assert_eq!((r.code, r.field("nextBeginOffset")), (response::PULL_OFFSET_MOVED, Some("3")));

    // A message sent back with delay level -1 goes straight to the DLQ.
    let r = c.call(pull("events", 0, 1, "*", "TAG")).await;
    let m = MessageExt::decode_all(r.body).expect("msgs").remove(0);
    let back = RemotingCommand::request(rq::CONSUMER_SEND_MSG_BACK)
        .with_field("group", "cg")
        .with_field("offset", m.commit_log_offset)
        .with_field("delayLevel", -1);
    assert_eq!(c.call(back).await.code, response::SUCCESS);
    let r = c.call(pull("%DLQ%cg", 0, 0, "*", "TAG")).await;
    let dead = MessageExt::decode_all(r.body).expect("dlq").remove(0);
    assert_eq!(dead.body, Bytes::from_static(b"e1"));

    // Locks: one holder per queue and group.
    let lock = |client: &str| {
        let body = LockBatchRequest {
            consumer_group: "og".into(),
            client_id: client.into(),
            mq_set: vec![MessageQueue { topic: "events".into(), broker_name: "broker-0".into(), queue_id: 0 }],
        };
        RemotingCommand::request(rq::LOCK_BATCH_MQ).with_body(to_json(&body))
    };
    let a: LockBatchResponse = from_json(&c.call(lock("a")).await.body).expect("lock a");
    let b: LockBatchResponse = from_json(&c.call(lock("b")).await.body).expect("lock b");
    assert_eq!((a.lock_ok_mq_set.len(), b.lock_ok_mq_set.len()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection() {
    let node = start().await;
    let mut good = Client::connect(&node.addr).await;
    good.send("t", 0, "x", &[]).await;
    for bad in [
        // 2 GiB announced: refused from the prefix, nothing allocated.
        vec![0x7F, 0xFF, 0xFF, 0xFF],
        // Header length past the frame.
        vec![0, 0, 0, 8, 0, 0xFF, 0xFF, 0xFF, b'{', b'}', 0, 0],
        // A JSON header that is not JSON.
        vec![0, 0, 0, 7, 0, 0, 0, 3, b'{', b'x', b'}'],
        // Binary header with an extFields length far beyond the frame.
        vec![0, 0, 0, 25, 1, 0, 0, 21, 0, 34, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF],
    ] {
        let mut s = TcpStream::connect(&node.addr).await.expect("connect");
        s.write_all(&bad).await.expect("write");
        let mut sink = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the broker closes a connection that sent {bad:?}");
    }
    // Everyone else is still served.
    let r = good.call(RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC).with_field("topic", "t")).await;
    assert_eq!(r.code, response::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sends_store_every_message_in_order() {
    let node = start().await;
    let mut c = Client::connect(&node.addr).await;
    let entries: Vec<BatchEntry> = (0..3)
        .map(|i| BatchEntry {
            flag: 0,
            body: Bytes::from(format!("b{i}")),
            properties: vec![("KEYS".into(), format!("k{i}")), ("UNIQ_KEY".into(), format!("ID{i}"))],
        })
        .collect();
    let send = RemotingCommand::request(rq::SEND_BATCH_MESSAGE)
        .with_field("a", "pg")
        .with_field("b", "batched")
        .with_field("d", 4)
        .with_field("e", 2)
        .with_field("i", "")
        .with_field("m", "true")
        .with_body(encode_batch(&entries));
    let r = c.call(send).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.field("msgId").map(|ids| ids.split(',').count()), Some(3), "one offset id per message");
    assert_eq!((r.field("queueId"), r.field("queueOffset")), (Some("2"), Some("0")));
    let p = c.call(pull("batched", 2, 0, "*", "TAG")).await;
    let got = MessageExt::decode_all(p.body).expect("msgs");
    let bodies: Vec<&[u8]> = got.iter().map(|m| m.body.as_ref()).collect();
    assert_eq!(bodies, [&b"b0"[..], b"b1", b"b2"]);
    assert!(got[1].properties.contains(&("UNIQ_KEY".into(), "ID1".into())));
    assert_eq!(got.iter().map(|m| m.queue_offset).collect::<Vec<_>>(), [0, 1, 2]);
}

/// A send whose write is made but whose commit fails (here its fsync) is
/// answered as RocketMQ's broker answers a message it stored but could not
/// flush in time — FLUSH_DISK_TIMEOUT with the queue, a send result the
/// client does not retry — not as an error the client would send again
/// (a second copy whenever the first survives the recovery).
#[tokio::test]
async fn a_send_whose_commit_fails_is_answered_stored_not_flushed() {
    let node = start().await;
    let mut c = Client::connect(&node.addr).await;
    let send = |body: &str| {
        RemotingCommand::request(rq::SEND_MESSAGE_V2)
            .with_field("a", "pg")
            .with_field("b", "flushy")
            .with_field("d", 2)
            .with_field("e", 1)
            .with_field("i", "UNIQ_KEY\u{1}ID-1\u{2}")
            .with_field("m", "false")
            .with_body(Bytes::from(body.to_string()))
    };
    let r = c.call(send("first")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let log = node.broker.topic("flushy").expect("topic").partition(1).expect("queue 1");
    log.log_for_tests().inject_fsync_failure(true);
    let r = c.call(send("second")).await;
    assert_eq!(r.code, response::FLUSH_DISK_TIMEOUT, "{:?}", r.remark);
    assert_eq!((r.field("queueId"), r.field("queueOffset")), (Some("1"), Some("-1")));
    assert!(r.field("msgId").is_some_and(|id| !id.is_empty()));
    log.log_for_tests().inject_fsync_failure(false);
}

/// The 5.x Java client's lite pull, replayed byte for byte as captured
/// (crates/rocketmq-codec/tests/golden): LITE_PULL_MESSAGE on queue 1 from
/// offset 2 of its topic, long-polling, gets what PULL_MESSAGE would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java5_lite_pull_frame_is_served_as_a_pull() {
    let node = start().await;
    let mut c = Client::connect(&node.addr).await;
    let topic = "Lite_e54bda53c21";
    for i in 0..4 {
        c.send(topic, 1, &format!("lite-{i}"), &[]).await;
    }
    let hex = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rocketmq-codec/tests/golden/java5_lite_pull_message.hex"
    ))
    .expect("golden frame");
    let mut raw = BytesMut::from(&decode_hex(hex.trim())[..]);
    let mut lite = decode_stream(&mut raw, DEFAULT_MAX_FRAME).expect("decode").expect("one frame");
    assert_eq!(lite.code, rq::LITE_PULL_MESSAGE);
    lite.opaque = 0; // Client::call numbers its requests
    let p = c.call(lite).await;
    assert_eq!(p.code, response::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.field("nextBeginOffset"), Some("4"));
    let got = MessageExt::decode_all(p.body).expect("msgs");
    assert_eq!(got.iter().map(|m| m.queue_offset).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(&got[0].body[..], b"lite-2");
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn heartbeat(client: &str, group: &str) -> RemotingCommand {
    let hb = HeartbeatData {
        client_id: client.into(),
        producer_data_set: vec![],
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            consume_type: "CONSUME_PASSIVELY".into(),
            message_model: "CLUSTERING".into(),
            consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "t".into(),
                sub_string: "*".into(),
                expression_type: None,
                sub_version: 1,
            }],
            unit_mode: false,
        }],
    };
    RemotingCommand::request(rq::HEART_BEAT).with_body(to_json(&hb))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_are_told_when_membership_changes() {
    let node = start().await;
    let mut a = Client::connect(&node.addr).await;
    let mut b = Client::connect(&node.addr).await;
    // A starting consumer asks for its retry topic's route before its first
    // heartbeat: the route is there at once (a 5.x client would otherwise
    // learn of it only at its next 30 s route poll).
    let route = |t: &str| RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC).with_field("topic", t);
    let r = a.call(route("%RETRY%early")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let early: TopicRouteData = from_json(&r.body).expect("route");
    assert_eq!(early.queue_datas[0].read_queue_nums, 1);
    assert_eq!(a.call(route("%RETRY%")).await.code, response::TOPIC_NOT_EXIST, "no group, no topic");
    assert_eq!(a.call(route("plain-unknown")).await.code, response::TOPIC_NOT_EXIST);
    assert_eq!(a.call(heartbeat("client-a", "g")).await.code, response::SUCCESS);
    // The group's retry topic exists from the first heartbeat on.
    let r = a.call(RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC).with_field("topic", "%RETRY%g")).await;
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(b.call(heartbeat("client-b", "g")).await.code, response::SUCCESS);
    let list = |r: RemotingCommand| from_json::<ConsumerList>(&r.body).expect("list").consumer_id_list;
    let q = || RemotingCommand::request(rq::GET_CONSUMER_LIST_BY_GROUP).with_field("consumerGroup", "g");
    assert_eq!(list(a.call(q()).await), ["client-a", "client-b"]);

    // A already holds NOTIFY_CONSUMER_IDS_CHANGED for B's arrival (and its own).
    let notify = |c: &mut Client| {
        while let Some(cmd) = decode_stream(&mut c.buf, DEFAULT_MAX_FRAME).expect("decode") {
            c.pushed.push(cmd);
        }
        let seen = c.pushed.iter().filter(|cmd| cmd.code == rq::NOTIFY_CONSUMER_IDS_CHANGED).count();
        assert!(c.pushed.iter().all(|cmd| cmd.field("consumerGroup") == Some("g")));
        c.pushed.clear();
        seen
    };
    assert!(notify(&mut a) >= 1, "client A was told about client B");

    // B leaves by closing its connection: A is told and the list shrinks.
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ids = list(a.call(q()).await);
        if ids == ["client-a"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "client B still listed: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(300), a.sock.read_buf(&mut a.buf)).await;
    assert!(notify(&mut a) >= 1, "client A was told that client B left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_report_stats_connections_and_reset_offsets() {
    use fjord_rocketmq_codec::admin::{ConsumerConnection, GroupList, KvTable};
    let node = start().await;
    let mut c = Client::connect(&node.addr).await;
    for i in 0..3 {
        c.send("adm", 0, &format!("m{i}"), &[]).await;
    }
    assert_eq!(c.call(heartbeat("client-a", "g")).await.code, response::SUCCESS);
    let commit = RemotingCommand::request(rq::UPDATE_CONSUMER_OFFSET)
        .with_field("consumerGroup", "g")
        .with_field("topic", "adm")
        .with_field("queueId", 0)
        .with_field("commitOffset", 2);
    assert_eq!(c.call(commit).await.code, response::SUCCESS);
    let text = |r: &RemotingCommand| String::from_utf8_lossy(&r.body).to_string();

    let stats = c.call(RemotingCommand::request(rq::GET_TOPIC_STATS_INFO).with_field("topic", "adm")).await;
    assert_eq!(stats.code, response::SUCCESS);
    assert!(text(&stats).contains(r#""queueId":0}:{"minOffset":0,"maxOffset":3,"#), "{}", text(&stats));
    let missing = c.call(RemotingCommand::request(rq::GET_TOPIC_STATS_INFO).with_field("topic", "nope")).await;
    assert_eq!(missing.code, response::TOPIC_NOT_EXIST);

    let q = RemotingCommand::request(rq::GET_CONSUME_STATS).with_field("consumerGroup", "g").with_field("topic", "adm");
    let consume = c.call(q).await;
    assert!(text(&consume).contains(r#""queueId":0}:{"brokerOffset":3,"consumerOffset":2,"#), "{}", text(&consume));

    let conns =
        c.call(RemotingCommand::request(rq::GET_CONSUMER_CONNECTION_LIST).with_field("consumerGroup", "g")).await;
    let conns: ConsumerConnection = from_json(&conns.body).expect("connections");
    assert_eq!(conns.connection_set[0].client_id, "client-a");
    assert_eq!(conns.connection_set[0].language, "JAVA");
    assert!(conns.subscription_table.contains_key("t"));
    assert_eq!((conns.consume_type.as_str(), conns.message_model.as_str()), ("CONSUME_PASSIVELY", "CLUSTERING"));
    let offline = RemotingCommand::request(rq::GET_CONSUMER_CONNECTION_LIST).with_field("consumerGroup", "nobody");
    assert_eq!(c.call(offline).await.code, response::CONSUMER_NOT_ONLINE);

    let who = c.call(RemotingCommand::request(rq::QUERY_TOPIC_CONSUME_BY_WHO).with_field("topic", "adm")).await;
    assert_eq!(from_json::<GroupList>(&who.body).expect("groups").group_list, ["g"]);

    // Reset to the start: stored, answered, and pushed to the live client.
    let reset = RemotingCommand::request(rq::INVOKE_BROKER_TO_RESET_OFFSET)
        .with_field("topic", "adm")
        .with_field("group", "g")
        .with_field("timestamp", 0)
        .with_field("isForce", true);
    let reset = c.call(reset).await;
    assert_eq!(reset.code, response::SUCCESS, "{:?}", reset.remark);
    assert!(text(&reset).contains(r#""queueId":0}:0"#), "{}", text(&reset));
    let query = RemotingCommand::request(rq::QUERY_CONSUMER_OFFSET)
        .with_field("consumerGroup", "g")
        .with_field("topic", "adm")
        .with_field("queueId", 0);
    assert_eq!(c.call(query).await.field("offset"), Some("0"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !c.pushed.iter().any(|p| p.code == rq::RESET_CONSUMER_CLIENT_OFFSET) {
        assert!(tokio::time::Instant::now() < deadline, "the live client was not told about the reset");
        let _ = tokio::time::timeout(Duration::from_millis(100), c.sock.read_buf(&mut c.buf)).await;
        while let Some(cmd) = decode_stream(&mut c.buf, DEFAULT_MAX_FRAME).expect("decode") {
            c.pushed.push(cmd);
        }
    }

    let info = c.call(RemotingCommand::request(rq::GET_BROKER_RUNTIME_INFO)).await;
    let info: KvTable = from_json(&info.body).expect("kv table");
    assert!(info.table["msgPutTotalTodayNow"].parse::<u64>().expect("number") >= 3);
    assert_eq!(info.table["putTps"].split(' ').count(), 3);
    let config = c.call(RemotingCommand::request(rq::GET_BROKER_CONFIG)).await;
    assert!(text(&config).lines().any(|l| l == "brokerName=broker-0"), "{}", text(&config));
    assert!(text(&config).lines().any(|l| l == "flushDiskType=SYNC_FLUSH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_offset_update_is_seen_by_the_next_query() {
    let node = start().await;
    let mut c = Client::connect(&node.addr).await;
    c.send("ow", 0, "m", &[]).await;
    for offset in 1..50 {
        // Java's RemoteBrokerOffsetStore.persist sends this one-way, then
        // fetchConsumeOffset reads it back on the same connection: both
        // frames arrive together here, so the broker reads them at once.
        let mut update = RemotingCommand::request(rq::UPDATE_CONSUMER_OFFSET)
            .with_field("consumerGroup", "og")
            .with_field("topic", "ow")
            .with_field("queueId", 0)
            .with_field("commitOffset", offset);
        update.flag |= fjord_rocketmq_codec::FLAG_ONEWAY;
        update.opaque = 10_000 + offset;
        let mut query = RemotingCommand::request(rq::QUERY_CONSUMER_OFFSET)
            .with_field("consumerGroup", "og")
            .with_field("topic", "ow")
            .with_field("queueId", 0);
        query.opaque = 20_000 + offset;
        let mut both = update.encode().to_vec();
        both.extend_from_slice(&query.encode());
        c.sock.write_all(&both).await.expect("write");
        let resp = loop {
            if let Some(r) = decode_stream(&mut c.buf, DEFAULT_MAX_FRAME).expect("decode")
                && r.opaque == query.opaque
            {
                break r;
            }
            let n = tokio::time::timeout(Duration::from_secs(20), c.sock.read_buf(&mut c.buf))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "closed");
        };
        assert_eq!(resp.field("offset"), Some(offset.to_string().as_str()), "round {offset}");
    }
}

/// In a cluster a broker numbers every partition of a topic, those it is
/// the preferred leader of first (its write queues), so a queue keeps
/// naming its partition while leaders move: a push consumer keeps its
/// position per queue, and when a leader change renumbered the queues it
/// read one partition from another's position, skipping messages (found by
/// the fault-injection checker's RocketMQ workload). A queue whose
/// partition another node leads is idle: a pull answers no new message at
/// the group's progress, and an offset update through it is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_keep_naming_their_partition_while_leaders_move() {
    use fjord_broker::placement::OFFSETS_TOPIC;
    use fjord_broker::{CommittedOffset, NodeInfo, PartitionPlacement, Placement, TopicConfig, TopicPartition};
    use std::collections::{BTreeMap, HashMap};

    let node = start().await;
    let me = node.broker.config().node_id;
    let other = me + 1;
    node.broker.create_topic("moving", 2, TopicConfig::default()).await.expect("topic");
    let part = |leader: i32, epoch: i32, replicas: Vec<i32>| PartitionPlacement {
        leader,
        leader_epoch: epoch,
        // The other node never copies: writes commit on the leader alone.
        isr: vec![leader],
        replicas,
        partition_epoch: epoch,
        adding: vec![],
        removing: vec![],
    };
    // Partition 0 prefers the other node, partition 1 this one; `p0_leader`
    // leads partition 0.
    let place = |p0_leader: i32, epoch: i32| {
        let info = |id: i32| NodeInfo {
            node_id: id,
            listeners: BTreeMap::from([("rocketmq_broker".to_string(), node.addr.clone())]),
            rack: None,
        };
        let offsets = node.broker.topic(OFFSETS_TOPIC).expect("offsets topic").partitions().len();
        node.broker.set_placement(Placement {
            controller_id: me,
            nodes: vec![info(me), info(other)],
            fenced: vec![],
            controllers: vec![me],
            topics: HashMap::from([
                ("moving".to_string(), vec![part(p0_leader, epoch, vec![other, me]), part(me, 1, vec![me, other])]),
                (OFFSETS_TOPIC.to_string(), vec![part(me, 0, vec![me]); offsets]),
            ]),
        });
    };
    place(other, 1);
    let mut c = Client::connect(&node.addr).await;
    let route = |r: RemotingCommand| {
        let route: TopicRouteData = from_json(&r.body).expect("route");
        let mine = format!("broker-{me}");
        let q = route.queue_datas.iter().find(|q| q.broker_name == mine).expect("this broker's queues").clone();
        (q.read_queue_nums, q.write_queue_nums)
    };
    let ask_route = || RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC).with_field("topic", "moving");
    assert_eq!(route(c.call(ask_route()).await), (2, 1), "every partition read, the preferred one written");
    let r = c.send("moving", 0, "to-p1", &[]).await;
    assert_eq!(r.field("queueId"), Some("0"));
    let p1 = TopicPartition::new("moving", 1);
    assert_eq!(node.broker.partition(&p1).expect("p1").high_watermark(), 1, "queue 0 is partition 1");

    // Queue 1 (partition 0, led by the other node) is idle.
    let p0 = TopicPartition::new("moving", 0);
    let progress =
        |offset: i64| CommittedOffset { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 };
    node.broker.commit_offsets_unchecked("cg", vec![(p0.clone(), progress(3))]).await.expect("commit");
    let r = c.call(pull("moving", 1, 0, "*", "TAG")).await;
    assert_eq!((r.code, r.field("nextBeginOffset")), (response::PULL_NOT_FOUND, Some("3")), "{:?}", r.remark);
    let update = RemotingCommand::request(rq::UPDATE_CONSUMER_OFFSET)
        .with_field("consumerGroup", "cg")
        .with_field("topic", "moving")
        .with_field("queueId", 1)
        .with_field("commitOffset", 1);
    assert_eq!(c.call(update).await.code, response::SUCCESS);
    let committed = node.broker.committed_offset("cg", &p0).await.expect("committed").expect("some");
    assert_eq!(committed.offset, 3, "an idle queue's offset update is ignored");

    // The other node is lost: this one leads partition 0 too. The queues
    // keep their partitions; queue 1 delivers partition 0 from the group's
    // position.
    place(me, 2);
    let mut b = fjord_log::batch::BatchBuilder::new(1_700_000_000_000);
    for i in 0..4 {
        b.push(&fjord_log::batch::NewRecord { value: Some(Bytes::from(format!("p0-{i}"))), ..Default::default() });
    }
    node.broker.produce(&p0, b.try_build().expect("batch")).await.expect("produce");
    assert_eq!(route(c.call(ask_route()).await), (2, 1), "the same queues");
    let r = c.call(pull("moving", 1, 3, "*", "TAG")).await;
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let got = MessageExt::decode_all(r.body).expect("messages");
    assert_eq!(got.iter().map(|m| (m.body.clone(), m.queue_id)).collect::<Vec<_>>(), vec![(Bytes::from("p0-3"), 1)]);
    let r = c.call(pull("moving", 0, 0, "*", "TAG")).await;
    let got = MessageExt::decode_all(r.body).expect("messages");
    assert_eq!(
        got.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        vec![Bytes::from("to-p1")],
        "queue 0 is still partition 1"
    );
}
