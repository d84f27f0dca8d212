//! Daftka's storage: one fjall `Database` per node holding every Raft group's log, hard state, conf
//! state, apply state and (for partitions) offset index.
//!
//! A few shared keyspaces keyed by group (never a keyspace per partition: creating one costs ~18
//! fsyncs); the `keys` module documents the layout. Group 0 is the metadata group; partitions are 1...
//!
//! | module         | role                                                                      |
//! |----------------|---------------------------------------------------------------------------|
//! | `store`        | [`Store`]: the database, the keyspaces, the group-commit writer thread    |
//! | `batch`        | [`WriteBatch`]: one atomic set of writes (entries, states, index rows)    |
//! | `raft_storage` | [`RaftLogStorage`]: `raft::Storage` for one group                         |
//! | `reader`       | [`PartitionReader`]: committed records by offset, for fetch               |
//! | `codec`        | the stored value types ([`StoredEntry`], [`ApplyState`]) and their format |
//! | `keys`         | key layout                                                                |
//! | `error`        | [`StorageError`]                                                          |
//!
//! # How the Raft actor uses it
//! For each `Ready`: build a [`WriteBatch`] with `append_entries(group, entries, storage.last_index())`,
//! `set_hard_state` / `set_conf_state` when they changed, and the apply step's `index_batch` rows and
//! `set_apply_state`; `Store::write(batch, durable).await`; then `on_entries_written` /
//! `on_hard_state_written` / `on_conf_state_written` on the group's [`RaftLogStorage`].

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod batch;
pub mod codec;
mod error;
mod keys;
mod raft_storage;
mod reader;
mod store;

pub use batch::WriteBatch;
pub use codec::{ApplyState, SnapshotRecord, StoredEntry};
pub use error::StorageError;
pub use raft_storage::{RaftLogStorage, TAIL_BYTES_MAX};
pub use reader::{PartitionReader, RetentionCut};
pub use store::{RoundObserver, RoundTiming, Store, StoreClosed, StoreOptions, WriterPause};
