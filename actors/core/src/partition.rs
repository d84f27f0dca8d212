//! Partition log rules.
//!
//! Offsets are assigned when a committed Raft entry is applied: each entry's records take the next
//! contiguous offsets, from 0, in entry order and, inside an entry, in request order. Offsets are a
//! pure function of the committed log, so a replica that re-applies its log after a crash assigns
//! exactly the same offsets again; they are never reused.

use serde::{Deserialize, Serialize};

/// What the apply step of one partition replica has done so far. Persisted with the offset index,
/// atomically, so the two never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogPosition {
    /// The last Raft index applied.
    pub applied_index: u64,
    /// The offset the next record will take: the high watermark.
    pub next_offset: u64,
}

/// One applied entry's place in the partition: its records hold `[base_offset, base_offset + count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedBatch {
    pub raft_index: u64,
    pub base_offset: u64,
    pub record_count: u32,
}

impl LogPosition {
    /// Applies the committed entry at `raft_index` holding `record_count` records.
    /// Entries at or below `applied_index` were applied already (replay after restart): `None`.
    /// Empty entries (leader no-ops, config changes) advance the index but take no offsets.
    pub fn apply(&mut self, raft_index: u64, record_count: u32) -> Option<AppliedBatch> {
        if raft_index <= self.applied_index {
            return None;
        }
        self.applied_index = raft_index;
        if record_count == 0 {
            return None;
        }
        let batch = AppliedBatch {
            raft_index,
            base_offset: self.next_offset,
            record_count,
        };
        self.next_offset += u64::from(record_count);
        Some(batch)
    }
}

/// Chooses a partition for a record without an explicit one: a stable hash of the key (FNV-1a, so
/// every node and every version agrees), else round-robin from `spread_counter`.
pub fn choose_partition(key: Option<&[u8]>, partitions: u32, spread_counter: u64) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    match key {
        Some(k) => (fnv1a(k) % u64::from(partitions)) as u32,
        None => (spread_counter % u64::from(partitions)) as u32,
    }
}

/// 64-bit FNV-1a: stable across platforms and releases, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets run contiguously from 0 across entries; no-ops and replays take none.
    #[test]
    fn apply_assigns_contiguous_offsets() {
        let mut p = LogPosition::default();
        assert_eq!(p.apply(1, 0), None);
        assert_eq!(
            p.apply(2, 3),
            Some(AppliedBatch {
                raft_index: 2,
                base_offset: 0,
                record_count: 3
            })
        );
        assert_eq!(p.apply(2, 3), None, "replay of an applied entry");
        assert_eq!(p.apply(3, 2).map(|b| b.base_offset), Some(3));
        assert_eq!(p.next_offset, 5);
        assert_eq!(p.applied_index, 3);
    }

    /// The same key always lands on the same partition; keyless records spread.
    #[test]
    fn partition_choice_is_stable() {
        let a = choose_partition(Some(b"user-42"), 6, 0);
        assert_eq!(a, choose_partition(Some(b"user-42"), 6, 99));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        let spread: Vec<u32> = (0..6).map(|i| choose_partition(None, 3, i)).collect();
        assert_eq!(spread, vec![0, 1, 2, 0, 1, 2]);
    }
}
