//! Values stored in fjall: our own serde types encoded with postcard behind a one-byte format
//! version, never raft-rs's protobuf bytes (protobuf 2.x decoding has RUSTSEC-2024-0437, and our
//! own types keep the disk format independent of the raft-rs version).

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::StorageError;

/// The first byte of every postcard value we store. A new layout gets a new byte; readers reject
/// bytes they do not know instead of misreading them.
const FORMAT_V1: u8 = 1;

/// One Raft log entry as stored in `raft_log`. For partition groups, `data` is the record batch
/// ([`daftka_types::record::encode_batch`]) itself: records are written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub term: u64,
    pub index: u64,
    /// `raft::eraftpb::EntryType` as its protobuf number (0 normal, 1 conf change, 2 conf change v2).
    pub entry_type: u8,
    pub data: Bytes,
    pub context: Bytes,
}

impl StoredEntry {
    /// Copies the fields we keep out of a raft-rs entry (`sync_log` is deprecated and dropped).
    pub fn from_entry(e: &Entry) -> Self {
        StoredEntry {
            term: e.term,
            index: e.index,
            entry_type: match e.get_entry_type() {
                EntryType::EntryNormal => 0,
                EntryType::EntryConfChange => 1,
                EntryType::EntryConfChangeV2 => 2,
            },
            data: e.data.clone(),
            context: e.context.clone(),
        }
    }

    /// Back into a raft-rs entry; an unknown entry type is corruption.
    pub fn into_entry(self) -> Result<Entry, StorageError> {
        let entry_type = match self.entry_type {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            t => {
                return Err(StorageError::Corrupt(format!(
                    "entry {} has unknown type {t}",
                    self.index
                )))
            }
        };
        let mut e = Entry::default();
        e.set_entry_type(entry_type);
        e.term = self.term;
        e.index = self.index;
        e.data = self.data;
        e.context = self.context;
        Ok(e)
    }
}

/// A zero-copy view of a stored [`StoredEntry`] (same layout): reads that need only the term or
/// the data (fetch, `term()`) do not copy a possibly large batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct StoredEntryRef<'a> {
    pub(crate) term: u64,
    pub(crate) index: u64,
    #[allow(dead_code)] // kept so the layout matches `StoredEntry`
    pub(crate) entry_type: u8,
    pub(crate) data: &'a [u8],
}

impl<'a> StoredEntryRef<'a> {
    /// Decodes the view from bytes written by `encode(&StoredEntry)`.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, StorageError> {
        match bytes.split_first() {
            // Trailing fields (the context) are left undecoded.
            Some((&FORMAT_V1, rest)) => postcard::take_from_bytes(rest)
                .map(|(e, _)| e)
                .map_err(|e| StorageError::Corrupt(format!("decode raft entry: {e}"))),
            _ => Err(StorageError::Corrupt(
                "decode raft entry: bad format byte".into(),
            )),
        }
    }
}

/// What a group's state machine has applied, written in the same batch as the apply's effects
/// (offset index rows), so after a crash apply resumes exactly after `applied_index`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyState {
    /// The last Raft index applied.
    pub applied_index: u64,
    /// The offset the next applied record gets (partitions; 0 for the metadata group).
    pub next_offset: u64,
    /// The first offset reads may return (raised by retention).
    pub log_start_offset: u64,
}

/// The last compaction point of a group's log: entries up to `index` are gone, and `term` is
/// `index`'s term (raft needs the term of the entry before the first one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
}

/// A group's snapshot: the state machine's state after applying `index` (`term`), with the
/// configuration at that index. Stored at the compaction point and sent to followers that need
/// entries the log no longer has. `data` is the state machine's own encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub index: u64,
    pub term: u64,
    pub(crate) conf_state: ConfStateRecord,
    pub data: Bytes,
}

impl SnapshotRecord {
    pub fn new(index: u64, term: u64, conf_state: &ConfState, data: impl Into<Bytes>) -> Self {
        SnapshotRecord {
            index,
            term,
            conf_state: ConfStateRecord::from_pb(conf_state),
            data: data.into(),
        }
    }

    pub fn conf_state(&self) -> ConfState {
        self.conf_state.clone().into_pb()
    }

