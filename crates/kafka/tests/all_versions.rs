//! Every advertised API in every advertised version, through the real
//! handlers of an in-process gateway: requests built and encoded by
//! `kafka-protocol` (as a client would), responses that must encode in the
//! request's version and decode again. Catches fields set that do not
//! exist in older versions, which `kafka-protocol` refuses to encode.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::SUPPORTED_APIS;
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn tn(v: &str) -> TopicName {
    TopicName(s(v))
}

fn batch() -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    b.push(&NewRecord {
        timestamp: None,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: vec![],
    });
    b.build().freeze()
}

/// A request of `api` in version `v` that touches topic `t` (id `id`).
fn request(api: ApiKey, v: i16, id: uuid::Uuid) -> RequestKind {
    match api {
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(if v >= 3 { s("test") } else { StrBytes::default() })
                .with_client_software_version(if v >= 3 { s("1") } else { StrBytes::default() }),
        ),
        ApiKey::Metadata => {
            let topic = metadata_request::MetadataRequestTopic::default().with_name(Some(tn("t")));
            RequestKind::Metadata(
                MetadataRequest::default().with_topics(Some(vec![topic])).with_allow_auto_topic_creation(true),
            )
        }
        ApiKey::Produce => {
            let part = produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch()));
            let topic = if v >= 13 {
                produce_request::TopicProduceData::default().with_topic_id(id)
            } else {
                produce_request::TopicProduceData::default().with_name(tn("t"))
            };
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(1000)
                    .with_topic_data(vec![topic.with_partition_data(vec![part])]),
            )
        }
        ApiKey::Fetch => {
            let part = fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20);
            let topic = if v >= 13 {
                fetch_request::FetchTopic::default().with_topic_id(id)
            } else {
                fetch_request::FetchTopic::default().with_topic(tn("t"))
            };
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_min_bytes(0)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![topic.with_partitions(vec![part])]),
            )
        }
        ApiKey::ListOffsets => {
            let parts = [-1i64, -2, -3, 0]
                .into_iter()
                .filter(|ts| *ts != -3 || v >= 7)
                .map(|ts| {
                    list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts)
                })
                .collect();
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default().with_name(tn("t")).with_partitions(parts),
            ]))
        }
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default().with_name(tn("t")).with_partitions(
                        vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1)
                                .with_committed_metadata(Some(s("m"))),
                        ],
                    ),
                ]),
        ),
        ApiKey::OffsetFetch if v >= 8 => RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(GroupId(s("g"))).with_topics(Some(
                vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(tn("t"))
                            .with_partition_indexes(vec![0]),
                    ],
            )),
        ])),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default().with_group_id(GroupId(s("g"))).with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(tn("t"))
                    .with_partition_indexes(vec![0]),
            ])),
        ),
        ApiKey::FindCoordinator if v >= 4 => {
            RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]))
        }
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(s("g"))),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(&format!("jg-{v}"))))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if v >= 1 { 10_000 } else { -1 })
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0])),
                ]),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("jg-0")))
                .with_member_id(s("nobody"))
                .with_generation_id(1),
        ),
        ApiKey::LeaveGroup if v >= 3 => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("jg-0")))
                .with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(s("nobody"))]),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default().with_group_id(GroupId(s("jg-0"))).with_member_id(s("nobody")),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("jg-0")))
                .with_member_id(s("nobody"))
                .with_generation_id(1),
        ),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![
            GroupId(s("g")),
            GroupId(s("jg-0")),
            GroupId(s("none")),
        ])),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(tn(&format!("ct-{v}")))
                    .with_num_partitions(2)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("1000"))),
                    ]),
                create_topics_request::CreatableTopic::default()
                    .with_name(tn("t"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ])),
        ApiKey::DeleteTopics if v >= 6 => RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_name(Some(tn(&format!("ct-{}", v + 1)))),
            delete_topics_request::DeleteTopicState::default().with_topic_id(uuid::Uuid::new_v4()),
        ])),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![tn(&format!("ct-{}", v + 1)), tn("none")]),
        ),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default().with_name(tn("t")).with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(0),
            ]),
        ])),
        ApiKey::InitProducerId => {
            RequestKind::InitProducerId(InitProducerIdRequest::default().with_transaction_timeout_ms(1000))
        }
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t")),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("0")),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("none")),
            ]))
        }
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_validate_only(true).with_topics(
                vec![create_partitions_request::CreatePartitionsTopic::default().with_name(tn("t")).with_count(2)],
            ))
        }
        ApiKey::DeleteGroups => {
            RequestKind::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("none"))]))
        }
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(s("86400000"))),
                    ]),
            ]))
        }
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s(&(100_000 + i64::from(v)).to_string()))),
                    ]),
            ])),
        ApiKey::OffsetDelete => {
            RequestKind::OffsetDelete(OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default().with_name(tn("t")).with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0),
                ]),
            ]))
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        // A single node (id 0) moving t-0 to itself: a no-op that succeeds.
        ApiKey::AlterPartitionReassignments => {
            RequestKind::AlterPartitionReassignments(AlterPartitionReassignmentsRequest::default().with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default().with_name(tn("t")).with_partitions(
                    vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_partition_index(0)
                            .with_replicas(Some(vec![BrokerId(0)])),
                    ],
                ),
            ]))
        }
        // Epoch 0 of t-0 ends at its log end (the leader's current epoch).
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default().with_topic(tn("t")).with_partitions(
                    vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(0)
                            .with_leader_epoch(0),
                    ],
                ),
            ]))
        }
        // A single node leads t-0 already.
        ApiKey::ElectLeaders => {
            RequestKind::ElectLeaders(ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default().with_topic(tn("t")).with_partitions(vec![0]),
            ])))
        }
        ApiKey::ListPartitionReassignments => {
            RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default())
        }
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(&format!("cg-{v}"))))
                .with_member_id(if v >= 1 { s(&uuid::Uuid::new_v4().to_string()) } else { StrBytes::default() })
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![tn("t")]))
                .with_topic_partitions(Some(vec![])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("cg-0")), GroupId(s("none"))]),
        ),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![describe_topic_partitions_request::TopicRequest::default().with_name(tn("t"))])
                .with_response_partition_limit(1),
        ),
        other => panic!("no request builder for {other:?}"),
    }
}

