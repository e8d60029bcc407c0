//! The APIs and versions Fjord advertises in `ApiVersions`.
//!
//! All ranges are Apache Kafka 4.1's (its `ApiVersionsResponse`), limited to
//! the APIs Fjord implements. Advertising one release's maxima matters:
//! kafka-python picks the broker version from them (Produce v13 means 4.1)
//! and chooses its request versions and features by that version. Minima
//! are 4.1's too: versions removed by KIP-896 are refused.

use kafka_protocol::messages::ApiKey;

/// `(api, min, max)` for every API Fjord serves.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
];

/// The supported `(min, max)` versions of `api`, or `None` when Fjord does
/// not serve it.
pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(k, _, _)| *k == api).map(|&(_, min, max)| (min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_decodable_by_kafka_protocol() {
        for &(api, min, max) in SUPPORTED_APIS {
            let valid = api.valid_versions();
            assert!(min <= max, "{api:?}");
            assert!(valid.min <= min && max <= valid.max, "{api:?} {min}..={max} outside {valid:?}");
        }
    }

    #[test]
    fn no_api_is_listed_twice() {
        for (i, (a, _, _)) in SUPPORTED_APIS.iter().enumerate() {
            assert!(SUPPORTED_APIS[i + 1..].iter().all(|(b, _, _)| b != a), "{a:?}");
        }
    }
}
