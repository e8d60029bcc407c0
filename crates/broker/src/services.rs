//! Node-to-node services of the layers above the broker: a layer registers
//! a named handler on every node and calls it on another node through the
//! broker, which hands the call to the cluster's transport. The messaging
//! layer uses it to store a message on the node that leads its partition
//! for a client connected elsewhere (an AMQP publish routed to a queue of
//! another node).
//!
//! The broker neither encodes nor interprets requests and replies: each
//! service owns its payload format and reports its own outcomes in its
//! reply. An `Err` is for the call itself (unknown service, node
//! unreachable, handler failed before it could answer).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::broker::Broker;
use crate::error::{BrokerError, Result};

/// What a service handler returns.
pub type ServiceFuture = Pin<Box<dyn Future<Output = std::result::Result<Bytes, String>> + Send>>;

/// A service handler: the calling node's id and the request payload in,
/// the reply out.
pub type ServiceHandler = Arc<dyn Fn(i32, Bytes) -> ServiceFuture + Send + Sync>;

#[derive(Default)]
pub(crate) struct Services(RwLock<HashMap<String, ServiceHandler>>);

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.read().keys()).finish()
    }
}

impl Broker {
    /// Registers (or replaces) the handler of service `name` on this node.
    pub fn register_service(&self, name: &str, handler: ServiceHandler) {
        self.services.0.write().insert(name.to_string(), handler);
    }

    /// Serves a call of `name` that arrived from node `caller`.
    pub async fn serve_service(&self, name: &str, caller: i32, payload: Bytes) -> std::result::Result<Bytes, String> {
        let handler = self.services.0.read().get(name).cloned();
        match handler {
            Some(h) => h(caller, payload).await,
            None => Err(format!("no service '{name}' on this node")),
        }
    }

    /// Calls service `name` on node `node`. Fails (retriable) on a single
    /// node, or when the node cannot be reached or does not serve it.
    pub async fn call_service(&self, node: i32, name: &str, payload: Bytes) -> Result<Bytes> {
        let Some(authority) = self.authority() else {
            return Err(BrokerError::Unavailable(format!("no node {node} to call: not a cluster")));
        };
        authority.call_service(node, name, payload).await
    }
}
