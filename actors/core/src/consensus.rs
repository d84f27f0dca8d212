//! The Raft driver shared by the metadata group and every partition group, as pure logic.
//!
//! [`Driver`] owns a raft-rs `RawNode` and the group's state machine, and turns each event
//! (a proposal, a peer's message, a tick, a `Ready` round) into [`Effect`]s: values that say what
//! to write, send and answer, in the order the raft-rs documentation requires. It awaits nothing,
//! reads no clock of its own and sends nothing: its owner carries the effects out **in order**,
//! each write finished before the next effect, and that is all it takes for the promises below.
//! The node's Raft and Metadata actors are such owners (over fjall and ractor_cluster); the
//! simulator in `tests/sim` is another (over a simulated disk and network), which is how the
//! driver is run, crashed and replayed thousands of times in a unit test.
//!
//! A round, in the documented order: note a leadership change (losing it fails every waiting
//! proposer: outcome unknown); send the messages; install a leader's snapshot (a durable write);
//! apply the committed entries (their effects and the commit index in one write, then
//! [`Effect::Applied`], then the proposers' answers); write the new entries and hard state
//! durably; send the messages that must follow persistence; advance; apply what became committed.
//! A replica that is the only voter of its group applies its new entries with their append (one
//! write per round instead of two).
//!
//! A proposal is answered when its entry is applied: a proposer learns its result only after the
//! entry is committed by a quorum and durable. Every proposal is tracked by (index, term); if a
//! different entry is applied at that index, or leadership is lost first, the proposer is failed
//! instead of left hanging.
//!
//! The driver reads the log through [`LogStore`] (raft-rs's `Storage` plus what the owner wrote)
//! and describes writes with [`LogBatch`]; the state machine adds its own durable effects to the
//! same batch ([`StateMachine`]). Writes the driver returns are already reflected in its
//! `LogStore`'s view, and a round is two calls ([`Driver::on_ready`], then [`Driver::on_written`]
//! once its writes are done), so raft-rs reads the round's entries back only after they are
//! written. If a write fails, the owner must stop (crash-only) and open the group again from what
//! is durable.

use std::collections::BTreeMap;
use std::time::Instant;

use daftka_types::{Error, ErrorCode, GroupId};
use raft::eraftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};

use crate::config::RaftConfig;

/// The index and term of the initial snapshot every bootstrapped group starts from. Starting at 1
/// (not 0) means a replica created later with an empty log cannot take the log from index 1: the
/// leader must send it a snapshot, which carries the configuration current at that point.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// A description of one atomic write to a group's durable state.
pub trait LogBatch: Default + Send {
    /// Appends `entries`, replacing any stored entries from the first of them up to
    /// `last_index_before` (a new leader's log overrides an uncommitted suffix).
    fn append_entries(&mut self, group: GroupId, entries: &[Entry], last_index_before: u64);
    fn set_hard_state(&mut self, group: GroupId, hs: &HardState);
    fn set_conf_state(&mut self, group: GroupId, cs: &ConfState);
    /// Stores `snapshot` and compacts the log up to it: every stored entry from `first_index`
    /// when `replace_log` (a leader's snapshot replaces the whole log, and its configuration
    /// becomes the group's), else the entries up to the snapshot's index.
    fn set_snapshot(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
        first_index: u64,
        last_index: u64,
        replace_log: bool,
    );
    fn is_empty(&self) -> bool;
}

/// A group's log as raft-rs reads it, plus what its owner has written. The `on_*` calls tell it
/// about a write the driver has just described; it must reflect them in what it answers.
pub trait LogStore: raft::Storage {
    /// The hard state as last written.
    fn written_hard_state(&self) -> HardState;
    /// The configuration as last written.
    fn written_conf_state(&self) -> ConfState;
    /// The first index still in the log (one past the compaction point).
    fn first(&self) -> u64;
    /// The last index in the log (the compaction point if the log is empty).
    fn last(&self) -> u64;
    /// The compaction point: (index, term) of the stored snapshot.
    fn compaction_point(&self) -> (u64, u64);
    /// The stored snapshot, if any.
    fn stored_snapshot(&self) -> raft::Result<Option<Snapshot>>;
    /// Whether raft-rs asked for a snapshot the stored one cannot serve (since the last call).
    fn take_snapshot_request(&self) -> bool;
    fn on_entries_written(&mut self, entries: &[Entry]);
    fn on_hard_state_written(&mut self, hs: &HardState);
    fn on_snapshot_written(&mut self, snapshot: &Snapshot, replace_log: bool);
    /// Entries up to `applied` will not be read for applying again (an in-memory tail may go).
    fn trim_tail(&mut self, applied: u64);
}

