//! Forwarded pops, acks and releases: [`Messaging::pop_at_leader`] and
//! the settling calls, which send each receipt to the node leading its
//! partition.

use std::time::Duration;

use fjord_filter::Filter;
use serde::{Deserialize, Serialize};

use fjord_broker::{BrokerError, Leadership, TopicPartition};

use super::{Reply, Request};
use crate::Messaging;
use crate::error::{MessagingError, Result};
use crate::pop::{PopRequest, Popped, ReceiptHandle, StartFrom};
use crate::pull::ConsumeModel;

/// How long settling receipts waits for their queues to be served again
/// when they move (see `settle_while_moving`); within a forwarded call's
/// time.
const SETTLE_WAIT: Duration = Duration::from_secs(4);

/// How long a failed pop is taken back for (see
/// [`Messaging::abandon_pop`]): past it, its deliveries wait out their
/// invisibility.
const ABANDON_WAIT: Duration = Duration::from_secs(60);

/// A [`PopRequest`] on the wire (unfiltered: see the module docs).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WirePop {
    /// The calling node's session (see [`super::holds`]).
    session: u64,
    group: String,
    instance: Option<String>,
    pub(super) topic: String,
    partition: Option<u32>,
    max: usize,
    invisible_ms: u64,
    fifo: bool,
    wait_ms: u64,
    latest: bool,
    durable: bool,
    /// The caller's name for the pop (see [`PopRequest::id`]).
    #[serde(default)]
    id: Option<u64>,
}

/// How forwarded receipts are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Settle {
    /// [`Messaging::ack_many`].
    Ack,
    /// [`Messaging::ack_many_unsynced`].
    AckUnsynced,
    /// [`Messaging::release_many`].
    Release,
}

pub(super) fn model(instance: Option<String>) -> ConsumeModel {
    match instance {
        None => ConsumeModel::Clustering,
        Some(instance) => ConsumeModel::Broadcasting { instance },
    }
}

fn instance(model: &ConsumeModel) -> Option<String> {
    match model {
        ConsumeModel::Clustering => None,
        ConsumeModel::Broadcasting { instance } => Some(instance.clone()),
    }
}

impl Messaging {
    /// [`Messaging::pop`] for clients that may be connected to any node:
    /// popped by the node leading the partition asked for (or, for any
    /// partition, by a node leading some when this one leads none). The
    /// receipts settle through [`Messaging::ack_many_at_leaders`] and
    /// [`Messaging::release_many_at_leaders`].
    ///
    /// A pop that fails may still have taken messages (its write reached
    /// the shard, or its answer was lost on the way back): a
    /// connection-bound group's pop is then taken back in the background
    /// by its name (`Messaging::abandon_pop`), from wherever its queues
    /// are served, for up to [`ABANDON_WAIT`] — otherwise those messages
    /// stay invisible for their whole invisibility while their holder's
    /// connection lives.
    pub async fn pop_at_leader(&self, mut req: PopRequest) -> Result<Vec<Popped>> {
        let id = *req.id.get_or_insert_with(|| self.pop.seq());
        let bound = self.is_connection_bound(&req.group);
        let what = bound.then(|| (req.group.clone(), req.model.clone(), req.topic.clone(), req.partition));
        let popped = self.pop_at_leader_once(req).await;
        if popped.is_err()
            && let Some((group, model, topic, partition)) = what
            && let Ok(me) = self.self_ref()
        {
            tokio::spawn(async move { me.abandon_everywhere(&group, &model, &topic, partition, id).await });
        }
        popped
    }

