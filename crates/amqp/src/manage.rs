//! What operators see and change from outside AMQP (the admin API and
//! CLI): virtual hosts, queues with their depths, exchanges, bindings,
//! users and permissions. Plain data out; the admin crate renders it.

use fjord_amqp_codec::{AMQPValue, FieldTable};
use serde_json::Value;

use crate::AmqpGateway;
use crate::error::{AmqpError, Result};
use crate::model::{AMQP_GROUP, VHost};

/// A virtual host.
#[derive(Debug, Clone)]
pub struct VHostInfo {
    /// Name.
    pub name: String,
    /// Queues declared in it.
    pub queues: usize,
    /// Exchanges in it (the predeclared ones included).
    pub exchanges: usize,
}

/// A queue and its depth.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// Virtual host.
    pub vhost: String,
    /// Name.
    pub name: String,
    /// The topic holding its messages.
    pub topic: String,
    /// Survives restarts.
    pub durable: bool,
    /// Owned by one connection.
    pub exclusive: bool,
    /// Deleted after its last consumer.
    pub auto_delete: bool,
    /// Declared arguments as JSON.
    pub arguments: Value,
    /// Messages ready for delivery.
    pub messages_ready: u64,
    /// Messages delivered and not yet acked.
    pub messages_unacked: u64,
    /// Consumers attached.
    pub consumers: u64,
}

/// An exchange.
#[derive(Debug, Clone)]
pub struct ExchangeInfo {
    /// Virtual host.
    pub vhost: String,
    /// Name (`""` is the default exchange).
    pub name: String,
    /// Type (`direct`, `topic`...).
    pub kind: String,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted after its last binding.
    pub auto_delete: bool,
    /// Not published to directly.
    pub internal: bool,
    /// Declared arguments as JSON.
    pub arguments: Value,
}

/// A binding.
#[derive(Debug, Clone)]
pub struct BindingInfo {
    /// Virtual host.
    pub vhost: String,
    /// Source exchange.
    pub source: String,
    /// Destination queue or exchange.
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: &'static str,
    /// Binding key.
    pub routing_key: String,
    /// Arguments as JSON.
    pub arguments: Value,
}

/// A field value as JSON (numbers as numbers, strings as strings, tables
/// and arrays nested).
pub fn value_json(v: &AMQPValue) -> Value {
    if let Some(n) = crate::model::value_int(v) {
        // Every AMQP integer fits an i64 or a u64.
        return i64::try_from(n).map(Value::from).or_else(|_| u64::try_from(n).map(Value::from)).unwrap_or(Value::Null);
    }
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::Float(f) => Value::from(f64::from(*f)),
        AMQPValue::Double(f) => Value::from(*f),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_json).collect()),
        AMQPValue::Void => Value::Null,
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}

/// A field table as a JSON object.
pub fn table_json(t: &FieldTable) -> Value {
    Value::Object(t.inner().iter().map(|(k, v)| (k.to_string(), value_json(v))).collect())
}

fn in_scope<'a>(
    all: &'a std::collections::BTreeMap<String, VHost>,
    vhost: Option<&str>,
) -> Result<Vec<(&'a String, &'a VHost)>> {
    match vhost {
        None => Ok(all.iter().collect()),
        Some(name) => {
            let (k, v) = all.get_key_value(name).ok_or_else(|| AmqpError::NotFound(format!("no vhost '{name}'")))?;
            Ok(vec![(k, v)])
        }
    }
}

impl AmqpGateway {
    /// Every virtual host.
    pub fn vhosts(&self) -> Vec<VHostInfo> {
        let all = self.model.snapshot();
        all.iter()
            .map(|(name, v)| VHostInfo { name: name.clone(), queues: v.queues.len(), exchanges: v.exchanges.len() })
            .collect()
    }

    /// Creates a virtual host (with the predeclared exchanges); false when
    /// it already existed. Users need a permission on it to open it.
    pub async fn add_vhost(&self, name: &str) -> Result<bool> {
        self.model.add_vhost(name).await
    }