/// A group's durable effects of applying entries, and their results for proposers.
pub trait StateMachine {
    /// The writes this machine's effects go into (the same as the log's: one atomic write).
    type Batch: LogBatch;
    /// What a proposer learns when its entry is applied.
    type Output: Send + 'static;
    /// What the owner publishes after an apply (see [`Effect::Applied`]).
    type View: Send;

    /// Applies the committed normal entry at `index` (non-empty data). Durable effects go into
    /// `batch`, which is written (visible, made durable by a later round) before proposers are
    /// answered.
    fn apply_entry(
        &mut self,
        index: u64,
        data: &[u8],
        batch: &mut Self::Batch,
    ) -> Result<Self::Output, Error>;

    /// Called once per round after the entries up to `applied_index` were applied (also for empty
    /// entries, which carry no data): record the applied position in `batch` if it is persisted.
    fn finish_round(&mut self, applied_index: u64, batch: &mut Self::Batch);

    /// The last log index the state machine's state includes.
    fn applied_index(&self) -> u64;

    /// The state as a snapshot's data (the state after applying [`Self::applied_index`]).
    fn snapshot(&self) -> Result<Vec<u8>, Error>;

    /// Replaces the state with a snapshot's, taken after applying `index`; durable effects go
    /// into `batch`, written with the snapshot.
    fn restore(&mut self, index: u64, data: &[u8], batch: &mut Self::Batch) -> Result<(), Error>;

    /// What to publish now (taken right after an apply, before the write that carries it).
    fn view(&self) -> Self::View;
}

/// One thing the owner must do, in the order given. `P` is how the owner answers a proposer.
pub enum Effect<M: StateMachine, P> {
    /// Hand these messages to the transport (it may drop them: Raft sends again).
    Send(Vec<Message>),
    /// Write `batch` atomically; when `durable`, wait until it is on disk. Every later effect
    /// waits for this write.
    Write { batch: M::Batch, durable: bool },
    /// Entries were applied and their write is done: publish `view` (before the answers that
    /// follow, so a proposer that acts on its answer finds what it wrote).
    Applied { view: M::View, leader: bool },
    /// Answer a proposer.
    Answer {
        reply: P,
        result: Result<M::Output, Error>,
        proposed_at: Instant,
    },
}

impl<M: StateMachine, P> std::fmt::Debug for Effect<M, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Send(m) => write!(f, "Send({} messages)", m.len()),
            Effect::Write { durable, .. } => write!(f, "Write {{ durable: {durable} }}"),
            Effect::Applied { leader, .. } => write!(f, "Applied {{ leader: {leader} }}"),
            Effect::Answer { result, .. } => write!(f, "Answer({})", result.is_ok()),
        }
    }
}

/// What one round changed, for the owner, with the effects to carry out.
pub struct Round<M: StateMachine, P> {
    pub effects: Vec<Effect<M, P>>,
    pub outcome: RoundOutcome,
    /// The round goes on with [`Driver::on_written`] once these effects are carried out.
    pub awaits_write: bool,
}

/// What one round of `Ready` handling changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundOutcome {
    /// Set when the leader or role changed: (leader raft id, 0 when unknown; this node leads).
    pub leader_changed: Option<(u64, bool)>,
    /// Entries applied in this round.
    pub applied_entries: usize,
    /// A leader's snapshot replaced the state in this round: (index, term).
    pub restored: Option<(u64, u64)>,
    /// This replica stored a snapshot and compacted its log in this round.
    pub compacted: bool,
}

