//! Raft: the partition replica's Raft actor. It owns the group's raft-rs `RawNode` (through
//! [`RaftGroup`]) and the partition's apply step, which assigns offsets.
//!
//! Parent: ReplicaSup (one_for_all). Registered as `names::replica_raft(node, group)`.
//! Messages in: [`RaftMsg::Propose`] from the Server (a batch of records, answered with its base
//! offset once committed, fsynced and applied), `Tick` and `Housekeeping` from the node's
//! [`super::ticker::Ticker`] (no `Tick` while it leads a group of one), `Step` from peers.
//! Messages out: `Applied` to the Reader actor (new high watermark); `SetLeader` to the metadata
//! group on election.
//!
//! Proposals are batched: a proposal only schedules a `ProcessReady` message, so every proposal
//! already queued in the mailbox joins the same Ready round and the same group-commit fsync.
//!
//! # Invariants
//! - Offsets are assigned at apply from the durable [`LogPosition`], contiguous, never reused.
//! - A proposer is answered only after its entry is applied (so durable on a quorum).
//! - The offset index rows and the apply position are written in one atomic batch.
//!
//! # Crash and recovery
//! Everything comes back from fjall: the log, hard state, and the apply position with the offset
//! index. Entries committed but not yet applied when it died are applied again after restart with
//! the same offsets, because offsets are a function of the committed log. Waiting proposers of a
//! killed actor get an error (their reply ports drop): their outcome is unknown to them.

use std::sync::Arc;

use daftka_core::partition::LogPosition;
use daftka_protocol::record::batch_record_count;
use daftka_protocol::{names, Error};
use daftka_storage::{ApplyState, PartitionReader, WriteBatch};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::reader::ReaderMsg;
use super::replica_sup::ReplicaId;
use super::ticker::Registration;
use crate::consensus::{RaftGroup, StateMachine};
use crate::context::NodeContext;
use crate::partitions::server::now_ms;

/// The partition's apply step: offsets at apply, index rows with the position.
pub struct PartitionMachine {
    group: daftka_protocol::GroupId,
    /// Reads this partition's index rows (to drop the ones a snapshot replaces).
    reader: PartitionReader,
    pub position: LogPosition,
    /// The first offset still stored (raised when a snapshot replaces the log).
    pub log_start_offset: u64,
    /// The bytes of the batches stored from the log start to the high watermark, once counted
    /// (retention by size counts them at its first check, then keeps count).
    pub log_bytes: Option<u64>,
}

impl PartitionMachine {
    /// The bytes of the batches stored from the log start to the high watermark: counted (a walk
    /// of the index rows) the first time they are asked for, kept up to date after.
    fn count_log_bytes(&mut self) -> Result<u64, daftka_storage::StorageError> {
        if let Some(b) = self.log_bytes {
            return Ok(b);
        }
        let b = self
            .reader
            .log_bytes(self.log_start_offset, self.position.next_offset)?;
        self.log_bytes = Some(b);
        Ok(b)
    }

    fn apply_state(&self) -> ApplyState {
        ApplyState {
            applied_index: self.position.applied_index,
            next_offset: self.position.next_offset,
            log_start_offset: self.log_start_offset,
        }
    }
}

impl StateMachine for PartitionMachine {
    type Batch = WriteBatch;
    /// The base offset of the applied batch.
    type Output = u64;
    type View = Positions;

    fn apply_entry(
        &mut self,
        index: u64,
        data: &[u8],
        batch: &mut WriteBatch,
    ) -> Result<u64, Error> {
        let count = batch_record_count(data)?;
        match self.position.apply(index, count) {
            Some(b) => {
                let bytes = u32::try_from(data.len()).unwrap_or(u32::MAX);
                batch.index_batch(
                    self.group,
                    b.base_offset,
                    b.raft_index,
                    b.record_count,
                    bytes,
                );
                if let Some(total) = &mut self.log_bytes {
                    *total += u64::from(bytes);
                }
                Ok(b.base_offset)
            }
            None => Err(Error::internal(format!(
                "entry {index} applied twice or holds no records"
            ))),
        }
    }

    fn finish_round(&mut self, applied_index: u64, batch: &mut WriteBatch) {
        self.position.applied_index = self.position.applied_index.max(applied_index);
        batch.set_apply_state(self.group, &self.apply_state());
    }

