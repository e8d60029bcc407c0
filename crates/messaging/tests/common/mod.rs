//! Shared setup: a broker with the key index on, a manual clock, and the
//! messaging layer over it.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_log::{KeyIndexConfig, ManualClock};
use fjord_messaging::message::indexed_headers;
use fjord_messaging::{Messaging, MessagingConfig};

pub const T0: i64 = 1_700_000_000_000;

pub struct Env {
    pub broker: Arc<Broker>,
    pub m: Arc<Messaging>,
    pub clock: Arc<ManualClock>,
}

pub fn config(dir: &Path) -> BrokerConfig {
    let mut c = BrokerConfig::new(dir);
    c.log_defaults.key_index = KeyIndexConfig { enabled: true, header_keys: indexed_headers() };
    c
}

pub async fn open_at(dir: &Path, clock: Arc<ManualClock>, mc: MessagingConfig) -> Env {
    let broker = Broker::open(config(dir), clock.clone()).await.expect("open broker");
    let m = Messaging::open(broker.clone(), mc).await.expect("open messaging");
    Env { broker, m, clock }
}

pub async fn open(dir: &Path) -> Env {
    open_at(dir, Arc::new(ManualClock::new(T0)), MessagingConfig::default()).await
}

impl Env {
    pub async fn topic(&self, name: &str, partitions: u32) {
        self.broker.create_topic(name, partitions, TopicConfig::default()).await.expect("create topic");
    }

    pub async fn close(self) {
        self.m.shutdown().await.expect("messaging shutdown");
        self.broker.shutdown().await.expect("broker shutdown");
    }
}
