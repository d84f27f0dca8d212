//! `PartitionReader`: committed records by offset across batches, bounded by count, bytes and the
//! high watermark.

use bytes::Bytes;
use daftka_storage::{StorageError, Store, StoreOptions, WriteBatch};
use daftka_types::record::encode_batch;
use daftka_types::{GroupId, Record, StoredRecord};
use raft::eraftpb::Entry;

const G: GroupId = GroupId(3);

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        StoreOptions {
            fsync: false,
            ..Default::default()
        },
    )
    .unwrap()
}

fn rec(offset: u64, value_len: usize) -> Record {
    Record::from_value(vec![b'v'; value_len]).with_key(format!("k{offset}").into_bytes())
}

/// Writes each batch as one Raft entry (after an empty election entry, which gets no index row),
/// with its index row and apply state, as the Raft actor's apply does. Returns all records in order.
async fn write_partition(store: &Store, group: GroupId, batches: &[Vec<usize>]) -> Vec<Record> {
    let mut st = store.raft_storage(group).unwrap();
    let mut apply = st.apply_state();
    let mut all = Vec::new();
    let mut ents = vec![Entry {
        index: st.last_index() + 1,
        term: 1,
        ..Default::default()
    }];
    let mut b = WriteBatch::default();
    for sizes in batches {
        let index = st.last_index() + ents.len() as u64 + 1;
        let records: Vec<Record> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| rec(apply.next_offset + i as u64, s))
            .collect();
        let data = Bytes::from(encode_batch(records.clone()).unwrap());
        let size = data.len() as u32;
        ents.push(Entry {
            index,
            term: 1,
            data,
            ..Default::default()
        });
        b.index_batch(group, apply.next_offset, index, records.len() as u32, size);
        apply.next_offset += records.len() as u64;
        apply.applied_index = index;
        all.extend(records);
    }
    b.append_entries(group, &ents, st.last_index());
    b.set_apply_state(group, &apply);
    store.write(b, true).await.unwrap();
    st.on_entries_written(&ents);
    all
}

fn offsets(got: &[StoredRecord]) -> Vec<u64> {
    got.iter().map(|r| r.offset).collect()
}

/// Every record comes back at its offset, across batches, and nothing at or past the watermark.
#[tokio::test]
async fn reads_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let all = write_partition(&store, G, &[vec![10; 3], vec![10; 1], vec![10; 4]]).await;
    let reader = store.partition_reader(G);
    let got = reader.read(0, 8, 100, u32::MAX).unwrap();
    assert_eq!(offsets(&got), (0..8).collect::<Vec<_>>());
    for (r, want) in got.iter().zip(&all) {
        assert_eq!(&r.record, want);
    }
    assert!(reader.read(8, 8, 100, u32::MAX).unwrap().is_empty());
    assert!(reader.read(9, 8, 100, u32::MAX).unwrap().is_empty());
}

/// A read may start in the middle of a batch.
#[tokio::test]
async fn reads_from_middle_of_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let all = write_partition(&store, G, &[vec![10; 5], vec![10; 5]]).await;
    let got = store
        .partition_reader(G)
        .read(3, 10, 100, u32::MAX)
        .unwrap();
    assert_eq!(offsets(&got), (3..10).collect::<Vec<_>>());
    assert_eq!(got[0].record, all[3]);
    let got = store
        .partition_reader(G)
        .read(7, 10, 100, u32::MAX)
        .unwrap();
    assert_eq!(offsets(&got), vec![7, 8, 9]);
}

/// The high watermark bounds the read even inside a batch (records past it are not committed).
#[tokio::test]
async fn high_watermark_bounds_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_partition(&store, G, &[vec![10; 4], vec![10; 4]]).await;
    let got = store.partition_reader(G).read(1, 6, 100, u32::MAX).unwrap();
    assert_eq!(offsets(&got), vec![1, 2, 3, 4, 5]);
    let got = store.partition_reader(G).read(0, 2, 100, u32::MAX).unwrap();
    assert_eq!(offsets(&got), vec![0, 1]);
}

/// `max_records` caps the count.
#[tokio::test]
async fn max_records_caps_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_partition(&store, G, &[vec![10; 3], vec![10; 3]]).await;
    let reader = store.partition_reader(G);
    assert_eq!(
        offsets(&reader.read(1, 6, 4, u32::MAX).unwrap()),
        vec![1, 2, 3, 4]
    );
    assert_eq!(offsets(&reader.read(1, 6, 1, u32::MAX).unwrap()), vec![1]);
    assert!(reader.read(1, 6, 0, u32::MAX).unwrap().is_empty());
}