    /// Takes back the failed pop `id` of this node's session at every node
    /// that may serve its queues (the leader of `partition`, or of any
    /// partition of `topic`), asking again while any fails or has no
    /// leader, for up to [`ABANDON_WAIT`].
    pub(crate) async fn abandon_everywhere(
        &self,
        group: &str,
        model: &ConsumeModel,
        topic: &str,
        partition: Option<u32>,
        id: u64,
    ) {
        let wait = crate::moving::MoveWait::new("taking back a failed pop", ABANDON_WAIT);
        let holder = crate::pop::Holder { node: self.broker.config().node_id, session: self.session };
        loop {
            let count = self.broker.topic(topic).map_or(0, |t| t.partitions().len() as u32);
            let mut nodes: Vec<Option<i32>> = Vec::new();
            let mut failure = None;
            for p in partition.map_or_else(|| (0..count).collect(), |p| vec![p]) {
                let node = match self.broker.leadership(&TopicPartition::new(topic, p)) {
                    Leadership::Local => None,
                    Leadership::Remote(n) => Some(n.node_id),
                    Leadership::Unavailable => {
                        failure = Some(BrokerError::Unavailable(format!("{topic}-{p} has no leader now")).into());
                        continue;
                    }
                };
                if !nodes.contains(&node) {
                    nodes.push(node);
                }
            }
            for node in nodes {
                let done = match node {
                    None => self.abandon_pop(group, model, topic, holder, id).await.map(|_| ()),
                    Some(n) => {
                        let req = Request::Abandon {
                            session: self.session,
                            group: group.to_string(),
                            instance: instance(model),
                            topic: topic.to_string(),
                            id,
                        };
                        match self.call(n, &req).await {
                            Ok(Reply::Abandoned(_)) => Ok(()),
                            Ok(other) => {
                                Err(MessagingError::Internal(format!("node {n} answered an abandon with {other:?}")))
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                if let Err(e) = done {
                    failure = Some(e);
                }
            }
            let Some(e) = failure else { return };
            if let Err(e) = wait.again(e).await {
                tracing::warn!(topic, group, pop = id, error = %e, "a failed pop could not be taken back: its messages wait out their invisibility");
                return;
            }
        }
    }

    async fn pop_at_leader_once(&self, req: PopRequest) -> Result<Vec<Popped>> {
        let remote = match req.partition {
            Some(p) => self.remote_leader_of(&req.topic, p),
            None => self.remote_leader_for_topic(&req.topic),
        };
        let Some(node) = remote else { return self.pop(req).await };
        if !matches!(req.filter, Filter::All) {
            return Err(MessagingError::InvalidRequest(format!(
                "a filtered pop of '{}' is served by its leader, node {node}",
                req.topic
            )));
        }
        let wire = WirePop {
            session: self.session,
            group: req.group,
            instance: instance(&req.model),
            topic: req.topic,
            partition: req.partition,
            max: req.max_messages,
            invisible_ms: u64::try_from(req.invisible.as_millis()).unwrap_or(u64::MAX),
            fifo: req.fifo,
            wait_ms: u64::try_from(req.wait.as_millis()).unwrap_or(u64::MAX),
            latest: req.start == StartFrom::Latest,
            durable: req.durable,
            id: req.id,
        };
        match self.call(node, &Request::Pop(wire)).await? {
            Reply::Popped(p) => Ok(p),
            other => Err(MessagingError::Internal(format!("node {node} answered a pop with {other:?}"))),
        }
    }

    /// [`Messaging::ack_many`] (`synced`) or [`Messaging::ack_many_unsynced`]
    /// of receipts from [`Messaging::pop_at_leader`], each at its
    /// partition's leader. Results per receipt, in order.
    pub async fn ack_many_at_leaders(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipts: &[ReceiptHandle],
        synced: bool,
    ) -> Result<Vec<Result<()>>> {
        // A single node leads everything: the local ack parses each receipt
        // once, with no grouping by leader first.
        if self.broker.placement().is_none() {
            return if synced {
                self.ack_many(group, model, receipts).await
            } else {
                self.ack_many_unsynced(group, model, receipts).await
            };
        }
        let how = if synced { Settle::Ack } else { Settle::AckUnsynced };
        let mut out: Vec<Option<Result<()>>> = (0..receipts.len()).map(|_| None).collect();
        let parts = self
            .settle_while_moving(receipts, |node, part| async move {
                match node {
                    None if synced => self.ack_many(group, model, &part).await,
                    None => self.ack_many_unsynced(group, model, &part).await,
                    Some(node) => self.settle_at(node, group, model, how, part).await,
                }
            })
            .await?;
        for (idx, results) in parts {
            for (i, r) in idx.into_iter().zip(results) {
                out[i] = Some(r);
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    /// Settles `receipts` by their partitions' leaders, one `settle` call
    /// per leader, and returns each call's receipts (their positions) with
    /// its answer. A call that fails because its queue or pop shard is
    /// moving (a leader change, a node lost) is made again through the new
    /// leader for up to [`SETTLE_WAIT`] ([`crate::moving`]): an ack or a release
    /// applied twice is answered as a stale receipt the second time, so
    /// repeating one whose outcome was unknown is harmless — and giving up
    /// would hand an acked message out again.
    async fn settle_while_moving<T, F, Fut>(
        &self,
        receipts: &[ReceiptHandle],
        mut settle: F,
    ) -> Result<Vec<(Vec<usize>, T)>>
    where
        F: FnMut(Option<i32>, Vec<ReceiptHandle>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let wait = crate::moving::MoveWait::new("settling receipts", SETTLE_WAIT);
        let mut pending: Vec<usize> = (0..receipts.len()).collect();
        let mut done = Vec::new();
        loop {
            let mut again = Vec::new();
            let mut last = None;
            let asked: Vec<ReceiptHandle> = pending.iter().map(|i| receipts[*i].clone()).collect();
            for (node, idx) in self.by_leader(&asked) {
                let idx: Vec<usize> = idx.into_iter().map(|i| pending[i]).collect();
                let part = idx.iter().map(|i| receipts[*i].clone()).collect();
                match settle(node, part).await {
                    Ok(t) => done.push((idx, t)),
                    Err(e) if e.moving() => {
                        again.extend(idx);
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            match last {
                None => return Ok(done),
                Some(e) => {
                    wait.again(e).await?;
                    pending = again;
                }
            }
        }
    }

    /// [`Messaging::release_many`] of receipts from
    /// [`Messaging::pop_at_leader`], each at its partition's leader;
    /// returns how many were released.
    pub async fn release_many_at_leaders(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipts: &[ReceiptHandle],
    ) -> Result<usize> {
        if self.broker.placement().is_none() {
            return self.release_many(group, model, receipts).await;
        }
        let parts = self
            .settle_while_moving(receipts, |node, part| async move {
                match node {
                    None => self.release_many(group, model, &part).await,
                    Some(node) => {
                        let results = self.settle_at(node, group, model, Settle::Release, part).await?;
                        Ok(results.iter().filter(|r| r.is_ok()).count())
                    }
                }
            })
            .await?;
        let released = parts.into_iter().map(|(_, n)| n).sum();
        Ok(released)
    }

    /// [`Messaging::pop_depth`] (ready, unacked) from the node leading the
    /// topic's partitions when this one leads none.
    pub async fn pop_depth_at_leader(&self, group: &str, model: &ConsumeModel, topic: &str) -> Result<(u64, u64)> {
        let Some(node) = self.remote_leader_for_topic(topic) else { return Ok(self.pop_depth(group, model, topic)) };
        let mut d = self.depths_at(node, group, model, vec![topic.to_string()]).await?;
        d.pop().ok_or_else(|| MessagingError::Internal(format!("node {node} answered no depth")))
    }

    /// [`Messaging::pop_depth_at_leader`] of many topics, one call per
    /// node; `None` for topics whose node could not be asked (with a
    /// warning).
    pub async fn pop_depths_at_leaders(
        &self,
        group: &str,
        model: &ConsumeModel,
        topics: &[String],
    ) -> Vec<Option<(u64, u64)>> {
        let mut out: Vec<Option<(u64, u64)>> = vec![None; topics.len()];
        let mut by_node: Vec<(i32, Vec<usize>)> = Vec::new();
        for (i, t) in topics.iter().enumerate() {
            match self.remote_leader_for_topic(t) {
                None => out[i] = Some(self.pop_depth(group, model, t)),
                Some(n) => match by_node.iter_mut().find(|(x, _)| *x == n) {
                    Some((_, v)) => v.push(i),
                    None => by_node.push((n, vec![i])),
                },
            }
        }
        for (node, idx) in by_node {
            let asked = idx.iter().map(|i| topics[*i].clone()).collect();
            match self.depths_at(node, group, model, asked).await {
                Ok(d) => idx.into_iter().zip(d).for_each(|(i, d)| out[i] = Some(d)),
                Err(e) => tracing::warn!(node, error = %e, "could not count queues at their node"),
            }
        }
        out
    }

    /// [`Messaging::pop_ready_sizes`] at the node leading the topic's
    /// partitions when this one leads none.
    pub async fn pop_ready_sizes_at_leader(&self, group: &str, model: &ConsumeModel, topic: &str) -> Result<Vec<u64>> {
        let Some(node) = self.remote_leader_for_topic(topic) else {
            return self.pop_ready_sizes(group, model, topic).await;
        };
        let req = Request::ReadySizes { group: group.to_string(), instance: instance(model), topic: topic.to_string() };
        match self.call(node, &req).await? {
            Reply::Sizes(s) => Ok(s),
            other => Err(MessagingError::Internal(format!("node {node} answered ready sizes with {other:?}"))),
        }
    }

    async fn depths_at(
        &self,
        node: i32,
        group: &str,
        model: &ConsumeModel,
        topics: Vec<String>,
    ) -> Result<Vec<(u64, u64)>> {
        let n = topics.len();
        let req = Request::Depths { group: group.to_string(), instance: instance(model), topics };
        match self.call(node, &req).await? {
            Reply::Depths(d) if d.len() == n => Ok(d),
            other => Err(MessagingError::Internal(format!("node {node} answered {n} depths with {other:?}"))),
        }
    }

    /// Receipts' positions grouped by the node leading their partition
    /// (`None`: this one, or a malformed receipt the local call refuses).
    fn by_leader(&self, receipts: &[ReceiptHandle]) -> Vec<(Option<i32>, Vec<usize>)> {
        let mut groups: Vec<(Option<i32>, Vec<usize>)> = Vec::new();
        for (i, r) in receipts.iter().enumerate() {
            let node = r.partition().ok().and_then(|tp| self.remote_leader_of(&tp.topic, tp.partition));
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, v)) => v.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        groups
    }

    async fn settle_at(
        &self,
        node: i32,
        group: &str,
        model: &ConsumeModel,
        how: Settle,
        receipts: Vec<ReceiptHandle>,
    ) -> Result<Vec<Result<()>>> {
        let n = receipts.len();
        let req = Request::Settle { group: group.to_string(), instance: instance(model), how, receipts };
        match self.call(node, &req).await? {
            Reply::Settled(r) if r.len() == n => {
                Ok(r.into_iter().map(|e| e.map_or(Ok(()), |m| Err(MessagingError::InvalidReceipt(m)))).collect())
            }
            other => Err(MessagingError::Internal(format!("node {node} answered {n} receipts with {other:?}"))),
        }
    }

    pub(super) async fn serve_pop(&self, caller: i32, p: WirePop) -> Reply {
        let owner = (p.group.clone(), p.instance.clone());
        let mut req = PopRequest::new(p.group, p.topic, p.max);
        req.model = model(p.instance);
        req.partition = p.partition;
        req.invisible = Duration::from_millis(p.invisible_ms);
        req.fifo = p.fifo;
        // Bounded: the caller's call times out after 10 s.
        req.wait = Duration::from_millis(p.wait_ms.min(5_000));
        req.start = if p.latest { StartFrom::Latest } else { StartFrom::Earliest };
        req.durable = p.durable;
        req.id = p.id;
        match self.pop_for(req, crate::pop::Holder { node: caller, session: p.session }).await {
            Ok(popped) => {
                self.hold(caller, p.session, owner, &popped).await;
                Reply::Popped(popped)
            }
            Err(e) => Reply::from_error(e),
        }
    }

    pub(super) async fn serve_settle(
        &self,
        group: String,
        instance: Option<String>,
        how: Settle,
        receipts: Vec<ReceiptHandle>,
    ) -> Reply {
        let model = model(instance);
        let results = match how {
            Settle::Ack => self.ack_many(&group, &model, &receipts).await,
            Settle::AckUnsynced => self.ack_many_unsynced(&group, &model, &receipts).await,
            Settle::Release => match self.release_many(&group, &model, &receipts).await {
                // Released as a whole (stale receipts are skipped, as locally).
                Ok(_) => Ok(receipts.iter().map(|_| Ok(())).collect()),
                Err(e) => Err(e),
            },
        };
        match results {
            Ok(r) => Reply::Settled(r.into_iter().map(|r| r.err().map(|e| e.to_string())).collect()),
            Err(e) => Reply::from_error(e),
        }
    }
}
