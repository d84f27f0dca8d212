//! Group commit: concurrent durable writes merge into shared fsync rounds, and non-durable writes
//! are readable as soon as they resolve.

use bytes::Bytes;
use daftka_storage::{Store, StoreOptions, WriteBatch};
use daftka_types::GroupId;
use raft::eraftpb::{Entry, HardState};
use raft::{GetEntriesContext, Storage};

fn entry_batch(group: GroupId, index: u64) -> WriteBatch {
    let mut b = WriteBatch::default();
    let e = Entry {
        index,
        term: 1,
        data: Bytes::from(format!("{group}/{index}")),
        ..Default::default()
    };
    b.append_entries(group, &[e], index - 1);
    b
}

/// Writes queued while the writer is held all commit in ONE fsync round (deterministic merging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_share_one_round() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    const N: u64 = 64;
    let pause = store.pause_writer();
    // `write` queues at call time; the futures then run on other tasks.
    let tasks: Vec<_> = (1..=N)
        .map(|g| tokio::spawn(store.write(entry_batch(GroupId(g), 1), true)))
        .collect();
    drop(pause);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.commit_rounds(), 1);
    assert_eq!(store.writes(), N);
    for g in 1..=N {
        assert_eq!(store.raft_storage(GroupId(g)).unwrap().last_index(), 1);
    }
}

/// Many tasks writing durably at once all complete, in fewer fsync rounds than writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_writes_complete_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    const TASKS: u64 = 50;
    const WRITES: u64 = 20;
    let pause = store.pause_writer();
    let mut tasks = Vec::new();
    for g in 1..=TASKS {
        let store = store.clone();
        // Each task writes its group's log one entry at a time, awaiting each write. The first write
        // is queued here, while the writer is held, so that first round merges all of them.
        let first = store.write(entry_batch(GroupId(g), 1), true);
        tasks.push(tokio::spawn(async move {
            first.await.unwrap();
            for i in 2..=WRITES {
                store.write(entry_batch(GroupId(g), i), true).await.unwrap();
            }
        }));
    }
    drop(pause);
    for t in tasks {
        t.await.unwrap();
    }
    let rounds = store.commit_rounds();
    assert!(
        rounds < TASKS * WRITES,
        "{rounds} rounds for {} writes",
        TASKS * WRITES
    );
    for g in 1..=TASKS {
        let st = store.raft_storage(GroupId(g)).unwrap();
        assert_eq!(st.last_index(), WRITES);
        assert_eq!(
            st.entries(1, WRITES + 1, None, GetEntriesContext::empty(false))
                .unwrap()
                .len() as u64,
            WRITES
        );
    }
}

/// A non-durable write is visible to reads as soon as it resolves, without an fsync round.
#[tokio::test]
async fn non_durable_write_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let g = GroupId(5);
    let mut b = entry_batch(g, 1);
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 1,
        ..Default::default()
    };
    b.set_hard_state(g, &hs);
    store.write(b, false).await.unwrap();
    assert_eq!(store.commit_rounds(), 0);
    let st = store.raft_storage(g).unwrap();
    assert_eq!(st.last_index(), 1);
    assert_eq!(st.hard_state(), hs);
    assert_eq!(st.term(1).unwrap(), 1);
    // A later durable write (even an empty one) makes it durable in one round.
    store.write(WriteBatch::default(), true).await.unwrap();
    assert_eq!(store.commit_rounds(), 1);
}

/// Writes issued in order commit in that order, even when awaited out of order.
#[tokio::test]
async fn writes_commit_in_call_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            fsync: false,
            ..Default::default()
        },
    )
    .unwrap();
    let g = GroupId(1);
    let mut first = WriteBatch::default();
    first.set_hard_state(
        g,
        &HardState {
            term: 1,
            ..Default::default()
        },
    );
    let mut second = WriteBatch::default();
    second.set_hard_state(
        g,
        &HardState {
            term: 2,
            ..Default::default()
        },
    );
    let a = store.write(first, false);
    let b = store.write(second, true);
    b.await.unwrap();
    a.await.unwrap();
    assert_eq!(store.raft_storage(g).unwrap().hard_state().term, 2);
}
