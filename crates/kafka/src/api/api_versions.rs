//! ApiVersions: the advertised APIs, plus the feature levels Kafka 4.1
//! brokers report (clients gate KIP-848 on `group.version`).

use fjord_kafka_codec::SUPPORTED_APIS;
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::ApiVersionsRequest;
use fjord_kafka_codec::kafka_protocol::messages::api_versions_response::{
    ApiVersion, ApiVersionsResponse, FinalizedFeatureKey, SupportedFeatureKey,
};

use super::{RequestContext, sb};

/// `(feature, min, max, finalized)`: what a Kafka 4.1 broker in KRaft
/// mode reports, restricted to features whose behaviour Fjord has.
const FEATURES: &[(&str, i16, i16, i16)] = &[("group.version", 0, 1, 1)];

pub(crate) fn handle(ctx: &RequestContext<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let r = response(0);
    // Feature levels are tagged fields of v3+.
    if ctx.version() >= 3 { with_features(r) } else { r }
}

/// The v0 answer to an ApiVersions request in a version Fjord does not
/// speak: UNSUPPORTED_VERSION plus the list, as KIP-511 asks.
pub(crate) fn unsupported_version() -> ApiVersionsResponse {
    response(ResponseError::UnsupportedVersion.code())
}

fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(api, min, max)| {
            ApiVersion::default().with_api_key(api as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

fn with_features(r: ApiVersionsResponse) -> ApiVersionsResponse {
    r.with_supported_features(
        FEATURES
            .iter()
            .map(|&(name, min, max, _)| {
                SupportedFeatureKey::default().with_name(sb(name)).with_min_version(min).with_max_version(max)
            })
            .collect(),
    )
    .with_finalized_features_epoch(1)
    .with_finalized_features(
        FEATURES
            .iter()
            .map(|&(name, _, _, level)| {
                FinalizedFeatureKey::default()
                    .with_name(sb(name))
                    .with_min_version_level(level)
                    .with_max_version_level(level)
            })
            .collect(),
    )
}
