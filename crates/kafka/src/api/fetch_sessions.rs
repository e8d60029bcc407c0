//! Incremental fetch sessions (KIP-227).
//!
//! A consumer that fetches the same partitions over and over can open a
//! session (epoch 0): the broker remembers the partitions, their fetch
//! offsets, and what it last told the client about each. Later requests
//! (epoch 1, 2, ...) carry only the partitions whose offsets changed and
//! the ones to forget; responses carry only partitions with news (records,
//! a changed high watermark or log start offset, or an error). That keeps
//! requests and responses small for consumers of many partitions.
//!
//! Rules, as in Kafka's `FetchSessionCache`:
//! - `(id 0, epoch -1)`: no session; a full fetch.
//! - `(any id, epoch 0)`: close `id` if any, open a new session with the
//!   request's partitions; a full response carrying the new id.
//! - `(id, epoch -1)`: close `id`; a full fetch without session.
//! - `(id, epoch n > 0)`: an unknown id is `FETCH_SESSION_ID_NOT_FOUND`, a
//!   wrong epoch `INVALID_FETCH_SESSION_EPOCH`; otherwise the session is
//!   updated and its epoch advances (wrapping from `i32::MAX` to 1).
//!
//! At most [`MAX_SESSIONS`] sessions are kept; opening one more evicts the
//! least recently used. Sessions are memory only: after a restart clients
//! get `FETCH_SESSION_ID_NOT_FOUND` and open a new one.

use std::collections::HashMap;

use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::TopicName;
use parking_lot::Mutex;

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub(crate) const MAX_SESSIONS: usize = 1000;

/// A partition as the client names it: topic name (before v13) or id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PartitionKey {
    pub(crate) topic: TopicName,
    pub(crate) topic_id: uuid::Uuid,
    pub(crate) partition: i32,
}

/// What the client asked for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) fetch_offset: i64,
    pub(crate) max_bytes: i32,
    pub(crate) current_leader_epoch: i32,
}

/// What the client was last told about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reported {
    pub(crate) high_watermark: i64,
    pub(crate) log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    epoch: i32,
    /// Partitions in the order they were added (responses keep it).
    order: Vec<PartitionKey>,
    partitions: HashMap<PartitionKey, (Wanted, Option<Reported>)>,
    last_used: u64,
}

/// The decision for one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Fetch the request's partitions and answer them all; `session_id` is
    /// the id to report (0: no session).
    Full { session_id: i32 },
    /// Fetch these session partitions (in session order) and answer only
    /// those with news.
    Incremental { session_id: i32, partitions: Vec<(PartitionKey, Wanted)> },
    /// Answer with this top-level error.
    Error(i16),
}

/// All sessions of one gateway.
#[derive(Debug, Default)]
pub(crate) struct FetchSessions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: i32,
    tick: u64,
    sessions: HashMap<i32, Session>,
}

impl Inner {
    fn new_id(&mut self) -> i32 {
        loop {
            self.next_id = if self.next_id >= i32::MAX - 1 { 1 } else { self.next_id + 1 };
            if !self.sessions.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }
}

fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX { 1 } else { e + 1 }
}

