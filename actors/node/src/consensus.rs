//! The Raft driver shared by the metadata group and every partition group.
//!
//! [`RaftGroup`] owns a raft-rs `RawNode` over the group's fjall-backed log and carries out what
//! each `Ready` asks, in the order the raft-rs documentation gives: send messages, apply committed
//! entries, persist entries and hard state (one group-commit fsync shared with every other group of
//! the node), send the messages that must follow persistence, advance, apply what became committed.
//! It is not an actor: the Metadata actor and each partition's Raft actor own one and call it from
//! their handlers, so a kill of the actor drops the whole group state and a restart rebuilds it
//! from disk.
//!
//! A proposal is answered when its entry is applied: the producer learns its offsets only after the
//! entry is committed by a quorum and fsynced. Every proposal is tracked by (index, term); if a
//! different entry is applied at that index, or leadership is lost first, the proposer is failed
//! instead of left hanging.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use daftka_core::config::RaftConfig;
use daftka_protocol::{Error, ErrorCode, GroupId};
use daftka_storage::{RaftLogStorage, StorageError, Store, WriteBatch};
use ractor::RpcReplyPort;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message};
use raft::{RawNode, StateRole};

/// A group's durable effects of applying entries, and their results for proposers.
pub trait StateMachine {
    /// What a proposer learns when its entry is applied.
    type Output: Send + 'static;

    /// Applies the committed normal entry at `index` (non-empty data). Durable effects go into
    /// `batch`, which is written (visible, fsynced by a later round) before proposers are answered.
    fn apply_entry(
        &mut self,
        index: u64,
        data: &[u8],
        batch: &mut WriteBatch,
    ) -> Result<Self::Output, Error>;

    /// Called once per round after the entries up to `applied_index` were applied (also for empty
    /// entries, which carry no data): record the applied position in `batch` if it is persisted.
    fn finish_round(&mut self, applied_index: u64, batch: &mut WriteBatch);
}

/// Delivers Raft messages to other replicas of a group. A single node has no peers; the cluster
/// transport plugs in here.
pub trait RaftTransport: Send + Sync {
    fn send(&self, group: GroupId, messages: Vec<Message>);
}

/// The transport of a one-node cluster: a group has no other voter, so no message may leave.
pub struct NoPeers;

impl RaftTransport for NoPeers {
    fn send(&self, group: GroupId, messages: Vec<Message>) {
        for m in messages {
            tracing::warn!(%group, to = m.to, "raft message to a peer in a one-node cluster dropped");
        }
    }
}

/// A proposal waiting for its entry to be applied.
struct Pending<O> {
    term: u64,
    reply: RpcReplyPort<Result<O, Error>>,
    proposed_at: Instant,
}

/// What one round of `Ready` handling changed, for the owning actor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundOutcome {
    /// Set when the leader or role changed: (leader raft id, 0 when unknown; this node leads).
    pub leader_changed: Option<(u64, bool)>,
    /// Entries applied in this round.
    pub applied_entries: usize,
}

/// One Raft group on this node: the raw node, its state machine and its waiting proposers.
pub struct RaftGroup<M: StateMachine> {
    pub raw: RawNode<RaftLogStorage>,
    pub machine: M,
    group: GroupId,
    store: Store,
    transport: Arc<dyn RaftTransport>,
    /// Proposals by log index, answered when that index is applied.
    pending: BTreeMap<u64, Pending<M::Output>>,
    /// Commit index known at open: the group has recovered once it has applied up to here.
    recovery_target: u64,
    /// Latency histogram of proposals, if the owner records one.
    on_latency: Option<Box<dyn Fn(std::time::Duration) + Send>>,
    /// The owner has a round (`on_ready`) queued in its mailbox: proposals and messages arriving
    /// before it join that round, which is how requests share one fsync.
    round_queued: bool,
}

