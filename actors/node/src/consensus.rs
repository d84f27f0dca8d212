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
    /// Decides per outgoing message whether it goes now (a move's throttled catch-up); a
    /// message it keeps back is dropped, and Raft sends again.
    send_filter: Option<SendFilter>,
}

/// See [`RaftGroup::set_send_filter`].
pub type SendFilter = Box<dyn FnMut(&Message) -> bool + Send>;

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
        };
        g.carry_out(effects).await?;
        Ok(g)
    }

    /// Records each answered proposal's latency with `f`.
    /// Every outgoing message is first shown to `f`; those it refuses are dropped (Raft sends
    /// them again: a probe, the next heartbeat's append).
    pub fn set_send_filter(&mut self, f: SendFilter) {
        self.send_filter = Some(f);
    }

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
                Effect::Send(mut messages) => {
                    if let Some(keep) = &mut self.send_filter {
                        messages.retain(|m| keep(m));
                    }
                    if !messages.is_empty() {
                        self.transport.send(self.driver.group(), messages)
                    }
                }
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
