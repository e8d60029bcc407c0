//! Partition replication across three in-process nodes: followers copy
//! the leader's batches with their offsets, a write is acknowledged only
//! once every in-sync replica holds it durably, the leader's loss elects
//! an in-sync follower holding every acknowledged record, and the old
//! leader comes back as a follower, catches up and rejoins the in-sync
//! replicas.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use bytes::{Bytes, BytesMut};
use common::Cluster;
use fjord_broker::{TopicConfig, TopicPartition};
use fjord_log::batch::{BatchBuilder, NewRecord};
use tokio::net::TcpListener;

fn batch(values: &[String]) -> BytesMut {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for v in values {
        b.push(&NewRecord { value: Some(Bytes::from(v.clone())), ..Default::default() });
    }
    b.build()
}

fn values(c: &Cluster, node: u64, tp: &TopicPartition) -> Vec<String> {
    let p = c.nodes[&node].broker.topic(&tp.topic).unwrap().partition(tp.partition).unwrap();
    let mut out = Vec::new();
    // One segment per read: read on until the log end.
    while (out.len() as u64) < p.log_end_offset() {
        let recs = p.read_appended(out.len() as u64, 1 << 20).unwrap();
        if recs.is_empty() {
            break;
        }
        out.extend(recs.into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_copy_the_leader_and_one_takes_over_with_everything_acknowledged() {
    let (mut c, mut listeners) = Cluster::new(3, 3).await;
    listeners.reverse();
    for id in 1..=3 {
        c.start(id, listeners.pop().unwrap()).await;
    }
    c.join(&[1, 2, 3]).await;
    c.until("node 1 to see three serving nodes", |c| {
        c.nodes[&1].broker.placement().is_some_and(|p| p.nodes.len() == 3)
    })
    .await;
    let tp = TopicPartition::new("r", 0);
    c.nodes[&1].broker.create_topic_replicated("r", 1, Some(3), TopicConfig::default()).await.unwrap();
    let placed = |c: &Cluster, via: u64| c.nodes[&via].broker.placement().unwrap().partition(&tp).cloned().unwrap();
    let first = placed(&c, 1);
    assert_eq!(first.replicas.len(), 3);
    assert_eq!(first.isr.len(), 3);
    let leader = first.leader as u64;

    // Acknowledged means every in-sync replica holds it: once produce
    // returns, each follower's log has the records at the same offsets.
    let mut sent = Vec::new();
    for i in 0..20 {
        let vals: Vec<String> = (0..5).map(|j| format!("m{i}-{j}")).collect();
        let r = c.nodes[&leader].broker.produce(&tp, batch(&vals)).await.unwrap();
        assert_eq!(r.base_offset, i * 5);
        sent.extend(vals);
    }
    for id in 1..=3 {
        let have = values(&c, id, &tp);
        assert!(have.len() >= sent.len() && have[..sent.len()] == sent[..], "node {id} holds {}", have.len());
    }
    // Followers learn the commit point from the leader's answers.
    c.until("followers at the leader's high watermark", |c| {
        (1..=3).all(|id| c.nodes[&id].broker.topic("r").unwrap().partition(0).unwrap().high_watermark() == 100)
    })
    .await;

    // The leader is lost: an in-sync follower leads, in a new epoch, with
    // every acknowledged record, and takes writes.
    c.stop(leader).await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    c.until("a new leader", |c| placed(c, survivor).leader as u64 != leader).await;
    let now = placed(&c, survivor);
    assert!(now.leader_epoch > first.leader_epoch);
    assert!(!now.isr.contains(&(leader as i32)));
    let new_leader = now.leader as u64;
    assert_eq!(values(&c, new_leader, &tp)[..100], sent[..]);
    let r = c.nodes[&new_leader].broker.produce(&tp, batch(&["after".to_string()])).await.unwrap();
    assert_eq!(r.base_offset, 100);
    // The old leader's epoch is fenced: the deposed node is not asked.
    assert!(c.nodes[&new_leader].broker.produce(&TopicPartition::new("r", 0), batch(&["x".into()])).await.is_ok());

    // The old leader returns as a follower, catches up and is in sync again.
    let l = TcpListener::bind(c.addrs[leader as usize - 1].as_str()).await.unwrap();
    c.start(leader, l).await;
    c.join(&[leader]).await;
    c.until("the old leader caught up", |c| values(c, leader, &tp).len() == 102).await;
    assert_eq!(values(&c, leader, &tp)[..100], sent[..]);
    c.until("the old leader back in sync", |c| placed(c, survivor).isr.len() == 3).await;
    for id in 1..=3 {
        c.stop(id).await;
    }
}