/// Errors of the driver: storage failures stop the owning actor (its supervisor restarts it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl<M: StateMachine> RaftGroup<M> {
    /// Opens the group from disk. A group without a configuration is bootstrapped with `voters`.
    /// `applied_index` is how far the state machine's durable state has applied the log (0 for a
    /// state machine rebuilt by replay).
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        store: Store,
        group: GroupId,
        raft_id: u64,
        voters: &[u64],
        cfg: &RaftConfig,
        machine: M,
        applied_index: u64,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<Self, ConsensusError> {
        let mut storage = store.raft_storage(group)?;
        if storage.conf_state().voters.is_empty() {
            let cs = ConfState {
                voters: voters.to_vec(),
                ..Default::default()
            };
            let mut batch = WriteBatch::default();
            batch.set_conf_state(group, &cs);
            store.write(batch, true).await?;
            storage.on_conf_state_written(&cs);
        }
        let commit = storage.hard_state().commit;
        let config = raft::Config {
            id: raft_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: applied_index.min(commit),
            max_size_per_msg: cfg.max_size_per_msg,
            max_inflight_msgs: cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let single_voter = storage.conf_state().voters == [raft_id];
        let mut raw = RawNode::new(&config, storage, &raft_logger())?;
        if single_voter {
            // The only voter need not wait an election timeout to lead its own group.
            raw.campaign()?;
        }
        Ok(RaftGroup {
            raw,
            machine,
            group,
            store,
            transport,
            pending: BTreeMap::new(),
            recovery_target: commit,
            on_latency: None,
            round_queued: false,
        })
    }

    /// Whether the owner must queue a round now: true at most once until the round runs.
    /// Call after anything that may have produced work (a proposal, a step, a tick).
    pub fn wants_round(&mut self) -> bool {
        if self.round_queued || !self.raw.has_ready() {
            return false;
        }
        self.round_queued = true;
        true
    }

    /// Advances the logical clock one tick; true when the owner must queue a round.
    pub fn tick(&mut self) -> bool {
        self.raw.tick();
        self.wants_round()
    }

    /// Records each answered proposal's latency with `f`.
    pub fn set_latency_observer(&mut self, f: Box<dyn Fn(std::time::Duration) + Send>) {
        self.on_latency = Some(f);
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Whether the group has applied everything that was committed when it opened.
    pub fn recovered(&self) -> bool {
        self.raw.raft.raft_log.applied >= self.recovery_target
    }

    /// Proposes `data`; `reply` is answered when the entry is applied, or failed.
    pub fn propose(&mut self, data: Vec<u8>, reply: RpcReplyPort<Result<M::Output, Error>>) {
        if !self.is_leader() {
            let _ = reply.send(Err(Error::not_leader(format!(
                "{} is not led here (leader raft id {})",
                self.group,
                self.leader_id()
            ))));
            return;
        }
        let last_before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), data) {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                if index == last_before {
                    let _ = reply.send(Err(Error::unavailable("proposal dropped by raft")));
                    return;
                }
                self.pending.insert(
                    index,
                    Pending {
                        term: self.term(),
                        reply,
                        proposed_at: Instant::now(),
                    },
                );
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(Error::not_leader("proposal dropped: no leader")));
            }
            Err(e) => {
                let _ = reply.send(Err(Error::unavailable(format!("proposal refused: {e}"))));
            }
        }
    }

    /// Feeds a message from a peer.
    pub fn step(&mut self, msg: Message) {
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(group = %self.group, error = %e, "raft step refused a message");
        }
    }

    /// Handles every pending `Ready`. Storage errors are returned: the owner must stop.
    pub async fn on_ready(&mut self) -> Result<RoundOutcome, ConsensusError> {
        self.round_queued = false;
        if !self.raw.has_ready() {
            return Ok(RoundOutcome::default());
        }
        use tracing::Instrument;
        let span = tracing::debug_span!("raft_ready", group = %self.group, term = self.term());
        self.handle_ready().instrument(span).await
    }

    async fn handle_ready(&mut self) -> Result<RoundOutcome, ConsensusError> {
        let mut outcome = RoundOutcome::default();
        let mut ready = self.raw.ready();
        if let Some(ss) = ready.ss() {
            let leads = ss.raft_state == StateRole::Leader;
            outcome.leader_changed = Some((ss.leader_id, leads));
            if !leads {
                self.fail_pending(ErrorCode::Timeout, "leadership lost: outcome unknown");
            }
        }
        self.transport.send(self.group, ready.take_messages());
        if !ready.snapshot().is_empty() {
            // Snapshots are not produced yet (no log compaction); a peer cannot send one.
            tracing::error!(group = %self.group, "snapshot received but not supported yet");
        }
        let committed = ready.take_committed_entries();
        outcome.applied_entries += self.apply(committed).await?;

        let mut batch = WriteBatch::default();
        let last_before = self.raw.store().last_index();
        if !ready.entries().is_empty() {
            batch.append_entries(self.group, ready.entries(), last_before);
        }
        if let Some(hs) = ready.hs() {
            batch.set_hard_state(self.group, hs);
        }
        if !batch.is_empty() {
            self.store.write(batch, true).await?;
            let store = self.raw.mut_store();
            store.on_entries_written(ready.entries());
            if let Some(hs) = ready.hs() {
                store.on_hard_state_written(hs);
            }
        }
        self.transport
            .send(self.group, ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        self.transport.send(self.group, light.take_messages());
        outcome.applied_entries += self.apply(light.take_committed_entries()).await?;
        self.raw.advance_apply();
        Ok(outcome)
    }

    /// Applies committed entries, writes their effects (and the commit index, so a restart never
    /// sees an applied index above the durable commit), then answers their proposers.
    async fn apply(&mut self, entries: Vec<Entry>) -> Result<usize, ConsensusError> {
        let Some(last) = entries.last() else {
            return Ok(0);
        };
        let last_index = last.get_index();
        let mut batch = WriteBatch::default();
        let mut answers = Vec::new();
        for entry in &entries {
            let index = entry.get_index();
            let result = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.get_data().is_empty() => None,
                EntryType::EntryNormal => Some(self.machine.apply_entry(
                    index,
                    entry.get_data(),
                    &mut batch,
                )),
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    protobuf::Message::merge_from_bytes(&mut cc, entry.get_data())
                        .map_err(raft::Error::CodecError)?;
                    let cs = self.raw.apply_conf_change(&cc)?;
                    batch.set_conf_state(self.group, &cs);
                    None
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    protobuf::Message::merge_from_bytes(&mut cc, entry.get_data())
                        .map_err(raft::Error::CodecError)?;
                    let cs = self.raw.apply_conf_change(&cc)?;
                    batch.set_conf_state(self.group, &cs);
                    None
                }
            };
            if let Some(p) = self.pending.remove(&index) {
                answers.push((p, entry.get_term(), result));
            }
        }
        self.machine.finish_round(last_index, &mut batch);
        let mut hs = self.raw.raft.hard_state();
        hs.commit = hs.commit.max(last_index);
        batch.set_hard_state(self.group, &hs);
        self.store.write(batch, false).await?;
        self.raw.mut_store().on_hard_state_written(&hs);
        for (p, term, result) in answers {
            let answer = match result {
                _ if p.term != term => Err(Error::not_leader(
                    "another leader's entry replaced this proposal",
                )),
                Some(r) => r,
                None => Err(Error::internal("proposal applied as an empty entry")),
            };
            if let Some(f) = &self.on_latency {
                f(p.proposed_at.elapsed());
            }
            let _ = p.reply.send(answer);
        }
        Ok(entries.len())
    }

    /// Fails every waiting proposer with `code`.
    pub fn fail_pending(&mut self, code: ErrorCode, message: &str) {
        for (_, p) in std::mem::take(&mut self.pending) {
            let _ = p.reply.send(Err(Error::new(code, message)));
        }
    }
}

impl<M: StateMachine> Drop for RaftGroup<M> {
    fn drop(&mut self) {
        // The owner is stopping or crashing: whether these entries commit is unknown to it.
        self.fail_pending(ErrorCode::Timeout, "replica stopped: outcome unknown");
    }
}