    /// Deletes a virtual host: its queues' consumers are cancelled and
    /// their topics deleted (topics adopted from other protocols stay),
    /// and every permission on it is dropped.
    pub async fn delete_vhost(&self, name: &str) -> Result<()> {
        let gone = self.model.delete_vhost(name).await?;
        for q in gone.queues.values() {
            self.discard_queue(name, q).await.map_err(|e| AmqpError::Definitions(e.to_string()))?;
        }
        self.users.forget_vhost(name).await?;
        self.revoke(crate::alarm::Revoked::VHost(name.to_string()));
        Ok(())
    }

    /// Deletes a user and its permissions; its open connections are closed
    /// (320 CONNECTION_FORCED).
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        self.users.delete_user(name).await?;
        self.revoke(crate::alarm::Revoked::User(name.to_string()));
        Ok(())
    }

    /// [`AmqpGateway::queues`] with each queue's ready and unacked counts
    /// from the node it lives on (one request per node in a cluster).
    pub async fn queues_counted(&self, vhost: Option<&str>) -> Result<Vec<QueueInfo>> {
        let mut out = self.queues(vhost)?;
        let topics: Vec<String> = out.iter().map(|q| q.topic.clone()).collect();
        let model = fjord_messaging::ConsumeModel::Clustering;
        let depths = self.messaging.pop_depths_at_leaders(AMQP_GROUP, &model, &topics).await;
        for (q, d) in out.iter_mut().zip(depths) {
            if let Some((ready, unacked)) = d {
                q.messages_ready = ready;
                q.messages_unacked = unacked;
            }
        }
        Ok(out)
    }

    /// Queues of one virtual host, or of all, with the counts this node
    /// has (see [`AmqpGateway::queues_counted`] for a cluster's).
    pub fn queues(&self, vhost: Option<&str>) -> Result<Vec<QueueInfo>> {
        let all = self.model.snapshot();
        let mut out = Vec::new();
        for (vname, v) in in_scope(&all, vhost)? {
            for q in v.queues.values() {
                let (ready, unacked) =
                    self.messaging.pop_depth(AMQP_GROUP, &fjord_messaging::ConsumeModel::Clustering, &q.topic);
                out.push(QueueInfo {
                    vhost: vname.clone(),
                    name: q.name.clone(),
                    topic: q.topic.clone(),
                    durable: q.durable,
                    exclusive: q.exclusive,
                    auto_delete: q.auto_delete,
                    arguments: table_json(&q.arguments),
                    messages_ready: ready,
                    messages_unacked: unacked,
                    consumers: self.consumers.count(&q.topic) as u64,
                });
            }
        }
        Ok(out)
    }

    /// Exchanges of one virtual host, or of all.
    pub fn exchanges(&self, vhost: Option<&str>) -> Result<Vec<ExchangeInfo>> {
        let all = self.model.snapshot();
        let mut out = Vec::new();
        for (vname, v) in in_scope(&all, vhost)? {
            out.extend(v.exchanges.values().map(|e| ExchangeInfo {
                vhost: vname.clone(),
                name: e.name.clone(),
                kind: e.kind.as_str().to_string(),
                durable: e.durable,
                auto_delete: e.auto_delete,
                internal: e.internal,
                arguments: table_json(&e.arguments),
            }));
        }
        Ok(out)
    }

    /// Bindings of one virtual host, or of all, in declaration order.
    pub fn bindings(&self, vhost: Option<&str>) -> Result<Vec<BindingInfo>> {
        let all = self.model.snapshot();
        let mut out = Vec::new();
        for (vname, v) in in_scope(&all, vhost)? {
            out.extend(v.bindings.iter().map(|b| BindingInfo {
                vhost: vname.clone(),
                source: b.source.clone(),
                destination: b.destination.clone(),
                destination_type: if b.to_exchange { "exchange" } else { "queue" },
                routing_key: b.routing_key.clone(),
                arguments: table_json(&b.arguments),
            }));
        }
        Ok(out)
    }

    /// Sets a user's permission on an existing virtual host (`None` clears).
    pub async fn set_permission(&self, vhost: &str, user: &str, p: Option<crate::access::Permission>) -> Result<()> {
        if p.is_some() && !self.model.has_vhost(vhost) {
            return Err(AmqpError::NotFound(format!("no vhost '{vhost}'")));
        }
        self.users.set_permission(vhost, user, p).await
    }
}
