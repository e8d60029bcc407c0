//! The body sizes of a group's ready messages: what a byte-bounded queue
//! (AMQP `x-max-length-bytes`, RabbitMQ's `message_bytes_ready`) compares
//! with its limit. Ready is what a pop would hand out: expired deliveries,
//! held-back FIFO messages and messages never handed out. Delivered,
//! unacked messages do not count.

use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::pull::{ConsumeModel, first_read};

impl Messaging {
    /// Body sizes (bytes) of the ready messages of `group` on `topic`,
    /// partition by partition, each partition in the order a pop hands
    /// them out (expired deliveries, held messages, then new ones). Reads
    /// the ready part of each log, so it costs what the backlog weighs:
    /// meant for queues bounded by bytes.
    pub async fn pop_ready_sizes(&self, group: &str, model: &ConsumeModel, topic: &str) -> Result<Vec<u64>> {
        let Some(t) = self.broker.topic(topic) else { return Ok(Vec::new()) };
        let now = self.pop.clock.now_ms();
        let mut plan = Vec::new();
        for p in t.partitions() {
            let q = self.queue_id(group, model, p.id());
            let log = p.clone();
            let (singles, from) = match self.pop.queue(&q) {
                Some(state) => {
                    let s = state.lock();
                    let mut singles: Vec<u64> =
                        s.inflight.iter().filter(|(_, f)| f.visible_at <= now).map(|(o, _)| *o).collect();
                    singles.extend(s.held.keys());
                    (singles, s.next)
                }
                None => {
                    let committed = self.broker.committed_offset(&q.group, p.id()).await?;
                    (Vec::new(), committed.map_or(0, |c| c.offset.max(0) as u64))
                }
            };
            plan.push((p.id().to_string(), log, singles, from));
        }
        blocking(move || -> Result<Vec<u64>> {
            let mut sizes = Vec::new();
            for (tp, log, singles, from) in plan {
                let ctx = |e| MessagingError::log(tp.clone(), e);
                let size = |r: &fjord_log::batch::Record| r.value.as_ref().map_or(0, |v| v.len() as u64);
                for o in singles {
                    let recs = log.read_committed(o, 1).map_err(ctx)?;
                    sizes.extend(recs.iter().find(|r| r.offset == o).map(size));
                }
                let hw = log.high_watermark();
                let mut offset = from.max(log.log_start_offset());
                while offset < hw {
                    let recs = log.read_committed(offset, first_read(1024)).map_err(ctx)?;
                    let Some(last) = recs.last().map(|r| r.offset) else { break };
                    sizes.extend(recs.iter().filter(|r| r.offset >= offset).map(size));
                    offset = last + 1;
                }
            }
            Ok(sizes)
        })
        .await?
    }
}
