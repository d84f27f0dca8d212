//! [`Store`]: the node's one fjall `Database`, its shared keyspaces and the group-commit writer.
//!
//! # Group commit
//! Every write goes to ONE dedicated OS thread (fjall is synchronous and may block for milliseconds
//! in fsync; it must never run on a tokio worker). The thread takes a request, drains every other
//! pending one (up to [`StoreOptions::commit_requests_max`]), commits each as one atomic fjall batch
//! without durability, then calls `db.persist(SyncData)` ONCE for the round if any request in it
//! asked for durability, and answers. One fsync thus covers every partition's writes of the round
//! (all keyspaces share one journal).
//!
//! # Crash and recovery
//! What a durable write covered survives a crash. A non-durable write is visible to reads once
//! answered and becomes durable with the next durable round (or a clean shutdown); a crash before
//! that loses it, and with it possibly later writes that depended on it: callers use non-durable
//! writes only for state that can be rebuilt (e.g. apply state that Raft replays).
//!
//! # Shutdown
//! Dropping the last clone of a [`Store`] (including those inside [`crate::RaftLogStorage`] and
//! [`crate::PartitionReader`]) closes the queue, joins the writer thread (it finishes the round in
//! flight) and closes the database, so the directory can be reopened at once. That drop blocks for
//! at most one round.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use daftka_types::GroupId;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::{oneshot, watch};

use crate::batch::{Ks, Op, WriteBatch};
use crate::keys;
use crate::StorageError;

/// How long one writer round took: committing its requests' batches (waiting for fjall's journal
/// lock included) and, if any asked for durability, the persist (fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTiming {
    pub commit: std::time::Duration,
    pub persist: Option<std::time::Duration>,
}

/// Called by the writer thread after every round (keep it cheap: it runs between rounds).
#[derive(Clone)]
pub struct RoundObserver(pub Arc<dyn Fn(&RoundTiming) + Send + Sync>);

impl std::fmt::Debug for RoundObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoundObserver")
    }
}

/// Options of [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Whether durable writes fsync (`PersistMode::SyncData`). Default `true`. `false` only flushes
    /// to the OS: for tests that do not care about power loss.
    pub fsync: bool,
    /// The most write requests merged into one commit round (one fsync). Default 1024. Bounds the
    /// latency one round adds to the requests behind it; larger rounds amortise fsync better.
    pub commit_requests_max: usize,
    /// fjall's block cache, shared by all keyspaces. Default 64 MiB. fjall advises ~20-25 % of the
    /// memory the node may use.
    pub cache_size_bytes: u64,
    /// Total journal size before fjall forces memtable flushes. Default 512 MiB (fjall's default);
    /// fjall requires at least 64 MiB (smaller values are raised to it).
    pub journal_size_bytes_max: u64,
    /// Largest memtable of one keyspace before fjall flushes it. Default 64 MiB (fjall's).
    pub memtable_size_bytes_max: u64,
    /// fjall's background threads (memtable flushes and compactions). Default 1: with more, fjall
    /// 3.1's first worker hands every compaction on to the others and, while they are busy,
    /// receives it back at once, spinning a core for as long as a compaction runs.
    pub worker_threads: usize,
    /// Told how long each writer round took (metrics). Default none.
    pub on_round: Option<RoundObserver>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            fsync: true,
            commit_requests_max: 1024,
            cache_size_bytes: 64 * 1024 * 1024,
            journal_size_bytes_max: 512 * 1024 * 1024,
            memtable_size_bytes_max: 64 * 1024 * 1024,
            worker_threads: 1,
            on_round: None,
        }
    }
}

/// fjall's lower bound for the journal size (it panics below).
const JOURNAL_SIZE_BYTES_MIN: u64 = 64 * 1024 * 1024;

/// Keys removed per fjall batch by `delete_group`, so deleting a big group never builds one huge
/// batch in memory.
const DELETE_CHUNK_KEYS_MAX: usize = 16 * 1024;

/// Handles to the shared keyspaces.
#[derive(Clone)]
pub(crate) struct Keyspaces {
    pub(crate) raft_log: Keyspace,
    pub(crate) raft_meta: Keyspace,
    pub(crate) offset_index: Keyspace,
}

impl Keyspaces {
    fn get(&self, ks: Ks) -> &Keyspace {
        match ks {
            Ks::RaftLog => &self.raft_log,
            Ks::RaftMeta => &self.raft_meta,
            Ks::OffsetIndex => &self.offset_index,
        }
    }
}

type Reply = oneshot::Sender<Result<(), StorageError>>;