fn frame(api: ApiKey, v: i16, correlation_id: i32, req: &RequestKind) -> Bytes {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(v)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("all-versions")))
        .encode(&mut b, api.request_header_version(v))
        .unwrap();
    req.encode(&mut b, v).unwrap();
    b.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_in_every_advertised_version_answers_in_that_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.groups.initial_rebalance_delay = std::time::Duration::ZERO;
    let broker = Broker::open(config, Arc::new(SystemClock)).await.unwrap();
    let topic = broker.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    let mut correlation = 0;
    for &(api, min, max) in SUPPORTED_APIS {
        for v in min..=max {
            correlation += 1;
            let req = request(api, v, topic.id());
            let bytes = frame(api, v, correlation, &req);
            let out = gw
                .handle_frame(bytes, "127.0.0.1")
                .await
                .unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"))
                .unwrap_or_else(|| panic!("{api:?} v{v}: no response"));
            let mut body = out.slice(4..);
            assert_eq!(
                i32::from_be_bytes(out[..4].try_into().unwrap()) as usize,
                body.len(),
                "{api:?} v{v}: size prefix"
            );
            let header = ResponseHeader::decode(&mut body, api.response_header_version(v)).unwrap();
            assert_eq!(header.correlation_id, correlation, "{api:?} v{v}");
            let resp = ResponseKind::decode(api, &mut body, v).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
            check(api, v, &resp);
        }
    }
    broker.shutdown().await.unwrap();
}