impl RoundOutcome {
    /// This outcome followed by `later`'s (the two halves of one round).
    pub fn and(self, later: RoundOutcome) -> RoundOutcome {
        RoundOutcome {
            leader_changed: later.leader_changed.or(self.leader_changed),
            applied_entries: self.applied_entries + later.applied_entries,
            restored: later.restored.or(self.restored),
            compacted: self.compacted || later.compacted,
        }
    }

    /// Whether the state machine's state changed in this round.
    pub fn state_changed(&self) -> bool {
        self.applied_entries > 0 || self.restored.is_some()
    }
}

/// A proposal waiting for its entry to be applied.
struct Pending<P> {
    term: u64,
    reply: P,
    proposed_at: Instant,
}

/// Errors of the driver: the owner must stop (its supervisor restarts it from what is durable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("state machine: {0}")]
    Machine(#[from] Error),
}

/// Which replica this is and how its group runs.
pub struct GroupConfig<'a> {
    pub group: GroupId,
    /// This replica's id in the group.
    pub raft_id: u64,
    /// The first configuration of a group that has none yet (the first is its preferred
    /// leader); empty: wait for a leader's snapshot (a replica that joins).
    pub voters: &'a [u64],
    pub raft: &'a RaftConfig,
    /// Snapshot and compact the log once this many entries were applied since the last snapshot
    /// (`None`: only when a follower needs a snapshot the stored one cannot serve).
    pub snapshot_every: Option<u64>,
    /// An election timeout in ticks used as both bounds of raft-rs's randomised one (the
    /// simulator draws them from its seed; raft-rs's own draw is not seedable). `None`: raft-rs
    /// draws between `election_ticks` and twice that.
    pub election_ticks_exact: Option<usize>,
}

/// One replica of one Raft group: the raw node, its state machine and its waiting proposers.
pub struct Driver<M: StateMachine, S: LogStore, P> {
    pub raw: RawNode<S>,
    pub machine: M,
    group: GroupId,
    /// Proposals by log index, answered when that index is applied.
    pending: BTreeMap<u64, Pending<P>>,
    /// Commit index known at open: the group has recovered once it has applied up to here.
    recovery_target: u64,
    /// The owner has a round queued: proposals and messages arriving before it join that round,
    /// which is how requests share one fsync.
    round_queued: bool,
    snapshot_every: Option<u64>,
    /// The last entry applied before raft-rs reported it committed (a sole voter's, applied with
    /// its own append); raft-rs hands these over as committed later and they are not applied
    /// again.
    applied_ahead: u64,
    /// A round whose writes the owner is carrying out ([`Driver::on_written`] finishes it).
    in_flight: Option<InFlight>,
}

/// The half of a round that waits for its writes.
struct InFlight {
    ready: raft::Ready,
    snapshots_sent: Vec<u64>,
}

fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Entries applied to the machine whose write is not carried out yet, and their proposers.
struct Applied<O, P> {
    entries: usize,
    last_index: u64,
    answers: Vec<Answer<O, P>>,
}

/// A proposer, the term of the entry applied at its index, and the machine's result for that
/// entry (`None`: an empty or configuration entry).
struct Answer<O, P> {
    pending: Pending<P>,
    term: u64,
    result: Option<Result<O, Error>>,
}

