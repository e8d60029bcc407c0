//! Bodies with a fixed layout: the handshake, heartbeats and service calls.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;

/// Longest cluster id accepted in a [`Hello`].
const MAX_CLUSTER_ID: usize = 255;

fn short(what: &'static str) -> CodecError {
    CodecError::Body { what, reason: "ends early" }
}

fn done(what: &'static str, b: &Bytes) -> Result<(), CodecError> {
    if b.has_remaining() { Err(CodecError::Body { what, reason: "trailing bytes" }) } else { Ok(()) }
}

/// The handshake: who is calling, in which cluster. The receiver checks
/// both (a wrong address must not join another cluster or impersonate a
/// node) and answers with its own [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version spoken (this crate: 1).
    pub version: u16,
    /// The cluster's id: nodes of different clusters never talk.
    pub cluster_id: String,
    /// The sender's node id.
    pub node_id: u64,
}

impl Hello {
    /// The protocol version of this crate.
    pub const VERSION: u16 = 1;

    /// Layout: version:u16, node_id:u64, cluster_id_len:u8, cluster_id.
    /// Fails for a cluster id over 255 bytes.
    pub fn encode(&self) -> Result<Bytes, CodecError> {
        let id = self.cluster_id.as_bytes();
        if id.len() > MAX_CLUSTER_ID {
            return Err(CodecError::Body { what: "hello", reason: "cluster id longer than 255 bytes" });
        }
        let mut b = BytesMut::with_capacity(11 + id.len());
        b.put_u16(self.version);
        b.put_u64(self.node_id);
        b.put_u8(id.len() as u8);
        b.put_slice(id);
        Ok(b.freeze())
    }

    /// Reads a Hello body.
    pub fn decode(mut b: Bytes) -> Result<Hello, CodecError> {
        const W: &str = "hello";
        if b.remaining() < 11 {
            return Err(short(W));
        }
        let version = b.get_u16();
        let node_id = b.get_u64();
        let n = b.get_u8() as usize;
        if b.remaining() < n {
            return Err(short(W));
        }
        let cluster_id = String::from_utf8(b.split_to(n).to_vec())
            .map_err(|_| CodecError::Body { what: W, reason: "cluster id is not UTF-8" })?;
        done(W, &b)?;
        Ok(Hello { version, cluster_id, node_id })
    }
}

/// A node telling the controller leader it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The node.
    pub node_id: u64,
    /// Its registration's incarnation (a restarted node has a new one).
    pub incarnation: u64,
    /// The metadata index this node serves from (what it has applied), so
    /// the leader renews no lease of a node stuck on old metadata; `None`
    /// from a node of an earlier version, which does not say.
    pub applied: Option<u64>,
}

impl Heartbeat {
    /// Layout: node_id:u64, incarnation:u64, then applied:u64 when known
    /// (a 16-byte body is an earlier version's).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(24);
        b.put_u64(self.node_id);
        b.put_u64(self.incarnation);
        if let Some(a) = self.applied {
            b.put_u64(a);
        }
        b.freeze()
    }

    /// Reads a Heartbeat body.
    pub fn decode(mut b: Bytes) -> Result<Heartbeat, CodecError> {
        const W: &str = "heartbeat";
        if b.remaining() < 16 {
            return Err(short(W));
        }
        let (node_id, incarnation) = (b.get_u64(), b.get_u64());
        let applied = if b.remaining() >= 8 { Some(b.get_u64()) } else { None };
        done(W, &b)?;
        Ok(Heartbeat { node_id, incarnation, applied })
    }
}

/// The controller leader's answer to a [`Heartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// How long the lease lasts from now (ms): miss it and the node is fenced.
    pub lease_ms: u32,
    /// The metadata log index the leader has applied (followers compare
    /// with theirs to know how far behind they are).
    pub metadata_index: u64,
}

impl HeartbeatAck {
    /// Layout: lease_ms:u32, metadata_index:u64.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(12);
        b.put_u32(self.lease_ms);
        b.put_u64(self.metadata_index);
        b.freeze()
    }

    /// Reads a HeartbeatAck body.
    pub fn decode(mut b: Bytes) -> Result<HeartbeatAck, CodecError> {
        const W: &str = "heartbeat ack";
        if b.remaining() < 12 {
            return Err(short(W));
        }
        let h = HeartbeatAck { lease_ms: b.get_u32(), metadata_index: b.get_u64() };
        done(W, &b)?;
        Ok(h)
    }
}

/// Longest service name accepted in a [`ServiceCall`].
const MAX_SERVICE_NAME: usize = 255;

/// A call of a named service on another node: the name says which layer's
/// handler gets the payload (opaque here, encoded by that layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCall {
    /// The service (e.g. `messaging.send`).
    pub service: String,
    /// Its request.
    pub payload: Bytes,
}

impl ServiceCall {
    /// Layout: name_len:u8, name, payload (the rest). Fails for a name over
    /// 255 bytes or empty.
    pub fn encode(&self) -> Result<Bytes, CodecError> {
        let name = self.service.as_bytes();
        if name.is_empty() || name.len() > MAX_SERVICE_NAME {
            return Err(CodecError::Body { what: "service call", reason: "service name is not 1 to 255 bytes" });
        }
        let mut b = BytesMut::with_capacity(1 + name.len() + self.payload.len());
        b.put_u8(name.len() as u8);
        b.put_slice(name);
        b.put_slice(&self.payload);
        Ok(b.freeze())
    }

    /// Reads a service call body (the payload shares `b`'s memory).
    pub fn decode(mut b: Bytes) -> Result<ServiceCall, CodecError> {
        const W: &str = "service call";
        if !b.has_remaining() {
            return Err(short(W));
        }
        let n = b.get_u8() as usize;
        if n == 0 {
            return Err(CodecError::Body { what: W, reason: "empty service name" });
        }
        if b.remaining() < n {
            return Err(short(W));
        }
        let service = String::from_utf8(b.split_to(n).to_vec())
            .map_err(|_| CodecError::Body { what: W, reason: "service name is not UTF-8" })?;
        Ok(ServiceCall { service, payload: b })
    }
}