    /// As raft-rs's snapshot message.
    pub fn to_pb(&self) -> raft::eraftpb::Snapshot {
        let mut s = raft::eraftpb::Snapshot {
            data: self.data.clone(),
            ..Default::default()
        };
        let m = s.mut_metadata();
        m.index = self.index;
        m.term = self.term;
        m.set_conf_state(self.conf_state());
        s
    }

    /// From raft-rs's snapshot message.
    pub fn from_pb(s: &raft::eraftpb::Snapshot) -> Self {
        let m = s.get_metadata();
        SnapshotRecord::new(m.index, m.term, m.get_conf_state(), s.data.clone())
    }
}

/// `HardState` in our own serde form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HardStateRecord {
    term: u64,
    vote: u64,
    commit: u64,
}

impl HardStateRecord {
    pub(crate) fn from_pb(hs: &HardState) -> Self {
        HardStateRecord {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        }
    }
    pub(crate) fn into_pb(self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
            ..Default::default()
        }
    }
}

/// `ConfState` in our own serde form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfStateRecord {
    voters: Vec<u64>,
    learners: Vec<u64>,
    voters_outgoing: Vec<u64>,
    learners_next: Vec<u64>,
    auto_leave: bool,
}

impl ConfStateRecord {
    pub(crate) fn from_pb(cs: &ConfState) -> Self {
        ConfStateRecord {
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        }
    }
    pub(crate) fn into_pb(self) -> ConfState {
        ConfState {
            voters: self.voters,
            learners: self.learners,
            voters_outgoing: self.voters_outgoing,
            learners_next: self.learners_next,
            auto_leave: self.auto_leave,
            ..Default::default()
        }
    }
}

/// Encodes a value as the format byte followed by postcard.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![FORMAT_V1];
    postcard::to_io(value, &mut out).map_err(|e| StorageError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`]; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => postcard::from_bytes(rest)
            .map_err(|e| StorageError::Corrupt(format!("decode {what}: {e}"))),
        Some((v, _)) => Err(StorageError::Corrupt(format!(
            "decode {what}: unknown format version {v}"
        ))),
        None => Err(StorageError::Corrupt(format!("decode {what}: empty value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hard and conf state survive the trip through our own records.
    #[test]
    fn raft_states_round_trip() {
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 9,
            ..Default::default()
        };
        let rec: HardStateRecord =
            decode(&encode(&HardStateRecord::from_pb(&hs)).unwrap(), "hs").unwrap();
        assert_eq!(rec.into_pb(), hs);

        let cs = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            voters_outgoing: vec![1],
            learners_next: vec![5],
            auto_leave: true,
            ..Default::default()
        };
        let rec: ConfStateRecord =
            decode(&encode(&ConfStateRecord::from_pb(&cs)).unwrap(), "cs").unwrap();
        assert_eq!(rec.into_pb(), cs);
    }

    /// A snapshot's data is `Bytes` (decoded with one copy, not byte by byte); snapshots stored
    /// when it was a `Vec<u8>` are the same bytes (postcard writes both as a length and the
    /// bytes), so they still decode.
    #[test]
    fn snapshots_stored_with_vec_data_still_decode() {
        #[derive(Serialize)]
        struct Before {
            index: u64,
            term: u64,
            conf_state: ConfStateRecord,
            data: Vec<u8>,
        }
        let cs = ConfState {
            voters: vec![1, 2],
            ..Default::default()
        };
        let data: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let before = Before {
            index: 7,
            term: 2,
            conf_state: ConfStateRecord::from_pb(&cs),
            data: data.clone(),
        };
        let now = SnapshotRecord::new(7, 2, &cs, data);
        assert_eq!(encode(&before).unwrap(), encode(&now).unwrap());
        let back: SnapshotRecord = decode(&encode(&before).unwrap(), "snapshot").unwrap();
        assert_eq!(back, now);
    }

    /// Unknown format versions and unknown entry types are errors, not panics.
    #[test]
    fn bad_bytes_are_errors() {
        assert!(decode::<ApplyState>(&[], "x").is_err());
        assert!(decode::<ApplyState>(&[9, 0, 0, 0], "x").is_err());
        let e = StoredEntry {
            term: 1,
            index: 1,
            entry_type: 7,
            data: Bytes::new(),
            context: Bytes::new(),
        };
        assert!(e.clone().into_entry().is_err());
        let bytes = encode(&e).unwrap();
        let view = StoredEntryRef::decode(&bytes).unwrap();
        assert_eq!((view.term, view.index, view.data), (1, 1, &[][..]));
    }
}
