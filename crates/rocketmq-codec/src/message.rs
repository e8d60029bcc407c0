//! Message encodings: the property string, the commitlog layout of a
//! stored message (what PULL_MESSAGE, QUERY_MESSAGE and
//! VIEW_MESSAGE_BY_ID bodies hold, one after another), the batch body of
//! SEND_BATCH_MESSAGE, and offset message ids.
//!
//! Commitlog layout (big-endian, v1 magic; v2 differs only in a 2-byte
//! topic length):
//! ```text
//! total size i32 | magic i32 | body crc i32 | queue id i32 | flag i32
//! queue offset i64 | physical offset i64 | sys flag i32 | born time i64
//! born host (ip 4|16, port i32) | store time i64 | store host (ip, port)
//! reconsume times i32 | prepared transaction offset i64
//! body len i32 + body | topic len u8 (u16 in v2) + topic
//! properties len i16 + properties
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{CodecError, Result, need};

/// Magic code of the v1 message layout (1-byte topic length).
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic code of the v2 message layout (2-byte topic length).
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;

/// System flag bits (`MessageSysFlag`).
pub mod sys_flag {
    /// The body is zlib-compressed.
    pub const COMPRESSED: i32 = 0x1;
    /// The tag is a multi-tag string.
    pub const MULTI_TAGS: i32 = 0x2;
    /// Transaction type mask.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// A transaction's half (prepared) message.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// A transaction commit.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// A transaction rollback.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// Born host is IPv6.
    pub const BORNHOST_V6: i32 = 0x10;
    /// Store host is IPv6.
    pub const STOREHOST_V6: i32 = 0x20;
}

/// Property names (`MessageConst`).
pub mod property {
    #![allow(missing_docs)]
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT: &str = "WAIT";
    pub const DELAY: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const PGROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_ON: &str = "TRACE_ON";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const CLUSTER: &str = "CLUSTER";
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
}

const NAME_SEP: char = '\u{1}';
const PROP_SEP: char = '\u{2}';

/// Encodes properties as RocketMQ does: `name 0x01 value 0x02` each.
pub fn encode_properties(props: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in props {
        s.push_str(k);
        s.push(NAME_SEP);
        s.push_str(v);
        s.push(PROP_SEP);
    }
    s
}

/// Decodes a property string; pairs without a separator are skipped (as
/// RocketMQ's decoder does).
pub fn decode_properties(s: &str) -> Vec<(String, String)> {
    s.split(PROP_SEP)
        .filter_map(|kv| kv.split_once(NAME_SEP))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The first value of property `name`.
pub fn prop<'a>(props: &'a [(String, String)], name: &str) -> Option<&'a str> {
    props.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// RocketMQ's body checksum: CRC-32 (IEEE) with the sign bit cleared.
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// A stored message as the commitlog layout describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// Topic.
    pub topic: String,
    /// Queue (partition).
    pub queue_id: i32,
    /// The producer's integer flag.
    pub flag: i32,
    /// Offset in the queue.
    pub queue_offset: i64,
    /// Broker-wide position (Fjord: see the gateway's message-id scheme).
    pub commit_log_offset: i64,
    /// [`sys_flag`] bits; the host bits are derived from the addresses.
    pub sys_flag: i32,
    /// Creation time at the producer, ms.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Store time, ms.
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Times it was consumed and failed before.
    pub reconsume_times: i32,
    /// Offset of the half message a committed one came from.
    pub prepared_transaction_offset: i64,
    /// Payload.
    pub body: Bytes,
    /// Properties, in order.
    pub properties: Vec<(String, String)>,
}

fn put_addr(out: &mut BytesMut, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(i32::from(a.port()));
}

fn get_addr(b: &mut Bytes, v6: bool) -> Result<SocketAddr> {
    let n = if v6 { 16 } else { 4 };
    need("host", (n + 4) as i64, b.len())?;
    let ip = if v6 {
        let mut o = [0u8; 16];
        b.copy_to_slice(&mut o);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        let mut o = [0u8; 4];
        b.copy_to_slice(&mut o);
        IpAddr::V4(Ipv4Addr::from(o))
    };
    Ok(SocketAddr::new(ip, b.get_i32() as u16))
}

