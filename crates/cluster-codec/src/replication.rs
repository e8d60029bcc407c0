//! Replica fetches: a follower node asks the leader node for the batches
//! of every partition it follows there, in one request
//! (`docs/design/replication.md` §3). Record batches travel as the log
//! stores them (raw bytes, never re-encoded).
//!
//! Layouts (big-endian):
//! ```text
//! ReplicaFetch         = max_wait_ms:u32 max_bytes:u32 count:u32 FetchPartition*
//! FetchPartition       = topic:str16 partition:u32 leader_epoch:i32
//!                        fetch_offset:u64 last_fetched_epoch:i32 durable_offset:u64
//! ReplicaFetchResponse = count:u32 FetchedPartition*
//! FetchedPartition     = topic:str16 partition:u32 status:u8 leader_epoch:i32
//!                        high_watermark:u64 log_start:u64
//!                        diverging_epoch:i32 diverging_end:u64   (-1, 0: none)
//!                        records_len:u32 records
//! str16                = len:u16 UTF-8 bytes
//! ```
//! A count is checked against the bytes left (each entry's fixed part)
//! before anything is allocated for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;

/// Longest topic name in a replica fetch.
const MAX_TOPIC: usize = u16::MAX as usize;
/// Fixed bytes of a [`FetchPartition`] after its topic.
const FETCH_FIXED: usize = 2 + 4 + 4 + 8 + 4 + 8;
/// Fixed bytes of a [`FetchedPartition`] after its topic.
const FETCHED_FIXED: usize = 2 + 4 + 1 + 4 + 8 + 8 + 4 + 8 + 4;

/// One partition a follower asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The leader epoch the follower believes current (fencing).
    pub leader_epoch: i32,
    /// The follower's log end: where to read from.
    pub fetch_offset: u64,
    /// The epoch of the follower's last batch (-1 for an empty log): the
    /// leader checks the follower's tail against its own (KIP-320).
    pub last_fetched_epoch: i32,
    /// What the follower holds durably (under the topic's policy): the
    /// leader's high watermark counts only that.
    pub durable_offset: u64,
}

/// A follower node's fetch of every partition it follows on one leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetch {
    /// How long the leader may wait for data when it has none (long poll).
    pub max_wait_ms: u32,
    /// Byte budget of the whole response's records.
    pub max_bytes: u32,
    /// The partitions.
    pub partitions: Vec<FetchPartition>,
}

/// How the leader answers one partition of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStatus {
    /// Records (possibly none) follow.
    Ok,
    /// The node does not lead the partition.
    NotLeader,
    /// The follower's epoch is older than the leader's: it must wait for
    /// newer metadata.
    FencedLeaderEpoch,
    /// The follower's epoch is newer than the leader's: the leader has not
    /// caught up with the metadata yet.
    UnknownLeaderEpoch,
    /// The partition does not exist here.
    UnknownPartition,
    /// The fetch offset is outside the leader's log (below its start: the
    /// follower must start over at `log_start`).
    OffsetOutOfRange,
    /// The follower's tail diverges from the leader's log: cut it at
    /// `diverging.1` and fetch again.
    Diverging,
    /// A status this version does not know.
    Unknown(u8),
}

impl FetchStatus {
    fn code(self) -> u8 {
        match self {
            FetchStatus::Ok => 0,
            FetchStatus::NotLeader => 1,
            FetchStatus::FencedLeaderEpoch => 2,
            FetchStatus::UnknownLeaderEpoch => 3,
            FetchStatus::UnknownPartition => 4,
            FetchStatus::OffsetOutOfRange => 5,
            FetchStatus::Diverging => 6,
            FetchStatus::Unknown(c) => c,
        }
    }

    fn from_code(c: u8) -> FetchStatus {
        match c {
            0 => FetchStatus::Ok,
            1 => FetchStatus::NotLeader,
            2 => FetchStatus::FencedLeaderEpoch,
            3 => FetchStatus::UnknownLeaderEpoch,
            4 => FetchStatus::UnknownPartition,
            5 => FetchStatus::OffsetOutOfRange,
            6 => FetchStatus::Diverging,
            c => FetchStatus::Unknown(c),
        }
    }
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The outcome.
    pub status: FetchStatus,
    /// The leader's epoch for the partition.
    pub leader_epoch: i32,
    /// The leader's high watermark.
    pub high_watermark: u64,
    /// The leader's log start offset.
    pub log_start: u64,
    /// With [`FetchStatus::Diverging`]: the follower's last epoch as the
    /// leader knows it, and where it ends in the leader's log.
    pub diverging: Option<(i32, u64)>,
    /// Record batches from the fetch offset, as stored.
    pub records: Bytes,
}

/// The leader's answer to a [`ReplicaFetch`], partitions in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchResponse {
    /// One entry per requested partition.
    pub partitions: Vec<FetchedPartition>,
}

fn short(what: &'static str) -> CodecError {
    CodecError::Body { what, reason: "ends early" }
}