/// A request to the writer thread.
enum Request {
    Write {
        ops: Vec<Op>,
        durable: bool,
        reply: Reply,
    },
    DeleteGroup {
        group: GroupId,
        reply: Reply,
    },
    /// Tests: the writer says it is paused on `paused`, then waits until `release` closes, so
    /// the requests queued meanwhile go into its next round together. Costs the writer nothing
    /// when no test asks.
    Pause {
        paused: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    },
}

pub(crate) struct Inner {
    pub(crate) db: Database,
    pub(crate) ks: Keyspaces,
    /// The writer's queue; `None` only while dropping (closing it stops the writer).
    tx: Option<mpsc::Sender<Request>>,
    /// Joined on drop so the database is closed when the last `Store` goes.
    writer: Option<JoinHandle<()>>,
    /// Persist rounds done (a metric; also proves merging in tests).
    rounds: Arc<AtomicU64>,
    /// Write requests committed, counted before they are answered.
    writes: Arc<AtomicU64>,
    /// Dropped last, after the database and its keyspaces: its receivers learn the directory is
    /// free (see [`Store::closed`]).
    closed: watch::Sender<()>,
    incarnation: u64,
    node: Keyspace,
}

/// The u64 stored under `key` in the `node` keyspace, or `init()`'s value (never 0), stored
/// durably first: a fact about the data directory, fixed the first time it is asked for.
fn stored_u64(
    db: &Database,
    node: &Keyspace,
    key: &[u8],
    init: impl FnOnce() -> Result<u64, StorageError>,
) -> Result<u64, StorageError> {
    if let Some(v) = node.get(key)? {
        let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| {
            StorageError::Corrupt(format!(
                "node {} of {} bytes",
                String::from_utf8_lossy(key),
                v.len()
            ))
        })?;
        return Ok(u64::from_be_bytes(bytes));
    }
    let value = init()?.max(1);
    node.insert(key, value.to_be_bytes())?;
    db.persist(PersistMode::SyncAll)?;
    Ok(value)
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.writer.take() {
            if h.join().is_err() {
                tracing::error!("storage writer thread panicked");
            }
        }
    }
}

/// The node's storage: one fjall database with the shared keyspaces `raft_log`, `raft_meta`,
/// `offset_index`, keyed by group. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// See [`Store::closed`]. Holds no reference to the store.
pub struct StoreClosed(watch::Receiver<()>);

