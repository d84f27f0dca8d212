//! [`RaftLogStorage`]: `raft::Storage` for one group over the shared keyspaces.
//!
//! Reads go to fjall; the small state (hard state, conf state, apply state, compaction point, last
//! index and term) is cached in memory. The cache changes only through the `on_*_written` methods,
//! which the Raft actor calls after the `WriteBatch` holding the change has been written, so raft
//! never sees state that is not yet in fjall. So does the tail: the entries written and not yet
//! applied, which raft-rs reads back as soon as they commit (at once for a sole voter), served
//! from memory instead of fjall; [`RaftLogStorage::trim_tail`] drops what was applied.

use daftka_types::GroupId;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::codec::{
    self, ApplyState, ConfStateRecord, HardStateRecord, SnapshotMeta, SnapshotRecord, StoredEntry,
    StoredEntryRef,
};
use crate::keys::{self, MetaTag};
use crate::{StorageError, Store};

/// One group's Raft log and state, as raft-rs reads them.
pub struct RaftLogStorage {
    store: Store,
    group: GroupId,
    hard_state: HardState,
    conf_state: ConfState,
    apply_state: ApplyState,
    /// Entries up to `snapshot.index` are compacted away; `snapshot.term` is that index's term.
    snapshot: SnapshotMeta,
    /// The last stored index (`snapshot.index` when the log is empty) and its term.
    last_index: u64,
    last_term: u64,
    /// Set when raft asked for a snapshot the stored one cannot serve (none stored, or its
    /// configuration does not include the follower): the owner makes a fresh one
    /// ([`RaftLogStorage::take_snapshot_request`]) and raft asks again on its next try.
    snapshot_wanted: AtomicBool,
    /// The last entries written, contiguous and ending at `last_index` (empty, or a suffix of the
    /// stored log): those not applied yet, at most [`TAIL_BYTES_MAX`] of data. Their data is
    /// shared (`Bytes`) with the entries the Raft actor wrote, not copied.
    tail: VecDeque<Entry>,
    tail_bytes: usize,
}

/// The most entry data a group keeps in its tail; older entries are read from fjall. Entries stay
/// in the tail only from their write to their apply: on a leader, while their producers wait (and
/// are counted in `limits.inflight_bytes_*`); on a follower, until a message from the leader
/// carries their commit. Enough for the rounds of a busy partition.
pub const TAIL_BYTES_MAX: usize = 1024 * 1024;

impl std::fmt::Debug for RaftLogStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLogStorage")
            .field("group", &self.group)
            .field("hard_state", &self.hard_state)
            .field("apply_state", &self.apply_state)
            .field("snapshot", &self.snapshot)
            .field("last_index", &self.last_index)
            .finish_non_exhaustive()
    }
}

impl RaftLogStorage {
    /// Loads the group's state from disk; a group never written loads as empty (zeros).
    pub(crate) fn load(store: Store, group: GroupId) -> Result<Self, StorageError> {
        let meta = &store.inner.ks.raft_meta;
        let hard_state = match meta.get(keys::meta_key(group, MetaTag::HardState))? {
            Some(v) => codec::decode::<HardStateRecord>(&v, "hard state")?.into_pb(),
            None => HardState::default(),
        };
        let conf_state = match meta.get(keys::meta_key(group, MetaTag::ConfState))? {
            Some(v) => codec::decode::<ConfStateRecord>(&v, "conf state")?.into_pb(),
            None => ConfState::default(),
        };
        let apply_state = match meta.get(keys::meta_key(group, MetaTag::ApplyState))? {
            Some(v) => codec::decode(&v, "apply state")?,
            None => ApplyState::default(),
        };
        let snapshot: SnapshotMeta = match meta.get(keys::meta_key(group, MetaTag::SnapshotMeta))? {
            Some(v) => codec::decode(&v, "snapshot meta")?,
            None => SnapshotMeta::default(),
        };

        let log = &store.inner.ks.raft_log;
        let prefix = keys::group_prefix(group);
        let (mut last_index, mut last_term) = (snapshot.index, snapshot.term);
        if let Some(guard) = log.prefix(prefix).next_back() {
            let (key, value) = guard.into_inner()?;
            let entry: StoredEntry = codec::decode(&value, "raft entry")?;
            let index = keys::key_u64_field(&key)?;
            if entry.index != index {
                return Err(StorageError::Corrupt(format!(
                    "{group}: entry under key {index} has index {}",
                    entry.index
                )));
            }
            if index > snapshot.index {
                last_index = index;
                last_term = entry.term;
            }
        }
        // The first stored entry above the compaction point must follow it: a gap means lost entries.
        let above = keys::group_u64_key(group, snapshot.index.saturating_add(1));
        let end = keys::group_u64_key(group, u64::MAX);
        if let Some(guard) = log.range(above..=end).next() {
            let first = keys::key_u64_field(&guard.key()?)?;
            if first != snapshot.index + 1 {
                return Err(StorageError::Corrupt(format!(
                    "{group}: log starts at {first}, expected {} after the compaction point",
                    snapshot.index + 1
                )));
            }
        }
        Ok(RaftLogStorage {
            store,
            group,
            hard_state,
            conf_state,
            apply_state,
            snapshot,
            last_index,
            last_term,
            snapshot_wanted: AtomicBool::new(false),
            tail: VecDeque::new(),
            tail_bytes: 0,
        })
    }

