//! SendMessage and EndTransaction.

use fjord_messaging::{Partitioning, TxOutcome};
use fjord_rocketmq_proto::v2::{self, Code};

use crate::GrpcGateway;
use crate::convert::{Fail, ok, to_message};

impl GrpcGateway {
    async fn send_one(&self, client: &str, m: v2::Message) -> Result<v2::SendResultEntry, Fail> {
        let max_body = self.broker().config().log_defaults.max_message_bytes;
        let (msg, kind) = to_message(m, max_body)?;
        self.queues(&v2::Resource { resource_namespace: String::new(), name: msg.topic.clone() }).await?;
        // SendMessageRequest names no queue (the client's choice only picks
        // the endpoint): FIFO messages go to their group's stable
        // partition, others round robin.
        let partitioning = Partitioning::Auto;
        if kind == v2::MessageType::Transaction {
            let r = self.messaging.send_half(msg, partitioning, client).await?;
            return Ok(v2::SendResultEntry {
                status: Some(ok()),
                message_id: r.id,
                transaction_id: r.handle.to_string(),
                offset: r.handle as i64,
                recall_handle: String::new(),
            });
        }
        let r = self.messaging.send(msg, partitioning).await?;
        Ok(v2::SendResultEntry {
            status: Some(ok()),
            message_id: r.id,
            transaction_id: String::new(),
            offset: r.offset.map_or(-1, |o| o as i64),
            recall_handle: String::new(),
        })
    }

    pub(crate) async fn send_message(&self, client: &str, req: v2::SendMessageRequest) -> v2::SendMessageResponse {
        if req.messages.is_empty() {
            return v2::SendMessageResponse {
                status: Some(Fail::new(Code::BadRequest, "no message").status()),
                entries: vec![],
            };
        }
        let mut entries = Vec::with_capacity(req.messages.len());
        for m in req.messages {
            let id = m.system_properties.as_ref().map(|s| s.message_id.clone()).unwrap_or_default();
            entries.push(match self.send_one(client, m).await {
                Ok(e) => e,
                Err(f) => {
                    tracing::debug!(client, code = ?f.0, error = f.1, "gRPC send refused");
                    v2::SendResultEntry { status: Some(f.status()), message_id: id, ..Default::default() }
                }
            });
        }
        let codes: Vec<i32> = entries.iter().map(|e| e.status.as_ref().map_or(0, |s| s.code)).collect();
        let status = if codes.iter().all(|c| *c == codes[0]) {
            entries[0].status.clone()
        } else {
            Some(crate::convert::status(Code::MultipleResults, "the messages have different results"))
        };
        v2::SendMessageResponse { status, entries }
    }

    pub(crate) async fn end_transaction(&self, req: v2::EndTransactionRequest) -> v2::EndTransactionResponse {
        let r = async {
            let handle: u64 = req.transaction_id.parse().map_err(|_| {
                Fail::new(Code::InvalidTransactionId, format!("transaction id {:?} is not Fjord's", req.transaction_id))
            })?;
            let outcome = match v2::TransactionResolution::try_from(req.resolution) {
                Ok(v2::TransactionResolution::Commit) => TxOutcome::Commit,
                Ok(v2::TransactionResolution::Rollback) => TxOutcome::Rollback,
                _ => return Err(Fail::new(Code::BadRequest, "the resolution must be COMMIT or ROLLBACK")),
            };
            self.messaging
                .end_transaction(handle, outcome)
                .await
                .map_err(|e| Fail::new(Code::InvalidTransactionId, e.to_string()))?;
            Ok(())
        }
        .await;
        v2::EndTransactionResponse { status: Some(r.map_or_else(|f: Fail| f.status(), |()| ok())) }
    }
}