impl StoreClosed {
    /// Resolves once the store is closed.
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

/// While alive, the writer thread takes no new round (see [`Store::pause_writer`]).
#[must_use]
pub struct WriterPause(#[allow(dead_code)] Option<mpsc::Sender<()>>);

impl Store {
    /// Opens or creates the database in `dir`, opens the keyspaces, and starts the writer thread.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StorageError> {
        let db = Database::builder(dir)
            .cache_size(opts.cache_size_bytes)
            .max_journaling_size(opts.journal_size_bytes_max.max(JOURNAL_SIZE_BYTES_MIN))
            // We decide durability per round ourselves.
            .manual_journal_persist(true)
            .worker_threads(opts.worker_threads.max(1))
            .open()?;
        let memtable = opts.memtable_size_bytes_max;
        let options = move || KeyspaceCreateOptions::default().max_memtable_size(memtable);
        let ks = Keyspaces {
            raft_log: db.keyspace(keys::RAFT_LOG, options)?,
            raft_meta: db.keyspace(keys::RAFT_META, options)?,
            offset_index: db.keyspace(keys::OFFSET_INDEX, options)?,
        };
        let node = db.keyspace(keys::NODE, options)?;
        // Drawn when the directory is created (or first opened since incarnations exist).
        let incarnation = stored_u64(&db, &node, keys::INCARNATION, || Ok(rand::random()))?;
        let (tx, rx) = mpsc::channel();
        let rounds = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: db.clone(),
            ks: ks.clone(),
            rx,
            fsync: opts.fsync,
            commit_requests_max: opts.commit_requests_max.max(1),
            rounds: rounds.clone(),
            writes: writes.clone(),
            on_round: opts.on_round.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("daftka-storage-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StorageError::Fjall(Arc::new(fjall::Error::Io(e))))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                ks,
                tx: Some(tx),
                writer: Some(handle),
                rounds,
                writes,
                closed: watch::Sender::new(()),
                incarnation,
                node,
            }),
        })
    }

    /// This data directory's incarnation: drawn at random (never 0) when the directory was
    /// created, the same for as long as it lives. The cluster tells a node that comes back with
    /// its old data from a new node of the same name by it.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// The node's Raft id as this directory stores it; the first call stores `derive(new)`, where
    /// `new` says the directory holds no group yet (a directory from before stored ids holds
    /// some, and keeps the id its groups know). Call it before any group is written.
    pub fn raft_id(&self, derive: impl FnOnce(bool) -> u64) -> Result<u64, StorageError> {
        stored_u64(&self.inner.db, &self.inner.node, keys::RAFT_ID, || {
            Ok(derive(self.groups()?.is_empty()))
        })
    }

    /// A handle that resolves once every clone of this store is gone and the database is closed,
    /// so its directory can be opened again (a node's shutdown waits for it).
    pub fn closed(&self) -> StoreClosed {
        StoreClosed(self.inner.closed.subscribe())
    }

    /// Group commit: queues `batch` for the writer thread and resolves once it is committed (and,
    /// if `durable`, fsynced). The request is queued when `write` is CALLED, not when the future
    /// is first polled: writes issued in order commit in that order, and futures can be awaited
    /// later or moved to other tasks. If the writer is gone this returns
    /// [`StorageError::Closed`], never hangs. An empty durable write is a durability barrier for
    /// everything written before it.
    pub fn write(
        &self,
        batch: WriteBatch,
        durable: bool,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'static {
        let queued = match batch.error {
            Some(e) => Err(e),
            None => self.submit(|reply| Request::Write {
                ops: batch.ops,
                durable,
                reply,
            }),
        };
        async move { queued?.await.unwrap_or(Err(StorageError::Closed)) }
    }

    fn submit(
        &self,
        make: impl FnOnce(Reply) -> Request,
    ) -> Result<oneshot::Receiver<Result<(), StorageError>>, StorageError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(StorageError::Closed)?;
        tx.send(make(reply)).map_err(|_| StorageError::Closed)?;
        Ok(rx)
    }

    /// Loads one group's Raft state for a [`crate::RaftLogStorage`].
    pub fn raft_storage(&self, group: GroupId) -> Result<crate::RaftLogStorage, StorageError> {
        crate::RaftLogStorage::load(self.clone(), group)
    }

    /// A reader of one partition's committed records.
    pub fn partition_reader(&self, group: GroupId) -> crate::PartitionReader {
        crate::PartitionReader::new(self.clone(), group)
    }

    /// Removes every key of `group` in all keyspaces, durably. Runs on the writer thread (ordered
    /// with writes) in chunks of removals; `raft_meta` goes last, so a crash midway leaves the group
    /// listed by [`Store::groups`] and the deletion can be repeated. Stop the group's actors first:
    /// a write racing the deletion may leave keys behind.
    pub fn delete_group(
        &self,
        group: GroupId,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'static {
        let queued = self.submit(|reply| Request::DeleteGroup { group, reply });
        async move { queued?.await.unwrap_or(Err(StorageError::Closed)) }
    }

    /// Groups that have any `raft_meta` row, ascending (to find data no current group owns).
    pub fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let first = self.inner.ks.raft_meta.range(from.to_be_bytes()..).next();
            let Some(guard) = first else { break };
            let group = keys::key_group(&guard.key()?)?;
            out.push(group);
            match group.0.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(out)
    }

    /// Bytes the database takes on disk (journal and tables); 0 if it cannot be measured. Blocks
    /// while the writer persists (fjall takes the journal's lock): not for an async worker.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.db.disk_space().unwrap_or(0)
    }

    /// Persist (fsync) rounds done so far.
    pub fn commit_rounds(&self) -> u64 {
        self.inner.rounds.load(Ordering::Relaxed)
    }

    /// Write requests ([`Store::write`]) committed so far, durable or not; a write is counted
    /// before it is answered.
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Acquire)
    }

    /// For tests: stops the writer from starting a new round until the guard drops, so requests
    /// queued meanwhile are merged into one round deterministically.
    #[doc(hidden)]
    pub fn pause_writer(&self) -> WriterPause {
        let (paused_tx, paused) = mpsc::channel();
        let (release_tx, release) = mpsc::channel();
        let queued = self.inner.tx.as_ref().is_some_and(|tx| {
            tx.send(Request::Pause {
                paused: paused_tx,
                release,
            })
            .is_ok()
        });
        // Returns once the writer has finished its round and waits: whatever is queued from now
        // on goes into one round when the guard drops.
        if queued {
            let _ = paused.recv();
        }
        WriterPause(Some(release_tx))
    }
}

/// The writer thread's state.
struct Writer {
    db: Database,
    ks: Keyspaces,
    rx: mpsc::Receiver<Request>,
    fsync: bool,
    commit_requests_max: usize,
    rounds: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    on_round: Option<RoundObserver>,
}

