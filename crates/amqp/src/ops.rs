//! Declaring, deleting and binding exchanges and queues: the model's
//! checks (equivalence, exclusivity, reserved names) and the topics
//! behind queues. Answers are [`AmqpException`]s a channel sends back.

use fjord_amqp_codec::{AMQPValue, FieldTable};
use fjord_broker::{Leadership, TopicConfig};
use fjord_messaging::{ConsumeModel, OffsetReset};

use crate::AmqpGateway;
use crate::exception::{AmqpException, MethodResult};
use crate::model::{AMQP_GROUP, Binding, DEFAULT_VHOST, Exchange, Queue, VHost, queue_leadership, queue_topic};

/// A queue.declare's arguments.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// Name; empty asks the server for one.
    pub name: String,
    /// The name was chosen by [`AmqpGateway::server_queue_name`] (so its
    /// reserved `amq.` prefix is allowed).
    pub server_named: bool,
    /// Only check that it exists.
    pub passive: bool,
    /// Survives a restart.
    pub durable: bool,
    /// Owned by the declaring connection.
    pub exclusive: bool,
    /// Deleted after its last consumer.
    pub auto_delete: bool,
    /// Arguments.
    pub arguments: FieldTable,
}

/// The answer to queue.declare.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The queue's name (server-named ones are new).
    pub name: String,
    /// Ready messages.
    pub messages: u32,
    /// Consumers.
    pub consumers: u32,
}

fn internal(e: impl std::fmt::Display) -> AmqpException {
    AmqpException::internal_error(e.to_string())
}

fn inequivalent(what: &str, name: &str, vhost: &str, arg: &str) -> AmqpException {
    AmqpException::precondition_failed(format!("inequivalent arg '{arg}' for {what} '{name}' in vhost '{vhost}'"))
}

/// The `x-` arguments two declarations must agree on.
fn x_args(t: &FieldTable) -> Vec<(String, AMQPValue)> {
    t.inner().iter().filter(|(k, _)| k.as_str().starts_with("x-")).map(|(k, v)| (k.to_string(), v.clone())).collect()
}

impl AmqpGateway {
    /// A queue by name, from the definitions or, in the default virtual
    /// host, any existing topic of that name (an undeclared, durable queue).
    pub fn find_queue(&self, v: &VHost, vhost: &str, name: &str) -> Option<Queue> {
        if let Some(q) = v.queues.get(name) {
            return Some(q.clone());
        }
        (vhost == DEFAULT_VHOST && self.messaging.broker().topic(name).is_some()).then(|| Queue {
            name: name.to_string(),
            topic: name.to_string(),
            durable: true,
            owner: None,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
            adopted: true,
        })
    }

    /// Whether this node leads the partitions of a queue's topic (always on
    /// a single node).
    pub(crate) fn leads(&self, topic: &str) -> bool {
        matches!(queue_leadership(self.messaging.broker(), topic), Leadership::Local)
    }

    /// The other node leading the queue over `topic`; `None` when this node
    /// does (or nobody can now).
    pub(crate) fn queue_node(&self, topic: &str) -> Option<i32> {
        match queue_leadership(self.messaging.broker(), topic) {
            Leadership::Remote(n) => Some(n.node_id),
            _ => None,
        }
    }

    /// In a cluster a queue's pop queue lives on the node leading its
    /// partitions (RabbitMQ's client-local placement puts them on the
    /// declaring client's node); clients on other nodes consume it through
    /// forwarded pops and acks. A stream queue is read from its log, which
    /// only its node has: elsewhere that is refused with 404 naming the
    /// queue's node, as RabbitMQ answers when a queue's home node is out of
    /// reach.
    pub(crate) fn streamed_here(&self, vhost: &str, q: &Queue) -> MethodResult<()> {
        let b = self.messaging.broker();
        if !crate::stream::is_stream(q) || b.topic(&q.topic).is_none() || self.leads(&q.topic) {
            return Ok(());
        }
        let name = &q.name;
        let topic = &q.topic;
        let home = match b.leadership(&fjord_broker::TopicPartition::new(topic, 0)) {
            fjord_broker::Leadership::Remote(n) => format!(
                "it lives on node {}{}",
                n.node_id,
                n.listeners.get("amqp").map(|a| format!(" (AMQP {a})")).unwrap_or_default()
            ),
            _ => "the node it lives on is down".to_string(),
        };
        Err(AmqpException::not_found(format!(
            "stream queue '{name}' in vhost '{vhost}' is read on the node it lives on: {home}; connect to that node to read it"
        )))
    }

