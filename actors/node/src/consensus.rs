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
use daftka_storage::{RaftLogStorage, SnapshotRecord, StorageError, Store, WriteBatch};
use ractor::RpcReplyPort;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};

/// The index and term of the initial snapshot every bootstrapped group starts from. Starting at 1
/// (not 0) means a replica created later with an empty log cannot take the log from index 1: the
/// leader must send it a snapshot, which carries the configuration current at that point.
pub const BOOTSTRAP_INDEX: u64 = 1;

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

    /// The last log index the state machine's state includes.
    fn applied_index(&self) -> u64;

    /// The state as a snapshot's data (the state after applying [`Self::applied_index`]).
    fn snapshot(&self) -> Result<Vec<u8>, Error>;

    /// Replaces the state with a snapshot's, taken after applying `index`; durable effects go
    /// into `batch`, written with the snapshot.
    fn restore(&mut self, index: u64, data: &[u8], batch: &mut WriteBatch) -> Result<(), Error>;
}

/// Delivers Raft messages to other replicas of a group ([`crate::cluster::transport`]).
pub trait RaftTransport: Send + Sync {
    /// Queues `messages` for their destinations; never blocks, may drop (Raft sends again).
    fn send(&self, group: GroupId, messages: Vec<Message>);

    /// Stops the transport's background work (node shutdown).
    fn close(&self) {}
}

/// A proposal waiting for its entry to be applied.
struct Pending<O> {
    term: u64,
    reply: RpcReplyPort<Result<O, Error>>,
    proposed_at: Instant,
}

/// Entries applied to the machine whose effects are not written yet, and their proposers.
struct Applied<O> {
    /// How many entries were applied.
    entries: usize,
    /// The last of them (0 if none).
    last_index: u64,
    answers: Vec<Answer<O>>,
}

/// A proposer, the term of the entry applied at its index, and the machine's result for that
/// entry (`None`: an empty or configuration entry).
struct Answer<O> {
    pending: Pending<O>,
    term: u64,
    result: Option<Result<O, Error>>,
}

/// What one round of `Ready` handling changed, for the owning actor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundOutcome {
    /// Set when the leader or role changed: (leader raft id, 0 when unknown; this node leads).
    pub leader_changed: Option<(u64, bool)>,
    /// Entries applied in this round.
    pub applied_entries: usize,
    /// A leader's snapshot replaced the state in this round.
    pub restored: bool,
    /// This replica stored a snapshot and compacted its log in this round.
    pub compacted: bool,
}

impl RoundOutcome {
    /// Whether the state machine's state changed in this round.
    pub fn state_changed(&self) -> bool {
        self.applied_entries > 0 || self.restored
    }
}

/// See [`RaftGroup::set_apply_observer`].
pub type ApplyObserver<M> = Box<dyn Fn(&M, bool) + Send>;

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
    /// Called after applied entries are written and before their proposers are answered, with
    /// the state machine and whether this replica leads.
    on_applied: Option<ApplyObserver<M>>,
    /// The owner has a round (`on_ready`) queued in its mailbox: proposals and messages arriving
    /// before it join that round, which is how requests share one fsync.
    round_queued: bool,
    /// Snapshot and compact the log once this many entries were applied since the last snapshot
    /// (`None`: only when a follower needs a snapshot the stored one cannot serve).
    snapshot_every: Option<u64>,
    /// The last entry applied before raft-rs reported it committed (a sole voter's, applied with
    /// its own append: see [`RaftGroup::on_ready`]); raft-rs hands these over as committed later
    /// and they are not applied again.
    applied_ahead: u64,
}

