//! The gRPC gateway of node 1 of a 3-node cluster, with the placement the
//! cluster layer installs: routes list every broker (`broker-<id>`) with
//! the queues it leads and its own endpoint, assignments name one queue
//! per broker, and this node stores and serves only the partitions it
//! leads, numbered from 0 as its queues.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fjord_broker::placement::{OFFSETS_TOPIC, POP_TOPIC};
use fjord_broker::{Broker, BrokerConfig, NodeInfo, PartitionPlacement, Placement, TopicConfig, TopicPartition};
use fjord_log::SystemClock;
use fjord_messaging::{Messaging, MessagingConfig};
use fjord_rocketmq_grpc::{GrpcConfig, GrpcGateway};
use fjord_rocketmq_proto::prost_types::Duration as PDuration;
use fjord_rocketmq_proto::tonic::transport::Channel;
use fjord_rocketmq_proto::v2::{self, Code, messaging_service_client::MessagingServiceClient};
use tokio::net::TcpListener;

fn node(id: i32) -> NodeInfo {
    NodeInfo {
        node_id: id,
        listeners: BTreeMap::from([("rocketmq_grpc".to_string(), format!("10.0.0.{id}:8081"))]),
        rack: None,
    }
}

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource { resource_namespace: String::new(), name: name.into() })
}

fn code(s: &Option<v2::Status>) -> Code {
    Code::try_from(s.as_ref().map_or(0, |s| s.code)).unwrap_or(Code::Unspecified)
}

async fn node_one()
-> (MessagingServiceClient<Channel>, Arc<Broker>, tokio::sync::watch::Sender<bool>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { node_id: 1, ..BrokerConfig::new(dir.path()) };
    let broker = Broker::open(config, Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("t", 6, TopicConfig::default()).await.unwrap();
    let leaders = [1, 2, 3, 1, 2, 3];
    let parts = leaders
        .iter()
        .map(|l| PartitionPlacement {
            leader: *l,
            leader_epoch: 0,
            replicas: vec![*l],
            isr: vec![*l],
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        })
        .collect();
    // The groups' coordinators (committed offsets) are on this node.
    let offsets_partitions = broker.topic(OFFSETS_TOPIC).unwrap().partitions().len();
    let coordinators = vec![
        PartitionPlacement {
            leader: 1,
            leader_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
            partition_epoch: 0,
            adding: vec![],
            removing: vec![]
        };
        offsets_partitions
    ];
    broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1), node(2), node(3)],
        fenced: Vec::new(),
        topics: HashMap::from([
            ("t".to_string(), parts),
            (OFFSETS_TOPIC.to_string(), coordinators.clone()),
            // So are the pop queues' shards.
            (POP_TOPIC.to_string(), coordinators[..broker.topic(POP_TOPIC).unwrap().partitions().len()].to_vec()),
        ]),
        controllers: vec![1, 2, 3],
    });
    let messaging = Messaging::open(broker.clone(), MessagingConfig::default()).await.unwrap();
    messaging.start();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let grpc = GrpcConfig { endpoint: addr.clone(), broker_name: "broker-1".into(), ..Default::default() };
    let gw = GrpcGateway::new(messaging, grpc);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(fjord_rocketmq_grpc::serve(fjord_net::Acceptor::with_default_caps(listener, "rocketmq_grpc"), gw, rx));
    let client = MessagingServiceClient::connect(format!("http://{addr}")).await.unwrap();
    (client, broker, stop, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_name_every_broker_and_this_node_serves_its_own_queues() {
    let (mut c, broker, _stop, _dir) = node_one().await;
    let route =
        c.query_route(v2::QueryRouteRequest { topic: resource("t"), endpoints: None }).await.unwrap().into_inner();
    assert_eq!(code(&route.status), Code::Ok);
    let queues: Vec<(String, i32, String)> = route
        .message_queues
        .iter()
        .map(|q| {
            let b = q.broker.as_ref().unwrap();
            let host = &b.endpoints.as_ref().unwrap().addresses[0].host;
            (b.name.clone(), q.id, host.clone())
        })
        .collect();
    let want: Vec<(String, i32, String)> =
        (1..=3).flat_map(|n| (0..2).map(move |q| (format!("broker-{n}"), q, format!("10.0.0.{n}")))).collect();
    assert_eq!(queues, want);

    let assigned = c
        .query_assignment(v2::QueryAssignmentRequest { topic: resource("t"), group: resource("g"), endpoints: None })
        .await
        .unwrap()
        .into_inner();
    let brokers: Vec<String> = assigned
        .assignments
        .iter()
        .map(|a| a.message_queue.as_ref().unwrap().broker.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(brokers, ["broker-1", "broker-2", "broker-3"]);

    // Sends here land on the partitions this node leads (0 and 3) only.
    for i in 0..8 {
        let msg = v2::Message {
            topic: resource("t"),
            user_properties: Default::default(),
            system_properties: Some(v2::SystemProperties {
                message_id: format!("id-{i}"),
                message_type: v2::MessageType::Normal as i32,
                ..Default::default()
            }),
            body: format!("m{i}").into_bytes(),
        };
        let sent = c.send_message(v2::SendMessageRequest { messages: vec![msg] }).await.unwrap().into_inner();
        assert_eq!(code(&sent.status), Code::Ok);
    }
    let ends: Vec<u64> =
        (0..6).map(|p| broker.partition(&TopicPartition::new("t", p)).unwrap().log_end_offset()).collect();
    assert_eq!(ends, [4, 0, 0, 4, 0, 0]);

    // Received messages carry this broker's queue ids (0 and 1).
    let mut req = fjord_rocketmq_proto::tonic::Request::new(v2::ReceiveMessageRequest {
        group: resource("g"),
        message_queue: assigned.assignments[0].message_queue.clone(),
        filter_expression: Some(v2::FilterExpression { r#type: v2::FilterType::Tag as i32, expression: "*".into() }),
        batch_size: 16,
        invisible_duration: Some(PDuration { seconds: 30, nanos: 0 }),
        auto_renew: false,
        long_polling_timeout: Some(PDuration { seconds: 1, nanos: 0 }),
        attempt_id: None,
    });
    req.metadata_mut().insert("x-mq-client-id", "cluster-test".parse().unwrap());
    let mut stream = c.receive_message(req).await.unwrap().into_inner();
    let mut queue_ids = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        if let Some(v2::receive_message_response::Content::Message(m)) = r.content {
            queue_ids.push(m.system_properties.unwrap().queue_id);
        }
    }
    queue_ids.sort_unstable();
    queue_ids.dedup();
    assert_eq!(queue_ids, [0, 1]);

    // Queue 1 of this broker is partition 3; queue 2 does not exist here.
    let q = |id: i32| v2::QueryOffsetRequest {
        message_queue: Some(v2::MessageQueue {
            topic: resource("t"),
            id,
            permission: 0,
            broker: None,
            accept_message_types: vec![],
        }),
        query_offset_policy: v2::QueryOffsetPolicy::End as i32,
        timestamp: None,
    };
    let end = c.query_offset(q(1)).await.unwrap().into_inner();
    assert_eq!((code(&end.status), end.offset), (Code::Ok, 4));
    let missing = c.query_offset(q(2)).await.unwrap().into_inner();
    assert_eq!(code(&missing.status), Code::HaNotAvailable);
}
