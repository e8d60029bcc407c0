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

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Reply, Request, pop::model};
use crate::Messaging;
use crate::pop::{Popped, ReceiptHandle};

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

    /// Releases what `caller` holds from sessions other than `keep`.
    pub(super) async fn forget(&self, caller: i32, keep: u64) {
        let stale = {
            let mut all = self.remote_holds.0.lock();
            match all.get_mut(&caller) {
                Some(node) if node.session != keep => {
                    node.session = keep;
                    std::mem::take(&mut node.receipts)
                }
                _ => HashMap::new(),
            }
        };
        self.release_held(caller, stale).await;
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
}
