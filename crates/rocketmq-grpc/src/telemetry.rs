//! The Telemetry stream (client Settings in, server Settings and
//! transaction check-backs out) and the check-back loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fjord_messaging::CheckClaim;
use fjord_messaging::message::DELAY_LEVELS_MS;
use fjord_rocketmq_proto::tonic::{Status, Streaming};
use fjord_rocketmq_proto::v2::{self, telemetry_command::Command};
use tokio::sync::{mpsc, watch};

use crate::GrpcGateway;
use crate::convert::{Delivered, ok, proto_duration, to_proto};

impl GrpcGateway {
    /// The server's answer to a client's Settings: the client's own, with
    /// the retry policy of its consumer group filled in.
    fn answer_settings(&self, mut s: v2::Settings) -> v2::Settings {
        match &mut s.pub_sub {
            Some(v2::settings::PubSub::Subscription(sub)) => {
                let group = sub.group.as_ref().map(|g| g.name.clone()).unwrap_or_default();
                sub.fifo = Some(self.messaging.group_settings(&group).is_some_and(|g| g.fifo));
                sub.receive_batch_size = Some(self.config.max_batch as i32);
                if sub.long_polling_timeout.is_none() {
                    sub.long_polling_timeout = Some(proto_duration(Duration::from_secs(20)));
                }
                // RocketMQ 5's retry schedule for push consumers (which nack
                // with it): the delay levels, 1s 5s 10s 30s 1m ... 2h.
                let next = DELAY_LEVELS_MS.iter().map(|ms| proto_duration(Duration::from_millis(*ms as u64))).collect();
                s.backoff_policy = Some(v2::RetryPolicy {
                    max_attempts: self.messaging.max_attempts(&group) as i32,
                    strategy: Some(v2::retry_policy::Strategy::CustomizedBackoff(v2::CustomizedBackoff { next })),
                });
            }
            Some(v2::settings::PubSub::Publishing(p)) => {
                // Clients refuse bodies above this before sending.
                p.max_body_size = self.broker().config().log_defaults.max_message_bytes as i32;
            }
            None => {}
        }
        s
    }

    pub(crate) fn telemetry(
        self: &Arc<Self>,
        client: String,
        mut incoming: Streaming<v2::TelemetryCommand>,
    ) -> mpsc::Receiver<Result<v2::TelemetryCommand, Status>> {
        static STREAM: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(64);
        let stream = STREAM.fetch_add(1, Ordering::Relaxed);
        self.clients.attach(&client, stream, tx.clone());
        let gw = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(cmd)) = incoming.message().await {
                // Other commands answer requests Fjord never sends.
                if let Some(Command::Settings(s)) = cmd.command {
                    gw.clients.set_settings(&client, s.clone());
                    gw.members_changed(&client);
                    let reply = v2::TelemetryCommand {
                        status: Some(ok()),
                        command: Some(Command::Settings(gw.answer_settings(s))),
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        break;
                    }
                }
            }
            gw.clients.detach(&client, stream);
            gw.members_changed(&client);
        });
        rx
    }

    /// Publishes the members of `client`'s consumer group (if it has one)
    /// to the messaging layer's directory, after its settings or stream
    /// changed.
    pub(crate) fn members_changed(&self, client: &str) {
        if let Some(group) = self.clients.group_of(client) {
            self.messaging.publish_members("rocketmq_grpc", &group, self.clients.consumers(&group));
        }
    }
}

/// Asks producers about transactions left open, every second.
pub(crate) async fn run_checker(gw: Arc<GrpcGateway>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = check_once(&gw).await {
            tracing::warn!(error = %e, "gRPC transaction check-back round failed");
        }
    }
}

async fn check_once(gw: &GrpcGateway) -> Result<(), fjord_messaging::MessagingError> {
    // Half messages name the gRPC client that sent them (the remoting
    // gateway's name a producer group): those of the clients connected
    // here, or for a topic one of them publishes to.
    let (groups, topics) = gw.clients.checkable();
    let claim = CheckClaim {
        groups,
        topics,
        first_after_ms: gw.config.transaction_timeout.as_millis() as i64,
        interval_ms: gw.config.transaction_check_interval.as_millis() as i64,
        max_checks: gw.config.transaction_check_max,
        max: 1000,
    };
    for tx in gw.messaging.claim_checks(&claim).await? {
        let Some(sender) = gw.clients.checker_for(&tx.producer_group, &tx.message.topic) else { continue };
        let d = Delivered { attempt: Some(1), ..Default::default() };
        let mut message = to_proto(&tx.message, gw.queue_of(&tx.message), &gw.config.endpoint, d);
        if let Some(sp) = message.system_properties.as_mut() {
            sp.message_type = v2::MessageType::Transaction as i32;
        }
        let cmd = v2::TelemetryCommand {
            status: Some(ok()),
            command: Some(Command::RecoverOrphanedTransactionCommand(v2::RecoverOrphanedTransactionCommand {
                message: Some(message),
                transaction_id: tx.handle.to_string(),
            })),
        };
        let _ = sender.try_send(Ok(cmd));
    }
    Ok(())
}