    fn applied_index(&self) -> u64 {
        self.position.applied_index
    }

    /// A partition's snapshot is its position: the records themselves are the log, and a
    /// snapshot is only needed for entries the log no longer has.
    fn snapshot(&self) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(&self.apply_state())
            .map_err(|e| Error::internal(format!("encode a partition snapshot: {e}")))
    }

    /// Records before the snapshot are gone from the leader's log: this replica's log starts at
    /// the snapshot's next offset.
    fn restore(&mut self, index: u64, data: &[u8], batch: &mut WriteBatch) -> Result<(), Error> {
        let st: ApplyState = postcard::from_bytes(data)
            .map_err(|e| Error::internal(format!("decode a partition snapshot: {e}")))?;
        // The index rows of the log this snapshot replaces point at entries that are gone.
        let stale = self
            .reader
            .index_rows(
                self.log_start_offset,
                st.next_offset.max(self.position.next_offset),
            )
            .map_err(Error::from)?;
        batch.remove_index_rows(self.group, &stale);
        self.position = LogPosition {
            applied_index: index,
            next_offset: st.next_offset,
        };
        self.log_start_offset = st.next_offset;
        self.log_bytes = Some(0);
        batch.set_apply_state(self.group, &self.apply_state());
        Ok(())
    }

    fn view(&self) -> Positions {
        Positions {
            high_watermark: self.position.next_offset,
            log_start_offset: self.log_start_offset,
        }
    }
}

/// What a replica publishes after an apply: its readable range.
#[derive(Debug, Clone, Copy)]
pub struct Positions {
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// Most index rows one retention pass looks at (bounds the work of one tick).
pub const RETENTION_ROWS_MAX: usize = 10_000;

pub struct ReplicaRaftArgs {
    pub ctx: Arc<NodeContext>,
    pub replica: ReplicaId,
}

pub struct ReplicaRaftState {
    ctx: Arc<NodeContext>,
    replica: ReplicaId,
    raft: RaftGroup<PartitionMachine>,
    /// Proposals taken since the last round; capped so a leader still ticks under a flood.
    proposals_in_round: usize,
    /// The leader last reported to the metadata group, to report each election once.
    reported_leader: bool,
    /// Ticks between two looks at handing leadership back (`raft.leader_balance_interval`).
    balance_every: u64,
    /// Ticks since start, to hand leadership back to the preferred leader every so many.
    ticks: u64,
    /// When this leader last proposed that a move is finished (one proposal in flight at a time).
    finishing: Option<std::time::Instant>,
    /// This actor's place in the node's [`super::ticker::Ticker`].
    ticker: Registration,
    /// The move this leader carries out, if any.
    moving: Option<MoveTracking>,
    /// Shared with the send filter: which members are a move's catching-up replicas, and the
    /// bytes sent to them.
    catch_up: Arc<CatchUp>,
}

/// The name of a move's phase when its next step is `step` (`copying`: a destination is not a
/// voter yet; `before`: the phase seen last, kept while nothing is to be done).
fn phase_of(
    step: &daftka_core::reconfig::Step,
    copying: bool,
    before: Option<&'static str>,
) -> &'static str {
    use daftka_core::reconfig::Step;
    match step {
        Step::AddLearners(_) => "adding_learners",
        Step::Wait if copying => "catching_up",
        Step::Wait => before.unwrap_or("waiting"),
        Step::EnterJoint { .. } => "entering_joint",
        Step::TransferLeader(_) => "transferring_leadership",
        Step::LeaveJoint => "leaving_joint",
        Step::RemoveLearners(_) => "removing_learners",
        Step::Done => "finishing",
    }
}

/// A move as the leader carrying it out tracks it.
struct MoveTracking {
    target: Vec<u64>,
    phase: &'static str,
    /// The partition's stored bytes when this leader took the move up.
    bytes_total: u64,
    /// [`CatchUp::copied`] when it did.
    copied_before: u64,
}

/// What the Raft actor and its send filter share.
#[derive(Default)]
struct CatchUp {
    /// Raft ids of a move's destinations that are not voters yet: their appends and snapshots
    /// are throttled (`rebalance.move_bytes_per_sec`) and counted.
    peers: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    /// `peers` is not empty: the send filter of a group that is not moving reads only this.
    any: std::sync::atomic::AtomicBool,
    copied: std::sync::atomic::AtomicU64,
}