impl FetchSessions {
    /// Decides how to serve a request with `session_id`/`epoch` naming
    /// `requested` partitions and forgetting `forgotten`.
    pub(crate) fn plan(
        &self,
        session_id: i32,
        epoch: i32,
        requested: &[(PartitionKey, Wanted)],
        forgotten: &[PartitionKey],
    ) -> Plan {
        let mut g = self.inner.lock();
        g.tick += 1;
        let tick = g.tick;
        match epoch {
            -1 => {
                if session_id != 0 {
                    g.sessions.remove(&session_id);
                }
                Plan::Full { session_id: 0 }
            }
            0 => {
                if session_id != 0 {
                    g.sessions.remove(&session_id);
                }
                if g.sessions.len() >= MAX_SESSIONS
                    && let Some(oldest) = g.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id)
                {
                    g.sessions.remove(&oldest);
                }
                let id = g.new_id();
                let mut session = Session { epoch: 1, order: Vec::new(), partitions: HashMap::new(), last_used: tick };
                for (k, w) in requested {
                    if session.partitions.insert(k.clone(), (*w, None)).is_none() {
                        session.order.push(k.clone());
                    }
                }
                g.sessions.insert(id, session);
                Plan::Full { session_id: id }
            }
            e if e < 0 => Plan::Error(ResponseError::InvalidFetchSessionEpoch.code()),
            e => {
                let Some(session) = g.sessions.get_mut(&session_id) else {
                    return Plan::Error(ResponseError::FetchSessionIdNotFound.code());
                };
                if session.epoch != e {
                    return Plan::Error(ResponseError::InvalidFetchSessionEpoch.code());
                }
                session.epoch = next_epoch(e);
                session.last_used = tick;
                for k in forgotten {
                    session.partitions.remove(k);
                }
                session.order.retain(|k| session.partitions.contains_key(k));
                for (k, w) in requested {
                    match session.partitions.get_mut(k) {
                        Some(entry) => entry.0 = *w,
                        None => {
                            session.partitions.insert(k.clone(), (*w, None));
                            session.order.push(k.clone());
                        }
                    }
                }
                let partitions = session
                    .order
                    .iter()
                    .filter_map(|k| session.partitions.get(k).map(|(w, _)| (k.clone(), *w)))
                    .collect();
                Plan::Incremental { session_id, partitions }
            }
        }
    }

    /// Records what a response told the client about `key` and says whether
    /// an incremental response must include it: records, an error, or a
    /// changed high watermark or log start offset.
    pub(crate) fn report(
        &self,
        session_id: i32,
        key: &PartitionKey,
        now: Reported,
        has_records: bool,
        error: bool,
    ) -> bool {
        let mut g = self.inner.lock();
        let Some(entry) = g.sessions.get_mut(&session_id).and_then(|s| s.partitions.get_mut(key)) else {
            return true;
        };
        let changed = entry.1 != Some(now);
        entry.1 = Some(now);
        has_records || error || changed
    }

    /// Number of open sessions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use fjord_kafka_codec::kafka_protocol::protocol::StrBytes;

    use super::*;

    fn key(p: i32) -> PartitionKey {
        PartitionKey { topic: TopicName(StrBytes::from_static_str("t")), topic_id: uuid::Uuid::nil(), partition: p }
    }

    fn want(offset: i64) -> Wanted {
        Wanted { fetch_offset: offset, max_bytes: 1024, current_leader_epoch: -1 }
    }

    const R: Reported = Reported { high_watermark: 10, log_start_offset: 0 };

    #[test]
    fn a_session_opens_advances_and_tracks_changes() {
        let s = FetchSessions::default();
        let Plan::Full { session_id: id } = s.plan(0, 0, &[(key(0), want(0)), (key(1), want(0))], &[]) else {
            panic!("expected a new session")
        };
        assert_ne!(id, 0);
        // The full response reports both partitions.
        assert!(s.report(id, &key(0), R, false, false));
        assert!(s.report(id, &key(1), R, false, false));
        // Epoch 1: nothing in the request, the session remembers both.
        let Plan::Incremental { partitions, .. } = s.plan(id, 1, &[], &[]) else { panic!() };
        assert_eq!(partitions, vec![(key(0), want(0)), (key(1), want(0))]);
        // Unchanged and empty: left out; records or a new high watermark: in.
        assert!(!s.report(id, &key(0), R, false, false));
        assert!(s.report(id, &key(1), R, true, false));
        assert!(s.report(id, &key(1), Reported { high_watermark: 11, log_start_offset: 0 }, false, false));
        // Epoch 2: move partition 0 forward, forget partition 1.
        let Plan::Incremental { partitions, .. } = s.plan(id, 2, &[(key(0), want(5))], &[key(1)]) else { panic!() };
        assert_eq!(partitions, vec![(key(0), want(5))]);
    }

    #[test]
    fn wrong_epochs_and_unknown_ids_are_errors_and_minus_one_closes() {
        let s = FetchSessions::default();
        let Plan::Full { session_id: id } = s.plan(0, 0, &[(key(0), want(0))], &[]) else { panic!() };
        assert_eq!(s.plan(id, 5, &[], &[]), Plan::Error(ResponseError::InvalidFetchSessionEpoch.code()));
        assert_eq!(s.plan(id + 1, 1, &[], &[]), Plan::Error(ResponseError::FetchSessionIdNotFound.code()));
        assert_eq!(s.plan(id, -1, &[], &[]), Plan::Full { session_id: 0 });
        assert_eq!(s.len(), 0);
        assert_eq!(s.plan(id, 1, &[], &[]), Plan::Error(ResponseError::FetchSessionIdNotFound.code()));
    }

    #[test]
    fn the_least_recently_used_session_is_evicted_when_full() {
        let s = FetchSessions::default();
        let Plan::Full { session_id: first } = s.plan(0, 0, &[], &[]) else { panic!() };
        let mut last = 0;
        for _ in 1..MAX_SESSIONS {
            let Plan::Full { session_id } = s.plan(0, 0, &[], &[]) else { panic!() };
            last = session_id;
        }
        // Use the first again, so the second is now the oldest.
        assert!(matches!(s.plan(first, 1, &[], &[]), Plan::Incremental { .. }));
        let _ = s.plan(0, 0, &[], &[]);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(matches!(s.plan(first, 2, &[], &[]), Plan::Incremental { .. }));
        assert!(matches!(s.plan(last, 1, &[], &[]), Plan::Incremental { .. }));
    }
}
