//! Properties: stored values decode to what was encoded, and for any sequence of batches every
//! offset reads back the record written at it.

use bytes::Bytes;
use daftka_storage::codec::{decode, encode};
use daftka_storage::{ApplyState, Store, StoreOptions, StoredEntry, WriteBatch};
use daftka_types::record::encode_batch;
use daftka_types::{GroupId, Header, Record};
use proptest::prelude::*;
use raft::eraftpb::Entry;

fn stored_entry() -> impl Strategy<Value = StoredEntry> {
    (
        any::<u64>(),
        any::<u64>(),
        0u8..3,
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(term, index, entry_type, data, context)| StoredEntry {
            term,
            index,
            entry_type,
            data: data.into(),
            context: context.into(),
        })
}

fn record() -> impl Strategy<Value = Record> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(
            ("[a-z]{0,4}", prop::collection::vec(any::<u8>(), 0..4)),
            0..2,
        ),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(key, value, headers, timestamp_ms)| Record {
            key: key.map(Bytes::from),
            value: value.into(),
            headers: headers
                .into_iter()
                .map(|(key, v)| Header {
                    key,
                    value: v.into(),
                })
                .collect(),
            timestamp_ms,
        })
}

proptest! {
    /// decode(encode(entry)) == entry, and the raft-rs conversion keeps every field.
    #[test]
    fn stored_entry_round_trip(e in stored_entry()) {
        let back: StoredEntry = decode(&encode(&e).unwrap(), "entry").unwrap();
        prop_assert_eq!(&back, &e);
        let raft_entry: Entry = back.into_entry().unwrap();
        prop_assert_eq!(StoredEntry::from_entry(&raft_entry), e);
    }

    /// decode(encode(apply state)) == apply state.
    #[test]
    fn apply_state_round_trip(applied_index: u64, next_offset: u64, log_start_offset: u64) {
        let st = ApplyState { applied_index, next_offset, log_start_offset };
        prop_assert_eq!(decode::<ApplyState>(&encode(&st).unwrap(), "apply").unwrap(), st);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For random batches (with empty entries between some, as leader elections leave), reading one
    /// record at every offset returns the record written there, and reading from any offset returns
    /// the rest of the log in order.
    #[test]
    fn every_offset_reads_its_record(
        batches in prop::collection::vec((prop::collection::vec(record(), 1..6), any::<bool>()), 1..12)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { fsync: false, ..Default::default() }).unwrap();
        let group = GroupId(1);
        let mut all = Vec::new();
        let mut index = 0u64;
        for (records, empty_before) in &batches {
            // One write per batch, as one apply step per Ready would do.
            let mut b = WriteBatch::default();
            let mut ents = Vec::new();
            if *empty_before {
                index += 1;
                ents.push(Entry { index, term: 1, ..Default::default() });
            }
            index += 1;
            ents.push(Entry {
                index,
                term: 1,
                data: encode_batch(records.clone()).unwrap().into(),
                ..Default::default()
            });
            b.append_entries(group, &ents, index - ents.len() as u64);
            let size = ents.last().map_or(0, |e| e.data.len() as u32);
            b.index_batch(group, all.len() as u64, index, records.len() as u32, size);
            all.extend(records.iter().cloned());
            rt.block_on(store.write(b, false)).unwrap();
        }
        let hw = all.len() as u64;
        let reader = store.partition_reader(group);
        for (offset, want) in (0..).zip(&all) {
            let got = reader.read(offset, hw, 1, 0).unwrap();
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(got[0].offset, offset);
            prop_assert_eq!(&got[0].record, want);
            let rest = reader.read(offset, hw, u32::MAX, u32::MAX).unwrap();
            prop_assert_eq!(rest.len() as u64, hw - offset);
            prop_assert!(rest.iter().zip(offset..).all(|(r, o)| r.offset == o));
        }
    }
}
