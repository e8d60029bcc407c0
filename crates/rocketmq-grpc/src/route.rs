//! QueryRoute, QueryAssignment, Heartbeat, NotifyClientTermination.

use fjord_broker::BrokerError;
use fjord_rocketmq_proto::v2::{self, Code};

use crate::GrpcGateway;
use crate::convert::{Fail, ok};

/// `host:port` as gRPC endpoints.
fn endpoints_of(endpoint: &str) -> v2::Endpoints {
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, "8081"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let scheme = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => v2::AddressScheme::IPv6,
        Ok(_) => v2::AddressScheme::IPv4,
        Err(_) => v2::AddressScheme::DomainName,
    };
    v2::Endpoints {
        scheme: scheme as i32,
        addresses: vec![v2::Address { host: host.to_string(), port: port.parse().unwrap_or(8081) }],
    }
}

impl GrpcGateway {
    /// The queue id of a stored message on this broker: the partitions
    /// this node leads, numbered from 0 (the partition itself alone).
    pub(crate) fn queue_of(&self, m: &fjord_messaging::StoredMessage) -> i32 {
        let tp = fjord_broker::TopicPartition::new(&m.topic, m.partition);
        self.broker().led_index_of(&tp).map_or(-1, |q| q as i32)
    }

    /// Every broker serving `topic` with its queue count: each node leading
    /// some of its partitions (this node, alone, with all of them).
    fn brokers_of(&self, topic: &str, total: usize) -> Vec<(v2::Broker, usize)> {
        let Some(placement) = self.broker().placement() else {
            let broker = v2::Broker { name: self.config.broker_name.clone(), id: 0, endpoints: Some(self.endpoints()) };
            return vec![(broker, total)];
        };
        placement
            .nodes
            .iter()
            .filter_map(|n| {
                let led = placement.topics.get(topic).map_or(0, |p| p.iter().filter(|a| a.leader == n.node_id).count());
                let endpoint = n.listeners.get("rocketmq_grpc")?;
                let broker = v2::Broker {
                    name: format!("broker-{}", n.node_id),
                    id: 0,
                    endpoints: Some(endpoints_of(endpoint)),
                };
                (led > 0).then_some((broker, led))
            })
            .collect()
    }

    fn endpoints(&self) -> v2::Endpoints {
        endpoints_of(&self.config.endpoint)
    }

    /// The topic's partitions as message queues; created on first use when
    /// the broker auto-creates topics (as Kafka metadata requests do).
    pub(crate) async fn queues(&self, topic: &v2::Resource) -> Result<Vec<v2::MessageQueue>, Fail> {
        let name = &topic.name;
        let t = match self.broker().topic(name) {
            Some(t) => t,
            None if self.broker().auto_create_topics() => {
                let partitions = self.broker().config().default_partitions.max(4);
                match self.broker().create_topic(name, partitions, fjord_messaging::query::keyed_topic_config()).await {
                    Ok(t) => t,
                    Err(BrokerError::TopicExists(_)) => {
                        self.broker().topic(name).ok_or(Fail::new(Code::TopicNotFound, "topic vanished"))?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => return Err(Fail::new(Code::TopicNotFound, format!("topic {name} does not exist"))),
        };
        let types =
            [v2::MessageType::Normal, v2::MessageType::Fifo, v2::MessageType::Delay, v2::MessageType::Transaction];
        Ok(self
            .brokers_of(name, t.partitions().len())
            .into_iter()
            .flat_map(|(broker, queues)| {
                (0..queues as i32).map(move |id| v2::MessageQueue {
                    topic: Some(topic.clone()),
                    id,
                    permission: v2::Permission::ReadWrite as i32,
                    broker: Some(broker.clone()),
                    accept_message_types: types.iter().map(|t| *t as i32).collect(),
                })
            })
            .collect())
    }

    pub(crate) async fn query_route(&self, req: v2::QueryRouteRequest) -> v2::QueryRouteResponse {
        let Some(topic) = req.topic else {
            return v2::QueryRouteResponse {
                status: Some(Fail::new(Code::IllegalTopic, "no topic").status()),
                message_queues: vec![],
            };
        };
        match self.queues(&topic).await {
            Ok(q) => v2::QueryRouteResponse { status: Some(ok()), message_queues: q },
            Err(f) => v2::QueryRouteResponse { status: Some(f.status()), message_queues: vec![] },
        }
    }

    /// Push consumers pop from every queue of the topic through one
    /// assignment per broker (pop consumption shares queues), as the Java
    /// proxy assigns: one per node leading some of its partitions.
    pub(crate) async fn query_assignment(&self, req: v2::QueryAssignmentRequest) -> v2::QueryAssignmentResponse {
        let Some(topic) = req.topic else {
            return v2::QueryAssignmentResponse {
                status: Some(Fail::new(Code::IllegalTopic, "no topic").status()),
                assignments: vec![],
            };
        };
        match self.queues(&topic).await {
            Ok(q) => v2::QueryAssignmentResponse {
                status: Some(ok()),
                assignments: q
                    .into_iter()
                    .filter(|mq| mq.id == 0)
                    .map(|mut mq| {
                        mq.id = -1;
                        v2::Assignment { message_queue: Some(mq) }
                    })
                    .collect(),
            },
            Err(f) => v2::QueryAssignmentResponse { status: Some(f.status()), assignments: vec![] },
        }
    }
}
