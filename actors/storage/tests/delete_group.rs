//! `delete_group` removes every key of one group in every keyspace, durably, and nothing else.

use bytes::Bytes;
use daftka_storage::{ApplyState, Store, StoreOptions, WriteBatch};
use daftka_types::record::encode_batch;
use daftka_types::{GroupId, Record};
use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, Storage};

/// Writes `n` one-record entries, their index rows, hard, conf and apply state for `group`.
async fn fill(store: &Store, group: GroupId, n: u64) {
    let mut b = WriteBatch::default();
    let ents: Vec<Entry> = (1..=n)
        .map(|i| Entry {
            index: i,
            term: 1,
            data: Bytes::from(
                encode_batch(vec![Record::from_value(format!("{group}-{i}"))]).unwrap(),
            ),
            ..Default::default()
        })
        .collect();
    b.append_entries(group, &ents, 0);
    for e in &ents {
        b.index_batch(group, e.index - 1, e.index, 1, e.data.len() as u32);
    }
    b.set_hard_state(
        group,
        &HardState {
            term: 1,
            vote: 1,
            commit: n,
            ..Default::default()
        },
    );
    b.set_conf_state(
        group,
        &ConfState {
            voters: vec![1],
            ..Default::default()
        },
    );
    b.set_apply_state(
        group,
        &ApplyState {
            applied_index: n,
            next_offset: n,
            log_start_offset: 0,
        },
    );
    store.write(b, false).await.unwrap();
}

fn assert_intact(store: &Store, group: GroupId, n: u64) {
    let st = store.raft_storage(group).unwrap();
    assert_eq!(st.last_index(), n);
    assert_eq!(st.hard_state().commit, n);
    assert_eq!(st.apply_state().next_offset, n);
    assert_eq!(
        st.entries(1, n + 1, None, GetEntriesContext::empty(false))
            .unwrap()
            .len() as u64,
        n
    );
    let got = store
        .partition_reader(group)
        .read(0, n, u32::MAX, u32::MAX)
        .unwrap();
    assert_eq!(got.len() as u64, n);
    assert_eq!(got[0].record.value, Bytes::from(format!("{group}-1")));
}

fn assert_gone(store: &Store, group: GroupId) {
    let st = store.raft_storage(group).unwrap();
    assert_eq!(st.last_index(), 0);
    assert_eq!(st.hard_state(), HardState::default());
    assert_eq!(st.conf_state(), ConfState::default());
    assert_eq!(st.apply_state(), ApplyState::default());
    assert!(
        store.partition_reader(group).read(0, 1, 1, 1).is_err(),
        "no index rows left"
    );
    assert!(!store.groups().unwrap().contains(&group));
}

/// After deleting group 2, nothing of it remains (even after reopen); groups 0, 1, 3 are intact.
#[tokio::test]
async fn delete_removes_only_that_group() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions::default();
    {
        let store = Store::open(dir.path(), opts.clone()).unwrap();
        for g in 0..=3 {
            fill(&store, GroupId(g), 10 + g).await;
        }
        assert_eq!(
            store.groups().unwrap(),
            (0..=3).map(GroupId).collect::<Vec<_>>()
        );
        store.delete_group(GroupId(2)).await.unwrap();
        assert_gone(&store, GroupId(2));
        for g in [0, 1, 3] {
            assert_intact(&store, GroupId(g), 10 + g);
        }
    }
    let store = Store::open(dir.path(), opts).unwrap();
    assert_gone(&store, GroupId(2));
    assert_eq!(
        store.groups().unwrap(),
        vec![GroupId(0), GroupId(1), GroupId(3)]
    );
    for g in [0, 1, 3] {
        assert_intact(&store, GroupId(g), 10 + g);
    }
}

/// A group with more keys than one removal chunk (16 Ki), and the last possible group id, delete fully.
#[tokio::test]
async fn delete_large_group_and_last_group_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            fsync: false,
            ..Default::default()
        },
    )
    .unwrap();
    let big = GroupId(9);
    let last = GroupId(u64::MAX);
    fill(&store, big, 20_000).await;
    fill(&store, last, 3).await;
    fill(&store, GroupId(10), 2).await;
    store.delete_group(big).await.unwrap();
    store.delete_group(last).await.unwrap();
    assert_gone(&store, big);
    assert_gone(&store, last);
    assert_intact(&store, GroupId(10), 2);
    assert_eq!(store.groups().unwrap(), vec![GroupId(10)]);
}
