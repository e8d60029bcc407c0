//! Deliveries this node popped for consumers on other nodes, by the node
//! that asked: when that node is lost (fenced, removed) or restarts (a new
//! session), nobody will ack or release them, so they are released here at
//! once instead of waiting out their invisibility (an AMQP consumer's is
//! half an hour) — as RabbitMQ requeues a lost channel's unacked messages.
//!
//! A caller's *session* is a random id of its messaging layer's run, sent
//! with every forwarded pop; a pop from a new session, or the new session's
//! announcement at start ([`Request::Forget`](super::Request)), releases
//! what the old one held. A receipt settled through this node is no
//! longer held.
//!
//! A connection-bound group's deliveries record their holder (node and
//! session) in the queue's replicated state, so a node that takes a queue
//! over (its server lost, or leadership moved) keeps what live holders
//! hold — adopting them here as if it had popped them — and hands back at
//! once only what lost ones held ([`Messaging::sort_held`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Reply, Request, pop::model};
use crate::Messaging;
use crate::pop::state::QueueState;
use crate::pop::{Holder, Popped, QueueId, ReceiptHandle};
use crate::pull::{BROADCAST_SEPARATOR, ConsumeModel};

/// (group, broadcasting instance) of held receipts.
type Owner = (String, Option<String>);

#[derive(Debug, Default)]
pub(crate) struct RemoteHolds(Mutex<HashMap<i32, NodeHolds>>);

#[derive(Debug, Default)]
struct NodeHolds {
    session: u64,
    receipts: HashMap<ReceiptHandle, Owner>,
}

impl Messaging {
    /// Records deliveries popped for `caller`'s `session`; releases what an
    /// earlier session of that node held.
    pub(super) async fn hold(&self, caller: i32, session: u64, owner: Owner, popped: &[Popped]) {
        let stale = {
            let mut all = self.remote_holds.0.lock();
            let node = all.entry(caller).or_default();
            let stale = if node.session != session && !node.receipts.is_empty() {
                std::mem::take(&mut node.receipts)
            } else {
                HashMap::new()
            };
            node.session = session;
            for p in popped {
                node.receipts.insert(p.receipt.clone(), owner.clone());
            }
            stale
        };
        self.release_held(caller, stale).await;
    }

    /// Forgets receipts `caller` settled.
    pub(super) fn unhold(&self, caller: i32, receipts: &[ReceiptHandle]) {
        if let Some(node) = self.remote_holds.0.lock().get_mut(&caller) {
            for r in receipts {
                node.receipts.remove(r);
            }
        }
    }

    /// Releases what `caller` holds from sessions other than `keep`, and
    /// remembers `keep` as its session (deliveries adopted later for an
    /// older one are released instead: [`Messaging::sort_held`]).
    pub(super) async fn forget(&self, caller: i32, keep: u64) {
        let stale = {
            let mut all = self.remote_holds.0.lock();
            let node = all.entry(caller).or_default();
            let stale = if node.session != keep { std::mem::take(&mut node.receipts) } else { HashMap::new() };
            node.session = keep;
            stale
        };
        self.release_held(caller, stale).await;
    }

    /// Which holders are live now: this node's current session, and
    /// serving nodes in the session this node last heard of (or any, for a
    /// node not heard from since this one started: its session is learnt
    /// with its next call, which releases an older one's deliveries then).
    pub(crate) fn holder_liveness(&self) -> Liveness {
        let sessions = self.remote_holds.0.lock().iter().map(|(n, h)| (*n, h.session)).collect();
        Liveness {
            me: Holder { node: self.broker.config().node_id, session: self.session },
            placement: self.broker.placement(),
            sessions,
        }
    }

    /// For a connection-bound queue this node takes over or reloads: makes
    /// visible at once what lost holders held — an earlier run of this
    /// node, a node that no longer serves or runs another session now, and
    /// (`unknown_lost`) a delivery recorded without its holder — and adopts
    /// the rest as held by their nodes, so that those go back once their
    /// holder goes away. Their consumers are still connected and will ack
    /// them: handing them out again would deliver them twice (as a quorum
    /// queue of RabbitMQ keeps a live consumer's unacked messages across a
    /// leader change).
    pub(crate) fn sort_held(&self, q: &QueueId, state: &mut QueueState, now: i64, unknown_lost: bool) {
        let live = self.holder_liveness();
        let owner = owner_of(q);
        let mut all = self.remote_holds.0.lock();
        for (offset, f) in state.inflight.iter_mut().filter(|(_, f)| f.visible_at > now) {
            match f.holder {
                Some(h) if live.is_live(&h) => {
                    if h.node != live.me.node {
                        let held = all.entry(h.node).or_default();
                        held.session = h.session;
                        held.receipts.insert(ReceiptHandle::new(&q.topic, q.partition, *offset, f.seq), owner.clone());
                    }
                }
                None if !unknown_lost => {}
                // Not recorded: a later load does the same.
                _ => f.visible_at = now,
            }
        }
    }

