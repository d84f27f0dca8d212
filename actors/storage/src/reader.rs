//! [`PartitionReader`]: reads a partition's committed records for fetch, without the Raft actor.

use daftka_types::record::decode_batch;
use daftka_types::{GroupId, Record, StoredRecord};

use crate::codec::StoredEntryRef;
use crate::keys;
use crate::{StorageError, Store};

/// Reads one partition's records through its offset index. Cheap to clone; safe to use from any
/// thread (it is synchronous: call it from `spawn_blocking` for big reads).
#[derive(Clone, Debug)]
pub struct PartitionReader {
    store: Store,
    group: GroupId,
}

impl PartitionReader {
    pub(crate) fn new(store: Store, group: GroupId) -> Self {
        PartitionReader { store, group }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Records with offsets in `[offset, high_watermark)`, at most `max_records`, stopping before a
    /// record would take the sum of `Record::size_bytes` past `max_bytes`, but always at least one
    /// record when `offset < high_watermark` and `max_records > 0`.
    ///
    /// Finds the index row with the greatest base offset `<= offset`, decodes that Raft entry,
    /// skips to `offset`, then continues with the following rows. The caller checks `offset`
    /// against the log start offset first; an offset below every index row is `Corrupt`.
    pub fn read(
        &self,
        offset: u64,
        high_watermark: u64,
        max_records: u32,
        max_bytes: u32,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let mut out = Vec::new();
        if offset >= high_watermark || max_records == 0 {
            return Ok(out);
        }
        let ks = &self.store.inner.ks;
        let group = self.group;
        let start = match ks
            .offset_index
            .range(keys::group_u64_key(group, 0)..=keys::group_u64_key(group, offset))
            .next_back()
        {
            Some(guard) => keys::key_u64_field(&guard.key()?)?,
            None => {
                return Err(StorageError::Corrupt(format!(
                    "{group}: no offset index row at or below offset {offset}"
                )))
            }
        };
        let rows = ks
            .offset_index
            .range(keys::group_u64_key(group, start)..keys::group_u64_key(group, high_watermark));
        let mut bytes = 0u64;
        let mut expected_base = start;
        for guard in rows {
            let (key, value) = guard.into_inner()?;
            let base = keys::key_u64_field(&key)?;
            let (raft_index, count, _) = keys::parse_index_value(&value)?;
            if base != expected_base && base > offset {
                return Err(StorageError::Corrupt(format!(
                    "{group}: offsets [{expected_base}, {base}) have no index row"
                )));
            }
            expected_base = base + u64::from(count);
            let records = self.batch_at(base, raft_index)?;
            if records.len() != count as usize {
                return Err(StorageError::Corrupt(format!(
                    "{group}: raft entry {raft_index} holds {} records, index says {count}",
                    records.len()
                )));
            }
            for (record_offset, record) in (base..).zip(records) {
                if record_offset < offset {
                    continue;
                }
                if record_offset >= high_watermark {
                    return Ok(out);
                }
                let size = record.size_bytes() as u64;
                if !out.is_empty() && bytes + size > u64::from(max_bytes) {
                    return Ok(out);
                }
                bytes += size;
                out.push(StoredRecord {
                    offset: record_offset,
                    record,
                });
                if out.len() >= max_records as usize {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Where retention may cut the log: walking the index rows from `log_start_offset` up to
    /// `end_offset` (the high watermark), oldest first, a batch goes while fewer than
    /// `drop_bytes` bytes went before it (retention by size), or while its records are all older
    /// than `older_than_ms` (Unix ms; retention by time); the walk stops at the first batch that
    /// stays. At most `rows_max` rows are looked at per call. Returns the cut as
    /// [`RetentionCut`], or `None` when nothing goes.
    pub fn retention_cut(
        &self,
        log_start_offset: u64,
        end_offset: u64,
        older_than_ms: i64,
        drop_bytes: u64,
        rows_max: usize,
    ) -> Result<Option<RetentionCut>, StorageError> {
        let ks = &self.store.inner.ks;
        let group = self.group;
        let rows = ks.offset_index.range(
            keys::group_u64_key(group, log_start_offset)..keys::group_u64_key(group, end_offset),
        );
        let mut cut = RetentionCut::default();
        for guard in rows.take(rows_max) {
            let (key, value) = guard.into_inner()?;
            let base = keys::key_u64_field(&key)?;
            let (raft_index, count, bytes) = keys::parse_index_value(&value)?;
            let bytes = match bytes {
                Some(b) => u64::from(b),
                None => self.entry_bytes(base, raft_index)?,
            };
            if cut.bytes >= drop_bytes {
                let records = self.batch_at(base, raft_index)?;
                let newest = records.iter().filter_map(|r| r.timestamp_ms).max();
                if newest.is_none_or(|t| t >= older_than_ms) {
                    break;
                }
            }
            cut.raft_index = raft_index;
            cut.log_start_offset = base + u64::from(count);
            cut.removed_rows.push(base);
            cut.bytes += bytes;
        }
        Ok((!cut.removed_rows.is_empty()).then_some(cut))
    }

    /// The bytes of the batches stored in `[from, to)` (what retention by size counts): a walk
    /// of the index rows.
    pub fn log_bytes(&self, from: u64, to: u64) -> Result<u64, StorageError> {
        let ks = &self.store.inner.ks;
        let mut total = 0u64;
        for guard in ks
            .offset_index
            .range(keys::group_u64_key(self.group, from)..keys::group_u64_key(self.group, to))
        {
            let (key, value) = guard.into_inner()?;
            total += match keys::parse_index_value(&value)? {
                (_, _, Some(b)) => u64::from(b),
                (raft_index, _, None) => {
                    self.entry_bytes(keys::key_u64_field(&key)?, raft_index)?
                }
            };
        }
        Ok(total)
    }

    /// The size of the batch in Raft entry `raft_index` (rows from before sizes were stored).
    fn entry_bytes(&self, base: u64, raft_index: u64) -> Result<u64, StorageError> {
        let entry = self.entry_at(base, raft_index)?;
        Ok(StoredEntryRef::decode(&entry)?.data.len() as u64)
    }

    /// The stored Raft entry `raft_index`, which the index row at `base` points at.
    fn entry_at(&self, base: u64, raft_index: u64) -> Result<fjall::Slice, StorageError> {
        let group = self.group;
        self.store
            .inner
            .ks
            .raft_log
            .get(keys::group_u64_key(group, raft_index))?
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "{group}: offset {base} points at missing raft entry {raft_index}"
                ))
            })
    }

    /// The records of the batch stored in Raft entry `raft_index`, which the index row at `base`
    /// points at.
    fn batch_at(&self, base: u64, raft_index: u64) -> Result<Vec<Record>, StorageError> {
        let group = self.group;
        let entry = self.entry_at(base, raft_index)?;
        let entry = StoredEntryRef::decode(&entry)?;
        decode_batch(entry.data).map_err(|e| {
            StorageError::Corrupt(format!("{group}: raft entry {raft_index}: {}", e.message))
        })
    }

    /// The base offsets of the index rows in `[from, to)`.
    pub fn index_rows(&self, from: u64, to: u64) -> Result<Vec<u64>, StorageError> {
        let ks = &self.store.inner.ks;
        let mut out = Vec::new();
        for guard in ks
            .offset_index
            .range(keys::group_u64_key(self.group, from)..keys::group_u64_key(self.group, to))
        {
            out.push(keys::key_u64_field(&guard.key()?)?);
        }
        Ok(out)
    }
}

/// Where retention cuts a partition's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionCut {
    /// The last Raft entry that goes (the log is compacted up to it).
    pub raft_index: u64,
    /// The first offset kept: the new log start.
    pub log_start_offset: u64,
    /// Base offsets of the index rows that go with the entries.
    pub removed_rows: Vec<u64>,
    /// The bytes of the batches that go.
    pub bytes: u64,
}
