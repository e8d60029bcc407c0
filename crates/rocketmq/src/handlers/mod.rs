//! Request handlers, one module per command family. Every handler returns
//! a response or a [`Reject`](crate::error::Reject) that becomes one; none
//! closes the connection.

pub(crate) mod admin;
pub(crate) mod consumer;
pub(crate) mod offsets;
pub(crate) mod pull;
pub(crate) mod query;
pub(crate) mod route;
pub(crate) mod send;
pub mod tx;

use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::{request as rq, response};

use crate::RocketMqGateway;
use crate::connection::Peer;
use crate::error::{Handled, Reject};

/// The request codes this gateway serves, for documentation and tests.
pub const SUPPORTED: &[(i32, &str)] = &[
    (rq::SEND_MESSAGE, "SEND_MESSAGE"),
    (rq::SEND_MESSAGE_V2, "SEND_MESSAGE_V2"),
    (rq::SEND_BATCH_MESSAGE, "SEND_BATCH_MESSAGE"),
    (rq::PULL_MESSAGE, "PULL_MESSAGE"),
    (rq::LITE_PULL_MESSAGE, "LITE_PULL_MESSAGE"),
    (rq::QUERY_MESSAGE, "QUERY_MESSAGE"),
    (rq::VIEW_MESSAGE_BY_ID, "VIEW_MESSAGE_BY_ID"),
    (rq::QUERY_CONSUMER_OFFSET, "QUERY_CONSUMER_OFFSET"),
    (rq::UPDATE_CONSUMER_OFFSET, "UPDATE_CONSUMER_OFFSET"),
    (rq::GET_MAX_OFFSET, "GET_MAX_OFFSET"),
    (rq::GET_MIN_OFFSET, "GET_MIN_OFFSET"),
    (rq::GET_EARLIEST_MSG_STORETIME, "GET_EARLIEST_MSG_STORETIME"),
    (rq::SEARCH_OFFSET_BY_TIMESTAMP, "SEARCH_OFFSET_BY_TIMESTAMP"),
    (rq::HEART_BEAT, "HEART_BEAT"),
    (rq::UNREGISTER_CLIENT, "UNREGISTER_CLIENT"),
    (rq::GET_CONSUMER_LIST_BY_GROUP, "GET_CONSUMER_LIST_BY_GROUP"),
    (rq::CONSUMER_SEND_MSG_BACK, "CONSUMER_SEND_MSG_BACK"),
    (rq::LOCK_BATCH_MQ, "LOCK_BATCH_MQ"),
    (rq::UNLOCK_BATCH_MQ, "UNLOCK_BATCH_MQ"),
    (rq::CHECK_CLIENT_CONFIG, "CHECK_CLIENT_CONFIG"),
    (rq::END_TRANSACTION, "END_TRANSACTION"),
    (rq::GET_ROUTEINFO_BY_TOPIC, "GET_ROUTEINFO_BY_TOPIC"),
    (rq::GET_BROKER_CLUSTER_INFO, "GET_BROKER_CLUSTER_INFO"),
    (rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, "GET_ALL_TOPIC_LIST_FROM_NAMESERVER"),
    (rq::GET_TOPICS_BY_CLUSTER, "GET_TOPICS_BY_CLUSTER"),
    (rq::GET_KV_CONFIG, "GET_KV_CONFIG"),
    (rq::UPDATE_AND_CREATE_TOPIC, "UPDATE_AND_CREATE_TOPIC"),
    (rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP"),
    (rq::DELETE_SUBSCRIPTIONGROUP, "DELETE_SUBSCRIPTIONGROUP"),
    (rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, "GET_ALL_SUBSCRIPTIONGROUP_CONFIG"),
    (rq::DELETE_TOPIC_IN_BROKER, "DELETE_TOPIC_IN_BROKER"),
    (rq::DELETE_TOPIC_IN_NAMESRV, "DELETE_TOPIC_IN_NAMESRV"),
    (rq::GET_BROKER_RUNTIME_INFO, "GET_BROKER_RUNTIME_INFO"),
    (rq::GET_BROKER_CONFIG, "GET_BROKER_CONFIG"),
    (rq::GET_TOPIC_STATS_INFO, "GET_TOPIC_STATS_INFO"),
    (rq::GET_CONSUME_STATS, "GET_CONSUME_STATS"),
    (rq::GET_CONSUMER_CONNECTION_LIST, "GET_CONSUMER_CONNECTION_LIST"),
    (rq::QUERY_TOPIC_CONSUME_BY_WHO, "QUERY_TOPIC_CONSUME_BY_WHO"),
    (rq::INVOKE_BROKER_TO_RESET_OFFSET, "INVOKE_BROKER_TO_RESET_OFFSET"),
];

/// Answers one request.
pub(crate) async fn handle(gw: &RocketMqGateway, peer: &Peer, req: RemotingCommand) -> RemotingCommand {
    let r: Handled = match req.code {
        rq::SEND_MESSAGE | rq::SEND_MESSAGE_V2 | rq::SEND_BATCH_MESSAGE => send::send(gw, peer, &req).await,
        rq::CONSUMER_SEND_MSG_BACK => send::send_back(gw, &req).await,
        rq::PULL_MESSAGE | rq::LITE_PULL_MESSAGE => pull::pull(gw, &req).await,
        rq::QUERY_MESSAGE => query::query_message(gw, &req).await,
        rq::VIEW_MESSAGE_BY_ID => query::view_by_id(gw, &req).await,
        rq::QUERY_CONSUMER_OFFSET => offsets::query_consumer_offset(gw, &req).await,
        rq::UPDATE_CONSUMER_OFFSET => offsets::update_consumer_offset(gw, &req).await,
        rq::GET_MAX_OFFSET => offsets::max_offset(gw, &req),
        rq::GET_MIN_OFFSET => offsets::min_offset(gw, &req),
        rq::GET_EARLIEST_MSG_STORETIME => offsets::earliest_store_time(gw, &req).await,
        rq::SEARCH_OFFSET_BY_TIMESTAMP => offsets::search_by_timestamp(gw, &req).await,
        rq::HEART_BEAT => consumer::heartbeat(gw, peer, &req).await,
        rq::UNREGISTER_CLIENT => consumer::unregister(gw, &req),
        rq::GET_CONSUMER_LIST_BY_GROUP => consumer::consumer_list(gw, &req),
        rq::LOCK_BATCH_MQ => consumer::lock(gw, &req),
        rq::UNLOCK_BATCH_MQ => consumer::unlock(gw, &req),
        rq::CHECK_CLIENT_CONFIG => consumer::check_client_config(&req),
        rq::END_TRANSACTION => tx::end_transaction(gw, &req).await,
        rq::GET_ROUTEINFO_BY_TOPIC => route::route_info(gw, &req).await,
        rq::GET_BROKER_CLUSTER_INFO => route::cluster_info(gw, &req),
        rq::GET_ALL_TOPIC_LIST_FROM_NAMESERVER | rq::GET_TOPICS_BY_CLUSTER => route::topic_list(gw, &req),
        rq::GET_KV_CONFIG => Err(Reject::new(response::QUERY_NOT_FOUND, "no such KV config")),
        rq::UPDATE_AND_CREATE_TOPIC => route::create_topic(gw, &req).await,
        rq::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => consumer::update_group(gw, &req).await,
        rq::DELETE_SUBSCRIPTIONGROUP => consumer::delete_group(gw, &req).await,
        rq::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => consumer::all_groups(gw, &req),
        rq::DELETE_TOPIC_IN_BROKER | rq::DELETE_TOPIC_IN_NAMESRV => route::delete_topic(gw, &req).await,
        rq::GET_BROKER_RUNTIME_INFO => admin::runtime_info(gw, &req),
        rq::GET_BROKER_CONFIG => admin::broker_config(gw, &req),
        rq::GET_TOPIC_STATS_INFO => admin::topic_stats(gw, &req),
        rq::GET_CONSUME_STATS => admin::consume_stats(gw, &req).await,
        rq::GET_CONSUMER_CONNECTION_LIST => admin::consumer_connections(gw, &req),
        rq::QUERY_TOPIC_CONSUME_BY_WHO => admin::consumed_by(gw, &req),
        rq::INVOKE_BROKER_TO_RESET_OFFSET => admin::reset_offset(gw, &req).await,
        other => Err(Reject::new(
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!("request code {other} is not supported by Fjord"),
        )),
    };
    match r {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(code = req.code, rcode = e.code, remark = %e.remark, "rocketmq request refused");
            RemotingCommand::response_to(&req, e.code, Some(e.remark))
        }
    }
}

/// A success response to `req`.
pub(crate) fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS, None)
}

/// The partition a request names with `topic` and `queueId` (this
/// broker's queue numbering, see `queues.rs`).
pub(crate) fn queue(gw: &RocketMqGateway, req: &RemotingCommand) -> Result<fjord_broker::TopicPartition, Reject> {
    let topic = req.required("topic")?;
    let q: i32 = req.parse("queueId")?;
    gw.partition_of(topic, q)
}
