//! The Kafka gateway of one node of a cluster, with the placement the
//! cluster layer installs: requests for partitions led elsewhere get
//! NOT_LEADER_OR_FOLLOWER naming the leader (KIP-951), Metadata and
//! DescribeCluster list every node and the controller, a partition whose
//! leader is down reports LEADER_NOT_AVAILABLE, group requests go to the
//! coordinator FindCoordinator names, and requests are fenced by the
//! cluster's leader epoch.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::placement::OFFSETS_TOPIC;
use fjord_broker::{Broker, BrokerConfig, NodeInfo, PartitionPlacement, Placement, TopicConfig};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

fn node(id: i32, port: u16) -> NodeInfo {
    NodeInfo {
        node_id: id,
        listeners: BTreeMap::from([("kafka".to_string(), format!("10.0.0.{id}:{port}"))]),
        rack: Some(format!("rack-{id}")),
    }
}

fn led(leaders: &[i32]) -> Vec<PartitionPlacement> {
    leaders
        .iter()
        .map(|l| PartitionPlacement {
            leader: *l,
            leader_epoch: 3,
            replicas: vec![*l],
            isr: vec![*l],
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        })
        .collect()
}

async fn call<Req: Encodable, Resp: Decodable>(gw: &KafkaGateway, key: ApiKey, v: i16, req: &Req) -> Resp {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("routing-test")))
        .encode(&mut b, key.request_header_version(v))
        .unwrap();
    req.encode(&mut b, v).unwrap();
    let out = gw.handle_frame(b.freeze(), "127.0.0.1").await.unwrap().unwrap();
    let mut body = out.slice(4..);
    ResponseHeader::decode(&mut body, key.response_header_version(v)).unwrap();
    Resp::decode(&mut body, v).unwrap()
}

fn batch() -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    b.push(&NewRecord { value: Some(Bytes::from_static(b"v")), ..Default::default() });
    b.build().freeze()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Node 1 of a 3-node cluster: it leads partition 0 of `t`, node 2 leads
/// partition 1, node 3 (fenced: not among the nodes) leads partition 2.
async fn node_one() -> (tempfile::TempDir, Arc<Broker>, Arc<KafkaGateway>) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { node_id: 1, ..BrokerConfig::new(dir.path()) };
    let broker = Broker::open(config, Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("t", 3, TopicConfig::default()).await.unwrap();
    broker.set_advertised_listener("kafka", "10.0.0.1:9092".into());
    let mut topics = HashMap::from([("t".to_string(), led(&[1, 2, 3]))]);
    // Two coordinator partitions: one led here, one by node 2.
    topics.insert(OFFSETS_TOPIC.to_string(), led(&[1, 2]));
    broker.set_placement(Placement {
        controller_id: 2,
        nodes: vec![node(1, 9092), node(2, 9093)],
        fenced: vec![node(3, 9094)],
        topics,
        controllers: vec![1, 2, 3],
    });
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    (dir, broker, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_another_nodes_partition_names_its_leader() {
    let (_dir, broker, gw) = node_one().await;
    let req = |p: i32| {
        ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
            produce_request::TopicProduceData::default().with_name(name("t")).with_partition_data(vec![
                produce_request::PartitionProduceData::default().with_index(p).with_records(Some(batch())),
            ]),
        ])
    };
    let ok: ProduceResponse = call(&gw, ApiKey::Produce, 11, &req(0)).await;
    assert_eq!(ok.responses[0].partition_responses[0].error_code, 0);
    assert!(ok.node_endpoints.is_empty());

    let moved: ProduceResponse = call(&gw, ApiKey::Produce, 11, &req(1)).await;
    let p = &moved.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!((p.current_leader.leader_id.0, p.current_leader.leader_epoch), (2, 3));
    let ep = &moved.node_endpoints[0];
    assert_eq!((ep.node_id.0, ep.host.as_str(), ep.port), (2, "10.0.0.2", 9093));
    assert_eq!(ep.rack.as_deref(), Some("rack-2"));

    // Led by a fenced node: the same error, no leader to name.
    let down: ProduceResponse = call(&gw, ApiKey::Produce, 11, &req(2)).await;
    let p = &down.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.current_leader.leader_id.0), (6, -1));
    assert!(down.node_endpoints.is_empty());
    // Nothing was written locally for the refused partitions.
    assert_eq!(broker.partition(&fjord_broker::TopicPartition::new("t", 1)).unwrap().log_end_offset(), 0);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_list_offsets_are_served_by_the_leader_only() {
    let (_dir, broker, gw) = node_one().await;
    let fetch = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
        fetch_request::FetchTopic::default().with_topic(name("t")).with_partitions(
            (0..3)
                .map(|p| {
                    fetch_request::FetchPartition::default()
                        .with_partition(p)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)
                })
                .collect(),
        ),
    ]);
    // v16: topic names are gone (ids only) from v13; use v12 for names,
    // which carries current_leader but not node_endpoints.
    let r: FetchResponse = call(&gw, ApiKey::Fetch, 12, &fetch).await;
    let codes: Vec<(i16, i32)> =
        r.responses[0].partitions.iter().map(|p| (p.error_code, p.current_leader.leader_id.0)).collect();
    assert_eq!(codes, [(0, -1), (6, 2), (6, -1)]);

    let list = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default().with_name(name("t")).with_partitions(
            (0..3)
                .map(|p| {
                    list_offsets_request::ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1)
                })
                .collect(),
        ),
    ]);
    let r: ListOffsetsResponse = call(&gw, ApiKey::ListOffsets, 7, &list).await;
    let codes: Vec<i16> = r.topics[0].partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, [0, 6, 6]);
    broker.shutdown().await.unwrap();
}