    /// The group's stored snapshot, if it has one.
    pub fn stored_snapshot(&self) -> Result<Option<SnapshotRecord>, StorageError> {
        let key = keys::meta_key(self.group, MetaTag::Snapshot);
        match self.store.inner.ks.raft_meta.get(key)? {
            Some(v) => Ok(Some(codec::decode(&v, "snapshot")?)),
            None => Ok(None),
        }
    }

    /// Whether raft asked for a snapshot that must be made fresh; clears the request.
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.swap(false, Ordering::AcqRel)
    }

    /// After a `WriteBatch` holding `set_snapshot(.., snapshot, .., discard_log)` was written.
    pub fn on_snapshot_written(&mut self, snapshot: &SnapshotRecord, discard_log: bool) {
        self.snapshot = SnapshotMeta {
            index: snapshot.index,
            term: snapshot.term,
        };
        if discard_log || self.last_index < snapshot.index {
            self.last_index = snapshot.index;
            self.last_term = snapshot.term;
        }
        if discard_log {
            self.conf_state = snapshot.conf_state();
        }
        if discard_log {
            self.clear_tail();
        } else {
            self.trim_tail(snapshot.index);
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The apply state loaded at open (zeros for a new group). Not updated by later writes: the Raft
    /// actor owns the live value.
    pub fn apply_state(&self) -> ApplyState {
        self.apply_state
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.conf_state.clone()
    }

    /// The last index in the log (the compaction point when the log is empty).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The first index available through `entries` (compaction point + 1).
    pub fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }

    /// The compaction point `(index, term)`: `(0, 0)` until the log is compacted.
    pub fn compaction_point(&self) -> (u64, u64) {
        (self.snapshot.index, self.snapshot.term)
    }

    /// After a `WriteBatch` holding `append_entries(entries)` has been written.
    pub fn on_entries_written(&mut self, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return;
        };
        if first.index > self.last_index + 1 {
            // Not a continuation of the log as known here: keep nothing rather than a gap.
            self.clear_tail();
        } else {
            // An append at `first` replaced everything from `first` on. The tail ends at
            // `last_index`, so what is left of it is followed by `first`.
            while self.tail.back().is_some_and(|e| e.index >= first.index) {
                self.pop_tail_back();
            }
            for e in entries {
                self.tail_bytes += e.data.len();
                self.tail.push_back(e.clone());
            }
            while self.tail_bytes > TAIL_BYTES_MAX {
                self.pop_tail_front();
            }
        }
        self.last_index = last.index;
        self.last_term = last.term;
    }

    /// Drops the tail's entries up to `applied` (they will not be read again soon).
    pub fn trim_tail(&mut self, applied: u64) {
        while self.tail.front().is_some_and(|e| e.index <= applied) {
            self.pop_tail_front();
        }
    }

    /// Entries kept in the tail now (for tests and metrics).
    pub fn tail_len(&self) -> usize {
        self.tail.len()
    }

    fn pop_tail_front(&mut self) {
        if let Some(e) = self.tail.pop_front() {
            self.tail_bytes -= e.data.len();
        }
    }

    fn pop_tail_back(&mut self) {
        if let Some(e) = self.tail.pop_back() {
            self.tail_bytes -= e.data.len();
        }
    }

    fn clear_tail(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
    }

    /// Entries `[low, high)` (`high` at most `last_index + 1`, which `entries` checks) from the
    /// tail, if it holds all of them, within `max_size` as [`Self::read_entries`] does.
    fn tail_entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let front = self.tail.front()?.index;
        if low < front || low >= high {
            return None;
        }
        let skip = usize::try_from(low - front).ok()?;
        let take = usize::try_from(high - low).ok()?;
        let mut out: Vec<Entry> = self.tail.iter().skip(skip).take(take).cloned().collect();
        raft::util::limit_size(&mut out, max_size);
        Some(out)
    }

    pub fn on_hard_state_written(&mut self, hs: &HardState) {
        self.hard_state = hs.clone();
    }

    pub fn on_conf_state_written(&mut self, cs: &ConfState) {
        self.conf_state = cs.clone();
    }

    /// After a `WriteBatch` holding `compact_log(.., to_index, to_term)` has been written.
    pub fn on_log_compacted(&mut self, to_index: u64, to_term: u64) {
        self.snapshot = SnapshotMeta {
            index: to_index,
            term: to_term,
        };
        if self.last_index < to_index {
            self.last_index = to_index;
            self.last_term = to_term;
        }
        self.trim_tail(to_index);
    }

    /// The term of a stored entry, without copying its data.
    fn read_term(&self, index: u64) -> Result<u64, StorageError> {
        let key = keys::group_u64_key(self.group, index);
        let value = self.store.inner.ks.raft_log.get(key)?.ok_or_else(|| {
            StorageError::Corrupt(format!("{}: entry {index} is missing", self.group))
        })?;
        let entry = StoredEntryRef::decode(&value)?;
        if entry.index != index {
            return Err(StorageError::Corrupt(format!(
                "{}: entry under key {index} has index {}",
                self.group, entry.index
            )));
        }
        Ok(entry.term)
    }

    /// Entries `[low, high)`, stopping before the total protobuf size passes `max_size` (always at
    /// least one entry): the same rule as `raft::util::limit_size`, applied while reading so a
    /// follower far behind does not make us read its whole backlog.
    fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        if low >= high {
            return Ok(out);
        }
        let from = keys::group_u64_key(self.group, low);
        let to = keys::group_u64_key(self.group, high);
        let mut size = 0u64;
        let mut expected = low;
        let mut stopped_by_size = false;
        for guard in self.store.inner.ks.raft_log.range(from..to) {
            let (key, value) = guard.into_inner()?;
            let index = keys::key_u64_field(&key)?;
            if index != expected {
                return Err(StorageError::Corrupt(format!(
                    "{}: expected entry {expected}, found {index}",
                    self.group
                )));
            }
            let entry = codec::decode::<StoredEntry>(&value, "raft entry")?.into_entry()?;
            size += u64::from(protobuf::Message::compute_size(&entry));
            if !out.is_empty() && max_size.is_some_and(|max| size > max) {
                stopped_by_size = true;
                break;
            }
            out.push(entry);
            expected += 1;
        }
        if !stopped_by_size && expected != high {
            return Err(StorageError::Corrupt(format!(
                "{}: entries [{low}, {high}) incomplete, stopped at {expected}",
                self.group
            )));
        }
        Ok(out)
    }
}