    /// Releases what nodes that no longer serve (fenced, removed) held:
    /// run by the pop maintenance every second.
    pub(crate) async fn release_lost_holds(&self) {
        let Some(placement) = self.broker.placement() else { return };
        let lost: Vec<(i32, HashMap<ReceiptHandle, Owner>)> = {
            let mut all = self.remote_holds.0.lock();
            let gone: Vec<i32> = all
                .iter()
                .filter(|(n, h)| !h.receipts.is_empty() && placement.node(**n).is_none())
                .map(|(n, _)| *n)
                .collect();
            gone.into_iter().filter_map(|n| all.remove(&n).map(|h| (n, h.receipts))).collect()
        };
        for (node, receipts) in lost {
            self.release_held(node, receipts).await;
        }
    }

    async fn release_held(&self, caller: i32, receipts: HashMap<ReceiptHandle, Owner>) {
        if receipts.is_empty() {
            return;
        }
        let mut by_owner: HashMap<Owner, Vec<ReceiptHandle>> = HashMap::new();
        for (r, owner) in receipts {
            by_owner.entry(owner).or_default().push(r);
        }
        for ((group, instance), receipts) in by_owner {
            match self.release_many(&group, &model(instance), &receipts).await {
                Ok(n) => {
                    tracing::info!(node = caller, %group, released = n, "released deliveries held for a lost or restarted node")
                }
                Err(e) => {
                    tracing::warn!(node = caller, %group, error = %e, "could not release deliveries held for a lost node")
                }
            }
        }
    }

    /// Tells every other node, once this one serves, that this run of it
    /// holds nothing yet: what they popped for its earlier run goes back.
    pub(crate) fn spawn_session_announcement(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.broker.config().cluster_id.as_ref()?;
        let m = self.clone();
        Some(tokio::spawn(async move {
            let me = m.broker.config().node_id;
            let placement = tokio::select! {
                p = m.broker.joined() => p,
                _ = m.stopping() => return,
            };
            let Some(placement) = placement else { return };
            let others: Vec<i32> = placement.nodes.iter().map(|n| n.node_id).filter(|n| *n != me).collect();
            for node in others {
                match m.call(node, &Request::Forget { session: m.session }).await {
                    Ok(Reply::Forgotten) => {}
                    Ok(other) => tracing::warn!(node, reply = ?other, "unexpected answer to a session announcement"),
                    // A node that is down holds nothing it could release.
                    Err(e) => tracing::debug!(node, error = %e, "session announcement not delivered"),
                }
            }
        }))
    }
}

/// A snapshot of which holders are live ([`Messaging::holder_liveness`]).
pub(crate) struct Liveness {
    me: Holder,
    placement: Option<Arc<fjord_broker::Placement>>,
    sessions: HashMap<i32, u64>,
}

impl Liveness {
    pub(crate) fn is_live(&self, h: &Holder) -> bool {
        if h.node == self.me.node {
            return h.session == self.me.session;
        }
        let serving = self.placement.as_ref().is_some_and(|p| p.node(h.node).is_some());
        serving && self.sessions.get(&h.node).is_none_or(|s| *s == h.session || *s == 0)
    }
}