impl MessageExt {
    /// Appends the commitlog encoding to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        let props = encode_properties(&self.properties);
        let v2 = self.topic.len() > usize::from(u8::MAX);
        let mut sys = self.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
        let host_len = |a: &SocketAddr| if a.is_ipv6() { 20 } else { 8 };
        if self.born_host.is_ipv6() {
            sys |= sys_flag::BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            sys |= sys_flag::STOREHOST_V6;
        }
        let total = 4
            + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + host_len(&self.born_host)
            + 8
            + host_len(&self.store_host)
            + 4
            + 8
            + 4
            + self.body.len()
            + if v2 { 2 } else { 1 }
            + self.topic.len()
            + 2
            + props.len();
        out.reserve(total);
        out.put_i32(total as i32);
        out.put_i32(if v2 { MAGIC_V2 } else { MAGIC_V1 });
        out.put_i32(body_crc(&self.body));
        out.put_i32(self.queue_id);
        out.put_i32(self.flag);
        out.put_i64(self.queue_offset);
        out.put_i64(self.commit_log_offset);
        out.put_i32(sys);
        out.put_i64(self.born_timestamp);
        put_addr(out, &self.born_host);
        out.put_i64(self.store_timestamp);
        put_addr(out, &self.store_host);
        out.put_i32(self.reconsume_times);
        out.put_i64(self.prepared_transaction_offset);
        out.put_i32(self.body.len() as i32);
        out.put_slice(&self.body);
        if v2 {
            out.put_u16(self.topic.len() as u16);
        } else {
            out.put_u8(self.topic.len() as u8);
        }
        out.put_slice(self.topic.as_bytes());
        out.put_i16(props.len() as i16);
        out.put_slice(props.as_bytes());
    }

    /// Decodes every message in a body (PULL_MESSAGE's, QUERY_MESSAGE's).
    pub fn decode_all(mut body: Bytes) -> Result<Vec<MessageExt>> {
        let mut out = Vec::new();
        while body.has_remaining() {
            out.push(MessageExt::decode_one(&mut body)?);
        }
        Ok(out)
    }

    /// Decodes one message off the front of `buf`.
    pub fn decode_one(buf: &mut Bytes) -> Result<MessageExt> {
        need("message size", 4, buf.len())?;
        let total = i64::from(buf.get_i32());
        let n = need("message", total - 4, buf.len())?;
        let mut b = buf.split_to(n);
        need("message header", 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8, b.len())?;
        let magic = b.get_i32();
        if magic != MAGIC_V1 && magic != MAGIC_V2 {
            return Err(CodecError::Invalid(format!("unknown message magic code {magic:#x}")));
        }
        let crc = b.get_i32();
        let queue_id = b.get_i32();
        let flag = b.get_i32();
        let queue_offset = b.get_i64();
        let commit_log_offset = b.get_i64();
        let sys_flag = b.get_i32();
        let born_timestamp = b.get_i64();
        let born_host = get_addr(&mut b, sys_flag & sys_flag::BORNHOST_V6 != 0)?;
        need("store time", 8, b.len())?;
        let store_timestamp = b.get_i64();
        let store_host = get_addr(&mut b, sys_flag & sys_flag::STOREHOST_V6 != 0)?;
        need("message tail", 4 + 8 + 4, b.len())?;
        let reconsume_times = b.get_i32();
        let prepared_transaction_offset = b.get_i64();
        let body_len = need("body", i64::from(b.get_i32()), b.len())?;
        let body = b.split_to(body_len);
        if body_crc(&body) != crc {
            return Err(CodecError::Invalid("message body CRC mismatch".into()));
        }
        let topic_len = if magic == MAGIC_V2 {
            need("topic length", 2, b.len())?;
            i64::from(b.get_u16())
        } else {
            need("topic length", 1, b.len())?;
            i64::from(b.get_u8())
        };
        let topic = utf8(b.split_to(need("topic", topic_len, b.len())?), "topic")?;
        need("properties length", 2, b.len())?;
        let plen = need("properties", i64::from(b.get_i16()), b.len())?;
        let properties = decode_properties(&utf8(b.split_to(plen), "properties")?);
        Ok(MessageExt {
            topic,
            queue_id,
            flag,
            queue_offset,
            commit_log_offset,
            sys_flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            properties,
        })
    }
}

