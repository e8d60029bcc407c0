//! Per-segment key index: find the offsets of records by key or by an
//! indexed header value (a RocketMQ `KEYS` or message id, say) without
//! scanning the partition.
//!
//! Keys are hashed with 64-bit FNV-1a (stable across releases, so files stay
//! readable). The active segment keeps `hash -> offsets` in memory; sealing
//! writes the entries sorted by `(hash, offset)` to a `.keys` file that is
//! binary-searched with positioned reads, so sealed segments cost no memory.
//! Hash collisions are harmless: callers compare the real key of every hit.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::checkpoint::write_atomic;
use crate::error::{LogError, Result};

const MAGIC: &[u8; 4] = b"FJKX";
const HEADER_LEN: u64 = 4 + 4 + 8 + 8;
const ENTRY: u64 = 12;

/// Stable 64-bit FNV-1a hash of a key.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug)]
pub(crate) enum KeyIndex {
    Disabled,
    Active(HashMap<u64, Vec<u32>>),
    Sealed { file: File, count: u64 },
}

impl KeyIndex {
    pub(crate) fn new(enabled: bool) -> Self {
        if enabled { KeyIndex::Active(HashMap::new()) } else { KeyIndex::Disabled }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        !matches!(self, KeyIndex::Disabled)
    }

    pub(crate) fn insert(&mut self, hash: u64, rel: u32) {
        if let KeyIndex::Active(map) = self {
            map.entry(hash).or_default().push(rel);
        }
    }

    /// Relative offsets of records whose key hashes to `hash`, ascending.
    pub(crate) fn lookup(&self, hash: u64, path: &Path) -> Result<Vec<u32>> {
        match self {
            KeyIndex::Disabled => Ok(Vec::new()),
            KeyIndex::Active(map) => Ok(map.get(&hash).cloned().unwrap_or_default()),
            KeyIndex::Sealed { file, count } => {
                let read = |i: u64| -> Result<(u64, u32)> {
                    let mut e = [0u8; ENTRY as usize];
                    file.read_exact_at(&mut e, HEADER_LEN + i * ENTRY)
                        .map_err(|err| LogError::io("read key index", path, err))?;
                    let mut h = [0u8; 8];
                    h.copy_from_slice(&e[..8]);
                    Ok((u64::from_be_bytes(h), u32::from_be_bytes([e[8], e[9], e[10], e[11]])))
                };
                // Lower bound of `hash`, then walk forward while it matches.
                let (mut lo, mut hi) = (0u64, *count);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if read(mid)?.0 < hash { lo = mid + 1 } else { hi = mid }
                }
                let mut out = Vec::new();
                while lo < *count {
                    let (h, rel) = read(lo)?;
                    if h != hash {
                        break;
                    }
                    out.push(rel);
                    lo += 1;
                }
                Ok(out)
            }
        }
    }

    /// Writes the active map as a sorted `.keys` file and switches to it.
    pub(crate) fn seal(&mut self, path: &Path, log_size: u64) -> Result<()> {
        let KeyIndex::Active(map) = self else { return Ok(()) };
        let mut entries: Vec<(u64, u32)> =
            map.iter().flat_map(|(&h, rels)| rels.iter().map(move |&r| (h, r))).collect();
        entries.sort_unstable();
        let mut buf = Vec::with_capacity(HEADER_LEN as usize + entries.len() * ENTRY as usize);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&log_size.to_be_bytes());
        buf.extend_from_slice(&(entries.len() as u64).to_be_bytes());
        for (h, r) in &entries {
            buf.extend_from_slice(&h.to_be_bytes());
            buf.extend_from_slice(&r.to_be_bytes());
        }
        write_atomic(path, &buf)?;
        if let Some(loaded) = Self::load(path, log_size)? {
            *self = loaded;
        }
        Ok(())
    }

    /// Opens a sealed `.keys` file if it is valid for `log_size`.
    pub(crate) fn load(path: &Path, log_size: u64) -> Result<Option<KeyIndex>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("open key index", path, e)),
        };
        let len = file.metadata().map_err(|e| LogError::io("stat key index", path, e))?.len();
        let mut h = [0u8; HEADER_LEN as usize];
        if file.read_exact_at(&mut h, 0).is_err() || &h[..4] != MAGIC {
            return Ok(None);
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&h[8..16]);
        let mut count = [0u8; 8];
        count.copy_from_slice(&h[16..24]);
        let count = u64::from_be_bytes(count);
        let ok = u64::from_be_bytes(size) == log_size
            && count.checked_mul(ENTRY).and_then(|n| n.checked_add(HEADER_LEN)) == Some(len);
        Ok(ok.then_some(KeyIndex::Sealed { file, count }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(key_hash(b""), 0xcbf29ce484222325);
        assert_eq!(key_hash(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn sealed_lookup_matches_active_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.keys");
        let mut idx = KeyIndex::new(true);
        for rel in 0..5000u32 {
            idx.insert(u64::from(rel % 97), rel);
        }
        let before: Vec<_> = (0..100).map(|h| idx.lookup(h, &path).unwrap()).collect();
        idx.seal(&path, 1234).unwrap();
        assert!(matches!(idx, KeyIndex::Sealed { .. }));
        let after: Vec<_> = (0..100).map(|h| idx.lookup(h, &path).unwrap()).collect();
        assert_eq!(before, after);
        assert_eq!(after[3].len(), 52);
        assert!(after[99].is_empty());
        assert!(KeyIndex::load(&path, 1235).unwrap().is_none(), "stale key index must not load");
    }
}
