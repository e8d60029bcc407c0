//! Transactions: END_TRANSACTION, and the check-back loop that asks a
//! producer group about transactions left open.
//!
//! A half message open longer than
//! [`transaction_timeout`](crate::RocketMqConfig::transaction_timeout) is
//! sent to one live producer of its group as CHECK_TRANSACTION_STATE
//! (one-way, with the half message as body); the producer answers with an
//! END_TRANSACTION marked `fromTransactionCheck`. A transaction is checked
//! again every
//! [`transaction_check_interval`](crate::RocketMqConfig::transaction_check_interval)
//! and rolled back after
//! [`transaction_check_max`](crate::RocketMqConfig::transaction_check_max)
//! checks. Only checks actually delivered to a producer count.
//!
//! In a cluster each node checks the transactions of the producer groups
//! connected to it, wherever their half messages are stored: it claims
//! them from every timer shard's leader (a claim is recorded there, so
//! two nodes do not check one transaction within an interval).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fjord_messaging::{CheckClaim, TxOutcome};
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::{request, response};
use fjord_rocketmq_codec::message::{encode_offset_msg_id, property, sys_flag};
use tokio::sync::watch;

use super::ok;
use crate::RocketMqGateway;
use crate::error::{Handled, Reject};
use crate::mapping::to_ext;

/// `commitOrRollback` values of END_TRANSACTION.
const TRANSACTION_NOT_TYPE: i32 = 0;
const TRANSACTION_COMMIT: i32 = 0x8;
const TRANSACTION_ROLLBACK: i32 = 0xC;

pub(crate) async fn end_transaction(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let handle: i64 = req.parse("commitLogOffset")?;
    let kind: i32 = req.parse("commitOrRollback")?;
    let outcome = match kind {
        TRANSACTION_COMMIT => TxOutcome::Commit,
        TRANSACTION_ROLLBACK => TxOutcome::Rollback,
        // Unknown: the producer does not know yet; a later check-back asks again.
        TRANSACTION_NOT_TYPE => return Ok(ok(req)),
        other => return Err(Reject::new(response::SYSTEM_ERROR, format!("commitOrRollback {other} is not valid"))),
    };
    let handle = u64::try_from(handle).map_err(|_| Reject::new(response::SYSTEM_ERROR, "negative commitLogOffset"))?;
    gw.messaging
        .end_transaction(handle, outcome)
        .await
        .map_err(|e| Reject::new(response::SYSTEM_ERROR, format!("transaction {handle} cannot be ended: {e}")))?;
    tracing::debug!(handle, ?outcome, from_check = req.field("fromTransactionCheck"), "transaction ended");
    Ok(ok(req))
}

/// Checks open transactions back with their producers, every second.
pub async fn run_checker(
    gw: Arc<RocketMqGateway>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), crate::RocketMqError> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        if let Err(e) = check_once(&gw).await {
            tracing::warn!(error = e.remark, "transaction check-back round failed");
        }
    }
}

async fn check_once(gw: &RocketMqGateway) -> Result<(), Reject> {
    // Only groups with a live connection: the others' transactions wait
    // for a producer (RocketMQ likewise skips groups without a channel).
    let claim = CheckClaim {
        groups: gw.clients.producer_groups(),
        topics: Vec::new(),
        first_after_ms: gw.config.transaction_timeout.as_millis() as i64,
        interval_ms: gw.config.transaction_check_interval.as_millis() as i64,
        max_checks: gw.config.transaction_check_max,
        max: 1000,
    };
    for tx in gw.messaging.claim_checks(&claim).await? {
        let Some(conn) = gw.clients.producer_conn(&tx.producer_group) else {
            tracing::debug!(handle = tx.handle, group = tx.producer_group, "producer gone before its check-back");
            continue;
        };
        let id = encode_offset_msg_id(&gw.store_host, tx.handle as i64);
        let mut ext = to_ext(&tx.message, gw.queue_of_message(&tx.message), tx.handle as i64, gw.store_host);
        ext.queue_offset = tx.handle as i64;
        ext.sys_flag |= sys_flag::TRANSACTION_PREPARED;
        ext.properties.push((property::TRAN_MSG.into(), "true".into()));
        ext.properties.push((property::PGROUP.into(), tx.producer_group.clone()));
        let mut body = BytesMut::new();
        ext.encode_into(&mut body);
        let uniq = tx.message.id.clone().unwrap_or_default();
        let cmd = RemotingCommand::request(request::CHECK_TRANSACTION_STATE)
            .with_field("tranStateTableOffset", tx.handle)
            .with_field("commitLogOffset", tx.handle)
            .with_field("msgId", &uniq)
            .with_field("transactionId", &uniq)
            .with_field("offsetMsgId", id)
            .with_body(body.freeze());
        conn.send_oneway(cmd);
        tracing::debug!(
            handle = tx.handle,
            group = tx.producer_group,
            checks = tx.checks + 1,
            "transaction checked back"
        );
    }
    Ok(())
}