/// `max_bytes` stops before the sum would pass it, but one record always comes back.
#[tokio::test]
async fn max_bytes_with_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Record sizes: key "k<offset>" (2 bytes here) + value.
    write_partition(&store, G, &[vec![8, 8], vec![8, 1000, 8]]).await;
    let reader = store.partition_reader(G);
    assert_eq!(offsets(&reader.read(0, 5, 100, 20).unwrap()), vec![0, 1]);
    assert_eq!(offsets(&reader.read(0, 5, 100, 29).unwrap()), vec![0, 1]);
    assert_eq!(offsets(&reader.read(0, 5, 100, 30).unwrap()), vec![0, 1, 2]);
    assert_eq!(
        offsets(&reader.read(0, 5, 100, 1).unwrap()),
        vec![0],
        "at least one"
    );
    assert_eq!(
        offsets(&reader.read(3, 5, 100, 10).unwrap()),
        vec![3],
        "an oversized record alone"
    );
    assert_eq!(offsets(&reader.read(3, 5, 100, 2000).unwrap()), vec![3, 4]);
}

/// Groups do not see each other's records.
#[tokio::test]
async fn groups_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = write_partition(&store, GroupId(1), &[vec![1; 2]]).await;
    let b = write_partition(&store, GroupId(2), &[vec![2; 3]]).await;
    let got = store
        .partition_reader(GroupId(1))
        .read(0, 10, 100, u32::MAX)
        .unwrap();
    assert_eq!(got.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), a);
    let got = store
        .partition_reader(GroupId(2))
        .read(0, 10, 100, u32::MAX)
        .unwrap();
    assert_eq!(got.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), b);
}

/// A read below any index row (no data) is an error value, not a panic or an empty answer.
#[tokio::test]
async fn missing_index_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = store
        .partition_reader(G)
        .read(0, 5, 100, u32::MAX)
        .unwrap_err();
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
}

/// Writes one batch of two records per timestamp, each batch one Raft entry with its index row.
async fn write_stamped(store: &Store, group: GroupId, stamps: &[i64]) {
    let st = store.raft_storage(group).unwrap();
    let mut ents = Vec::new();
    let mut b = WriteBatch::default();
    for (i, ts) in stamps.iter().enumerate() {
        let index = st.last_index() + i as u64 + 1;
        let records: Vec<Record> = (0..2)
            .map(|_| Record {
                timestamp_ms: Some(*ts),
                ..Record::from_value("x")
            })
            .collect();
        let data = Bytes::from(encode_batch(records).unwrap());
        b.index_batch(group, 2 * i as u64, index, 2, data.len() as u32);
        ents.push(Entry {
            index,
            term: 1,
            data,
            ..Default::default()
        });
    }
    b.append_entries(group, &ents, st.last_index());
    store.write(b, true).await.unwrap();
}

/// Retention cuts after the last batch that is entirely older than the threshold, and only as far
/// as every batch before it is also older; the cut names the rows that go.
#[tokio::test]
async fn retention_cuts_only_a_prefix_of_expired_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Batches at offsets 0, 2, 4, 6 (raft entries 1..4) stamped 100, 200, 900, 150.
    write_stamped(&store, G, &[100, 200, 900, 150]).await;
    let r = store.partition_reader(G);
    assert_eq!(
        r.retention_cut(0, 8, 50, 0, 100).unwrap(),
        None,
        "nothing older"
    );
    let cut = r.retention_cut(0, 8, 300, 0, 100).unwrap().expect("a cut");
    // The batch at 6 is old too, but the one at 4 is not: the log is cut as a prefix only.
    assert_eq!(cut.raft_index, 2);
    assert_eq!(cut.log_start_offset, 4);
    assert_eq!(cut.removed_rows, vec![0, 2]);
    let all = r.retention_cut(0, 8, 1000, 0, 100).unwrap().expect("a cut");
    assert_eq!((all.raft_index, all.log_start_offset), (4, 8));
    let capped = r.retention_cut(0, 8, 1000, 0, 1).unwrap().expect("a cut");
    assert_eq!(capped.log_start_offset, 2, "at most rows_max rows per call");
    assert_eq!(
        r.retention_cut(4, 8, 300, 0, 100).unwrap(),
        None,
        "from a later log start"
    );
    // By size: every batch is the same size; dropping just over one batch's bytes takes two
    // batches (a batch goes while fewer bytes than asked went before it), whatever their age.
    let total = r.log_bytes(0, 8).unwrap();
    let one = total / 4;
    assert_eq!(total, one * 4, "four batches of one size");
    let by_size = r
        .retention_cut(0, 8, 50, one + 1, 100)
        .unwrap()
        .expect("a cut");
    assert_eq!((by_size.log_start_offset, by_size.bytes), (4, 2 * one));
    // Size and time together: time takes the batch at 2 after size took the one at 0.
    let both = r.retention_cut(0, 8, 300, 1, 100).unwrap().expect("a cut");
    assert_eq!(both.log_start_offset, 4);
    assert_eq!(r.log_bytes(4, 8).unwrap(), 2 * one);
    assert_eq!(r.index_rows(0, 5).unwrap(), vec![0, 2, 4]);
}
