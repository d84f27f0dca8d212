//! The shell around the pure Raft driver ([`daftka_core::consensus::Driver`]) for one group on
//! this node: it carries the driver's effects out over the node's fjall [`Store`] (one group-commit
//! writer shared by every group) and its [`RaftTransport`], in the order given, each write done
//! before the next effect. The logic (the Ready order, proposals and their answers, snapshots,
//! a sole voter's single write per round) is the driver's; this adds only I/O, metrics hooks and
//! logs.
//!
//! It is not an actor: the Metadata actor and each partition's Raft actor own one and call it from
//! their handlers, so a kill of the actor drops the whole group state and a restart rebuilds it
//! from disk. A failed write is returned: the owner must stop (the driver's view already includes
//! the write).

use std::sync::Arc;
use std::time::Instant;

use daftka_core::config::RaftConfig;
use daftka_core::consensus::{Driver, Effect, GroupConfig};
use daftka_protocol::{Error, ErrorCode, GroupId};
use daftka_storage::{RaftLogStorage, StorageError, Store, WriteBatch};
use ractor::RpcReplyPort;
use raft::eraftpb::Message;

pub use daftka_core::consensus::{RoundOutcome, StateMachine, BOOTSTRAP_INDEX};

/// Delivers Raft messages to other replicas of a group ([`crate::cluster::transport`]).
pub trait RaftTransport: Send + Sync {
    /// Queues `messages` for their destinations; never blocks, may drop (Raft sends again).
    fn send(&self, group: GroupId, messages: Vec<Message>);

    /// Stops the transport's background work (node shutdown).
    fn close(&self) {}
}

/// How a proposer of this node is answered.
pub type Reply<O> = RpcReplyPort<Result<O, Error>>;

/// See [`RaftGroup::set_apply_observer`].
pub type ApplyObserver<V> = Box<dyn Fn(&V, bool) + Send>;

/// The driver of one group on this node.
pub type NodeDriver<M> = Driver<M, RaftLogStorage, Reply<<M as StateMachine>::Output>>;

/// One Raft group on this node: the pure driver, and where its effects go. Derefs to the driver
/// for everything that is only a question (`is_leader`, `term`, `machine`, ...).
pub struct RaftGroup<M: StateMachine<Batch = WriteBatch>> {
    driver: NodeDriver<M>,
    store: Store,
    transport: Arc<dyn RaftTransport>,
    /// Latency histogram of proposals, if the owner records one.
    on_latency: Option<Box<dyn Fn(std::time::Duration) + Send>>,
    /// Called after applied entries are written and before their proposers are answered, with
    /// the machine's view and whether this replica leads.
    on_applied: Option<ApplyObserver<M::View>>,
    /// Decides per outgoing message whether it goes now (a move's throttled catch-up).
    send_filter: Option<SendFilter>,
    /// Messages the filter held back, in order, and their bytes (see [`Self::release_held`]).
    held: std::collections::VecDeque<Message>,
    held_bytes: u64,
    /// Peers a payload was dropped for (the held bytes were full): every later payload to them
    /// is dropped too until what is held for them has gone, so nothing after the gap is sent
    /// for the peer to refuse; Raft then sends again from what the peer has.
    dropping: std::collections::BTreeSet<u64>,
}

/// What a [`SendFilter`] says of an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not now: it waits, in order with the later messages to the same peer.
    Hold,
}

/// See [`RaftGroup::set_send_filter`].
pub type SendFilter = Box<dyn FnMut(&Message) -> Verdict + Send>;

/// The most bytes of messages a group holds back for its send filter; past it, a message that
/// would wait is dropped, and Raft sends it again (the peer's progress falls back to probing).
pub const HELD_BYTES_MAX: u64 = 16 << 20;

/// The payload bytes of a message: its entries' data, or its snapshot's.
pub fn payload_bytes(m: &Message) -> u64 {
    m.entries.iter().map(|e| e.data.len() as u64).sum::<u64>()
        + m.snapshot.as_ref().map_or(0, |s| s.data.len() as u64)
}