/// Errors of the driver: storage failures stop the owning actor (its supervisor restarts it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("state machine: {0}")]
    Machine(#[from] Error),
}

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl<M: StateMachine> RaftGroup<M> {
    /// Opens the group from disk. A group without a configuration is bootstrapped with `voters`
    /// (the first is its preferred leader)
    /// from an initial snapshot at [`BOOTSTRAP_INDEX`] of the machine's (empty) state; with no
    /// `voters` it stays unconfigured until a leader sends it a snapshot (a joining replica). A
    /// stored snapshot newer than the machine's state is restored into it first.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        store: Store,
        group: GroupId,
        raft_id: u64,
        voters: &[u64],
        cfg: &RaftConfig,
        mut machine: M,
        transport: Arc<dyn RaftTransport>,
        snapshot_every: Option<u64>,
    ) -> Result<Self, ConsensusError> {
        let mut storage = store.raft_storage(group)?;
        let bootstrap = storage.conf_state().voters.is_empty() && !voters.is_empty();
        if bootstrap {
            let cs = ConfState {
                voters: voters.to_vec(),
                ..Default::default()
            };
            let snap =
                SnapshotRecord::new(BOOTSTRAP_INDEX, BOOTSTRAP_INDEX, &cs, machine.snapshot()?);
            let hs = raft::eraftpb::HardState {
                term: BOOTSTRAP_INDEX,
                commit: BOOTSTRAP_INDEX,
                ..Default::default()
            };
            let mut batch = WriteBatch::default();
            batch.set_snapshot(
                group,
                &snap,
                storage.first_index(),
                storage.last_index(),
                true,
            );
            batch.set_hard_state(group, &hs);
            // No fsync of its own: the group's first round writes its hard state durably before
            // it sends anything, and that fsync covers this earlier write of the same journal.
            // A crash before it loses only this bootstrap, which the next start writes again.
            // (Starting a topic of a thousand partitions would otherwise wait a thousand fsyncs.)
            store.write(batch, false).await?;
            storage.on_snapshot_written(&snap, true);
            storage.on_hard_state_written(&hs);
        }
        if let Some(snap) = storage.stored_snapshot()? {
            if snap.index > machine.applied_index() {
                let mut batch = WriteBatch::default();
                machine.restore(snap.index, &snap.data, &mut batch)?;
                // Derived from the durable snapshot: lost in a crash, it is derived again.
                store.write(batch, false).await?;
            }
        }
        let commit = storage.hard_state().commit;
        let config = raft::Config {
            id: raft_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: machine.applied_index().min(commit),
            max_size_per_msg: cfg.max_size_per_msg,
            max_inflight_msgs: cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let single_voter = storage.conf_state().voters == [raft_id];
        let mut raw = RawNode::new(&config, storage, &raft_logger())?;
        if single_voter || (bootstrap && voters.first() == Some(&raft_id)) {
            // The only voter need not wait an election timeout to lead its own group, and the
            // first voter of a new group (its preferred leader) asks for votes at once, which
            // spreads leaders as placement spread the first voters.
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
            on_applied: None,
            round_queued: false,
            snapshot_every,
            applied_ahead: 0,
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

    /// Calls `f` after every apply, before the proposers are answered (so whatever `f` publishes
    /// is visible to a proposer that acts on its answer).
    pub fn set_apply_observer(&mut self, f: ApplyObserver<M>) {
        self.on_applied = Some(f);
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

    /// Whether this replica leads a group it is the only member of, with no configuration
    /// change under way: no follower needs its heartbeats and no election can be held, so
    /// Raft's clock has nothing to do for it.
    pub fn is_sole_leader(&self) -> bool {
        // The progress tracker has one entry per voter and learner (of both halves of a joint
        // configuration).
        let prs = self.raw.raft.prs();
        self.is_leader()
            && !self.conf_change_pending()
            && prs.iter().count() == 1
            && prs.get(self.raw.raft.id).is_some()
    }

    /// The group's configuration as this replica has applied it.
    pub fn conf_state(&self) -> ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    /// Whether this replica is in the group's configuration (a voter or a learner).
    pub fn is_member(&self) -> bool {
        let id = self.raw.raft.id;
        let cs = self.conf_state();
        cs.voters.contains(&id) || cs.learners.contains(&id)
    }

    /// Proposes a configuration change; its outcome shows in [`Self::conf_state`] once applied.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(), Error> {
        if !self.is_leader() {
            return Err(Error::not_leader("configuration changes go to the leader"));
        }
        self.raw
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| Error::unavailable(format!("configuration change refused: {e}")))
    }

    /// If this replica leads and the voter `preferred` has every entry this leader has, hands
    /// leadership to it (raft's leader transfer). True when a transfer started.
    pub fn transfer_to(&mut self, preferred: u64) -> bool {
        if !self.is_leader()
            || preferred == self.raw.raft.id
            || self.raw.raft.lead_transferee.is_some()
        {
            return false;
        }
        let last = self.raw.raft.raft_log.last_index();
        let caught_up = self
            .raw
            .raft
            .prs()
            .get(preferred)
            .is_some_and(|p| p.matched == last);
        if caught_up {
            self.raw.transfer_leader(preferred);
        }
        caught_up
    }

    /// Whether a configuration change is proposed and not yet applied.
    pub fn conf_change_pending(&self) -> bool {
        self.raw.raft.has_pending_conf()
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
        let mut snapshots_sent = self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(SnapshotRecord::from_pb(ready.snapshot()))
                .await?;
            outcome.restored = true;
        }
        let committed = ready.take_committed_entries();
        outcome.applied_entries += self.apply(committed).await?;

        let mut batch = WriteBatch::default();
        let last_before = self.raw.store().last_index();
        let entries = ready.entries();
        if !entries.is_empty() {
            batch.append_entries(self.group, entries, last_before);
        }
        let mut hs = ready.hs().cloned();
        // A sole voter's entries are committed the moment they are durable: apply them now and
        // write their effects with them, one storage write per round instead of two.
        let ahead = match entries.last() {
            Some(last) if self.commits_on_append(&ready) => {
                let applied = self.apply_into(entries, &mut batch)?;
                let h = hs.get_or_insert_with(|| self.raw.raft.hard_state());
                h.commit = h.commit.max(last.get_index());
                Some(applied)
            }
            _ => None,
        };
        if let Some(hs) = &hs {
            batch.set_hard_state(self.group, hs);
        }
        if !batch.is_empty() {
            self.store.write(batch, true).await?;
            let store = self.raw.mut_store();
            store.on_entries_written(ready.entries());
            if let Some(hs) = &hs {
                store.on_hard_state_written(hs);
            }
        }
        if let Some(applied) = ahead {
            self.applied_ahead = applied.last_index;
            outcome.applied_entries += self.answer(applied);
        }
        snapshots_sent.extend(self.send(ready.take_persisted_messages()));
        let mut light = self.raw.advance(ready);
        snapshots_sent.extend(self.send(light.take_messages()));
        outcome.applied_entries += self.apply(light.take_committed_entries()).await?;
        self.raw.advance_apply();
        let applied = self.raw.raft.raft_log.applied;
        self.raw.mut_store().trim_tail(applied);
        // A snapshot handed to the transport is reported done: if it is lost, the follower's next
        // rejection makes the leader send one again.
        for to in snapshots_sent {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        outcome.compacted = self.maybe_snapshot().await?;
        Ok(outcome)
    }

    /// Hands messages to the transport; answers the peers that were sent a snapshot.
    fn send(&self, messages: Vec<Message>) -> Vec<u64> {
        let snapshots = messages
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        if !messages.is_empty() {
            self.transport.send(self.group, messages);
        }
        snapshots
    }

    /// Replaces this replica's state and log with a leader's snapshot.
    async fn install_snapshot(&mut self, snap: SnapshotRecord) -> Result<(), ConsensusError> {
        tracing::info!(group = %self.group, index = snap.index, term = snap.term, "installing a snapshot");
        let mut batch = WriteBatch::default();
        self.machine.restore(snap.index, &snap.data, &mut batch)?;
        self.write_snapshot(&snap, batch, true).await
    }

    /// Writes `snap` as the group's snapshot with `batch`, compacting the log up to it, or
    /// replacing it whole when `replace_log` (a leader's snapshot, written durably before raft
    /// goes on; our own snapshot only drops entries that are applied and need no fsync).
    async fn write_snapshot(
        &mut self,
        snap: &SnapshotRecord,
        mut batch: WriteBatch,
        replace_log: bool,
    ) -> Result<(), ConsensusError> {
        let st = self.raw.store();
        batch.set_snapshot(
            self.group,
            snap,
            st.first_index(),
            st.last_index(),
            replace_log,
        );
        self.store.write(batch, replace_log).await?;
        self.raw.mut_store().on_snapshot_written(snap, replace_log);
        Ok(())
    }

    /// Snapshots the applied state and compacts the log up to it, when a follower needs a
    /// snapshot the stored one cannot serve or `snapshot_every` entries were applied since the
    /// last one. A group without `snapshot_every` compacts only through [`Self::compact_to`].
    async fn maybe_snapshot(&mut self) -> Result<bool, ConsensusError> {
        let requested = self.raw.store().take_snapshot_request();
        let Some(every) = self.snapshot_every else {
            return Ok(false);
        };
        let applied = self.raw.raft.raft_log.applied;
        let (point, _) = self.raw.store().compaction_point();
        let due = applied.saturating_sub(point) >= every;
        if !(requested || due) || self.machine.applied_index() != applied {
            return Ok(false);
        }
        let data = self.machine.snapshot()?;
        self.compact_to(applied, data, WriteBatch::default()).await
    }

    /// Stores `data` as the snapshot at `index` (the state after applying it) and compacts the
    /// log up to it, writing `batch` in the same atomic write. `index` must be applied and above
    /// the current compaction point, else nothing is written and the answer is `false`.
    pub async fn compact_to(
        &mut self,
        index: u64,
        data: Vec<u8>,
        batch: WriteBatch,
    ) -> Result<bool, ConsensusError> {
        let (point, _) = self.raw.store().compaction_point();
        if index <= point || index > self.raw.raft.raft_log.applied {
            return Ok(false);
        }
        let term = self.raw.raft.raft_log.term(index)?;
        let snap = SnapshotRecord::new(index, term, &self.conf_state(), data);
        self.write_snapshot(&snap, batch, false).await?;
        tracing::debug!(group = %self.group, index, "snapshot stored, log compacted");
        Ok(true)
    }

    /// Applies committed entries, writes their effects (and the commit index, so a restart never
    /// sees an applied index above the durable commit), then answers their proposers.
    /// Whether the entries of `ready` are committed as soon as they are written: this replica
    /// leads a group it is the only voter of, and they change no configuration (raft-rs applies
    /// those itself) and come with no snapshot.
    fn commits_on_append(&self, ready: &raft::Ready) -> bool {
        ready.snapshot().is_empty()
            && self.is_sole_leader()
            && ready
                .entries()
                .iter()
                .all(|e| e.get_entry_type() == EntryType::EntryNormal)
    }

    /// Applies committed `entries` and writes their effects (not durably: the entries are), then
    /// answers their proposers.
    async fn apply(&mut self, entries: Vec<Entry>) -> Result<usize, ConsensusError> {
        let mut batch = WriteBatch::default();
        let applied = self.apply_into(&entries, &mut batch)?;
        if applied.entries == 0 {
            return Ok(0);
        }
        let mut hs = self.raw.raft.hard_state();
        hs.commit = hs.commit.max(applied.last_index);
        batch.set_hard_state(self.group, &hs);
        self.store.write(batch, false).await?;
        self.raw.mut_store().on_hard_state_written(&hs);
        Ok(self.answer(applied))
    }

    /// Applies `entries` (but those already applied ahead) to the machine, its durable effects
    /// into `batch`; the proposers are answered by [`Self::answer`] once `batch` is written.
    fn apply_into(
        &mut self,
        entries: &[Entry],
        batch: &mut WriteBatch,
    ) -> Result<Applied<M::Output>, ConsensusError> {
        let entries = {
            let fresh = entries.partition_point(|e| e.get_index() <= self.applied_ahead);
            &entries[fresh..]
        };
        let mut applied = Applied {
            entries: entries.len(),
            last_index: 0,
            answers: Vec::new(),
        };
        let Some(last) = entries.last() else {
            return Ok(applied);
        };
        applied.last_index = last.get_index();
        for entry in entries {
            let index = entry.get_index();
            let result = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.get_data().is_empty() => None,
                EntryType::EntryNormal => {
                    Some(self.machine.apply_entry(index, entry.get_data(), batch))
                }
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
                applied.answers.push(Answer {
                    pending: p,
                    term: entry.get_term(),
                    result,
                });
            }
        }
        self.machine.finish_round(applied.last_index, batch);
        Ok(applied)
    }

    /// After the effects of `applied` are written: tells the apply observer, then answers the
    /// proposers. Returns how many entries were applied.
    fn answer(&mut self, applied: Applied<M::Output>) -> usize {
        if let Some(f) = &self.on_applied {
            f(&self.machine, self.is_leader());
        }
        for Answer {
            pending: p,
            term,
            result,
        } in applied.answers
        {
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
        applied.entries
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