impl<M: StateMachine, S: LogStore, P> Driver<M, S, P> {
    /// Opens the group over `storage`. A group without a configuration is bootstrapped with
    /// `cfg.voters` from an initial snapshot at [`BOOTSTRAP_INDEX`] of the machine's (empty)
    /// state; with no voters it stays unconfigured until a leader sends it a snapshot. A stored
    /// snapshot newer than the machine's state is restored into it first. The writes this takes
    /// are returned, to be carried out before anything else; none needs to be durable (the
    /// group's first round writes its hard state durably before it sends anything, and a
    /// bootstrap lost in a crash is written again at the next open).
    pub fn open(
        mut storage: S,
        cfg: GroupConfig<'_>,
        mut machine: M,
    ) -> Result<(Self, Vec<Effect<M, P>>), ConsensusError> {
        let group = cfg.group;
        let mut effects = Vec::new();
        let bootstrap = storage.written_conf_state().voters.is_empty() && !cfg.voters.is_empty();
        if bootstrap {
            let cs = ConfState {
                voters: cfg.voters.to_vec(),
                ..Default::default()
            };
            let snap = snapshot_at(BOOTSTRAP_INDEX, BOOTSTRAP_INDEX, &cs, machine.snapshot()?);
            let hs = HardState {
                term: BOOTSTRAP_INDEX,
                commit: BOOTSTRAP_INDEX,
                ..Default::default()
            };
            let mut batch = M::Batch::default();
            batch.set_snapshot(group, &snap, storage.first(), storage.last(), true);
            batch.set_hard_state(group, &hs);
            effects.push(Effect::Write {
                batch,
                durable: false,
            });
            storage.on_snapshot_written(&snap, true);
            storage.on_hard_state_written(&hs);
        }
        if let Some(snap) = storage.stored_snapshot()? {
            let index = snap.get_metadata().index;
            if index > machine.applied_index() {
                let mut batch = M::Batch::default();
                machine.restore(index, &snap.data, &mut batch)?;
                // Derived from the durable snapshot: lost in a crash, it is derived again.
                effects.push(Effect::Write {
                    batch,
                    durable: false,
                });
            }
        }
        let commit = storage.written_hard_state().commit;
        let (min_election, max_election) = match cfg.election_ticks_exact {
            Some(t) => (t, t + 1),
            None => (0, 0),
        };
        let config = raft::Config {
            id: cfg.raft_id,
            election_tick: cfg.election_ticks_exact.unwrap_or(cfg.raft.election_ticks),
            heartbeat_tick: cfg.raft.heartbeat_ticks,
            min_election_tick: min_election,
            max_election_tick: max_election,
            applied: machine.applied_index().min(commit),
            max_size_per_msg: cfg.raft.max_size_per_msg,
            max_inflight_msgs: cfg.raft.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let single_voter = storage.written_conf_state().voters == [cfg.raft_id];
        let mut raw = RawNode::new(&config, storage, &raft_logger())?;
        if single_voter || (bootstrap && cfg.voters.first() == Some(&cfg.raft_id)) {
            // The only voter need not wait an election timeout to lead its own group, and the
            // first voter of a new group (its preferred leader) asks for votes at once, which
            // spreads leaders as placement spread the first voters.
            raw.campaign()?;
        }
        let driver = Driver {
            raw,
            machine,
            group,
            pending: BTreeMap::new(),
            recovery_target: commit,
            round_queued: false,
            snapshot_every: cfg.snapshot_every,
            applied_ahead: 0,
            in_flight: None,
        };
        Ok((driver, effects))
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

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
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

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The highest index applied.
    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
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

    /// The last index of this replica's log.
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// On the leader: every member (voters of both halves of a joint configuration, and
    /// learners) as `(id, learner, matched, recently active)`, in id order.
    pub fn members(&self) -> Vec<(u64, bool, u64, bool)> {
        let conf = self.conf_state();
        let learners: std::collections::BTreeSet<u64> = conf
            .learners
            .iter()
            .chain(&conf.learners_next)
            .copied()
            .collect();
        let prs = self.raw.raft.prs();
        let mut out: Vec<(u64, bool, u64, bool)> = prs
            .iter()
            .map(|(id, p)| (*id, learners.contains(id), p.matched, p.recent_active))
            .collect();
        out.sort_unstable();
        out
    }

    /// On the leader: a member's last index known to be on it, and whether it takes entries as
    /// they come (raft's `Replicate` state).
    pub fn progress(&self, id: u64) -> Option<(u64, bool)> {
        self.raw
            .raft
            .prs()
            .get(id)
            .map(|p| (p.matched, p.state == raft::ProgressState::Replicate))
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

    /// The next step of moving this group to the voters `target` ([`crate::reconfig`]): `Wait`
    /// unless this replica leads. A learner counts as caught up `catch_up_lag` entries behind.
    pub fn move_step(&self, target: &[u64], catch_up_lag: u64) -> crate::reconfig::Step {
        if !self.is_leader() {
            return crate::reconfig::Step::Wait;
        }
        let conf = self.conf_state();
        let view = crate::reconfig::LeaderView {
            id: self.raw.raft.id,
            conf: &conf,
            conf_change_pending: self.conf_change_pending(),
            last_index: self.raw.raft.raft_log.last_index(),
            catch_up_lag,
        };
        let prs = self.raw.raft.prs();
        crate::reconfig::next_step(&view, target, |id| {
            prs.get(id).map(|p| crate::reconfig::Follower {
                matched: p.matched,
                replicating: p.state == raft::ProgressState::Replicate,
            })
        })
    }

    /// Carries out a move's `step`: proposes its configuration change, or starts its leader
    /// transfer. `Done` and `Wait` do nothing here.
    pub fn take_step(&mut self, step: &crate::reconfig::Step) -> Result<(), Error> {
        use crate::reconfig::Step;
        use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType};
        let single = |change_type, node_id| ConfChangeSingle {
            change_type,
            node_id,
            ..ConfChangeSingle::default()
        };
        let changes: Vec<ConfChangeSingle> = match step {
            Step::Done | Step::Wait => return Ok(()),
            Step::TransferLeader(id) => {
                self.raw.transfer_leader(*id);
                return Ok(());
            }
            Step::AddLearners(ids) => ids
                .iter()
                .map(|id| single(ConfChangeType::AddLearnerNode, *id))
                .collect(),
            Step::RemoveLearners(ids) => ids
                .iter()
                .map(|id| single(ConfChangeType::RemoveNode, *id))
                .collect(),
            Step::EnterJoint { promote, demote } => promote
                .iter()
                .map(|id| single(ConfChangeType::AddNode, *id))
                .chain(
                    demote
                        .iter()
                        .map(|id| single(ConfChangeType::RemoveNode, *id)),
                )
                .collect(),
            // An empty change leaves the joint configuration.
            Step::LeaveJoint => Vec::new(),
        };
        if !self.is_leader() {
            return Err(Error::not_leader("configuration changes go to the leader"));
        }
        let mut cc = ConfChangeV2 {
            changes: changes.into(),
            ..ConfChangeV2::default()
        };
        if matches!(step, Step::EnterJoint { .. }) {
            // Left by this code (after a leader that is not a new voter handed over), not by raft.
            cc.set_transition(ConfChangeTransition::Explicit);
        }
        self.raw
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| Error::unavailable(format!("configuration change refused: {e}")))
    }

    /// Whether a configuration change is proposed and not yet applied.
    pub fn conf_change_pending(&self) -> bool {
        self.raw.raft.has_pending_conf()
    }

    /// Proposes `data`, to be answered through `reply` when its entry is applied (or failed).
    /// A proposal that is refused at once comes back with its error.
    pub fn propose(&mut self, data: Vec<u8>, reply: P, now: Instant) -> Result<u64, (P, Error)> {
        if !self.is_leader() {
            let e = Error::not_leader(format!(
                "{} is not led here (leader raft id {})",
                self.group,
                self.leader_id()
            ));
            return Err((reply, e));
        }
        let last_before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), data) {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                if index == last_before {
                    return Err((reply, Error::unavailable("proposal dropped by raft")));
                }
                self.pending.insert(
                    index,
                    Pending {
                        term: self.term(),
                        reply,
                        proposed_at: now,
                    },
                );
                Ok(index)
            }
            Err(raft::Error::ProposalDropped) => {
                Err((reply, Error::not_leader("proposal dropped: no leader")))
            }
            Err(e) => Err((reply, Error::unavailable(format!("proposal refused: {e}")))),
        }
    }

    /// Feeds a message from a peer; a message raft-rs refuses is returned as its error.
    pub fn step(&mut self, msg: Message) -> Result<(), raft::Error> {
        self.raw.step(msg)
    }

    /// Handles every pending `Ready`, up to and including the durable write of its new entries
    /// and hard state. When [`Round::awaits_write`] is set, the owner carries the effects out and
    /// then calls [`Self::on_written`] for the rest of the round; it must not call anything else
    /// in between (raft-rs may read the entries this round writes only after they are written).
    pub fn on_ready(&mut self) -> Result<Round<M, P>, ConsensusError> {
        self.round_queued = false;
        let mut round = Round {
            effects: Vec::new(),
            outcome: RoundOutcome::default(),
            awaits_write: false,
        };
        if !self.raw.has_ready() || self.in_flight.is_some() {
            return Ok(round);
        }
        let effects = &mut round.effects;
        let outcome = &mut round.outcome;
        let mut ready = self.raw.ready();
        if let Some(ss) = ready.ss() {
            let leads = ss.raft_state == StateRole::Leader;
            outcome.leader_changed = Some((ss.leader_id, leads));
            if !leads {
                effects.extend(
                    self.fail_pending(ErrorCode::Timeout, "leadership lost: outcome unknown"),
                );
            }
        }
        let mut snapshots_sent = send(effects, ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            let meta = snap.get_metadata();
            outcome.restored = Some((meta.index, meta.term));
            let mut batch = M::Batch::default();
            self.machine.restore(meta.index, &snap.data, &mut batch)?;
            // The commit index moves to the snapshot's in the same write: a crash right after
            // it must not leave a snapshot above the durable commit index (raft-rs refuses to
            // start from that).
            let mut hs = self.raw.raft.hard_state();
            hs.commit = meta.index;
            batch.set_hard_state(self.group, &hs);
            self.raw.mut_store().on_hard_state_written(&hs);
            self.write_snapshot(effects, &snap, batch, true);
        }
        let committed = ready.take_committed_entries();
        outcome.applied_entries += self.apply(effects, &committed)?;

        let mut batch = M::Batch::default();
        let last_before = self.raw.store().last();
        let entries = ready.entries();
        if !entries.is_empty() {
            batch.append_entries(self.group, entries, last_before);
        }
        let mut hs = ready.hs().cloned();
        // A sole voter's entries are committed the moment they are durable: apply them now and
        // write their effects with them, one write per round instead of two.
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
            effects.push(Effect::Write {
                batch,
                durable: true,
            });
            let store = self.raw.mut_store();
            store.on_entries_written(ready.entries());
            if let Some(hs) = &hs {
                store.on_hard_state_written(hs);
            }
        }
        if let Some(applied) = ahead {
            self.applied_ahead = applied.last_index;
            outcome.applied_entries += self.answer(effects, applied);
        }
        snapshots_sent.extend(send(effects, ready.take_persisted_messages()));
        self.in_flight = Some(InFlight {
            ready,
            snapshots_sent,
        });
        round.awaits_write = true;
        Ok(round)
    }

    /// The rest of the round [`Self::on_ready`] started, once its writes are done: advance, send,
    /// apply what became committed, and snapshot if due.
    pub fn on_written(&mut self) -> Result<Round<M, P>, ConsensusError> {
        let mut round = Round {
            effects: Vec::new(),
            outcome: RoundOutcome::default(),
            awaits_write: false,
        };
        let Some(InFlight {
            ready,
            mut snapshots_sent,
        }) = self.in_flight.take()
        else {
            return Ok(round);
        };
        let effects = &mut round.effects;
        let mut light = self.raw.advance(ready);
        snapshots_sent.extend(send(effects, light.take_messages()));
        let committed = light.take_committed_entries();
        round.outcome.applied_entries += self.apply(effects, &committed)?;
        self.raw.advance_apply();
        let applied = self.raw.raft.raft_log.applied;
        self.raw.mut_store().trim_tail(applied);
        // A snapshot handed to the transport is reported done: if it is lost, the follower's next
        // rejection makes the leader send one again.
        for to in snapshots_sent {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        round.outcome.compacted = self.maybe_snapshot(effects)?;
        Ok(round)
    }

    /// Describes `snap` as the group's snapshot with `batch`, compacting the log up to it, or
    /// replacing it whole when `replace_log` (a leader's snapshot, written durably before raft
    /// goes on; our own snapshot only drops entries that are applied and needs no fsync).
    fn write_snapshot(
        &mut self,
        effects: &mut Vec<Effect<M, P>>,
        snap: &Snapshot,
        mut batch: M::Batch,
        replace_log: bool,
    ) {
        let st = self.raw.store();
        batch.set_snapshot(self.group, snap, st.first(), st.last(), replace_log);
        effects.push(Effect::Write {
            batch,
            durable: replace_log,
        });
        self.raw.mut_store().on_snapshot_written(snap, replace_log);
    }

    /// Snapshots the applied state and compacts the log up to it, when a follower needs a
    /// snapshot the stored one cannot serve or `snapshot_every` entries were applied since the
    /// last one. A group without `snapshot_every` compacts only through [`Self::compact_to`].
    fn maybe_snapshot(&mut self, effects: &mut Vec<Effect<M, P>>) -> Result<bool, ConsensusError> {
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
        self.compact_into(effects, applied, data, M::Batch::default())
    }

    /// Stores `data` as the snapshot at `index` (the state after applying it) and compacts the
    /// log up to it, with `batch` in the same atomic write. `index` must be applied and above
    /// the current compaction point, else nothing is written (`None`).
    pub fn compact_to(
        &mut self,
        index: u64,
        data: Vec<u8>,
        batch: M::Batch,
    ) -> Result<Option<Vec<Effect<M, P>>>, ConsensusError> {
        let mut effects = Vec::new();
        let done = self.compact_into(&mut effects, index, data, batch)?;
        Ok(done.then_some(effects))
    }

    fn compact_into(
        &mut self,
        effects: &mut Vec<Effect<M, P>>,
        index: u64,
        data: Vec<u8>,
        batch: M::Batch,
    ) -> Result<bool, ConsensusError> {
        let (point, _) = self.raw.store().compaction_point();
        if index <= point || index > self.raw.raft.raft_log.applied {
            return Ok(false);
        }
        let term = self.raw.raft.raft_log.term(index)?;
        let snap = snapshot_at(index, term, &self.conf_state(), data);
        self.write_snapshot(effects, &snap, batch, false);
        Ok(true)
    }

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

    /// Applies committed `entries`, describes their effects' write (with the commit index, so a
    /// restart never sees an applied index above the durable commit), then answers their
    /// proposers.
    fn apply(
        &mut self,
        effects: &mut Vec<Effect<M, P>>,
        entries: &[Entry],
    ) -> Result<usize, ConsensusError> {
        let mut batch = M::Batch::default();
        let applied = self.apply_into(entries, &mut batch)?;
        if applied.entries == 0 {
            return Ok(0);
        }
        // The commit index written is what was written before or what this apply covers, never
        // raft-rs's own commit index: that may point at entries this replica has not written yet
        // (they come in this round's append, after this write), and a durable commit index
        // beyond the durable log stops raft-rs from starting.
        let mut hs = self.raw.raft.hard_state();
        hs.commit = self
            .raw
            .store()
            .written_hard_state()
            .commit
            .max(applied.last_index);
        batch.set_hard_state(self.group, &hs);
        effects.push(Effect::Write {
            batch,
            durable: false,
        });
        self.raw.mut_store().on_hard_state_written(&hs);
        Ok(self.answer(effects, applied))
    }

    /// Applies `entries` (but those already applied ahead) to the machine, its durable effects
    /// into `batch`; the proposers are answered by [`Self::answer`] after `batch`'s write.
    fn apply_into(
        &mut self,
        entries: &[Entry],
        batch: &mut M::Batch,
    ) -> Result<Applied<M::Output, P>, ConsensusError> {
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
                    self.apply_conf_change::<ConfChange>(entry.get_data(), batch)?;
                    None
                }
                EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change::<ConfChangeV2>(entry.get_data(), batch)?;
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

    /// Applies the configuration change encoded in `data` (a `ConfChange` or a `ConfChangeV2`),
    /// recording the new configuration in `batch`.
    fn apply_conf_change<C>(
        &mut self,
        data: &[u8],
        batch: &mut M::Batch,
    ) -> Result<(), ConsensusError>
    where
        C: raft_proto::ConfChangeI + protobuf::Message,
    {
        let mut cc = C::new();
        cc.merge_from_bytes(data).map_err(raft::Error::CodecError)?;
        let cs = self.raw.apply_conf_change(&cc)?;
        self.after_conf_change(&cs);
        batch.set_conf_state(self.group, &cs);
        Ok(())
    }

    /// A leader that the configuration `cs` no longer has as a voter steps down: raft-rs leaves
    /// it leading (and then fails on its own progress entry), and nothing it proposes could
    /// commit with it anyway. Its waiting proposers are failed at the next round.
    fn after_conf_change(&mut self, cs: &ConfState) {
        if self.is_leader() && !cs.voters.contains(&self.raw.raft.id) {
            let term = self.raw.raft.term;
            self.raw.raft.become_follower(term, raft::INVALID_ID);
        }
    }

    /// After the write of `applied`'s effects: the view to publish, then the proposers' answers.
    /// Returns how many entries were applied.
    fn answer(&mut self, effects: &mut Vec<Effect<M, P>>, applied: Applied<M::Output, P>) -> usize {
        effects.push(Effect::Applied {
            view: self.machine.view(),
            leader: self.is_leader(),
        });
        for Answer {
            pending: p,
            term,
            result,
        } in applied.answers
        {
            let result = match result {
                _ if p.term != term => Err(Error::not_leader(
                    "another leader's entry replaced this proposal",
                )),
                Some(r) => r,
                None => Err(Error::internal("proposal applied as an empty entry")),
            };
            effects.push(Effect::Answer {
                reply: p.reply,
                result,
                proposed_at: p.proposed_at,
            });
        }
        applied.entries
    }

    /// Fails every waiting proposer with `code`: the answers to give.
    pub fn fail_pending(&mut self, code: ErrorCode, message: &str) -> Vec<Effect<M, P>> {
        std::mem::take(&mut self.pending)
            .into_values()
            .map(|p| Effect::Answer {
                reply: p.reply,
                result: Err(Error::new(code, message)),
                proposed_at: p.proposed_at,
            })
            .collect()
    }
}