/// The group and broadcasting instance a queue's receipts settle under.
fn owner_of(q: &QueueId) -> Owner {
    let base = ConsumeModel::base_group(&q.group);
    let instance = q.group.split_once(BROADCAST_SEPARATOR).map(|(_, i)| i.to_string());
    (base.to_string(), instance)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use fjord_broker::{Broker, BrokerConfig, TopicConfig};

    use super::*;
    use crate::send::Partitioning;
    use crate::{Message, MessagingConfig, PopRequest};

    #[tokio::test]
    async fn a_new_session_or_a_forget_releases_what_the_old_one_held() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(fjord_log::SystemClock)).await.unwrap();
        b.create_topic("q", 1, TopicConfig::default()).await.unwrap();
        let m = Messaging::open(b, MessagingConfig::default()).await.unwrap();
        for i in 0..4 {
            m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.unwrap();
        }
        let pop = |n| PopRequest { invisible: Duration::from_secs(600), ..PopRequest::new("g", "q", n) };
        let owner = || ("g".to_string(), None);
        // Node 7's session 1 holds two, one of which it settles.
        let first = m.pop(pop(2)).await.unwrap();
        m.hold(7, 1, owner(), &first).await;
        m.unhold(7, std::slice::from_ref(&first[0].receipt));
        assert_eq!(m.pop_depth("g", &Default::default(), "q"), (2, 2));
        // Its next run pops: what the old run still held goes back.
        let second = m.pop(pop(2)).await.unwrap();
        m.hold(7, 2, owner(), &second).await;
        assert_eq!(m.pop_depth("g", &Default::default(), "q"), (1, 3), "m1 released, m0 still out");
        // A third run announces itself: the second's are released.
        m.forget(7, 3).await;
        assert_eq!(m.pop_depth("g", &Default::default(), "q"), (3, 1));
        // The same session announcing again releases nothing more.
        m.forget(7, 3).await;
        assert_eq!(m.pop_depth("g", &Default::default(), "q"), (3, 1));
        m.shutdown().await.unwrap();
        m.broker().shutdown().await.unwrap();
    }

    /// A queue taken over keeps what consumers connected to live nodes
    /// hold (adopted as held for them) and hands back what lost holders
    /// held: an earlier run of this node, a node that no longer serves,
    /// a node running another session now; one recorded without its holder
    /// only when asked to.
    #[tokio::test]
    async fn a_queue_taken_over_keeps_what_live_holders_hold() {
        use std::collections::BTreeMap;

        use fjord_broker::{NodeInfo, Placement};

        use crate::pop::state::InFlight;

        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(
            BrokerConfig { node_id: 1, ..BrokerConfig::new(dir.path()) },
            Arc::new(fjord_log::SystemClock),
        )
        .await
        .unwrap();
        let m = Messaging::open(b.clone(), MessagingConfig::default()).await.unwrap();
        let node = |id: i32| NodeInfo { node_id: id, listeners: BTreeMap::new(), rack: None };
        b.set_placement(Placement {
            controller_id: 1,
            nodes: vec![node(1), node(2), node(3)],
            fenced: Vec::new(),
            topics: Default::default(),
            controllers: vec![1],
        });
        let now = 1_000;
        let holder = |node, session| Some(Holder { node, session });
        let f = |seq, holder| InFlight { visible_at: now + 60_000, attempt: 1, seq, group: None, holder, pop: None };
        let q = QueueId { group: "g".into(), topic: "gone".into(), partition: 0 };
        let sorted = |unknown_lost: bool, placed: &[i32]| {
            b.set_placement(Placement {
                controller_id: 1,
                nodes: placed.iter().map(|n| node(*n)).collect(),
                fenced: Vec::new(),
                topics: Default::default(),
                controllers: vec![1],
            });
            let mut state = QueueState::new(0);
            state.inflight.insert(0, f(1, holder(1, m.session)));
            state.inflight.insert(1, f(2, holder(1, m.session.wrapping_add(1))));
            state.inflight.insert(2, f(3, holder(2, 77)));
            state.inflight.insert(3, f(4, holder(3, 5)));
            state.inflight.insert(4, f(5, None));
            m.sort_held(&q, &mut state, now, unknown_lost);
            state.inflight.iter().filter(|(_, f)| f.visible_at > now).map(|(o, _)| *o).collect::<Vec<u64>>()
        };
        // Node 3 no longer serves: its consumer's delivery goes back.
        assert_eq!(sorted(true, &[1, 2]), vec![0, 2], "this run's and node 2's kept");
        {
            let all = m.remote_holds.0.lock();
            assert_eq!(all[&2].session, 77);
            assert_eq!(all[&2].receipts.keys().cloned().collect::<Vec<_>>(), vec![ReceiptHandle::new("gone", 0, 2, 3)]);
            assert!(!all.contains_key(&3));
        }
        // Reloaded in the same epoch: one without its holder stays.
        assert_eq!(sorted(false, &[1, 2, 3]), vec![0, 2, 3, 4]);
        // Node 2 restarted (announced another session): its delivery goes
        // back, and what this node adopted for it was released then.
        m.forget(2, 78).await;
        assert!(m.remote_holds.0.lock()[&2].receipts.is_empty());
        assert_eq!(sorted(true, &[1, 2, 3]), vec![0, 3]);
        m.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }
}
