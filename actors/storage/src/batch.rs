//! [`WriteBatch`]: the writes of one Raft `Ready` (or one apply step), committed atomically.

use daftka_types::GroupId;
use raft::eraftpb::{ConfState, Entry, HardState};

use crate::codec::{
    self, ApplyState, ConfStateRecord, HardStateRecord, SnapshotMeta, SnapshotRecord, StoredEntry,
};
use crate::keys::{self, MetaTag};
use crate::StorageError;

/// Which shared keyspace an operation targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ks {
    RaftLog,
    RaftMeta,
    OffsetIndex,
}

/// One buffered operation. Keys and values are owned so the batch can cross to the writer thread.
#[derive(Debug)]
pub(crate) enum Op {
    Insert(Ks, Vec<u8>, Vec<u8>),
    Remove(Ks, Vec<u8>),
}

/// Writes for any number of groups, committed as ONE atomic fjall batch by [`crate::Store::write`].
///
/// Built without a store so the Raft actor can fill it while handling a `Ready`. Operations apply in
/// the order they were added (a later write to the same key wins).
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Op>,
    /// The first encoding failure (never expected: our types always encode); `write` returns it.
    pub(crate) error: Option<StorageError>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert_encoded<T: serde::Serialize>(&mut self, ks: Ks, key: Vec<u8>, value: &T) {
        match codec::encode(value) {
            Ok(v) => self.ops.push(Op::Insert(ks, key, v)),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// Appends `entries` (contiguous, ascending) to the group's log with Raft's append semantics: an
    /// append starting at index i replaces everything from i on. Entries at the new indexes are
    /// overwritten, and stale entries in `(new last index, last_index_before]` are removed.
    /// `last_index_before` is the log's last index before this append
    /// ([`crate::RaftLogStorage::last_index`]).
    pub fn append_entries(&mut self, group: GroupId, entries: &[Entry], last_index_before: u64) {
        let Some(last) = entries.last() else { return };
        debug_assert!(
            entries.windows(2).all(|w| w[1].index == w[0].index + 1),
            "appended entries must be contiguous"
        );
        for e in entries {
            let key = keys::group_u64_key(group, e.index).to_vec();
            self.insert_encoded(Ks::RaftLog, key, &StoredEntry::from_entry(e));
        }
        for stale in last.index.saturating_add(1)..=last_index_before {
            self.ops.push(Op::Remove(
                Ks::RaftLog,
                keys::group_u64_key(group, stale).to_vec(),
            ));
        }
    }

    pub fn set_hard_state(&mut self, group: GroupId, hs: &HardState) {
        let key = keys::meta_key(group, MetaTag::HardState).to_vec();
        self.insert_encoded(Ks::RaftMeta, key, &HardStateRecord::from_pb(hs));
    }

    pub fn set_conf_state(&mut self, group: GroupId, cs: &ConfState) {
        let key = keys::meta_key(group, MetaTag::ConfState).to_vec();
        self.insert_encoded(Ks::RaftMeta, key, &ConfStateRecord::from_pb(cs));
    }

    pub fn set_apply_state(&mut self, group: GroupId, st: &ApplyState) {
        let key = keys::meta_key(group, MetaTag::ApplyState).to_vec();
        self.insert_encoded(Ks::RaftMeta, key, st);
    }

    /// Records that the batch stored in Raft entry `raft_index` (`bytes` long) holds the
    /// `record_count` records with offsets `base_offset..base_offset + record_count`. Written at
    /// apply time.
    pub fn index_batch(
        &mut self,
        group: GroupId,
        base_offset: u64,
        raft_index: u64,
        record_count: u32,
        bytes: u32,
    ) {
        self.ops.push(Op::Insert(
            Ks::OffsetIndex,
            keys::group_u64_key(group, base_offset).to_vec(),
            keys::index_value(raft_index, record_count, bytes).to_vec(),
        ));
    }

    /// Compacts the group's log: removes entries `from_index..=to_index` (pass the current
    /// [`crate::RaftLogStorage::first_index`] as `from_index`) and records `(to_index, to_term)` as the
    /// compaction point, so `first_index` becomes `to_index + 1`. Only compact applied entries;
    /// offset index rows pointing into the removed range must be removed by the caller's retention
    /// logic (not done here). After the write, call
    /// [`crate::RaftLogStorage::on_log_compacted`].
    pub fn compact_log(&mut self, group: GroupId, from_index: u64, to_index: u64, to_term: u64) {
        for i in from_index..=to_index {
            self.ops.push(Op::Remove(
                Ks::RaftLog,
                keys::group_u64_key(group, i).to_vec(),
            ));
        }
        let key = keys::meta_key(group, MetaTag::SnapshotMeta).to_vec();
        self.insert_encoded(
            Ks::RaftMeta,
            key,
            &SnapshotMeta {
                index: to_index,
                term: to_term,
            },
        );
    }

    /// Stores `snapshot` as the group's snapshot and compacts the log up to its index: entries
    /// `first_index..=max(snapshot.index, last_index)` go when `discard_log` (a snapshot installed
    /// from a leader replaces the whole log), else entries `first_index..=snapshot.index` (a snapshot
    /// of our own applied state keeps the entries after it). The configuration becomes the
    /// snapshot's when `discard_log`. After the write, call
    /// [`crate::RaftLogStorage::on_snapshot_written`].
    pub fn set_snapshot(
        &mut self,
        group: GroupId,
        snapshot: &SnapshotRecord,
        first_index: u64,
        last_index: u64,
        discard_log: bool,
    ) {
        let to = if discard_log {
            snapshot.index.max(last_index)
        } else {
            snapshot.index
        };
        for i in first_index..=to {
            self.ops.push(Op::Remove(
                Ks::RaftLog,
                keys::group_u64_key(group, i).to_vec(),
            ));
        }
        let meta = SnapshotMeta {
            index: snapshot.index,
            term: snapshot.term,
        };
        self.insert_encoded(
            Ks::RaftMeta,
            keys::meta_key(group, MetaTag::SnapshotMeta).to_vec(),
            &meta,
        );
        self.insert_encoded(
            Ks::RaftMeta,
            keys::meta_key(group, MetaTag::Snapshot).to_vec(),
            snapshot,
        );
        if discard_log {
            self.set_conf_state(group, &snapshot.conf_state());
        }
    }

    /// Removes the offset index rows of `group` at these base offsets (their entries are gone).
    pub fn remove_index_rows(&mut self, group: GroupId, bases: &[u64]) {
        for base in bases {
            self.ops.push(Op::Remove(
                Ks::OffsetIndex,
                keys::group_u64_key(group, *base).to_vec(),
            ));
        }
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.error.is_none()
    }

    /// The number of buffered operations (inserts and removals).
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

impl daftka_core::consensus::LogBatch for WriteBatch {
    fn append_entries(&mut self, group: GroupId, entries: &[Entry], last_index_before: u64) {
        WriteBatch::append_entries(self, group, entries, last_index_before)
    }
    fn set_hard_state(&mut self, group: GroupId, hs: &HardState) {
        WriteBatch::set_hard_state(self, group, hs)
    }
    fn set_conf_state(&mut self, group: GroupId, cs: &ConfState) {
        WriteBatch::set_conf_state(self, group, cs)
    }
    fn set_snapshot(
        &mut self,
        group: GroupId,
        snapshot: &raft::eraftpb::Snapshot,
        first_index: u64,
        last_index: u64,
        replace_log: bool,
    ) {
        let record = SnapshotRecord::from_pb(snapshot);
        WriteBatch::set_snapshot(self, group, &record, first_index, last_index, replace_log)
    }
    fn is_empty(&self) -> bool {
        WriteBatch::is_empty(self)
    }
}