impl CatchUp {
    fn set_peers(&self, peers: std::collections::BTreeSet<u64>) {
        let mut now = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        self.any
            .store(!peers.is_empty(), std::sync::atomic::Ordering::Relaxed);
        *now = peers;
    }
    fn is_peer(&self, id: u64) -> bool {
        self.any.load(std::sync::atomic::Ordering::Relaxed)
            && self
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
    }
}

/// The send filter of a partition's group: appends and snapshots to a move's catching-up
/// replicas take their bytes from the node's move throttle (held back while it is empty, and
/// released on ticks), and are counted in `daftka_move_bytes_total`.
fn throttle_catch_up(
    ctx: Arc<NodeContext>,
    catch_up: Arc<CatchUp>,
) -> crate::consensus::SendFilter {
    use crate::consensus::Verdict;
    Box::new(move |m| {
        if !catch_up.is_peer(m.to) {
            return Verdict::Send;
        }
        let bytes = crate::consensus::payload_bytes(m);
        if bytes == 0 {
            return Verdict::Send;
        }
        if !ctx.move_throttle.take(bytes) {
            return Verdict::Hold;
        }
        catch_up
            .copied
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        ctx.metrics.move_bytes.inc_by(bytes);
        Verdict::Send
    })
}

#[derive(ractor_cluster::RactorMessage)]
pub enum RaftMsg {
    /// Appends one encoded batch ([`daftka_protocol::record::encode_batch`]); answers its base offset.
    /// Refused (`unavailable`, not proposed) once `deadline`, the caller's, has passed: nobody
    /// waits for the answer any more, and a producer that retried must not see it stored later.
    Propose {
        data: Vec<u8>,
        deadline: std::time::Instant,
        reply: RpcReplyPort<Result<u64, Error>>,
    },
    /// A peer's Raft message.
    /// Peers' Raft messages for this group; `taken` is answered once they are stepped (the
    /// sending node waits for it before its next batch: backpressure down to this mailbox).
    Step {
        messages: Vec<raft::eraftpb::Message>,
        taken: tokio::sync::oneshot::Sender<()>,
    },
    /// One tick of Raft's clock, from the node's ticker (not sent while the replica is quiet).
    Tick,
    /// Periodic work that does not need Raft's clock (retention), from the node's ticker.
    Housekeeping,
    ProcessReady,
    /// A move of this group is in flight towards the voters `target` (raft ids of the nodes
    /// `to`): the leader takes its next step, or reports it finished (from the Placement, on
    /// every metadata change and reconcile).
    Reconfigure {
        target: Vec<u64>,
        to: Vec<String>,
    },
    /// The group's members and move as this replica sees them; `not_leader` unless it leads.
    Status {
        reply: RpcReplyPort<Result<daftka_protocol::GroupStatus, Error>>,
    },
}

pub struct ReplicaRaft;