/// The leader epoch the cluster gives this node's partitions (3 here, as
/// Metadata tells clients) is the one its batches carry and requests are
/// fenced by: an older one is FENCED_LEADER_EPOCH, a newer one
/// UNKNOWN_LEADER_EPOCH, the current one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_fenced_by_the_clusters_leader_epoch() {
    let (_dir, broker, gw) = node_one().await;
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
        produce_request::TopicProduceData::default().with_name(name("t")).with_partition_data(vec![
            produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch())),
        ]),
    ]);
    let r: ProduceResponse = call(&gw, ApiKey::Produce, 11, &produce).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let fetch = |epoch: i32| {
        FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
            fetch_request::FetchTopic::default().with_topic(name("t")).with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(epoch)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20),
            ]),
        ])
    };
    let codes = |r: FetchResponse| r.responses[0].partitions[0].error_code;
    assert_eq!(codes(call(&gw, ApiKey::Fetch, 12, &fetch(2)).await), 74, "FENCED_LEADER_EPOCH");
    assert_eq!(codes(call(&gw, ApiKey::Fetch, 12, &fetch(4)).await), 75, "UNKNOWN_LEADER_EPOCH");
    let served: FetchResponse = call(&gw, ApiKey::Fetch, 12, &fetch(3)).await;
    let p = &served.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    // The stored batch carries epoch 3 (partitionLeaderEpoch, bytes 12..16).
    let records = p.records.as_ref().expect("records");
    assert_eq!(i32::from_be_bytes(records[12..16].try_into().unwrap()), 3);
    let list = |epoch: i32| {
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default().with_name(name("t")).with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(epoch)
                    .with_timestamp(-1),
            ]),
        ])
    };
    let r: ListOffsetsResponse = call(&gw, ApiKey::ListOffsets, 7, &list(2)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 74);
    let r: ListOffsetsResponse = call(&gw, ApiKey::ListOffsets, 7, &list(3)).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.leader_epoch), (0, 1, 3));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_fenced_nodes_too_and_describe_cluster_the_serving_ones() {
    let (_dir, broker, gw) = node_one().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(name("t")))]));
    let r: MetadataResponse = call(&gw, ApiKey::Metadata, 12, &req).await;
    let brokers: Vec<(i32, String, i32)> =
        r.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
    // Node 3 is fenced: still listed (librdkafka drops brokers missing from
    // Metadata and cannot use a group coordinator it dropped), leading nothing.
    assert_eq!(brokers, [(1, "10.0.0.1".into(), 9092), (2, "10.0.0.2".into(), 9093), (3, "10.0.0.3".into(), 9094)]);
    assert_eq!(r.controller_id.0, 2);
    let parts: Vec<(i16, i32, i32)> =
        r.topics[0].partitions.iter().map(|p| (p.error_code, p.leader_id.0, p.leader_epoch)).collect();
    // LEADER_NOT_AVAILABLE (5) while partition 2's leader is fenced.
    assert_eq!(parts, [(0, 1, 3), (0, 2, 3), (5, -1, 3)]);

    let r: DescribeClusterResponse =
        call(&gw, ApiKey::DescribeCluster, 1, &DescribeClusterRequest::default().with_endpoint_type(1)).await;
    assert_eq!(r.controller_id.0, 2);
    assert_eq!(r.brokers.iter().map(|b| b.broker_id.0).collect::<Vec<_>>(), [1, 2]);
    broker.shutdown().await.unwrap();
}