/// Errors of a group: a failed write or a driver error; the owner must stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Driver(#[from] daftka_core::consensus::ConsensusError),
}

impl<M: StateMachine<Batch = WriteBatch>> std::ops::Deref for RaftGroup<M> {
    type Target = NodeDriver<M>;
    fn deref(&self) -> &Self::Target {
        &self.driver
    }
}

impl<M: StateMachine<Batch = WriteBatch>> std::ops::DerefMut for RaftGroup<M> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.driver
    }
}

impl<M: StateMachine<Batch = WriteBatch>> RaftGroup<M> {
    /// Opens the group from disk (see [`Driver::open`]) and writes what opening takes.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        store: Store,
        group: GroupId,
        raft_id: u64,
        voters: &[u64],
        cfg: &RaftConfig,
        machine: M,
        transport: Arc<dyn RaftTransport>,
        snapshot_every: Option<u64>,
    ) -> Result<Self, ConsensusError> {
        let storage = store.raft_storage(group)?;
        let config = GroupConfig {
            group,
            raft_id,
            voters,
            raft: cfg,
            snapshot_every,
            election_ticks_exact: None,
        };
        let (driver, effects) = Driver::open(storage, config, machine)?;
        let mut g = RaftGroup {
            driver,
            store,
            transport,
            on_latency: None,
            on_applied: None,
            send_filter: None,
            held: Default::default(),
            held_bytes: 0,
            dropping: Default::default(),
        };
        g.carry_out(effects).await?;
        Ok(g)
    }

    /// Every outgoing message is first shown to `f`. One it holds, and every later one to the
    /// same peer, waits (at most [`HELD_BYTES_MAX`] bytes; past it, dropped) until
    /// [`Self::release_held`] finds `f` willing: the peer receives them in order, only later.
    pub fn set_send_filter(&mut self, f: SendFilter) {
        self.send_filter = Some(f);
    }

    /// Sends the held messages `f` lets go now, oldest first, up to the first it holds again
    /// (the owner calls it on every tick).
    pub fn release_held(&mut self) {
        let Some(filter) = &mut self.send_filter else {
            return;
        };
        let mut out = Vec::new();
        while let Some(m) = self.held.front() {
            if filter(m) == Verdict::Hold {
                break;
            }
            if let Some(m) = self.held.pop_front() {
                self.held_bytes = self.held_bytes.saturating_sub(payload_bytes(&m));
                out.push(m);
            }
        }
        let held = &self.held;
        self.dropping.retain(|p| held.iter().any(|h| h.to == *p));
        if !out.is_empty() {
            self.transport.send(self.driver.group(), out);
        }
    }

    /// Sends `messages` through the send filter (see [`Self::set_send_filter`]).
    fn send(&mut self, messages: Vec<Message>) {
        let Some(filter) = &mut self.send_filter else {
            self.transport.send(self.driver.group(), messages);
            return;
        };
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            // Nothing held back for anybody: the filter alone decides (every replicated
            // append of a group that is not moving takes this way).
            if self.held.is_empty() && self.dropping.is_empty() && filter(&m) == Verdict::Send {
                out.push(m);
                continue;
            }
            let bytes = payload_bytes(&m);
            if bytes > 0 && self.dropping.contains(&m.to) {
                continue;
            }
            if bytes > 0 {
                // Raft sends again from an earlier index (a probe after a refusal): what is held
                // for the peer from there on is superseded.
                let mut freed = 0;
                self.held.retain(|h| {
                    let stale = h.to == m.to && payload_bytes(h) > 0 && h.index >= m.index;
                    if stale {
                        freed += payload_bytes(h);
                    }
                    !stale
                });
                self.held_bytes = self.held_bytes.saturating_sub(freed);
            }
            let behind = self.held.iter().any(|h| h.to == m.to);
            if !behind && filter(&m) == Verdict::Send {
                out.push(m);
                continue;
            }
            if self.held_bytes + bytes <= HELD_BYTES_MAX {
                self.held_bytes += bytes;
                self.held.push_back(m);
            } else {
                self.dropping.insert(m.to);
            }
        }
        if !out.is_empty() {
            self.transport.send(self.driver.group(), out);
        }
    }

    /// Records each answered proposal's latency with `f`.
    pub fn set_latency_observer(&mut self, f: Box<dyn Fn(std::time::Duration) + Send>) {
        self.on_latency = Some(f);
    }

    /// Calls `f` after every apply's write, before the proposers are answered (so whatever `f`
    /// publishes is visible to a proposer that acts on its answer).
    pub fn set_apply_observer(&mut self, f: ApplyObserver<M::View>) {
        self.on_applied = Some(f);
    }

    /// Proposes `data`; `reply` is answered when the entry is applied, or failed.
    pub fn propose(&mut self, data: Vec<u8>, reply: Reply<M::Output>) {
        if let Err((reply, e)) = self.driver.propose(data, reply, Instant::now()) {
            let _ = reply.send(Err(e));
        }
    }

    /// Feeds a message from a peer.
    pub fn step(&mut self, msg: Message) {
        if let Err(e) = self.driver.step(msg) {
            tracing::debug!(group = %self.driver.group(), error = %e, "raft step refused a message");
        }
    }

    /// Handles every pending `Ready` and carries its effects out. Storage errors are returned:
    /// the owner must stop.
    pub async fn on_ready(&mut self) -> Result<RoundOutcome, ConsensusError> {
        use tracing::Instrument;
        let group = self.driver.group();
        let span = tracing::debug_span!("raft_ready", group = %group, term = self.driver.term());
        let round = self.driver.on_ready()?;
        if let Some((index, term)) = round.outcome.restored {
            tracing::info!(group = %group, index, term, "installing a snapshot");
        }
        let mut outcome = round.outcome;
        self.carry_out(round.effects)
            .instrument(span.clone())
            .await?;
        if round.awaits_write {
            let rest = self.driver.on_written()?;
            outcome = outcome.and(rest.outcome);
            self.carry_out(rest.effects).instrument(span).await?;
        }
        Ok(outcome)
    }

    /// Stores `data` as the snapshot at `index` and compacts the log up to it, writing `batch`
    /// in the same atomic write (see [`Driver::compact_to`]). False when nothing was written.
    pub async fn compact_to(
        &mut self,
        index: u64,
        data: Vec<u8>,
        batch: WriteBatch,
    ) -> Result<bool, ConsensusError> {
        let Some(effects) = self.driver.compact_to(index, data, batch)? else {
            return Ok(false);
        };
        self.carry_out(effects).await?;
        tracing::debug!(group = %self.driver.group(), index, "snapshot stored, log compacted");
        Ok(true)
    }

    /// Fails every waiting proposer with `code`.
    pub fn fail_pending(&mut self, code: ErrorCode, message: &str) {
        for effect in self.driver.fail_pending(code, message) {
            if let Effect::Answer { reply, result, .. } = effect {
                let _ = reply.send(result);
            }
        }
    }

    /// Carries `effects` out in order, each write finished before the next effect.
    async fn carry_out(
        &mut self,
        effects: Vec<Effect<M, Reply<M::Output>>>,
    ) -> Result<(), ConsensusError> {
        for effect in effects {
            match effect {
                Effect::Send(messages) => self.send(messages),
                Effect::Write { batch, durable } => self.store.write(batch, durable).await?,
                Effect::Applied { view, leader } => {
                    if let Some(f) = &self.on_applied {
                        f(&view, leader);
                    }
                }
                Effect::Answer {
                    reply,
                    result,
                    proposed_at,
                } => {
                    if let Some(f) = &self.on_latency {
                        f(proposed_at.elapsed());
                    }
                    let _ = reply.send(result);
                }
            }
        }
        Ok(())
    }
}

impl<M: StateMachine<Batch = WriteBatch>> Drop for RaftGroup<M> {
    fn drop(&mut self) {
        // The owner is stopping or crashing: whether these entries commit is unknown to it.
        self.fail_pending(ErrorCode::Timeout, "replica stopped: outcome unknown");
    }
}