fn put_str(b: &mut BytesMut, s: &str, what: &'static str) -> Result<(), CodecError> {
    if s.len() > MAX_TOPIC {
        return Err(CodecError::Body { what, reason: "topic name longer than 65535 bytes" });
    }
    b.put_u16(s.len() as u16);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn get_str(b: &mut Bytes, what: &'static str) -> Result<String, CodecError> {
    if b.remaining() < 2 {
        return Err(short(what));
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return Err(short(what));
    }
    String::from_utf8(b.split_to(n).to_vec()).map_err(|_| CodecError::Body { what, reason: "topic is not UTF-8" })
}

/// Reads an entry count, refusing one the remaining bytes cannot hold.
fn get_count(b: &mut Bytes, min_entry: usize, what: &'static str) -> Result<usize, CodecError> {
    if b.remaining() < 4 {
        return Err(short(what));
    }
    let n = b.get_u32() as usize;
    if n.saturating_mul(min_entry) > b.remaining() {
        return Err(CodecError::Body { what, reason: "more entries than bytes" });
    }
    Ok(n)
}

impl ReplicaFetch {
    /// Encodes the body.
    pub fn encode(&self) -> Result<Bytes, CodecError> {
        const W: &str = "replica fetch";
        let mut b = BytesMut::with_capacity(12 + self.partitions.len() * 48);
        b.put_u32(self.max_wait_ms);
        b.put_u32(self.max_bytes);
        b.put_u32(u32::try_from(self.partitions.len()).map_err(|_| CodecError::Body { what: W, reason: "too many" })?);
        for p in &self.partitions {
            put_str(&mut b, &p.topic, W)?;
            b.put_u32(p.partition);
            b.put_i32(p.leader_epoch);
            b.put_u64(p.fetch_offset);
            b.put_i32(p.last_fetched_epoch);
            b.put_u64(p.durable_offset);
        }
        Ok(b.freeze())
    }

    /// Reads the body.
    pub fn decode(mut b: Bytes) -> Result<ReplicaFetch, CodecError> {
        const W: &str = "replica fetch";
        if b.remaining() < 8 {
            return Err(short(W));
        }
        let max_wait_ms = b.get_u32();
        let max_bytes = b.get_u32();
        let n = get_count(&mut b, FETCH_FIXED, W)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = get_str(&mut b, W)?;
            if b.remaining() < FETCH_FIXED - 2 {
                return Err(short(W));
            }
            partitions.push(FetchPartition {
                topic,
                partition: b.get_u32(),
                leader_epoch: b.get_i32(),
                fetch_offset: b.get_u64(),
                last_fetched_epoch: b.get_i32(),
                durable_offset: b.get_u64(),
            });
        }
        if b.has_remaining() {
            return Err(CodecError::Body { what: W, reason: "trailing bytes" });
        }
        Ok(ReplicaFetch { max_wait_ms, max_bytes, partitions })
    }
}

impl ReplicaFetchResponse {
    /// Encodes the body (records copied once into the frame).
    pub fn encode(&self) -> Result<Bytes, CodecError> {
        const W: &str = "replica fetch response";
        let records: usize = self.partitions.iter().map(|p| p.records.len()).sum();
        let mut b = BytesMut::with_capacity(4 + self.partitions.len() * 64 + records);
        b.put_u32(u32::try_from(self.partitions.len()).map_err(|_| CodecError::Body { what: W, reason: "too many" })?);
        for p in &self.partitions {
            put_str(&mut b, &p.topic, W)?;
            b.put_u32(p.partition);
            b.put_u8(p.status.code());
            b.put_i32(p.leader_epoch);
            b.put_u64(p.high_watermark);
            b.put_u64(p.log_start);
            let (epoch, end) = p.diverging.unwrap_or((-1, 0));
            b.put_i32(epoch);
            b.put_u64(end);
            let len = u32::try_from(p.records.len())
                .map_err(|_| CodecError::Body { what: W, reason: "records longer than 4 GiB" })?;
            b.put_u32(len);
            b.put_slice(&p.records);
        }
        Ok(b.freeze())
    }

    /// Reads the body (records share `b`'s memory).
    pub fn decode(mut b: Bytes) -> Result<ReplicaFetchResponse, CodecError> {
        const W: &str = "replica fetch response";
        let n = get_count(&mut b, FETCHED_FIXED, W)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = get_str(&mut b, W)?;
            if b.remaining() < FETCHED_FIXED - 2 {
                return Err(short(W));
            }
            let partition = b.get_u32();
            let status = FetchStatus::from_code(b.get_u8());
            let leader_epoch = b.get_i32();
            let high_watermark = b.get_u64();
            let log_start = b.get_u64();
            let epoch = b.get_i32();
            let end = b.get_u64();
            let len = b.get_u32() as usize;
            if b.remaining() < len {
                return Err(short(W));
            }
            let diverging = (epoch >= 0).then_some((epoch, end));
            if diverging.is_none() && (epoch != -1 || end != 0) {
                return Err(CodecError::Body { what: W, reason: "a diverging end without an epoch" });
            }
            partitions.push(FetchedPartition {
                topic,
                partition,
                status,
                leader_epoch,
                high_watermark,
                log_start,
                diverging,
                records: b.split_to(len),
            });
        }
        if b.has_remaining() {
            return Err(CodecError::Body { what: W, reason: "trailing bytes" });
        }
        Ok(ReplicaFetchResponse { partitions })
    }
}