impl Actor for ReplicaRaft {
    type Msg = RaftMsg;
    type State = ReplicaRaftState;
    type Arguments = ReplicaRaftArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RaftMsg>,
        args: ReplicaRaftArgs,
    ) -> Result<ReplicaRaftState, ActorProcessingErr> {
        let ReplicaRaftArgs { ctx, replica } = args;
        // Not ready until this incarnation has applied what was committed (see process_ready).
        ctx.readiness.replica_recovering(replica.group);
        let storage = ctx.store.raft_storage(replica.group)?;
        let st = storage.apply_state();
        drop(storage);
        let machine = PartitionMachine {
            group: replica.group,
            reader: ctx.store.partition_reader(replica.group),
            position: LogPosition {
                applied_index: st.applied_index,
                next_offset: st.next_offset,
            },
            log_start_offset: st.log_start_offset,
            log_bytes: None,
        };
        let mut raft = RaftGroup::open(
            ctx.store.clone(),
            replica.group,
            ctx.raft_id,
            &replica.voters,
            &ctx.config.raft,
            machine,
            ctx.transport.clone(),
            None,
        )
        .await?;
        let histogram = ctx
            .metrics
            .append_latency
            .with_label_values(&[replica.topic.as_str()]);
        raft.set_latency_observer(Box::new(move |d| histogram.observe(d.as_secs_f64())));
        let (c, r) = (ctx.clone(), replica.clone());
        raft.set_apply_observer(Box::new(move |m, leader| publish(&c, &r, m, leader)));
        let catch_up = Arc::new(CatchUp::default());
        raft.set_send_filter(throttle_catch_up(ctx.clone(), catch_up.clone()));
        let ticker = ctx.ticker.register(replica.group, myself.clone());
        let balance_every = super::ticker::ticks_per(
            ctx.config.raft.leader_balance_interval,
            ctx.config.raft.tick,
        );
        let mut state = ReplicaRaftState {
            ctx,
            replica,
            raft,
            proposals_in_round: 0,
            reported_leader: false,
            balance_every,
            ticks: 0,
            finishing: None,
            ticker,
            moving: None,
            catch_up,
        };
        state.publish_high_watermark();
        if state.raft.recovered() {
            state.ctx.readiness.replica_ready(state.replica.group);
        }
        queue_round(&myself, &mut state.raft);
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RaftMsg>,
        state: &mut ReplicaRaftState,
    ) -> Result<(), ActorProcessingErr> {
        state
            .ctx
            .ticker
            .unregister(state.replica.group, myself.get_id());
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RaftMsg>,
        msg: RaftMsg,
        state: &mut ReplicaRaftState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RaftMsg::Propose {
                data,
                deadline,
                reply,
            } => {
                if std::time::Instant::now() >= deadline {
                    let _ = reply.send(Err(Error::unavailable(
                        "the request's deadline passed before it was proposed",
                    )));
                    return Ok(());
                }
                if state.proposals_in_round >= state.ctx.config.raft.proposals_per_round_max {
                    // Cap a round: persist what we have before taking more.
                    state.process_ready().await?;
                }
                state.raft.propose(data, reply);
                state.proposals_in_round += 1;
                queue_round(&myself, &mut state.raft);
            }
            RaftMsg::Step { messages, taken } => {
                for m in messages {
                    state.raft.step(m);
                }
                queue_round(&myself, &mut state.raft);
                let _ = taken.send(());
            }
            RaftMsg::Tick => {
                state.ticks += 1;
                // The first replica the metadata lists is the preferred leader (placement's
                // choice; a move gives a replaced replica's turn to its replacement).
                if state.ticks.is_multiple_of(state.balance_every) {
                    if let Some(preferred) = state.preferred_leader() {
                        if state.raft.transfer_to(preferred) {
                            tracing::info!(group = %state.replica.group, "handing leadership back to the preferred leader");
                        }
                    }
                }
                state.raft.release_held();
                if state.raft.tick() {
                    let _ = myself.cast(RaftMsg::ProcessReady);
                }
            }
            RaftMsg::Housekeeping => {
                // A pass that hit its row bound goes on at once, after what is queued.
                if state.enforce_retention().await? {
                    let _ = myself.cast(RaftMsg::Housekeeping);
                }
            }
            RaftMsg::Reconfigure { target, to } => {
                state.reconfigure(&target, to)?;
                queue_round(&myself, &mut state.raft);
            }
            RaftMsg::Status { reply } => {
                let _ = reply.send(state.status());
            }
            RaftMsg::ProcessReady => {
                state.process_ready().await?;
                queue_round(&myself, &mut state.raft);
            }
        }
        Ok(())
    }
}

impl ReplicaRaftState {
    /// The raft id of the partition's preferred leader: its first replica in the metadata.
    fn preferred_leader(&self) -> Option<u64> {
        let view = self.ctx.metadata_view();
        let (_, p) = view.state.partition_by_group(self.replica.group).ok()?;
        let first = p.replicas.first()?;
        view.state.nodes.get(first).map(|n| n.raft_id)
    }

