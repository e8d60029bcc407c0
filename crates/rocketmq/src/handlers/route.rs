//! Name server commands: routes, cluster and topic listings, topic admin.
//! Alone, every route points at this node. In a cluster every node is
//! broker `broker-<id>` of one cluster, and the name server on any node
//! lists each serving broker with a read queue per partition and a write
//! queue per partition it is the preferred leader of (`queues.rs`).

use std::collections::BTreeMap;

use fjord_broker::BrokerError;
use fjord_messaging::query::keyed_topic_config;
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::bodies::{
    BrokerData, ClusterInfo, PERM_READ_WRITE, QueueData, TopicList, TopicRouteData, to_json,
};
use fjord_rocketmq_codec::codes::response;

use super::ok;
use crate::RocketMqGateway;
use crate::error::{Handled, Reject};

/// The topic producers fall back to for the route of a topic that does not
/// exist yet; sending with it as `defaultTopic` creates the topic.
pub(crate) const AUTO_CREATE_TOPIC: &str = "TBW102";

impl RocketMqGateway {
    fn broker_data(&self) -> BrokerData {
        BrokerData {
            cluster: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_addrs: BTreeMap::from([("0".to_string(), self.config.broker_addr.clone())]),
        }
    }

    /// The brokers of the cluster: every serving node (this one alone).
    fn brokers(&self) -> Vec<(i32, BrokerData)> {
        let Some(placement) = self.broker().placement() else {
            return vec![(self.broker().config().node_id, self.broker_data())];
        };
        placement
            .nodes
            .iter()
            .filter_map(|n| {
                let addr = n.listeners.get("rocketmq_broker").or_else(|| n.listeners.get("rocketmq_namesrv"))?;
                let data = BrokerData {
                    cluster: self.config.cluster_name.clone(),
                    broker_name: format!("broker-{}", n.node_id),
                    broker_addrs: BTreeMap::from([("0".to_string(), addr.clone())]),
                };
                Some((n.node_id, data))
            })
            .collect()
    }

    /// Queues of `topic` per serving broker: read queues (every partition)
    /// and write queues (those it is the preferred leader of).
    fn queues_by_broker(&self, topic: &str, total: i32) -> Vec<(BrokerData, i32, i32)> {
        let placement = self.broker().placement();
        self.brokers()
            .into_iter()
            .filter_map(|(id, data)| {
                let (read, write) = match placement.as_ref() {
                    None => (total, total),
                    Some(p) => {
                        let (order, first) = p.queue_order(topic, id);
                        (order.len() as i32, first as i32)
                    }
                };
                (read > 0).then_some((data, read, write))
            })
            .collect()
    }
}

pub(crate) async fn route_info(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let topic = req.required("topic")?;
    // A starting push consumer asks for its group's retry topic before its
    // first heartbeat creates it; without a route then, the 5.x client
    // learns of it only at its next route poll (30 s), and every retry
    // waits that long. The question itself names the group: create it.
    if let Some(group) = topic.strip_prefix(fjord_messaging::retry::RETRY_PREFIX)
        && !group.is_empty()
        && gw.broker().topic(topic).is_none()
        && gw.broker().auto_create_topics()
    {
        gw.messaging.ensure_retry_topic(group).await?;
    }
    let queues = match gw.broker().topic(topic) {
        Some(t) => t.partitions().len() as i32,
        None if topic == AUTO_CREATE_TOPIC && gw.broker().auto_create_topics() => {
            gw.config.max_auto_create_queues as i32
        }
        None => {
            return Err(Reject::new(
                response::TOPIC_NOT_EXIST,
                format!("No topic route info in name server for the topic: {topic}"),
            ));
        }
    };
    // The auto-create route offers every broker; a real topic's brokers
    // are those leading its partitions.
    let per_broker = if gw.broker().topic(topic).is_none() {
        gw.brokers().into_iter().map(|(_, b)| (b, queues, queues)).collect()
    } else {
        gw.queues_by_broker(topic, queues)
    };
    if per_broker.is_empty() {
        return Err(Reject::new(
            response::TOPIC_NOT_EXIST,
            format!("No topic route info in name server for the topic: {topic} (no serving broker leads it)"),
        ));
    }
    let route = TopicRouteData {
        order_topic_conf: None,
        queue_datas: per_broker
            .iter()
            .map(|(b, read, write)| QueueData {
                broker_name: b.broker_name.clone(),
                read_queue_nums: *read,
                write_queue_nums: *write,
                perm: PERM_READ_WRITE,
                topic_sys_flag: 0,
            })
            .collect(),
        broker_datas: per_broker.into_iter().map(|(b, _, _)| b).collect(),
        filter_server_table: BTreeMap::new(),
    };
    Ok(ok(req).with_body(to_json(&route)))
}

pub(crate) fn cluster_info(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let brokers = gw.brokers();
    let names = brokers.iter().map(|(_, b)| b.broker_name.clone()).collect();
    let info = ClusterInfo {
        broker_addr_table: brokers.into_iter().map(|(_, b)| (b.broker_name.clone(), b)).collect(),
        cluster_addr_table: BTreeMap::from([(gw.config.cluster_name.clone(), names)]),
    };
    Ok(ok(req).with_body(to_json(&info)))
}

pub(crate) fn topic_list(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let mut topics: Vec<String> = gw.broker().topics().iter().map(|t| t.name()).collect();
    topics.sort();
    Ok(ok(req).with_body(to_json(&TopicList { topic_list: topics, broker_addr: None })))
}

pub(crate) async fn create_topic(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let topic = req.required("topic")?;
    let read: i32 = req.parse_opt("readQueueNums")?.unwrap_or(0);
    let write: i32 = req.parse_opt("writeQueueNums")?.unwrap_or(0);
    let queues = read.max(write).max(1) as u32;
    match gw.broker().create_topic(topic, queues, keyed_topic_config()).await {
        Ok(_) => {}
        Err(BrokerError::TopicExists(_)) => {
            let have = gw.broker().topic(topic).map_or(0, |t| t.partitions().len() as u32);
            if queues > have {
                gw.broker().create_partitions(topic, queues).await?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ok(req))
}

pub(crate) async fn delete_topic(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let topic = req.required("topic")?;
    match gw.broker().delete_topic(topic).await {
        Ok(()) | Err(BrokerError::UnknownTopic(_)) => Ok(ok(req)),
        Err(e) => Err(e.into()),
    }
}