/// Queues `messages` as a `Send`; returns the peers that were sent a snapshot.
fn send<M: StateMachine, P>(effects: &mut Vec<Effect<M, P>>, messages: Vec<Message>) -> Vec<u64> {
    let snapshots = messages
        .iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
        .map(|m| m.to)
        .collect();
    if !messages.is_empty() {
        effects.push(Effect::Send(messages));
    }
    snapshots
}

/// Whether the configuration `cs` has `id` in it (a voter, outgoing voter or learner): a snapshot
/// taken under it can be sent to `id`.
pub fn conf_includes(cs: &ConfState, id: u64) -> bool {
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .any(|v| *v == id)
}

/// The snapshot a store answers raft's request for one to send to the peer `to`: the stored one,
/// if it is at least at `request_index` (`None`: the store asks its owner for a fresh one).
///
/// A peer that joined the group after the snapshot's index (a move's new replica) is not in its
/// configuration, and raft refuses a snapshot that leaves it out: it gets the stored snapshot
/// with itself added as a learner, and then every entry after it from the log, its own joining
/// included. So a new replica receives every record the log still holds, not only the position
/// of a fresh snapshot (a partition's snapshot carries no records).
pub fn snapshot_for_peer(
    stored: Option<&Snapshot>,
    request_index: u64,
    to: u64,
) -> Option<Snapshot> {
    let s = stored?;
    let index = s.get_metadata().index;
    if index < request_index || index == 0 {
        return None;
    }
    let mut s = s.clone();
    let conf = s.mut_metadata().mut_conf_state();
    if !conf_includes(conf, to) {
        conf.mut_learners().push(to);
    }
    Some(s)
}

/// A snapshot of `data` at `index` and `term`, with the configuration `cs`.
pub fn snapshot_at(index: u64, term: u64, cs: &ConfState, data: Vec<u8>) -> Snapshot {
    let mut s = Snapshot {
        data: data.into(),
        ..Default::default()
    };
    let m = s.mut_metadata();
    m.index = index;
    m.term = term;
    m.set_conf_state(cs.clone());
    s
}