    /// A move's next step, if this replica leads: a configuration change or a leader transfer,
    /// or once the configuration is the destination, the report that the move is finished.
    fn reconfigure(&mut self, target: &[u64], to: Vec<String>) -> Result<(), ActorProcessingErr> {
        use daftka_core::reconfig::Step;
        let group = self.replica.group;
        let step = self
            .raft
            .move_step(target, self.ctx.config.rebalance.catch_up_entries);
        self.track_move(target, &step)?;
        match step {
            Step::Wait => {}
            Step::Done => {
                let now = std::time::Instant::now();
                let resend = self.ctx.config.router.request_timeout;
                if self
                    .finishing
                    .is_some_and(|at| now.duration_since(at) < resend)
                {
                    return Ok(());
                }
                self.finishing = Some(now);
                let partition = format!("{}/{}", self.replica.topic, self.replica.partition);
                tracing::info!(%partition, %group, ?to, "move finished: the group's voters are its new replicas");
                let ctx = self.ctx.clone();
                tokio::spawn(async move {
                    let cmd = daftka_core::metadata::MetadataCommand::FinishMove { group, to };
                    if let Err(e) = crate::metadata::propose(&ctx, cmd).await {
                        tracing::debug!(%group, error = %e, "reporting a finished move failed; reported again later");
                    }
                });
            }
            step => {
                tracing::info!(partition = %format!("{}/{}", self.replica.topic, self.replica.partition), %group, ?step, "move step");
                if let Err(e) = self.raft.take_step(&step) {
                    tracing::debug!(%group, error = %e, "move step refused; tried again later");
                }
            }
        }
        Ok(())
    }

    /// Follows the move this leader carries out: its phase, the learners whose catch-up is
    /// throttled and counted, and the partition's bytes when it took the move up.
    fn track_move(
        &mut self,
        target: &[u64],
        step: &daftka_core::reconfig::Step,
    ) -> Result<(), ActorProcessingErr> {
        if !self.raft.is_leader() {
            self.moving = None;
            self.catch_up.set_peers(Default::default());
            return Ok(());
        }
        let conf = self.raft.conf_state();
        let catching_up: std::collections::BTreeSet<u64> = target
            .iter()
            .copied()
            .filter(|id| !conf.voters.contains(id))
            .collect();
        let phase = phase_of(
            step,
            !catching_up.is_empty(),
            self.moving.as_ref().map(|m| m.phase),
        );
        self.catch_up.set_peers(catching_up);
        match &mut self.moving {
            Some(m) if m.target == target => m.phase = phase,
            _ => {
                let bytes_total = self.raft.machine.count_log_bytes()?;
                self.moving = Some(MoveTracking {
                    target: target.to_vec(),
                    phase,
                    bytes_total,
                    copied_before: self
                        .catch_up
                        .copied
                        .load(std::sync::atomic::Ordering::Relaxed),
                });
            }
        }
        Ok(())
    }

    /// The group as this leader sees it (`not_leader` on a follower: the caller asks the leader).
    fn status(&self) -> Result<daftka_protocol::GroupStatus, Error> {
        if !self.raft.is_leader() {
            return Err(Error::not_leader("the group status comes from its leader"));
        }
        let me = self.raft.id();
        let moving = self.moving.as_ref().map(|m| daftka_protocol::MoveStatus {
            // As the applied configuration stands now, not as at the last nudge.
            phase: {
                let step = self
                    .raft
                    .move_step(&m.target, self.ctx.config.rebalance.catch_up_entries);
                let conf = self.raft.conf_state();
                let copying = m.target.iter().any(|id| !conf.voters.contains(id));
                phase_of(&step, copying, Some(m.phase)).to_string()
            },
            bytes_copied: self
                .catch_up
                .copied
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(m.copied_before),
            bytes_total: m.bytes_total,
        });
        Ok(daftka_protocol::GroupStatus {
            last_index: self.raft.last_index(),
            members: self
                .raft
                .members()
                .into_iter()
                .map(
                    |(raft_id, learner, matched, active)| daftka_protocol::MemberStatus {
                        raft_id,
                        leader: raft_id == me,
                        learner,
                        matched,
                        active: active || raft_id == me,
                    },
                )
                .collect(),
            moving,
        })
    }

