//! Recovery: everything written durably is back after the store is dropped and reopened, again and
//! again (fjall's reopen-in-a-loop style).

use bytes::Bytes;
use daftka_storage::{ApplyState, Store, StoreOptions, WriteBatch};
use daftka_types::record::encode_batch;
use daftka_types::{GroupId, Record};
use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, Storage};

const ROUNDS: u64 = 5;
const PER_ROUND: u64 = 3;
const META: GroupId = GroupId::METADATA;
const PART: GroupId = GroupId(1);

/// Each round: reopen, check all earlier rounds, append `PER_ROUND` entries to the metadata group
/// and `PER_ROUND` batches of 2 records to the partition with index rows, apply and hard state.
#[tokio::test]
async fn durable_state_survives_reopen_loop() {
    let dir = tempfile::tempdir().unwrap();
    let cs = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    for round in 0..ROUNDS {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let done = round * PER_ROUND;

        // Check what earlier rounds wrote.
        let mut meta = store.raft_storage(META).unwrap();
        let mut part = store.raft_storage(PART).unwrap();
        assert_eq!(meta.last_index(), done);
        assert_eq!(part.last_index(), done);
        assert_eq!(part.hard_state().commit, done);
        assert_eq!(part.hard_state().term, round);
        if round > 0 {
            assert_eq!(part.conf_state(), cs);
            let ents = meta
                .entries(1, done + 1, None, GetEntriesContext::empty(false))
                .unwrap();
            for (i, e) in (1..).zip(&ents) {
                assert_eq!(e.data, Bytes::from(format!("meta-{i}")));
            }
        }
        let apply = part.apply_state();
        assert_eq!(
            apply,
            ApplyState {
                applied_index: done,
                next_offset: done * 2,
                log_start_offset: 0
            }
        );
        let got = store
            .partition_reader(PART)
            .read(0, apply.next_offset, u32::MAX, u32::MAX)
            .unwrap();
        assert_eq!(got.len() as u64, done * 2);
        for (o, r) in (0..).zip(&got) {
            assert_eq!(r.offset, o);
            assert_eq!(r.record.value, Bytes::from(format!("r{o}")));
        }

        // Write this round.
        let mut b = WriteBatch::default();
        let meta_ents: Vec<Entry> = (done + 1..=done + PER_ROUND)
            .map(|i| Entry {
                index: i,
                term: round + 1,
                data: format!("meta-{i}").into(),
                ..Default::default()
            })
            .collect();
        b.append_entries(META, &meta_ents, meta.last_index());
        let mut next_offset = apply.next_offset;
        let mut part_ents = Vec::new();
        for i in done + 1..=done + PER_ROUND {
            let records = vec![
                Record::from_value(format!("r{next_offset}")),
                Record::from_value(format!("r{}", next_offset + 1)),
            ];
            let data: Bytes = encode_batch(records).unwrap().into();
            b.index_batch(PART, next_offset, i, 2, data.len() as u32);
            part_ents.push(Entry {
                index: i,
                term: round + 1,
                data,
                ..Default::default()
            });
            next_offset += 2;
        }
        b.append_entries(PART, &part_ents, part.last_index());
        let hs = HardState {
            term: round + 1,
            vote: 1,
            commit: done + PER_ROUND,
            ..Default::default()
        };
        b.set_hard_state(PART, &hs);
        b.set_conf_state(PART, &cs);
        b.set_apply_state(
            PART,
            &ApplyState {
                applied_index: done + PER_ROUND,
                next_offset,
                log_start_offset: 0,
            },
        );
        store.write(b, true).await.unwrap();
        meta.on_entries_written(&meta_ents);
        part.on_entries_written(&part_ents);
        part.on_hard_state_written(&hs);
        assert_eq!(
            store.groups().unwrap(),
            vec![PART],
            "only the partition has raft_meta rows"
        );
        // Dropping every handle closes the database so the next round can open it.
        drop((meta, part, store));
    }
}

/// A data directory keeps its incarnation across reopens (and the close handle resolves once the
/// last clone is gone); a new directory draws another one.
#[tokio::test]
async fn the_incarnation_belongs_to_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let first = store.incarnation();
    assert_ne!(first, 0);
    let closed = store.closed();
    let clone = store.clone();
    drop(store);
    drop(clone);
    closed.wait().await;
    let again = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        again.incarnation(),
        first,
        "the same directory, the same incarnation"
    );
    let other = tempfile::tempdir().unwrap();
    let fresh = Store::open(other.path(), StoreOptions::default()).unwrap();
    assert_ne!(
        fresh.incarnation(),
        first,
        "a new directory, a new incarnation"
    );
}
