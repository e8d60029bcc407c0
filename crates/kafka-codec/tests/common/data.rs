//! Builders of the data-path and discovery requests.

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic, ForgottenTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeClusterRequest, FindCoordinatorRequest, InitProducerIdRequest, ProducerId,
    TransactionalId,
};

use super::Gen;

pub(super) fn produce(v: i16, g: &mut Gen) -> ProduceRequest {
    let flex = v >= 9;
    let mut r = ProduceRequest::default();
    r.transactional_id = g.opt(|g| TransactionalId(g.str()));
    r.acks = g.i16();
    r.timeout_ms = g.i32();
    r.topic_data = g.vec(|g| {
        let mut t = TopicProduceData::default();
        if v <= 12 {
            t.name = g.topic();
        } else {
            t.topic_id = g.uuid();
        }
        t.partition_data = g.vec(|g| {
            let mut p = PartitionProduceData::default();
            p.index = g.i32();
            p.records = g.opt(Gen::bytes);
            p.unknown_tagged_fields = g.tags(flex);
            p
        });
        t.unknown_tagged_fields = g.tags(flex);
        t
    });
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn fetch(v: i16, g: &mut Gen) -> FetchRequest {
    let flex = v >= 12;
    let mut r = FetchRequest::default();
    if flex {
        r.cluster_id = g.opt(Gen::str);
    }
    if v <= 14 {
        r.replica_id = g.broker();
    } else {
        let mut s = ReplicaState::default();
        s.replica_id = g.broker();
        s.replica_epoch = g.i64();
        s.unknown_tagged_fields = g.tags(flex);
        r.replica_state = s;
    }
    r.max_wait_ms = g.i32();
    r.min_bytes = g.i32();
    r.max_bytes = g.i32();
    r.isolation_level = g.i8();
    if v >= 7 {
        r.session_id = g.i32();
        r.session_epoch = g.i32();
    }
    r.topics = g.vec(|g| {
        let mut t = FetchTopic::default();
        if v <= 12 {
            t.topic = g.topic();
        } else {
            t.topic_id = g.uuid();
        }
        t.partitions = g.vec(|g| {
            let mut p = FetchPartition::default();
            p.partition = g.i32();
            if v >= 9 {
                p.current_leader_epoch = g.i32();
            }
            p.fetch_offset = g.i64();
            if v >= 12 {
                p.last_fetched_epoch = g.i32();
            }
            if v >= 5 {
                p.log_start_offset = g.i64();
            }
            p.partition_max_bytes = g.i32();
            if v >= 17 {
                p.replica_directory_id = g.uuid();
            }
            if v >= 18 {
                p.high_watermark = g.i64();
            }
            p.unknown_tagged_fields = g.tags(flex);
            p
        });
        t.unknown_tagged_fields = g.tags(flex);
        t
    });
    if v >= 7 {
        r.forgotten_topics_data = g.vec(|g| {
            let mut t = ForgottenTopic::default();
            if v <= 12 {
                t.topic = g.topic();
            } else {
                t.topic_id = g.uuid();
            }
            t.partitions = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(flex);
            t
        });
    }
    if v >= 11 {
        r.rack_id = g.str();
    }
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn list_offsets(v: i16, g: &mut Gen) -> ListOffsetsRequest {
    let flex = v >= 6;
    let mut r = ListOffsetsRequest::default();
    r.replica_id = g.broker();
    if v >= 2 {
        r.isolation_level = g.i8();
    }
    r.topics = g.vec(|g| {
        let mut t = ListOffsetsTopic::default();
        t.name = g.topic();
        t.partitions = g.vec(|g| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = g.i32();
            if v >= 4 {
                p.current_leader_epoch = g.i32();
            }
            p.timestamp = g.i64();
            p.unknown_tagged_fields = g.tags(flex);
            p
        });
        t.unknown_tagged_fields = g.tags(flex);
        t
    });
    if v >= 10 {
        r.timeout_ms = g.i32();
    }
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn metadata(v: i16, g: &mut Gen) -> MetadataRequest {
    let flex = v >= 9;
    let mut r = MetadataRequest::default();
    r.topics = g.opt_if(v >= 1, |g| {
        g.vec(|g| {
            let mut t = MetadataRequestTopic::default();
            if v >= 10 {
                t.topic_id = g.uuid();
            }
            t.name = g.opt_if(v >= 10, Gen::topic);
            t.unknown_tagged_fields = g.tags(flex);
            t
        })
    });
    if v >= 4 {
        r.allow_auto_topic_creation = g.bool();
    }
    if (8..=10).contains(&v) {
        r.include_cluster_authorized_operations = g.bool();
    }
    if v >= 8 {
        r.include_topic_authorized_operations = g.bool();
    }
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn api_versions(v: i16, g: &mut Gen) -> ApiVersionsRequest {
    let mut r = ApiVersionsRequest::default();
    if v >= 3 {
        r.client_software_name = g.str();
        r.client_software_version = g.str();
    }
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

pub(super) fn find_coordinator(v: i16, g: &mut Gen) -> FindCoordinatorRequest {
    let mut r = FindCoordinatorRequest::default();
    if v <= 3 {
        r.key = g.str();
    } else {
        r.coordinator_keys = g.vec(Gen::str);
    }
    if v >= 1 {
        r.key_type = g.i8();
    }
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

pub(super) fn delete_records(v: i16, g: &mut Gen) -> DeleteRecordsRequest {
    let flex = v >= 2;
    let mut r = DeleteRecordsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = DeleteRecordsTopic::default();
        t.name = g.topic();
        t.partitions = g.vec(|g| {
            let mut p = DeleteRecordsPartition::default();
            p.partition_index = g.i32();
            p.offset = g.i64();
            p.unknown_tagged_fields = g.tags(flex);
            p
        });
        t.unknown_tagged_fields = g.tags(flex);
        t
    });
    r.timeout_ms = g.i32();
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn init_producer_id(v: i16, g: &mut Gen) -> InitProducerIdRequest {
    let mut r = InitProducerIdRequest::default();
    r.transactional_id = g.opt(|g| TransactionalId(g.str()));
    r.transaction_timeout_ms = g.i32();
    if v >= 3 {
        r.producer_id = ProducerId(g.i64());
        r.producer_epoch = g.i16();
    }
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

pub(super) fn describe_cluster(v: i16, g: &mut Gen) -> DescribeClusterRequest {
    let mut r = DescribeClusterRequest::default();
    r.include_cluster_authorized_operations = g.bool();
    if v >= 1 {
        r.endpoint_type = g.i8();
    }
    if v >= 2 {
        r.include_fenced_brokers = g.bool();
    }
    r.unknown_tagged_fields = g.tags(true);
    r
}

pub(super) fn offset_for_leader_epoch(v: i16, g: &mut Gen) -> OffsetForLeaderEpochRequest {
    let mut r = OffsetForLeaderEpochRequest::default();
    if v >= 3 {
        r.replica_id = g.broker();
    }
    r.topics = g.vec(|g| {
        let mut t = OffsetForLeaderTopic::default();
        t.topic = g.topic();
        t.partitions = g.vec(|g| {
            let mut p = OffsetForLeaderPartition::default();
            p.partition = g.i32();
            p.current_leader_epoch = g.i32();
            p.leader_epoch = g.i32();
            p.unknown_tagged_fields = g.tags(v >= 4);
            p
        });
        t.unknown_tagged_fields = g.tags(v >= 4);
        t
    });
    r.unknown_tagged_fields = g.tags(v >= 4);
    r
}