    async fn process_ready(&mut self) -> Result<(), ActorProcessingErr> {
        self.proposals_in_round = 0;
        let outcome = self.raft.on_ready().await?;
        let label = self.raft.group().to_string();
        if let Some((_, leads)) = outcome.leader_changed {
            self.ctx
                .metrics
                .raft_leader_changes
                .with_label_values(&[label.as_str()])
                .inc();
            self.ctx
                .metrics
                .raft_term
                .with_label_values(&[label.as_str()])
                .set(self.raft.term() as i64);
            if !leads {
                self.reported_leader = false;
            }
        }
        if outcome.state_changed() || outcome.leader_changed.is_some() {
            self.publish_high_watermark();
        }
        if outcome.restored.is_some() {
            self.count_snapshot("installed");
        }
        if self.raft.recovered() {
            self.ctx.readiness.replica_ready(self.replica.group);
        }
        if self.raft.is_leader() && !self.reported_leader {
            self.reported_leader = true;
            crate::metadata::report_leader(&self.ctx, self.replica.group);
        }
        // Role and configuration only change in a round: whether the replica needs the clock
        // is decided here.
        self.ticker.set_quiet(self.raft.is_sole_leader());
        Ok(())
    }

    /// Deletes the oldest batches while the partition holds more than its retention bytes, and
    /// those whose records are all past its retention time (the topic's own settings, else
    /// `topics.retention_bytes` and `topics.retention_time`): the log is compacted up to the last
    /// of them, with a snapshot of the position there (which a follower behind it installs), and
    /// the log start offset moves past them. True when the pass stopped at its row bound
    /// (`RETENTION_ROWS_MAX`) and more may go.
    async fn enforce_retention(&mut self) -> Result<bool, ActorProcessingErr> {
        let cfg = &self.ctx.config.topics;
        let settings = {
            let view = self.ctx.metadata_view();
            view.state
                .partition_by_group(self.replica.group)
                .ok()
                .and_then(|(topic, _)| view.state.topic_settings.get(&topic).copied())
                .unwrap_or_default()
        };
        let time_ms = settings
            .retention_time_ms
            .unwrap_or(u64::try_from(cfg.retention_time.as_millis()).unwrap_or(u64::MAX));
        let older_than = now_ms().saturating_sub(i64::try_from(time_ms).unwrap_or(i64::MAX));
        let bytes_max = settings
            .retention_bytes
            .or((cfg.retention_bytes > 0).then_some(cfg.retention_bytes));
        let m = &mut self.raft.machine;
        let drop_bytes = match bytes_max {
            Some(max) => m.count_log_bytes()?.saturating_sub(max),
            None => 0,
        };
        let cut = m.reader.retention_cut(
            m.log_start_offset,
            m.position.next_offset,
            older_than,
            drop_bytes,
            RETENTION_ROWS_MAX,
        )?;
        let Some(cut) = cut else { return Ok(false) };
        let more = cut.removed_rows.len() >= RETENTION_ROWS_MAX;
        let snapshot = ApplyState {
            applied_index: cut.raft_index,
            next_offset: cut.log_start_offset,
            log_start_offset: cut.log_start_offset,
        };
        let data = postcard::to_allocvec(&snapshot)?;
        let mut batch = WriteBatch::default();
        batch.remove_index_rows(self.replica.group, &cut.removed_rows);
        let mut state = self.raft.machine.apply_state();
        state.log_start_offset = cut.log_start_offset;
        batch.set_apply_state(self.replica.group, &state);
        if !self.raft.compact_to(cut.raft_index, data, batch).await? {
            return Ok(false);
        }
        self.raft.machine.log_start_offset = cut.log_start_offset;
        if let Some(total) = &mut self.raft.machine.log_bytes {
            *total = total.saturating_sub(cut.bytes);
        }
        self.count_snapshot("stored");
        tracing::info!(group = %self.replica.group, log_start_offset = cut.log_start_offset, "retention deleted old records");
        self.publish_high_watermark();
        Ok(more)
    }

    fn count_snapshot(&self, event: &str) {
        let group = self.replica.group.to_string();
        self.ctx
            .metrics
            .raft_snapshots
            .with_label_values(&[group.as_str(), event])
            .inc();
    }

    fn publish_high_watermark(&self) {
        publish(
            &self.ctx,
            &self.replica,
            &self.raft.machine.view(),
            self.raft.is_leader(),
        );
    }
}

/// Tells the Reader actor (and the metrics) the applied high watermark and whether this replica
/// leads. Called after every apply, before the proposers are answered: a producer that reads
/// right after its acknowledgement finds its records.
fn publish(ctx: &NodeContext, replica: &ReplicaId, at: &Positions, leader: bool) {
    let hwm = at.high_watermark;
    let partition = replica.partition.to_string();
    ctx.metrics
        .high_watermark
        .with_label_values(&[replica.topic.as_str(), partition.as_str()])
        .set(hwm as i64);
    if let Some(cell) = ractor::registry::where_is(names::replica_reader(&ctx.node, replica.group))
    {
        let storage: ActorRef<ReaderMsg> = cell.into();
        // The Reader actor is a sibling under one_for_all: if it is gone, we are going too.
        let _ = storage.cast(ReaderMsg::Applied {
            high_watermark: hwm,
            log_start_offset: at.log_start_offset,
            leader,
        });
    }
}

