//! A group's stored form taken over by another coordinator (a failover):
//! epochs, members, assignments, targets and revocations in flight carry
//! on, the invariants hold, timers are running again, and the members
//! finish their rebalance against the new coordinator.

use super::*;
use crate::group::GroupRecord;
use crate::offsets::codec_for_tests::{decode_group_record, encode_group_record};

#[tokio::test(start_paused = true)]
async fn a_stored_group_mid_rebalance_carries_on_at_another_coordinator() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let (mut a, _) = Client::join(&c, "a", &["t"]);
    let (b, _) = Client::join(&c, "b", &["t"]);
    // A is asked to revoke two partitions and has not confirmed yet.
    a.heartbeat(&c).unwrap();
    let stored = c.stored_form(GROUP).expect("stored form");
    let before = c.describe(&[GROUP.to_owned()]).remove(0).unwrap();

    // Through the stored bytes, to another coordinator.
    let record = GroupRecord::Consumer(stored);
    let bytes = encode_group_record(&record);
    let Some(GroupRecord::Consumer(decoded)) = decode_group_record(GROUP, &bytes) else { panic!("decoded") };
    assert!(decode_group_record("other", &bytes).is_none(), "a record names its group");
    let next = coordinator(&topics);
    assert_eq!(next.restore(vec![decoded.clone()]), 1);
    assert_eq!(next.restore(vec![decoded]), 0, "a group held already is kept");
    check(&next);
    let after = next.describe(&[GROUP.to_owned()]).remove(0).unwrap();
    assert_eq!(after, before);
    // One session timeout per member and A's rebalance timeout.
    assert_eq!(next.scheduled_timers(), 3);
    next.validate_commit(GROUP, &a.member_id, a.epoch).expect("A commits with its epoch");
    next.validate_commit(GROUP, &b.member_id, b.epoch).expect("B commits with its epoch");

    // The rebalance completes there.
    let mut clients = [a, b];
    converge(&next, &mut clients);
    assert_disjoint(&clients);
    assert_eq!(clients.iter().map(|c| c.owned.len()).sum::<usize>(), 4);
    assert_eq!(state(&next), ConsumerGroupState::Stable);

    // A member that never comes back expires there.
    advance(SESSION + Duration::from_secs(1)).await;
    assert!(next.describe(&[GROUP.to_owned()]).remove(0).unwrap().members.is_empty());
}

/// Topics that changed while the group was stored bump its epoch on
/// restore, as the next heartbeat would have.
#[tokio::test(start_paused = true)]
async fn a_topic_grown_since_the_group_was_stored_bumps_its_epoch() {
    let topics = Topics::with(&[("t", 2)]);
    let c = coordinator(&topics);
    let (_a, _) = Client::join(&c, "a", &["t"]);
    let stored = c.stored_form(GROUP).unwrap();
    let epoch = group_epoch(&c);
    topics.set_partitions("t", 3);
    let next = coordinator(&topics);
    next.restore(vec![stored]);
    assert_eq!(group_epoch(&next), epoch + 1);
    check(&next);
}