/// Spot checks that the handlers did the work, not just produced bytes.
fn check(api: ApiKey, v: i16, resp: &ResponseKind) {
    match resp {
        ResponseKind::ApiVersions(r) => {
            assert_eq!(r.error_code, 0);
            assert_eq!(r.api_keys.len(), SUPPORTED_APIS.len(), "v{v}");
        }
        ResponseKind::AlterPartitionReassignments(r) => {
            let p = &r.responses[0].partitions[0];
            assert_eq!((r.error_code, p.error_code), (0, 0), "v{v}: {:?}", p.error_message);
        }
        ResponseKind::OffsetForLeaderEpoch(r) => {
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.error_code, p.leader_epoch), (0, 0), "v{v}");
            assert!(p.end_offset >= 0, "v{v}");
        }
        ResponseKind::ElectLeaders(r) => {
            let p = &r.replica_election_results[0].partition_result[0];
            assert_eq!(p.error_code, 84, "v{v}: ELECTION_NOT_NEEDED, {:?}", p.error_message);
        }
        ResponseKind::ListPartitionReassignments(r) => assert!(r.error_code == 0 && r.topics.is_empty(), "v{v}"),
        ResponseKind::Metadata(r) => {
            assert_eq!(r.topics.len(), 1);
            assert_eq!(r.topics[0].error_code, 0, "v{v}");
            assert_eq!(r.topics[0].partitions.len(), 1, "v{v}");
        }
        ResponseKind::Produce(r) => {
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "v{v}: {:?}", p.error_message);
            assert!(p.base_offset >= 0);
        }
        ResponseKind::Fetch(r) => {
            let p = &r.responses[0].partitions[0];
            assert!(p.error_code == 0 || p.error_code == 1, "v{v}: {}", p.error_code);
        }
        ResponseKind::ListOffsets(r) => {
            for p in &r.topics[0].partitions {
                assert_eq!(p.error_code, 0, "v{v}: {r:?}");
            }
        }
        ResponseKind::CreateTopics(r) => {
            assert_eq!(r.topics[0].error_code, 0, "v{v}: {:?}", r.topics[0].error_message);
            assert_eq!(r.topics[1].error_code, 36, "v{v}: 't' exists");
        }
        // CreateTopics v2..=7 made ct-2..=ct-7; DeleteTopics v1..=6 removes ct-(v+1).
        ResponseKind::DeleteTopics(r) => {
            assert_eq!(r.responses[0].error_code, 0, "v{v}");
            assert_ne!(r.responses[1].error_code, 0, "v{v}");
        }
        ResponseKind::FindCoordinator(r) => {
            let node = if v >= 4 { r.coordinators[0].node_id.0 } else { r.node_id.0 };
            assert_eq!(node, 0);
        }
        ResponseKind::InitProducerId(r) => {
            assert_eq!(r.error_code, 0);
            assert!(r.producer_id.0 >= 0);
        }
        ResponseKind::JoinGroup(r) => {
            // v4+ first asks for a member id; older versions join at once.
            let expected = if v >= 4 { 79 } else { 0 };
            assert_eq!(r.error_code, expected, "v{v}");
        }
        ResponseKind::AlterConfigs(r) => {
            assert_eq!(r.responses[0].error_code, 0, "v{v}: {:?}", r.responses[0].error_message)
        }
        ResponseKind::ConsumerGroupHeartbeat(r) => {
            assert_eq!(r.error_code, 0, "v{v}: {:?}", r.error_message);
            assert_eq!(r.member_epoch, 1, "v{v}");
        }
        _ => {}
    }
    let _ = api;
}

/// Views of a cluster's placement: DescribeCluster lists fenced nodes only
/// when v2 asks (flagged), and DescribeTopicPartitions shows the
/// placement's replicas and in-sync set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_and_topic_partitions_follow_the_placement() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    let node = |id| fjord_broker::NodeInfo { node_id: id, listeners: Default::default(), rack: None };
    let part = fjord_broker::PartitionPlacement {
        leader: 0,
        leader_epoch: 4,
        replicas: vec![0, 7, 8],
        isr: vec![0, 8],
        partition_epoch: 9,
        adding: vec![],
        removing: vec![],
    };
    broker.set_placement(fjord_broker::Placement {
        controller_id: 0,
        nodes: vec![node(0), node(8)],
        fenced: vec![node(7)],
        controllers: vec![0],
        topics: [("t".to_string(), vec![part])].into(),
    });
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    let ask = |api: ApiKey, v: i16, req: RequestKind| {
        let gw = &gw;
        async move {
            let out = gw.handle_frame(frame(api, v, 1, &req), "127.0.0.1").await.unwrap().unwrap();
            let mut body = out.slice(4..);
            ResponseHeader::decode(&mut body, api.response_header_version(v)).unwrap();
            ResponseKind::decode(api, &mut body, v).unwrap()
        }
    };
    for include in [false, true] {
        let req = DescribeClusterRequest::default().with_endpoint_type(1).with_include_fenced_brokers(include);
        let ResponseKind::DescribeCluster(r) = ask(ApiKey::DescribeCluster, 2, RequestKind::DescribeCluster(req)).await
        else {
            panic!("not a DescribeCluster response")
        };
        let listed: Vec<(i32, bool)> = r.brokers.iter().map(|b| (b.broker_id.0, b.is_fenced)).collect();
        let expected = if include { vec![(0, false), (8, false), (7, true)] } else { vec![(0, false), (8, false)] };
        assert_eq!(listed, expected);
    }
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![describe_topic_partitions_request::TopicRequest::default().with_name(tn("t"))])
        .with_response_partition_limit(10);
    let ResponseKind::DescribeTopicPartitions(r) =
        ask(ApiKey::DescribeTopicPartitions, 0, RequestKind::DescribeTopicPartitions(req)).await
    else {
        panic!("not a DescribeTopicPartitions response")
    };
    let p = &r.topics[0].partitions[0];
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    assert_eq!((p.leader_id.0, p.leader_epoch), (0, 4));
    assert_eq!((ids(&p.replica_nodes), ids(&p.isr_nodes)), (vec![0, 7, 8], vec![0, 8]));
    assert!(r.next_cursor.is_none());
    broker.shutdown().await.unwrap();
}