/// Queues a `ProcessReady` if the group has work and none is queued yet. Failing to send to
/// ourselves means we are stopping: nothing to queue.
fn queue_round<M: crate::consensus::StateMachine<Batch = WriteBatch>>(
    myself: &ActorRef<RaftMsg>,
    raft: &mut RaftGroup<M>,
) {
    if raft.wants_round() {
        let _ = myself.cast(RaftMsg::ProcessReady);
    }
}

#[cfg(test)]
mod tests {
    use daftka_core::config::RaftConfig;
    use daftka_protocol::record::encode_batch;
    use daftka_protocol::{GroupId, Record};
    use daftka_storage::{Store, StoreOptions};
    use raft::eraftpb::Message;

    use super::*;
    use crate::consensus::RaftTransport;

    /// A transport for a group of one: there is nobody to send to.
    struct Alone;

    impl RaftTransport for Alone {
        fn send(&self, _group: GroupId, messages: Vec<Message>) {
            assert!(messages.is_empty(), "a group of one sent {messages:?}");
        }
    }

    const GROUP: GroupId = GroupId(7);

    async fn open(store: &Store) -> RaftGroup<PartitionMachine> {
        let st = store.raft_storage(GROUP).unwrap().apply_state();
        let machine = PartitionMachine {
            group: GROUP,
            reader: store.partition_reader(GROUP),
            position: LogPosition {
                applied_index: st.applied_index,
                next_offset: st.next_offset,
            },
            log_start_offset: st.log_start_offset,
            log_bytes: None,
        };
        let cfg = RaftConfig::default();
        RaftGroup::open(
            store.clone(),
            GROUP,
            1,
            &[1],
            &cfg,
            machine,
            Arc::new(Alone),
            None,
        )
        .await
        .unwrap()
    }

    /// A sole voter's round writes its entries, their offset index rows and its apply position
    /// in ONE storage write, answers the proposer from it, and the position
    /// is there after a restart.
    #[tokio::test]
    async fn sole_voter_applies_with_its_append() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut raft = open(&store).await;
        while raft.raw.has_ready() {
            raft.on_ready().await.unwrap();
        }
        assert!(raft.is_sole_leader());
        let before = raft.machine.position;

        let records = (0..3)
            .map(|i| Record::from_value(format!("v{i}")))
            .collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        raft.propose(encode_batch(records).unwrap(), tx.into());
        let writes_before = store.writes();
        raft.on_ready().await.unwrap();
        assert_eq!(store.writes() - writes_before, 1);
        let base = rx.await.unwrap().unwrap();
        assert_eq!(base, before.next_offset);
        assert_eq!(raft.machine.position.next_offset, base + 3);
        let index = raft.machine.position.applied_index;
        assert!(index > before.applied_index);
        // raft-rs hands the entry over as committed after the write: it is not applied again.
        while raft.raw.has_ready() {
            raft.on_ready().await.unwrap();
        }
        assert_eq!(raft.machine.position.next_offset, base + 3);
        assert_eq!(store.writes() - writes_before, 1);
        // Applied entries do not linger in the storage's in-memory tail.
        assert_eq!(raft.raw.store().tail_len(), 0);

        drop(raft);
        drop(store);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let storage = store.raft_storage(GROUP).unwrap();
        let st = storage.apply_state();
        assert_eq!((st.applied_index, st.next_offset), (index, base + 3));
        assert!(storage.hard_state().commit >= index);
        drop(storage);
        let read = store
            .partition_reader(GROUP)
            .read(base, base + 3, 10, 1 << 20)
            .unwrap();
        assert_eq!(read.len(), 3);
        let mut raft = open(&store).await;
        while raft.raw.has_ready() {
            raft.on_ready().await.unwrap();
        }
        assert_eq!(raft.machine.position.next_offset, base + 3);
    }
}
