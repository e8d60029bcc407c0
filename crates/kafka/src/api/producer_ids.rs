//! InitProducerId for idempotent producers. As in Kafka, a producer
//! without a transactional id always gets a fresh id with epoch 0 (ids are
//! never reused, even across restarts).

use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use fjord_kafka_codec::kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use super::RequestContext;
use crate::errors;

pub(crate) async fn handle(ctx: &RequestContext<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_ongoing_txn_producer_id(ProducerId(-1))
            .with_ongoing_txn_producer_epoch(-1)
    };
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        // Kafka transactions are a later feature; refusing clearly beats a
        // producer that believes its writes are transactional.
        return failed(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match ctx.gw.broker.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0)
            .with_ongoing_txn_producer_id(ProducerId(-1))
            .with_ongoing_txn_producer_epoch(-1),
        Err(e) => {
            tracing::warn!(error = %e, "allocating a producer id failed");
            failed(errors::code(&e))
        }
    }
}