    /// Ready and unacked messages of a queue's topic (from its node in a
    /// cluster; zeros, with a warning, when that node cannot be asked).
    pub async fn depth(&self, topic: &str) -> (u64, u64) {
        match self.messaging.pop_depth_at_leader(AMQP_GROUP, &ConsumeModel::Clustering, topic).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "amqp: could not count a queue's messages");
                (0, 0)
            }
        }
    }

    /// A fresh server-chosen queue name (`amq.gen-...`, as RabbitMQ).
    pub fn server_queue_name(&self) -> String {
        format!("amq.gen-{:016x}{:08x}", rand_u64(), self.next_id())
    }

    /// queue.declare.
    pub async fn declare_queue(&self, vhost: &str, conn: u64, mut spec: QueueSpec) -> MethodResult<Declared> {
        if spec.name.is_empty() {
            if spec.passive {
                return Err(AmqpException::not_found("a passive declare needs a queue name"));
            }
            spec.name = self.server_queue_name();
        } else if spec.name.starts_with("amq.") && !spec.passive && !spec.server_named {
            return Err(AmqpException::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        }
        let snapshot = self.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        // A declare counts as use for `x-expires`, a passive one too (as in
        // RabbitMQ, where asking for a queue's counts renews its lease).
        self.touch(&queue_topic(vhost, &spec.name));
        let existing = self.find_queue(v, vhost, &spec.name);
        if let Some(q) = &existing {
            if let Some(owner) = q.owner
                && owner != conn
            {
                return Err(AmqpException::resource_locked(format!(
                    "cannot obtain exclusive access to locked queue '{}' in vhost '{vhost}'",
                    q.name
                )));
            }
            let declared = v.queues.contains_key(&q.name);
            if !spec.passive && declared {
                if q.durable != spec.durable {
                    return Err(inequivalent("queue", &q.name, vhost, "durable"));
                }
                if q.auto_delete != spec.auto_delete {
                    return Err(inequivalent("queue", &q.name, vhost, "auto_delete"));
                }
                if q.exclusive != spec.exclusive {
                    return Err(inequivalent("queue", &q.name, vhost, "exclusive"));
                }
                let (have, want) = (x_args(&q.arguments), x_args(&spec.arguments));
                if let Some((k, _)) = want.iter().chain(have.iter()).find(|kv| !have.contains(kv) || !want.contains(kv))
                {
                    return Err(inequivalent("queue", &q.name, vhost, k));
                }
            }
            if spec.passive || declared {
                return Ok(self.declared(q).await);
            }
        } else if spec.passive {
            return Err(AmqpException::not_found(format!("no queue '{}' in vhost '{vhost}'", spec.name)));
        }
        // A new queue, or an existing topic declared as one (adopted).
        let topic = queue_topic(vhost, &spec.name);
        fjord_broker::validate_topic_name(&topic)
            .map_err(|e| AmqpException::precondition_failed(format!("queue name '{}': {e}", spec.name)))?;
        let stream = crate::model::string_arg(&spec.arguments, "x-queue-type").is_some_and(|t| t == "stream");
        let mut config = TopicConfig::default();
        if stream {
            let retention =
                crate::stream::declare_checks(spec.durable, spec.exclusive, spec.auto_delete, &spec.arguments)?;
            config.0.extend(retention);
        }
        let adopted = self.messaging.broker().topic(&topic).is_some();
        if !adopted {
            let partitions = crate::priority::levels(&spec.arguments);
            // Led by this node in a cluster (RabbitMQ's client-local
            // locator): the declaring client's publishes and consumes stay
            // here.
            match self.messaging.broker().create_topic_here(&topic, partitions, config).await {
                Ok(_) | Err(fjord_broker::BrokerError::TopicExists(_)) => {}
                Err(e) => return Err(internal(e)),
            }
        }
        let q = Queue {
            name: spec.name.clone(),
            topic,
            durable: spec.durable,
            owner: spec.exclusive.then_some(conn),
            exclusive: spec.exclusive,
            auto_delete: spec.auto_delete,
            arguments: spec.arguments,
            adopted,
        };
        let stored = q.clone();
        let raced = self
            .model
            .update(vhost, |v| {
                let existed = v.queues.contains_key(&stored.name);
                v.queues.entry(stored.name.clone()).or_insert_with(|| stored.clone());
                Ok(existed)
            })
            .await
            .map_err(internal)??;
        if raced {
            // Declared by another connection meanwhile: answer as for it.
            let snapshot = self.model.snapshot();
            let q = snapshot.get(vhost).and_then(|v| v.queues.get(&q.name)).cloned().unwrap_or(q);
            return Ok(self.declared(&q).await);
        }
        Ok(self.declared(&q).await)
    }

    async fn declared(&self, q: &Queue) -> Declared {
        // Two questions to the queue's node, asked together (one round
        // trip's wait for a queue elsewhere).
        let ((ready, _), consumers) = tokio::join!(self.depth(&q.topic), self.consumer_count(&q.topic));
        Declared {
            name: q.name.clone(),
            messages: u32::try_from(ready).unwrap_or(u32::MAX),
            consumers: u32::try_from(consumers).unwrap_or(u32::MAX),
        }
    }

    /// queue.delete; returns the messages it held.
    pub async fn delete_queue(
        &self,
        vhost: &str,
        conn: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> MethodResult<u32> {
        let snapshot = self.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        // Deleting a queue that does not exist succeeds (RabbitMQ 3.x+).
        let Some(q) = v.queues.get(name).cloned() else { return Ok(0) };
        if q.owner.is_some_and(|o| o != conn) {
            return Err(AmqpException::resource_locked(format!("queue '{name}' in vhost '{vhost}' is exclusive")));
        }
        let consumers = self.consumer_count(&q.topic).await;
        if if_unused && consumers > 0 {
            return Err(AmqpException::precondition_failed(format!("queue '{name}' in vhost '{vhost}' in use")));
        }
        let (ready, unacked) = self.depth(&q.topic).await;
        if if_empty && ready + unacked > 0 {
            return Err(AmqpException::precondition_failed(format!("queue '{name}' in vhost '{vhost}' is not empty")));
        }
        self.remove_queue(vhost, &q).await?;
        Ok(u32::try_from(ready).unwrap_or(u32::MAX))
    }

    /// Removes a queue's definition and bindings, cancels its consumers
    /// and deletes its topic (unless it was adopted from another protocol).
    pub(crate) async fn remove_queue(&self, vhost: &str, q: &Queue) -> MethodResult<()> {
        let name = q.name.clone();
        self.model
            .update(vhost, |v| {
                v.queues.remove(&name);
                v.unbind_where(|b| !b.to_exchange && b.destination == name);
                Ok(())
            })
            .await
            .map_err(internal)??;
        self.discard_queue(vhost, q).await
    }

    /// What goes with a queue whose definition is gone: its consumers are
    /// cancelled, its gauges zeroed, and its topic deleted (with every
    /// group's progress on it) unless adopted from another protocol.
    pub(crate) async fn discard_queue(&self, vhost: &str, q: &Queue) -> MethodResult<()> {
        self.consumers.cancel_all(&q.topic).await;
        crate::instrument::queue_sample(vhost, &q.name, 0, 0, 0);
        if !q.adopted {
            // The broker drops every group's offsets and pop queues on
            // the topic with it: a queue declared again starts empty.
            match self.messaging.broker().delete_topic(&q.topic).await {
                Ok(()) | Err(fjord_broker::BrokerError::UnknownTopic(_)) => {}
                Err(e) => return Err(internal(e)),
            }
        }
        Ok(())
    }

    /// queue.purge: drops the ready messages; returns how many.
    pub async fn purge_queue(&self, vhost: &str, name: &str) -> MethodResult<u32> {
        let snapshot = self.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        let q = self
            .find_queue(v, vhost, name)
            .ok_or_else(|| AmqpException::not_found(format!("no queue '{name}' in vhost '{vhost}'")))?;
        self.streamed_here(vhost, &q)?;
        let (ready, unacked) = self.depth(&q.topic).await;
        if unacked == 0 && self.leads(&q.topic) {
            // Nothing delivered is pending: move past everything at once.
            self.messaging
                .reset_offsets(AMQP_GROUP, &ConsumeModel::Clustering, &q.topic, OffsetReset::Latest)
                .await
                .map_err(internal)?;
            return Ok(u32::try_from(ready).unwrap_or(u32::MAX));
        }
        // Deliveries awaiting their ack stay theirs (as RabbitMQ): only the
        // ready messages are taken and dropped.
        let mut purged = 0u64;
        while purged < ready {
            let n = (ready - purged).min(1024) as usize;
            let mut req = fjord_messaging::PopRequest::new(AMQP_GROUP, q.topic.as_str(), n);
            req.invisible = std::time::Duration::from_secs(60);
            let popped = self.messaging.pop_at_leader(req).await.map_err(internal)?;
            if popped.is_empty() {
                break;
            }
            purged += popped.len() as u64;
            let receipts: Vec<_> = popped.into_iter().map(|p| p.receipt).collect();
            self.messaging
                .ack_many_at_leaders(AMQP_GROUP, &ConsumeModel::Clustering, &receipts, true)
                .await
                .map_err(internal)?;
        }
        Ok(u32::try_from(purged).unwrap_or(u32::MAX))
    }

    /// exchange.declare.
    pub async fn declare_exchange(&self, vhost: &str, mut e: Exchange, passive: bool) -> MethodResult<()> {
        let snapshot = self.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        if passive {
            return match v.exchanges.get(&e.name) {
                Some(_) => Ok(()),
                None => Err(AmqpException::not_found(format!("no exchange '{}' in vhost '{vhost}'", e.name))),
            };
        }
        if let Some(have) = v.exchanges.get(&e.name) {
            if have.kind != e.kind {
                return Err(inequivalent("exchange", &e.name, vhost, "type"));
            }
            if have.durable != e.durable {
                return Err(inequivalent("exchange", &e.name, vhost, "durable"));
            }
            if have.auto_delete != e.auto_delete {
                return Err(inequivalent("exchange", &e.name, vhost, "auto_delete"));
            }
            return Ok(());
        }
        if e.name.starts_with("amq.") {
            return Err(AmqpException::access_refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                e.name
            )));
        }
        if !e.durable {
            e.home = Some(self.messaging.broker().config().node_id);
        }
        self.model
            .update(vhost, |v| {
                v.exchanges.entry(e.name.clone()).or_insert_with(|| e.clone());
                Ok(())
            })
            .await
            .map_err(internal)?
    }

    /// exchange.delete.
    pub async fn delete_exchange(&self, vhost: &str, name: &str, if_unused: bool) -> MethodResult<()> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(AmqpException::access_refused(format!("cannot delete the predeclared exchange '{name}'")));
        }
        let name = name.to_string();
        let vh = vhost.to_string();
        self.model
            .update(vhost, |v| {
                if !v.exchanges.contains_key(&name) {
                    // Deleting a missing exchange succeeds, as in RabbitMQ.
                    return Ok(());
                }
                if if_unused && v.bindings.iter().any(|b| b.source == name) {
                    return Err(AmqpException::precondition_failed(format!(
                        "exchange '{name}' in vhost '{vh}' in use"
                    )));
                }
                v.exchanges.remove(&name);
                v.unbind_where(|b| b.source == name || (b.to_exchange && b.destination == name));
                Ok(())
            })
            .await
            .map_err(internal)?
    }

    /// queue.bind / exchange.bind (`bind`), queue.unbind / exchange.unbind.
    pub async fn change_binding(&self, vhost: &str, b: Binding, bind: bool) -> MethodResult<()> {
        let snapshot = self.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        if b.source.is_empty() || (b.to_exchange && b.destination.is_empty()) {
            return Err(AmqpException::access_refused("operation not permitted on the default exchange"));
        }
        if !v.exchanges.contains_key(&b.source) {
            return Err(AmqpException::not_found(format!("no exchange '{}' in vhost '{vhost}'", b.source)));
        }
        if b.to_exchange {
            if !v.exchanges.contains_key(&b.destination) {
                return Err(AmqpException::not_found(format!("no exchange '{}' in vhost '{vhost}'", b.destination)));
            }
        } else if self.find_queue(v, vhost, &b.destination).is_none() {
            return Err(AmqpException::not_found(format!("no queue '{}' in vhost '{vhost}'", b.destination)));
        }
        // Binding an undeclared topic adopts it as a durable queue.
        let adopt = (!b.to_exchange && !v.queues.contains_key(&b.destination))
            .then(|| self.find_queue(v, vhost, &b.destination))
            .flatten();
        self.model
            .update(vhost, |v| {
                if let Some(q) = &adopt {
                    v.queues.entry(q.name.clone()).or_insert_with(|| q.clone());
                }
                let same = |x: &Binding| {
                    x.source == b.source
                        && x.destination == b.destination
                        && x.to_exchange == b.to_exchange
                        && x.routing_key == b.routing_key
                        && x.arguments == b.arguments
                };
                let exists = v.bindings.iter().any(same);
                if bind && !exists {
                    v.bindings.push(b.clone());
                } else if !bind {
                    v.unbind_where(same);
                }
                Ok(())
            })
            .await
            .map_err(internal)?
    }

    /// The topics a publish goes to, or 404 when the exchange does not
    /// exist (403 when it is internal).
    pub fn route(
        &self,
        vhost: &str,
        exchange: &str,
        key: &str,
        headers: Option<&FieldTable>,
    ) -> MethodResult<Vec<String>> {
        let snapshot = self.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        let e = v
            .exchanges
            .get(exchange)
            .ok_or_else(|| AmqpException::not_found(format!("no exchange '{exchange}' in vhost '{vhost}'")))?;
        if e.internal {
            return Err(AmqpException::access_refused(format!("cannot publish to internal exchange '{exchange}'")));
        }
        let queues = v.route(exchange, key, headers);
        let mut topics: Vec<String> = queues.iter().filter_map(|q| v.queues.get(q).map(|q| q.topic.clone())).collect();
        if exchange.is_empty()
            && topics.is_empty()
            && let Some(q) = self.find_queue(v, vhost, key)
        {
            topics.push(q.topic);
        }
        Ok(topics)
    }
}

impl AmqpGateway {
    /// When a message published to a delayed-message exchange with an
    /// `x-delay` header (ms) is delivered; `None` for other exchanges or
    /// without a positive delay.
    pub fn delay(&self, vhost: &str, exchange: &str, headers: Option<&FieldTable>) -> Option<i64> {
        let snapshot = self.model.snapshot();
        let e = snapshot.get(vhost)?.exchanges.get(exchange)?;
        if e.kind != crate::model::ExchangeKind::XDelayedMessage {
            return None;
        }
        let ms = crate::model::int_arg(headers?, "x-delay").filter(|d| *d > 0)?;
        Some(self.messaging.broker().clock().now_ms().saturating_add(ms))
    }
}

/// Random enough for server-generated names (not a secret).
pub(crate) fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}
