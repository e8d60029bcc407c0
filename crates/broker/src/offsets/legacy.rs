//! The committed-offsets log of earlier versions: one node-local log under
//! `internal/consumer-offsets`, outside any partition. A broker that finds
//! it moves its offsets onto the `__fjord_offsets` partitions once
//! ([`super::OffsetStore::migrate_legacy`]) and then deletes it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fjord_log::{Clock, Durability, Log, LogConfig, ReadBound};

use super::codec::{CommittedOffset, OffsetKey};
use crate::error::{BrokerError, Result};

/// Where the old log lived, under the data directory.
pub(crate) const LEGACY_DIR: &str = "internal/consumer-offsets";

/// The offsets the old log in `dir` holds, replayed as its store did.
/// Blocking file I/O.
pub(crate) fn read(dir: &Path, clock: Arc<dyn Clock>) -> Result<BTreeMap<OffsetKey, CommittedOffset>> {
    let cfg = LogConfig { retention_ms: None, durability: Durability::GroupCommit, ..LogConfig::default() };
    let log = Log::open(dir, cfg, clock).map_err(|e| BrokerError::log("legacy consumer offsets", e))?;
    let (map, _) = super::replay_from(log.log_start_offset(), |next| {
        log.read_records(next, 1 << 20, ReadBound::LogEnd).map_err(|e| BrokerError::log("legacy consumer offsets", e))
    })?;
    log.close().map_err(|e| BrokerError::log("legacy consumer offsets", e))?;
    Ok(map)
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::BytesMut;
    use fjord_log::AppendOrigin;
    use fjord_log::batch::{BatchBuilder, NewRecord};

    use super::*;
    use crate::offsets::codec::{encode_key, encode_value};

    /// Writes an old-style offsets log, as earlier versions did.
    pub(crate) fn write(dir: &Path, entries: &[(OffsetKey, Option<CommittedOffset>)]) {
        let cfg = LogConfig { durability: Durability::GroupCommit, ..LogConfig::default() };
        let log = Log::open(dir, cfg, Arc::new(fjord_log::SystemClock)).expect("open");
        let mut b = BatchBuilder::new(1);
        for ((g, t, p), v) in entries {
            b.push(&NewRecord {
                key: Some(encode_key(g, t, *p)),
                value: v.as_ref().map(encode_value),
                ..Default::default()
            });
        }
        log.append(BytesMut::from(&b.build()[..]), AppendOrigin::Leader { epoch: 0 }).expect("append");
        log.close().expect("close");
    }
}
