//! Name server commands: routes, cluster and topic listings, topic admin.
//! Every route points at this node.

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
    let route = TopicRouteData {
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: gw.config.broker_name.clone(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: PERM_READ_WRITE,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![gw.broker_data()],
        filter_server_table: BTreeMap::new(),
    };
    Ok(ok(req).with_body(to_json(&route)))
}

pub(crate) fn cluster_info(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let info = ClusterInfo {
        broker_addr_table: BTreeMap::from([(gw.config.broker_name.clone(), gw.broker_data())]),
        cluster_addr_table: BTreeMap::from([(gw.config.cluster_name.clone(), vec![gw.config.broker_name.clone()])]),
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