/// A group coordinated by each node: the coordinator partition is chosen by
/// the group's hash, so search names until both kinds are found.
fn groups_by_coordinator(broker: &Broker) -> (String, String) {
    let (mut here, mut there) = (None, None);
    for i in 0.. {
        let g = format!("group-{i}");
        match broker.coordinator(&g) {
            fjord_broker::Leadership::Local => here = here.or(Some(g)),
            fjord_broker::Leadership::Remote(n) if n.node_id == 2 => there = there.or(Some(g)),
            other => panic!("unexpected coordinator {other:?}"),
        }
        if let (Some(h), Some(t)) = (&here, &there) {
            return (h.clone(), t.clone());
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_served_by_their_coordinator() {
    let (_dir, broker, gw) = node_one().await;
    let (here, there) = groups_by_coordinator(&broker);
    let find = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_string(here.clone()), StrBytes::from_string(there.clone())]);
    let r: FindCoordinatorResponse = call(&gw, ApiKey::FindCoordinator, 4, &find).await;
    let found: Vec<(i16, i32, String, i32)> =
        r.coordinators.iter().map(|c| (c.error_code, c.node_id.0, c.host.to_string(), c.port)).collect();
    assert_eq!(found, [(0, 1, "10.0.0.1".into(), 9092), (0, 2, "10.0.0.2".into(), 9093)]);

    let commit = |g: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(g.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default().with_name(name("t")).with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(0),
                ]),
            ])
    };
    let r: OffsetCommitResponse = call(&gw, ApiKey::OffsetCommit, 8, &commit(&here)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let r: OffsetCommitResponse = call(&gw, ApiKey::OffsetCommit, 8, &commit(&there)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 16, "NOT_COORDINATOR");
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(there)))
        .with_member_id(StrBytes::from_static_str("m"))
        .with_generation_id(1);
    let r: HeartbeatResponse = call(&gw, ApiKey::Heartbeat, 4, &hb).await;
    assert_eq!(r.error_code, 16);
    broker.shutdown().await.unwrap();
}

/// A node the placement has just made a coordinator, before its offsets
/// partition exists here: group requests get COORDINATOR_LOAD_IN_PROGRESS
/// (retriable), never an empty answer that would reset a consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_without_its_offsets_yet_says_it_is_loading() {
    let dir = tempfile::tempdir().unwrap();
    // A cluster node: the offsets topic comes from the controller, later.
    let config = BrokerConfig { node_id: 1, cluster_id: Some("c".into()), ..BrokerConfig::new(dir.path()) };
    let broker = Broker::open(config, Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1, 9092)],
        fenced: Vec::new(),
        topics: HashMap::from([("t".to_string(), led(&[1])), (OFFSETS_TOPIC.to_string(), led(&[1]))]),
        controllers: vec![1],
    });
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    let fetch =
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("t"))
                .with_partition_indexes(vec![0]),
        ]));
    let r: OffsetFetchResponse = call(&gw, ApiKey::OffsetFetch, 7, &fetch).await;
    assert_eq!(r.error_code, 14, "COORDINATOR_LOAD_IN_PROGRESS");
    broker.shutdown().await.unwrap();
}