impl raft::Storage for RaftLogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    /// Reads synchronously whatever the context (`can_async` is never used): entries sit in the
    /// fjall memtable or block cache, and the Raft actor reads them inline.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot.index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let max_size = max_size.into().filter(|&m| m != raft::NO_LIMIT);
        if let Some(entries) = self.tail_entries(low, high, max_size) {
            return Ok(entries);
        }
        Ok(self.read_entries(low, high, max_size)?)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if idx < self.snapshot.index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if idx == self.last_index {
            return Ok(self.last_term);
        }
        Ok(self.read_term(idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RaftLogStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// The stored snapshot as [`daftka_core::consensus::snapshot_for_peer`] adapts it for `to`;
    /// without one at least at `request_index`, the owner is asked for a fresh one and raft
    /// retries later.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let stored = self.stored_snapshot()?.map(|s| s.to_pb());
        if let Some(s) =
            daftka_core::consensus::snapshot_for_peer(stored.as_ref(), request_index, to)
        {
            return Ok(s);
        }
        self.snapshot_wanted.store(true, Ordering::Release);
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

impl daftka_core::consensus::LogStore for RaftLogStorage {
    fn written_hard_state(&self) -> HardState {
        self.hard_state()
    }
    fn written_conf_state(&self) -> ConfState {
        self.conf_state()
    }
    fn first(&self) -> u64 {
        RaftLogStorage::first_index(self)
    }
    fn last(&self) -> u64 {
        RaftLogStorage::last_index(self)
    }
    fn compaction_point(&self) -> (u64, u64) {
        RaftLogStorage::compaction_point(self)
    }
    fn stored_snapshot(&self) -> raft::Result<Option<Snapshot>> {
        Ok(RaftLogStorage::stored_snapshot(self)?.map(|s| s.to_pb()))
    }
    fn take_snapshot_request(&self) -> bool {
        RaftLogStorage::take_snapshot_request(self)
    }
    fn on_entries_written(&mut self, entries: &[Entry]) {
        RaftLogStorage::on_entries_written(self, entries)
    }
    fn on_hard_state_written(&mut self, hs: &HardState) {
        RaftLogStorage::on_hard_state_written(self, hs)
    }
    fn on_snapshot_written(&mut self, snapshot: &Snapshot, replace_log: bool) {
        RaftLogStorage::on_snapshot_written(self, &SnapshotRecord::from_pb(snapshot), replace_log)
    }
    fn trim_tail(&mut self, applied: u64) {
        RaftLogStorage::trim_tail(self, applied)
    }
}