impl Writer {
    /// Runs rounds until every `Store` clone is gone.
    fn run(self) {
        let mut round = Vec::with_capacity(self.commit_requests_max);
        // Durable requests committed in this round, answered after the persist.
        let mut waiting: Vec<Reply> = Vec::new();
        // A pause request met while draining: taken after this round.
        let mut next: Option<Request> = None;
        loop {
            let first = match next.take() {
                Some(r) => r,
                None => match self.rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            if let Request::Pause { paused, release } = first {
                let _ = paused.send(());
                // Until the test drops its guard.
                let _ = release.recv();
                continue;
            }
            round.push(first);
            while round.len() < self.commit_requests_max {
                match self.rx.try_recv() {
                    Ok(r @ Request::Pause { .. }) => {
                        next = Some(r);
                        break;
                    }
                    Ok(r) => round.push(r),
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            for request in round.drain(..) {
                let (result, reply, durable) = match request {
                    Request::Write {
                        ops,
                        durable,
                        reply,
                    } => {
                        let result = self.commit(ops);
                        self.writes.fetch_add(1, Ordering::Release);
                        (result, reply, durable)
                    }
                    Request::DeleteGroup { group, reply } => {
                        (self.delete_group(group), reply, true)
                    }
                    // Taken out of rounds before they are drained.
                    Request::Pause { .. } => continue,
                };
                match result {
                    Ok(()) if durable => waiting.push(reply),
                    result => {
                        // The caller may have given up waiting: nothing to do then.
                        let _ = reply.send(result);
                    }
                }
            }
            let commit = started.elapsed();
            let mut persist = None;
            if !waiting.is_empty() {
                let persist_started = std::time::Instant::now();
                let mode = if self.fsync {
                    PersistMode::SyncData
                } else {
                    PersistMode::Buffer
                };
                let result = self.db.persist(mode).map_err(StorageError::from);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "storage persist failed");
                }
                self.rounds.fetch_add(1, Ordering::Relaxed);
                persist = Some(persist_started.elapsed());
                for reply in waiting.drain(..) {
                    let _ = reply.send(result.clone());
                }
            }
            if let Some(RoundObserver(f)) = &self.on_round {
                f(&RoundTiming { commit, persist });
            }
        }
    }

    /// Commits one request's operations as one atomic batch, without durability.
    fn commit(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch().durability(None);
        for op in ops {
            match op {
                Op::Insert(ks, k, v) => batch.insert(self.ks.get(ks), k, v),
                Op::Remove(ks, k) => batch.remove(self.ks.get(ks), k),
            }
        }
        batch.commit()?;
        Ok(())
    }

    /// Removes the group's keys keyspace by keyspace, `raft_meta` last.
    fn delete_group(&self, group: GroupId) -> Result<(), StorageError> {
        let prefix = keys::group_prefix(group).to_vec();
        // The first key past the group; `None` for the last possible group.
        let end = group.0.checked_add(1).map(|g| g.to_be_bytes().to_vec());
        for ks in [&self.ks.raft_log, &self.ks.offset_index, &self.ks.raft_meta] {
            let mut from = prefix.clone();
            loop {
                // Collect a chunk of keys first, then remove them, so no iterator is open across
                // the commit; the next chunk starts after the last key (not at the prefix, which
                // would make every scan skip the tombstones just written).
                let iter = match &end {
                    Some(end) => ks.range(from.clone()..end.clone()),
                    None => ks.range(from.clone()..),
                };
                let mut chunk = Vec::new();
                for guard in iter.take(DELETE_CHUNK_KEYS_MAX) {
                    chunk.push(guard.key()?);
                }
                let Some(last) = chunk.last() else { break };
                // The smallest key greater than `last`.
                from = last.to_vec();
                from.push(0);
                let mut batch = self.db.batch().durability(None);
                for k in chunk {
                    batch.remove(ks, k);
                }
                batch.commit()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose writer is gone answers `Closed`, both for new requests and for requests
    /// the writer dropped unanswered: a write never hangs.
    #[tokio::test]
    async fn writes_fail_closed_when_writer_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let real = Store::open(
            dir.path(),
            StoreOptions {
                fsync: false,
                ..Default::default()
            },
        )
        .unwrap();
        let fake = |tx| Store {
            inner: Arc::new(Inner {
                db: real.inner.db.clone(),
                ks: real.inner.ks.clone(),
                tx: Some(tx),
                writer: None,
                rounds: Arc::default(),
                writes: Arc::default(),
                closed: watch::Sender::new(()),
                incarnation: real.inner.incarnation,
                node: real.inner.node.clone(),
            }),
        };

        // The queue is closed: the request cannot even be queued.
        let (tx, rx) = mpsc::channel();
        drop(rx);
        let store = fake(tx);
        let r = store.write(WriteBatch::default(), true).await;
        assert!(matches!(r, Err(StorageError::Closed)), "{r:?}");
        assert!(matches!(
            store.delete_group(GroupId(1)).await,
            Err(StorageError::Closed)
        ));

        // The writer took the request and died without answering.
        let (tx, rx) = mpsc::channel();
        let store = fake(tx);
        let pending = store.write(WriteBatch::default(), true);
        drop(rx);
        assert!(matches!(pending.await, Err(StorageError::Closed)));
    }
}
