//! `RaftLogStorage` as raft-rs sees it: append, overwrite-suffix, terms, ranges, size limits, state.

use bytes::Bytes;
use daftka_storage::{Store, StoreOptions, WriteBatch};
use daftka_types::GroupId;
use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, Storage};

const G: GroupId = GroupId(7);

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

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: Bytes::copy_from_slice(data),
        ..Default::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range
        .map(|i| entry(i, term, format!("e{i}t{term}").as_bytes()))
        .collect()
}

async fn append(store: &Store, st: &mut daftka_storage::RaftLogStorage, ents: &[Entry]) {
    let mut b = WriteBatch::default();
    b.append_entries(st.group(), ents, st.last_index());
    store.write(b, true).await.unwrap();
    st.on_entries_written(ents);
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn is_store_err(r: raft::Result<impl std::fmt::Debug>, want: raft::StorageError) -> bool {
    matches!(r, Err(raft::Error::Store(e)) if e == want)
}

/// A group never written looks like raft's fresh storage: log truncated at 0.
#[tokio::test]
async fn empty_group_is_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let st = store.raft_storage(G).unwrap();
    assert_eq!(Storage::first_index(&st).unwrap(), 1);
    assert_eq!(Storage::last_index(&st).unwrap(), 0);
    assert_eq!(st.term(0).unwrap(), 0);
    assert!(is_store_err(st.term(1), raft::StorageError::Unavailable));
    assert_eq!(st.entries(1, 1, None, ctx()).unwrap(), vec![]);
    let rs = st.initial_state().unwrap();
    assert!(!rs.initialized());
    assert_eq!(st.apply_state(), Default::default());
}

/// Appended entries come back by range and term, cached and reloaded alike.
#[tokio::test]
async fn append_then_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    let ents = entries(1..=5, 1);
    append(&store, &mut st, &ents).await;
    let more = entries(6..=8, 2);
    append(&store, &mut st, &more).await;

    for st in [&st, &store.raft_storage(G).unwrap()] {
        assert_eq!(Storage::first_index(st).unwrap(), 1);
        assert_eq!(Storage::last_index(st).unwrap(), 8);
        assert_eq!(st.term(0).unwrap(), 0);
        assert_eq!(st.term(5).unwrap(), 1);
        assert_eq!(st.term(6).unwrap(), 2);
        assert_eq!(st.term(8).unwrap(), 2);
        assert!(is_store_err(st.term(9), raft::StorageError::Unavailable));
        assert_eq!(st.entries(1, 6, None, ctx()).unwrap(), ents);
        assert_eq!(st.entries(6, 9, None, ctx()).unwrap(), more);
        assert_eq!(
            st.entries(3, 4, None, ctx()).unwrap(),
            vec![ents[2].clone()]
        );
        assert!(
            st.entries(1, 10, None, ctx()).is_err(),
            "high past last_index + 1"
        );
    }
}

/// Raft append semantics: an append at index i replaces everything from i on, including entries
/// past the new last index (paper §5.3: a follower deletes a conflicting suffix).
#[tokio::test]
async fn append_overwrites_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    append(&store, &mut st, &entries(1..=5, 1)).await;
    let replacement = entries(3..=4, 2);
    append(&store, &mut st, &replacement).await;

    for st in [&st, &store.raft_storage(G).unwrap()] {
        assert_eq!(Storage::last_index(st).unwrap(), 4);
        assert_eq!(st.term(2).unwrap(), 1);
        assert_eq!(st.term(3).unwrap(), 2);
        assert_eq!(st.term(4).unwrap(), 2);
        assert!(is_store_err(st.term(5), raft::StorageError::Unavailable));
        let got = st.entries(1, 5, None, ctx()).unwrap();
        assert_eq!(got[2..], replacement[..]);
    }
    // The stale entry 5 is really gone: a later append at 5 is not confused by it.
    append(&store, &mut st, &entries(5..=5, 3)).await;
    assert_eq!(store.raft_storage(G).unwrap().term(5).unwrap(), 3);
}

