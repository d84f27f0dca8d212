//! Key layout of the shared keyspaces. Every key starts with the group id (8 bytes, big-endian), so
//! one group's keys are contiguous and sort by the big-endian fields that follow.
//!
//! | keyspace       | key                                   | value                          |
//! |----------------|---------------------------------------|--------------------------------|
//! | `raft_log`     | group ‖ raft index (u64 BE)           | [`crate::codec::StoredEntry`]  |
//! | `raft_meta`    | group ‖ tag (u8, see [`MetaTag`])     | postcard record per tag        |
//! | `offset_index` | group ‖ base offset (u64 BE)          | raft index u64 BE ‖ count u32 BE ‖ bytes u32 BE (rows written before sizes: no bytes) |
//! | `node`         | `incarnation`, `raft_id`              | u64 BE, never 0                |

use daftka_types::GroupId;

use crate::StorageError;

/// Keyspace names. Changing one orphans existing data.
pub(crate) const RAFT_LOG: &str = "raft_log";
pub(crate) const RAFT_META: &str = "raft_meta";
pub(crate) const OFFSET_INDEX: &str = "offset_index";
/// Facts about the node's data directory itself, not about a group.
pub(crate) const NODE: &str = "node";
/// In `node`: this data directory's incarnation (u64 BE), drawn when the directory was created.
pub(crate) const INCARNATION: &[u8] = b"incarnation";
/// In `node`: the node's Raft id (u64 BE), fixed when it was first asked for.
pub(crate) const RAFT_ID: &[u8] = b"raft_id";

/// The one-byte tag after the group prefix in `raft_meta`. Values are part of the disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum MetaTag {
    HardState = 1,
    ConfState = 2,
    ApplyState = 3,
    SnapshotMeta = 4,
    /// The group's latest snapshot ([`crate::codec::SnapshotRecord`]), at the compaction point.
    Snapshot = 5,
}

pub(crate) fn group_prefix(group: GroupId) -> [u8; 8] {
    group.0.to_be_bytes()
}

/// A key of `raft_log` or `offset_index`: the group then one big-endian u64.
pub(crate) fn group_u64_key(group: GroupId, field: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8..].copy_from_slice(&field.to_be_bytes());
    k
}

pub(crate) fn meta_key(group: GroupId, tag: MetaTag) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8] = tag as u8;
    k
}

/// The group of any key.
pub(crate) fn key_group(key: &[u8]) -> Result<GroupId, StorageError> {
    let head: [u8; 8] = key
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StorageError::Corrupt(format!("key of {} bytes has no group", key.len())))?;
    Ok(GroupId(u64::from_be_bytes(head)))
}

/// The u64 field of a `group ‖ u64` key.
pub(crate) fn key_u64_field(key: &[u8]) -> Result<u64, StorageError> {
    let field: [u8; 8] = key
        .get(8..16)
        .and_then(|s| s.try_into().ok())
        .filter(|_| key.len() == 16)
        .ok_or_else(|| {
            StorageError::Corrupt(format!("expected a 16-byte key, got {}", key.len()))
        })?;
    Ok(u64::from_be_bytes(field))
}

/// The value of an `offset_index` row: the batch's raft entry, its record count and its size
/// (the bytes of the stored batch, for retention by size).
pub(crate) fn index_value(raft_index: u64, record_count: u32, bytes: u32) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&raft_index.to_be_bytes());
    v[8..12].copy_from_slice(&record_count.to_be_bytes());
    v[12..].copy_from_slice(&bytes.to_be_bytes());
    v
}

/// An `offset_index` row: `(raft index, record count, bytes)`; rows written before sizes were
/// stored (12 bytes) have no size.
pub(crate) fn parse_index_value(v: &[u8]) -> Result<(u64, u32, Option<u32>), StorageError> {
    let bad = || StorageError::Corrupt(format!("offset index value of {} bytes", v.len()));
    if v.len() != 12 && v.len() != 16 {
        return Err(bad());
    }
    let u32_at = |at: usize| -> Result<u32, StorageError> {
        let b: [u8; 4] = v
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(bad)?;
        Ok(u32::from_be_bytes(b))
    };
    let idx: [u8; 8] = v.get(..8).and_then(|s| s.try_into().ok()).ok_or_else(bad)?;
    let bytes = if v.len() == 16 {
        Some(u32_at(12)?)
    } else {
        None
    };
    Ok((u64::from_be_bytes(idx), u32_at(8)?, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of one group sort by their field, and all sort before the next group's keys.
    #[test]
    fn keys_sort_by_group_then_field() {
        let a = group_u64_key(GroupId(1), 255);
        let b = group_u64_key(GroupId(1), 256);
        let c = group_u64_key(GroupId(2), 0);
        assert!(a < b && b < c);
        assert_eq!(key_group(&b).unwrap(), GroupId(1));
        assert_eq!(key_u64_field(&b).unwrap(), 256);
        assert!(
            meta_key(GroupId(1), MetaTag::SnapshotMeta) < meta_key(GroupId(2), MetaTag::HardState)
        );
        assert_eq!(
            parse_index_value(&index_value(7, 9, 300)).unwrap(),
            (7, 9, Some(300))
        );
        let mut old = [0u8; 12];
        old[..8].copy_from_slice(&7u64.to_be_bytes());
        old[8..].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            parse_index_value(&old).unwrap(),
            (7, 9, None),
            "rows from before sizes"
        );
        assert!(parse_index_value(&[0; 11]).is_err());
    }
}