fn utf8(b: Bytes, what: &str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| CodecError::Invalid(format!("{what} is not UTF-8")))
}

/// One message of a SEND_BATCH_MESSAGE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// The producer's integer flag.
    pub flag: i32,
    /// Payload.
    pub body: Bytes,
    /// Properties.
    pub properties: Vec<(String, String)>,
}

/// Most messages in one batch body.
pub const MAX_BATCH_MESSAGES: usize = 10_000;

/// Decodes a batch body: per message `total i32 | magic i32 | body crc
/// i32 | flag i32 | body len i32 + body | properties len i16 + properties`.
pub fn decode_batch(mut body: Bytes) -> Result<Vec<BatchEntry>> {
    let mut out = Vec::new();
    while body.has_remaining() {
        if out.len() == MAX_BATCH_MESSAGES {
            return Err(CodecError::Invalid(format!("a batch holds more than {MAX_BATCH_MESSAGES} messages")));
        }
        need("batch message size", 4, body.len())?;
        let total = i64::from(body.get_i32());
        let mut b = body.split_to(need("batch message", total - 4, body.len())?);
        need("batch message header", 16, b.len())?;
        let _magic = b.get_i32();
        let _crc = b.get_i32();
        let flag = b.get_i32();
        let blen = need("batch body", i64::from(b.get_i32()), b.len())?;
        let payload = b.split_to(blen);
        need("batch properties length", 2, b.len())?;
        let plen = need("batch properties", i64::from(b.get_i16()), b.len())?;
        let properties = decode_properties(&utf8(b.split_to(plen), "properties")?);
        out.push(BatchEntry { flag, body: payload, properties });
    }
    Ok(out)
}

/// Encodes a batch body (the client side of [`decode_batch`]).
pub fn encode_batch(entries: &[BatchEntry]) -> Bytes {
    let mut out = BytesMut::new();
    for e in entries {
        let props = encode_properties(&e.properties);
        out.put_i32((20 + e.body.len() + 2 + props.len()) as i32);
        out.put_i32(0);
        out.put_i32(body_crc(&e.body));
        out.put_i32(e.flag);
        out.put_i32(e.body.len() as i32);
        out.put_slice(&e.body);
        out.put_i16(props.len() as i16);
        out.put_slice(props.as_bytes());
    }
    out.freeze()
}

/// An offset message id: the store host and a broker-wide position, as
/// upper-case hex (32 digits for IPv4).
pub fn encode_offset_msg_id(store_host: &SocketAddr, position: i64) -> String {
    let mut raw = BytesMut::with_capacity(28);
    put_addr(&mut raw, store_host);
    raw.put_i64(position);
    raw.iter().map(|b| format!("{b:02X}")).collect()
}

/// Decodes an offset message id into store host and position.
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64)> {
    let v6 = match id.len() {
        32 => false,
        56 => true,
        n => return Err(CodecError::Invalid(format!("an offset message id has 32 or 56 hex digits, not {n}"))),
    };
    let raw: Result<Vec<u8>> = (0..id.len())
        .step_by(2)
        .map(|i| {
            id.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CodecError::Invalid("the message id is not hex".into()))
        })
        .collect();
    let mut b = Bytes::from(raw?);
    let addr = get_addr(&mut b, v6)?;
    Ok((addr, b.get_i64()))
}