/// The tail of unapplied entries serves reads exactly as fjall does (a reopened storage has no
/// tail): after appends, a suffix overwrite, a trim up to the applied index, with size limits,
/// after compaction, and past its byte cap.
#[tokio::test]
async fn the_tail_serves_what_fjall_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    let same = |st: &daftka_storage::RaftLogStorage, low: u64, high: u64, max: Option<u64>| {
        let fresh = store.raft_storage(G).unwrap();
        assert_eq!(fresh.tail_len(), 0);
        assert_eq!(
            st.entries(low, high, max, ctx()).unwrap(),
            fresh.entries(low, high, max, ctx()).unwrap(),
            "[{low}, {high}) max {max:?}"
        );
    };
    append(&store, &mut st, &entries(1..=5, 1)).await;
    assert_eq!(st.tail_len(), 5);
    same(&st, 1, 6, None);
    same(&st, 2, 4, None);
    // A follower's conflicting suffix is replaced in the tail as in the log.
    append(&store, &mut st, &entries(3..=4, 2)).await;
    assert_eq!(st.tail_len(), 4);
    assert_eq!(st.entries(3, 5, None, ctx()).unwrap(), entries(3..=4, 2));
    same(&st, 1, 5, None);
    append(&store, &mut st, &entries(5..=9, 2)).await;
    assert_eq!(st.tail_len(), 9);
    // Applied entries leave the tail; a read reaching below it goes to fjall.
    st.trim_tail(4);
    assert_eq!(st.tail_len(), 5);
    same(&st, 1, 10, None);
    same(&st, 5, 10, None);
    let one = u64::from(protobuf::Message::compute_size(&entries(5..=5, 2)[0]));
    for max in [0, one, 2 * one + 1, 100 * one] {
        same(&st, 5, 10, Some(max));
    }
    // Compaction drops what it covers.
    let mut b = WriteBatch::default();
    b.compact_log(G, st.first_index(), 6, 2);
    store.write(b, true).await.unwrap();
    st.on_log_compacted(6, 2);
    assert_eq!(st.tail_len(), 3);
    same(&st, 7, 10, None);
    // Past the cap the oldest entries leave the tail, and reads stay right.
    let big: Vec<Entry> = (10..=14)
        .map(|i| entry(i, 3, &vec![i as u8; daftka_storage::TAIL_BYTES_MAX / 3]))
        .collect();
    append(&store, &mut st, &big).await;
    assert!(st.tail_len() <= 3, "tail of {} entries", st.tail_len());
    assert_eq!(st.entries(14, 15, None, ctx()).unwrap(), big[4..].to_vec());
    same(&st, 7, 15, None);
    same(&st, 12, 15, None);
}

/// `max_size` follows `raft::util::limit_size`: stop before the total passes it, but at least one.
#[tokio::test]
async fn entries_respect_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    let ents: Vec<Entry> = (1..=10).map(|i| entry(i, 1, &[i as u8; 100])).collect();
    append(&store, &mut st, &ents).await;
    let one = u64::from(protobuf::Message::compute_size(&ents[0]));

    for max in [
        0,
        1,
        one,
        one + 1,
        3 * one,
        3 * one + 5,
        100 * one,
        raft::NO_LIMIT,
    ] {
        let got = st.entries(1, 11, max, ctx()).unwrap();
        let mut want = ents.clone();
        raft::util::limit_size(&mut want, Some(max));
        assert_eq!(got, want, "max_size {max}");
    }
    assert_eq!(st.entries(1, 11, 0, ctx()).unwrap().len(), 1);
    assert_eq!(st.entries(1, 11, 3 * one, ctx()).unwrap().len(), 3);
    assert_eq!(st.entries(1, 11, None, ctx()).unwrap().len(), 10);
}

/// Hard state and conf state written through a batch load back as raft-rs's initial state.
#[tokio::test]
async fn hard_and_conf_state_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    let hs = HardState {
        term: 4,
        vote: 2,
        commit: 3,
        ..Default::default()
    };
    let cs = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..Default::default()
    };
    let mut b = WriteBatch::default();
    b.set_hard_state(G, &hs);
    b.set_conf_state(G, &cs);
    store.write(b, true).await.unwrap();
    st.on_hard_state_written(&hs);
    st.on_conf_state_written(&cs);

    for st in [&st, &store.raft_storage(G).unwrap()] {
        let rs = st.initial_state().unwrap();
        assert_eq!(rs.hard_state, hs);
        assert_eq!(rs.conf_state, cs);
        assert_eq!(st.hard_state(), hs);
        assert_eq!(st.conf_state(), cs);
    }
    // Other groups are untouched.
    assert_eq!(
        store.raft_storage(GroupId(8)).unwrap().hard_state(),
        HardState::default()
    );
}

/// Entry types and contexts survive storage (conf changes are replayed from the log).
#[tokio::test]
async fn entry_fields_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    let mut e = entry(1, 1, b"cc");
    e.set_entry_type(raft::eraftpb::EntryType::EntryConfChangeV2);
    e.context = Bytes::from_static(b"ctx");
    let empty = entry(2, 1, b"");
    append(&store, &mut st, &[e.clone(), empty.clone()]).await;
    assert_eq!(
        store
            .raft_storage(G)
            .unwrap()
            .entries(1, 3, None, ctx())
            .unwrap(),
        vec![e, empty]
    );
}

