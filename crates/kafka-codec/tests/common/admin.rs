//! Builders of the administration requests.

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::messages::describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource};
use kafka_protocol::messages::elect_leaders_request::{ElectLeadersRequest, TopicPartitions};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};

use kafka_protocol::messages::alter_configs_request::{self, AlterConfigsRequest};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_topic_partitions_request::{
    Cursor, DescribeTopicPartitionsRequest, TopicRequest,
};
use kafka_protocol::messages::list_partition_reassignments_request::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsTopics,
};

use super::Gen;

pub(super) fn create_topics(v: i16, g: &mut Gen) -> CreateTopicsRequest {
    let flex = v >= 5;
    let mut r = CreateTopicsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = CreatableTopic::default();
        t.name = g.topic();
        t.num_partitions = g.i32();
        t.replication_factor = g.i16();
        t.assignments = g.vec(|g| {
            let mut a = CreatableReplicaAssignment::default();
            a.partition_index = g.i32();
            a.broker_ids = g.vec(Gen::broker);
            a.unknown_tagged_fields = g.tags(flex);
            a
        });
        t.configs = g.vec(|g| {
            let mut c = CreatableTopicConfig::default();
            c.name = g.str();
            c.value = g.opt(Gen::str);
            c.unknown_tagged_fields = g.tags(flex);
            c
        });
        t.unknown_tagged_fields = g.tags(flex);
        t
    });
    r.timeout_ms = g.i32();
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn delete_topics(v: i16, g: &mut Gen) -> DeleteTopicsRequest {
    let flex = v >= 4;
    let mut r = DeleteTopicsRequest::default();
    if v >= 6 {
        r.topics = g.vec(|g| {
            let mut t = DeleteTopicState::default();
            t.name = g.opt(Gen::topic);
            t.topic_id = g.uuid();
            t.unknown_tagged_fields = g.tags(flex);
            t
        });
    } else {
        r.topic_names = g.vec(Gen::topic);
    }
    r.timeout_ms = g.i32();
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn describe_configs(v: i16, g: &mut Gen) -> DescribeConfigsRequest {
    let flex = v >= 4;
    let mut r = DescribeConfigsRequest::default();
    r.resources = g.vec(|g| {
        let mut res = DescribeConfigsResource::default();
        res.resource_type = g.i8();
        res.resource_name = g.str();
        res.configuration_keys = g.opt(|g| g.vec(Gen::str));
        res.unknown_tagged_fields = g.tags(flex);
        res
    });
    r.include_synonyms = g.bool();
    if v >= 3 {
        r.include_documentation = g.bool();
    }
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn create_partitions(v: i16, g: &mut Gen) -> CreatePartitionsRequest {
    let flex = v >= 2;
    let mut r = CreatePartitionsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = CreatePartitionsTopic::default();
        t.name = g.topic();
        t.count = g.i32();
        t.assignments = g.opt(|g| {
            g.vec(|g| {
                let mut a = CreatePartitionsAssignment::default();
                a.broker_ids = g.vec(Gen::broker);
                a.unknown_tagged_fields = g.tags(flex);
                a
            })
        });
        t.unknown_tagged_fields = g.tags(flex);
        t
    });
    r.timeout_ms = g.i32();
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn incremental_alter_configs(v: i16, g: &mut Gen) -> IncrementalAlterConfigsRequest {
    let flex = v >= 1;
    let mut r = IncrementalAlterConfigsRequest::default();
    r.resources = g.vec(|g| {
        let mut res = AlterConfigsResource::default();
        res.resource_type = g.i8();
        res.resource_name = g.str();
        res.configs = g.vec(|g| {
            let mut c = AlterableConfig::default();
            c.name = g.str();
            c.config_operation = g.i8();
            c.value = g.opt(Gen::str);
            c.unknown_tagged_fields = g.tags(flex);
            c
        });
        res.unknown_tagged_fields = g.tags(flex);
        res
    });
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn alter_configs(v: i16, g: &mut Gen) -> AlterConfigsRequest {
    let flex = v >= 2;
    let mut r = AlterConfigsRequest::default();
    r.resources = g.vec(|g| {
        let mut res = alter_configs_request::AlterConfigsResource::default();
        res.resource_type = g.i8();
        res.resource_name = g.str();
        res.configs = g.vec(|g| {
            let mut c = alter_configs_request::AlterableConfig::default();
            c.name = g.str();
            c.value = g.opt(Gen::str);
            c.unknown_tagged_fields = g.tags(flex);
            c
        });
        res.unknown_tagged_fields = g.tags(flex);
        res
    });
    r.validate_only = g.bool();
    r.unknown_tagged_fields = g.tags(flex);
    r
}

pub(super) fn alter_partition_reassignments(v: i16, g: &mut Gen) -> AlterPartitionReassignmentsRequest {
    let mut r = AlterPartitionReassignmentsRequest::default();
    r.timeout_ms = g.i32();
    // Absent before v1, where it must keep its default (true).
    r.allow_replication_factor_change = v < 1 || g.bool();
    r.topics = g.vec(|g| {
        let mut t = ReassignableTopic::default();
        t.name = g.topic();
        t.partitions = g.vec(|g| {
            let mut p = ReassignablePartition::default();
            p.partition_index = g.i32();
            p.replicas = g.opt(|g| g.vec(Gen::broker));
            p.unknown_tagged_fields = g.tags(true);
            p
        });
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

pub(super) fn list_partition_reassignments(g: &mut Gen) -> ListPartitionReassignmentsRequest {
    let mut r = ListPartitionReassignmentsRequest::default();
    r.timeout_ms = g.i32();
    r.topics = g.opt(|g| {
        g.vec(|g| {
            let mut t = ListPartitionReassignmentsTopics::default();
            t.name = g.topic();
            t.partition_indexes = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(true);
            t
        })
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

pub(super) fn describe_topic_partitions(g: &mut Gen) -> DescribeTopicPartitionsRequest {
    let mut r = DescribeTopicPartitionsRequest::default();
    r.topics = g.vec(|g| {
        let mut t = TopicRequest::default();
        t.name = g.topic();
        t.unknown_tagged_fields = g.tags(true);
        t
    });
    r.response_partition_limit = g.i32();
    r.cursor = g.opt(|g| {
        let mut c = Cursor::default();
        c.topic_name = g.topic();
        c.partition_index = g.i32();
        c.unknown_tagged_fields = g.tags(true);
        c
    });
    r.unknown_tagged_fields = g.tags(true);
    r
}

pub(super) fn elect_leaders(v: i16, g: &mut Gen) -> ElectLeadersRequest {
    let flex = v >= 2;
    let mut r = ElectLeadersRequest::default();
    if v >= 1 {
        r.election_type = g.i8();
    }
    r.topic_partitions = g.opt(|g| {
        g.vec(|g| {
            let mut t = TopicPartitions::default();
            t.topic = g.topic();
            t.partitions = g.vec(Gen::i32);
            t.unknown_tagged_fields = g.tags(flex);
            t
        })
    });
    r.timeout_ms = g.i32();
    r.unknown_tagged_fields = g.tags(flex);
    r
}
