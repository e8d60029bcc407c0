//! Builders of the consumer-group requests.

use kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::consumer_group_heartbeat_request::{ConsumerGroupHeartbeatRequest, TopicPartitions};
use kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use kafka_protocol::messages::{DeleteGroupsRequest, DescribeGroupsRequest, HeartbeatRequest, ListGroupsRequest};

use super::Gen;

pub(super) fn offset_commit(v: i16, g: &mut Gen) -> OffsetCommitRequest {
    let flex = v >= 8;
    let mut r = OffsetCommitRequest::default();
    r.group_id = g.group();
    r.generation_id_or_member_epoch = g.i32();
    r.member_id = g.str();
    if v >= 7 {
        r.group_instance_id = g.opt(Gen::str);
    }
    if v <= 4 {
        r.retention_time_ms = g.i64();
    }
    r.topics = g.vec(|g| {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = g.topic();
        t.partitions = g.vec(|g| {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = g.i32();
            p.committed_offset = g.i64();
            if v >= 6 {
                p.committed_leader_epoch = g.i32();
            }
            p.committed_metadata = g.opt(Gen::str);
            p.unknown_tagged_fields = g.tags(flex);
            p
        });
        t.unknown_tagged_fields = g.tags(flex);
        t
    });
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn offset_fetch(v: i16, g: &mut Gen) -> OffsetFetchRequest {
    let flex = v >= 6;
    let mut r = OffsetFetchRequest::default();
    if v <= 7 {
        r.group_id = g.group();
        r.topics = g.opt_if(v >= 2, |g| {
            g.vec(|g| {
                let mut t = OffsetFetchRequestTopic::default();
                t.name = g.topic();
                t.partition_indexes = g.vec(Gen::i32);
                t.unknown_tagged_fields = g.tags(flex);
                t
            })
        });
    } else {
        r.groups = g.vec(|g| {
            let mut gr = OffsetFetchRequestGroup::default();
            gr.group_id = g.group();
            if v >= 9 {
                gr.member_id = g.opt(Gen::str);
                gr.member_epoch = g.i32();
            }
            gr.topics = g.opt(|g| {
                g.vec(|g| {
                    let mut t = OffsetFetchRequestTopics::default();
                    t.name = g.topic();
                    t.partition_indexes = g.vec(Gen::i32);
                    t.unknown_tagged_fields = g.tags(flex);
                    t
                })
            });
            gr.unknown_tagged_fields = g.tags(flex);
            gr
        });
    }
    if v >= 7 {
        r.require_stable = g.bool();
    }
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn join_group(v: i16, g: &mut Gen) -> JoinGroupRequest {
    let flex = v >= 6;
    let mut r = JoinGroupRequest::default();
    r.group_id = g.group();
    r.session_timeout_ms = g.i32();
    if v >= 1 {
        r.rebalance_timeout_ms = g.i32();
    }
    r.member_id = g.str();
    if v >= 5 {
        r.group_instance_id = g.opt(Gen::str);
    }
    r.protocol_type = g.str();
    r.protocols = g.vec(|g| {
        let mut p = JoinGroupRequestProtocol::default();
        p.name = g.str();
        p.metadata = g.bytes();
        p.unknown_tagged_fields = g.tags(flex);
        p
    });
    if v >= 8 {
        r.reason = g.opt(Gen::str);
    }
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn heartbeat(v: i16, g: &mut Gen) -> HeartbeatRequest {
    let mut r = HeartbeatRequest::default();
    r.group_id = g.group();
    r.generation_id = g.i32();
    r.member_id = g.str();
    if v >= 3 {
        r.group_instance_id = g.opt(Gen::str);
    }
    r.unknown_tagged_fields = g.tags(v >= 4);
    r
}

pub(super) fn leave_group(v: i16, g: &mut Gen) -> LeaveGroupRequest {
    let flex = v >= 4;
    let mut r = LeaveGroupRequest::default();
    r.group_id = g.group();
    if v <= 2 {
        r.member_id = g.str();
    } else {
        r.members = g.vec(|g| {
            let mut m = MemberIdentity::default();
            m.member_id = g.str();
            m.group_instance_id = g.opt(Gen::str);
            if v >= 5 {
                m.reason = g.opt(Gen::str);
            }
            m.unknown_tagged_fields = g.tags(flex);
            m
        });
    }
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn sync_group(v: i16, g: &mut Gen) -> SyncGroupRequest {
    let flex = v >= 4;
    let mut r = SyncGroupRequest::default();
    r.group_id = g.group();
    r.generation_id = g.i32();
    r.member_id = g.str();
    if v >= 3 {
        r.group_instance_id = g.opt(Gen::str);
    }
    if v >= 5 {
        r.protocol_type = g.opt(Gen::str);
        r.protocol_name = g.opt(Gen::str);
    }
    r.assignments = g.vec(|g| {
        let mut a = SyncGroupRequestAssignment::default();
        a.member_id = g.str();
        a.assignment = g.bytes();
        a.unknown_tagged_fields = g.tags(flex);
        a
    });
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn describe_groups(v: i16, g: &mut Gen) -> DescribeGroupsRequest {
    let mut r = DescribeGroupsRequest::default();
    r.groups = g.vec(Gen::group);
    if v >= 3 {
        r.include_authorized_operations = g.bool();
    }
    r.unknown_tagged_fields = g.tags(v >= 5);
    r
}

pub(super) fn list_groups(v: i16, g: &mut Gen) -> ListGroupsRequest {
    let mut r = ListGroupsRequest::default();
    if v >= 4 {
        r.states_filter = g.vec(Gen::str);
    }
    if v >= 5 {
        r.types_filter = g.vec(Gen::str);
    }
    r.unknown_tagged_fields = g.tags(v >= 3);
    r
}

pub(super) fn delete_groups(v: i16, g: &mut Gen) -> DeleteGroupsRequest {
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = g.vec(Gen::group);
    r.unknown_tagged_fields = g.tags(v >= 2);
    r
}

pub(super) fn offset_delete(g: &mut Gen) -> OffsetDeleteRequest {
    let mut r = OffsetDeleteRequest::default();
    r.group_id = g.group();
    r.topics = g.vec(|g| {
        let mut t = OffsetDeleteRequestTopic::default();
        t.name = g.topic();
        t.partitions = g.vec(|g| {
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = g.i32();
            p
        });
        t
    });
    r
}

pub(super) fn consumer_group_heartbeat(v: i16, g: &mut Gen) -> ConsumerGroupHeartbeatRequest {
    let mut r = ConsumerGroupHeartbeatRequest::default();
    r.group_id = g.group();
    r.member_id = g.str();
    r.member_epoch = g.i32();
    r.instance_id = g.opt(Gen::str);
    r.rack_id = g.opt(Gen::str);
    r.rebalance_timeout_ms = g.i32();
    r.subscribed_topic_names = g.opt(|g| g.vec(Gen::topic));
    if v >= 1 {
        r.subscribed_topic_regex = g.opt(Gen::str);
    }
    r.server_assignor = g.opt(Gen::str);
    r.topic_partitions = g.opt(|g| {
        g.vec(|g| {
            let mut t = TopicPartitions::default();
            t.topic_id = g.uuid();
            t.partitions = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(true);
            t
        })
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

pub(super) fn consumer_group_describe(g: &mut Gen) -> ConsumerGroupDescribeRequest {
    let mut r = ConsumerGroupDescribeRequest::default();
    r.group_ids = g.vec(Gen::group);
    r.include_authorized_operations = g.bool();
    r.unknown_tagged_fields = g.tags(true);
    r
}