/// Compacting moves first_index and keeps the compaction point's term for matching.
#[tokio::test]
async fn compaction_moves_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    append(&store, &mut st, &entries(1..=3, 1)).await;
    append(&store, &mut st, &entries(4..=6, 2)).await;
    let mut b = WriteBatch::default();
    b.compact_log(G, st.first_index(), 4, 2);
    store.write(b, true).await.unwrap();
    st.on_log_compacted(4, 2);

    for st in [&st, &store.raft_storage(G).unwrap()] {
        assert_eq!(Storage::first_index(st).unwrap(), 5);
        assert_eq!(Storage::last_index(st).unwrap(), 6);
        assert_eq!(st.term(4).unwrap(), 2);
        assert!(is_store_err(st.term(3), raft::StorageError::Compacted));
        assert!(is_store_err(
            st.entries(4, 6, None, ctx()),
            raft::StorageError::Compacted
        ));
        assert_eq!(st.entries(5, 7, None, ctx()).unwrap(), entries(5..=6, 2));
    }
}

/// A snapshot of our own applied state compacts the log up to it and keeps what follows; raft gets
/// it only for followers in its configuration, and otherwise a fresh one is asked for. A snapshot
/// installed from a leader replaces the whole log and the configuration; all of it survives a
/// reopen.
#[tokio::test]
async fn snapshots_compact_serve_and_replace_the_log() {
    use daftka_storage::SnapshotRecord;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut st = store.raft_storage(G).unwrap();
    append(&store, &mut st, &entries(1..=6, 1)).await;
    let voters = ConfState {
        voters: vec![1, 2],
        ..Default::default()
    };
    assert!(
        st.snapshot(0, 2).is_err() && st.take_snapshot_request(),
        "no snapshot stored: the owner is asked for one"
    );
    assert!(!st.take_snapshot_request(), "the request is taken once");

    // Our own snapshot at 4: entries 5 and 6 stay.
    let own = SnapshotRecord::new(4, 1, &voters, b"state@4".to_vec());
    let mut b = WriteBatch::default();
    b.set_snapshot(G, &own, st.first_index(), st.last_index(), false);
    store.write(b, true).await.unwrap();
    st.on_snapshot_written(&own, false);
    assert_eq!((st.first_index(), st.last_index()), (5, 6));
    assert_eq!(st.term(4).unwrap(), 1);
    assert!(st
        .entries(3, 5, None, GetEntriesContext::empty(false))
        .is_err());
    let served = st.snapshot(0, 2).unwrap();
    assert_eq!(served.get_metadata().index, 4);
    assert_eq!(&served.data[..], b"state@4");
    // 3 joined after the snapshot's index (a move's new replica): it gets the same snapshot with
    // itself as a learner, and then the log after it.
    let for_3 = st.snapshot(0, 3).unwrap();
    assert_eq!(for_3.get_metadata().index, 4);
    assert_eq!(for_3.get_metadata().get_conf_state().learners, vec![3]);
    assert_eq!(for_3.get_metadata().get_conf_state().voters, voters.voters);
    assert!(!st.take_snapshot_request(), "no fresh snapshot needed");
    // A snapshot newer than the stored one is asked of the owner.
    assert!(st.snapshot(5, 2).is_err());
    assert!(st.take_snapshot_request());

    // A leader's snapshot at 9 with another configuration replaces everything.
    let wider = ConfState {
        voters: vec![1, 2, 3],
        ..Default::default()
    };
    let theirs = SnapshotRecord::new(9, 2, &wider, b"state@9".to_vec());
    let mut b = WriteBatch::default();
    b.set_snapshot(G, &theirs, st.first_index(), st.last_index(), true);
    store.write(b, true).await.unwrap();
    st.on_snapshot_written(&theirs, true);
    assert_eq!((st.first_index(), st.last_index()), (10, 9));
    assert_eq!(st.conf_state().voters, vec![1, 2, 3]);
    drop(st);
    let st = store.raft_storage(G).unwrap();
    assert_eq!((st.first_index(), st.last_index()), (10, 9));
    assert_eq!(st.term(9).unwrap(), 2);
    assert_eq!(st.conf_state().voters, vec![1, 2, 3]);
    assert_eq!(st.stored_snapshot().unwrap(), Some(theirs));
}
