//! Metadata: the node's replica of the metadata Raft group (group 0) and its state machine.
//!
//! Parent: MetadataSup (rest_for_one), under Root. Registered as `names::metadata(node)`.
//! Messages in: [`MetadataMsg::Propose`] (a [`MetadataCommand`], answered with its
//! [`MetadataEvent`] once committed and applied, or its rejection), `Tick`, `Step` from peers.
//! Out: after every round it publishes a [`MetadataView`] on the node's watch channel; the Router and
//! the Placement read it.
//!
//! # Membership of the group
//! A node started without seeds bootstraps the group as its only voter. A node with seeds starts
//! with an empty group and registers itself ([`MetadataCommand::RegisterNode`]) through any node it
//! can reach; the leader then adds every registered node that is not in the group yet, one
//! configuration change at a time: as a voter if it is one of the metadata voters
//! (`cluster.metadata_voters`, or the first three nodes), else as a learner. The new
//! member receives a snapshot, which carries the configuration, and then the log.
//!
//! # Snapshots
//! The state machine is kept in memory. Every `raft.snapshot_entries` applied entries (and
//! whenever a follower needs one) it is encoded into the group's snapshot and the log is compacted
//! up to it; at start the node restores the stored snapshot and replays only the log after it.
//!
//! # Invariants
//! - The published view is flagged `loaded` only once this node is a member of the group and has
//!   applied every entry committed before the start: nobody acts on a half-replayed state.
//! - Only the leader proposes configuration changes, and at most one is pending.
//!
//! # Crash and recovery
//! A kill loses only the in-memory state and the waiting proposers (who see their reply drop); the
//! restarted actor restores the snapshot, replays the log and publishes again.

use std::sync::Arc;

use std::time::Instant;

use daftka_core::config::METADATA_VOTERS_DEFAULT;
use daftka_core::metadata::{
    decode_command, encode_command, Applied, MetadataCommand, MetadataEvent, MetadataLimits,
    MetadataState,
};
use daftka_protocol::{names, Error, GroupId, Wire};
use daftka_storage::WriteBatch;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::consensus::{RaftGroup, StateMachine};
use crate::context::{MetadataView, NodeContext};
use crate::supervision::{child, ChildSpec, Restart, Strategy, SupervisorArgs};

/// The metadata state machine as the Raft driver sees it.
pub struct MetadataMachine {
    pub state: MetadataState,
    limits: MetadataLimits,
    applied: u64,
}

impl StateMachine for MetadataMachine {
    type Batch = WriteBatch;
    type Output = Applied;
    /// The actor publishes the whole view after a round instead (`MetadataActorState::publish`).
    type View = ();

    fn apply_entry(
        &mut self,
        index: u64,
        data: &[u8],
        _batch: &mut WriteBatch,
    ) -> Result<Applied, Error> {
        let cmd = decode_command(data)?;
        let event = self.state.apply(cmd, self.limits)?;
        Ok(Applied { index, event })
    }

    fn finish_round(&mut self, applied_index: u64, _batch: &mut WriteBatch) {
        self.applied = self.applied.max(applied_index);
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn snapshot(&self) -> Result<Vec<u8>, Error> {
        self.state.encode_snapshot()
    }

    fn restore(&mut self, index: u64, data: &[u8], _batch: &mut WriteBatch) -> Result<(), Error> {
        self.state = MetadataState::decode_snapshot(data)?;
        self.applied = index;
        Ok(())
    }

    fn view(&self) {}
}

pub struct MetadataArgs {
    pub ctx: Arc<NodeContext>,
}

pub struct MetadataActorState {
    ctx: Arc<NodeContext>,
    raft: RaftGroup<MetadataMachine>,
    tick: Option<tokio::task::JoinHandle<()>>,
    ticks: u64,
    /// A founding check (asking the peers whether they are members) is running.
    founding_check: bool,
    /// Since when this node leads the group (it expires no group member before leading for as
    /// long as that member's session timeout: heartbeats may have failed during the election).
    leader_since: Option<Instant>,
    /// When the group members' sessions were last checked.
    expiry_checked: Instant,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum MetadataMsg {
    Propose {
        command: MetadataCommand,
        reply: RpcReplyPort<Result<Applied, Error>>,
    },
    /// Peers' Raft messages for this group; `taken` is answered once they are stepped (the
    /// sending node waits for it before its next batch: backpressure down to this mailbox).
    Step {
        messages: Vec<raft::eraftpb::Message>,
        taken: tokio::sync::oneshot::Sender<()>,
    },
    Tick,
    ProcessReady,
    /// The founding rule chose this node: bootstrap the group with it as the only voter.
    Found,
    FoundingCheckDone,
}

/// Ticks between two founding checks of a node that is not a member yet.
pub const FOUNDING_CHECK_TICKS: u64 = 10;

pub struct Metadata;

/// Opens the node's replica of the metadata group with `voters` (empty: join an existing group).
async fn open_group(
    ctx: &NodeContext,
    voters: &[u64],
) -> Result<RaftGroup<MetadataMachine>, ActorProcessingErr> {
    let machine = MetadataMachine {
        state: MetadataState::default(),
        limits: MetadataLimits {
            partitions_per_topic_max: ctx.config.topics.partitions_max,
        },
        applied: 0,
    };
    Ok(RaftGroup::open(
        ctx.store.clone(),
        GroupId::METADATA,
        ctx.raft_id,
        voters,
        &ctx.config.raft,
        machine,
        ctx.transport.clone(),
        Some(ctx.config.raft.snapshot_entries),
    )
    .await?)
}

impl Actor for Metadata {
    type Msg = MetadataMsg;
    type State = MetadataActorState;
    type Arguments = MetadataArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MetadataMsg>,
        args: MetadataArgs,
    ) -> Result<MetadataActorState, ActorProcessingErr> {
        let ctx = args.ctx;
        ctx.readiness.set_metadata_loaded(false);
        // A node that joins nobody founds the group at once; one with seeds joins, or founds it
        // later by the founding rule (see `maybe_found`).
        let voters = if ctx.config.node.seeds.is_empty() {
            vec![ctx.raft_id]
        } else {
            vec![]
        };
        let raft = open_group(&ctx, &voters).await?;
        let tick = myself.send_interval(ctx.config.raft.tick, || MetadataMsg::Tick);
        let mut state = MetadataActorState {
            ctx,
            raft,
            tick: Some(tick),
            ticks: 0,
            founding_check: false,
            leader_since: None,
            expiry_checked: Instant::now(),
        };
        queue_round(&myself, &mut state.raft);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<MetadataMsg>,
        state: &mut MetadataActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.tick.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<MetadataMsg>,
        msg: MetadataMsg,
        state: &mut MetadataActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MetadataMsg::Propose { command, reply } => match encode_command(&command) {
                Ok(data) => {
                    state.raft.propose(data, reply);
                    queue_round(&myself, &mut state.raft);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            MetadataMsg::Step { messages, taken } => {
                for m in messages {
                    state.raft.step(m);
                }
                queue_round(&myself, &mut state.raft);
                let _ = taken.send(());
            }
            MetadataMsg::Tick => {
                state.ticks += 1;
                if state.ticks.is_multiple_of(FOUNDING_CHECK_TICKS) {
                    state.maybe_found(&myself);
                }
                state.add_members();
                state.expire_group_members();
                if state.raft.tick() {
                    let _ = myself.cast(MetadataMsg::ProcessReady);
                }
            }
            MetadataMsg::FoundingCheckDone => state.founding_check = false,
            MetadataMsg::Found => {
                if state.raft.conf_state().voters.is_empty() && !state.raft.is_member() {
                    tracing::info!(node = %state.ctx.node, "founding the cluster's metadata group");
                    state.raft = open_group(&state.ctx, &[state.ctx.raft_id]).await?;
                    queue_round(&myself, &mut state.raft);
                }
            }
            MetadataMsg::ProcessReady => {
                let outcome = state.raft.on_ready().await?;
                if outcome.leader_changed.is_some() {
                    let group = GroupId::METADATA.to_string();
                    let m = &state.ctx.metrics;
                    m.raft_leader_changes
                        .with_label_values(&[group.as_str()])
                        .inc();
                    m.raft_term
                        .with_label_values(&[group.as_str()])
                        .set(state.raft.term() as i64);
                }
                if outcome.state_changed() || outcome.leader_changed.is_some() {
                    state.publish();
                }
                let group = GroupId::METADATA.to_string();
                for (happened, event) in [
                    (outcome.restored.is_some(), "installed"),
                    (outcome.compacted, "stored"),
                ] {
                    if happened {
                        state
                            .ctx
                            .metrics
                            .raft_snapshots
                            .with_label_values(&[group.as_str(), event])
                            .inc();
                    }
                }
                state.add_members();
                queue_round(&myself, &mut state.raft);
            }
        }
        Ok(())
    }
}

impl MetadataActorState {
    /// The founding rule, for a node started with seeds that is in no metadata group yet: once
    /// every seed is connected, it asks every reachable node whether it is a member of a group.
    /// If none is and this node's name is the smallest among them, it founds the group (the
    /// others then join it). So `--seeds` may name each other on every node, and exactly one
    /// founds. A node whose peers include a member joins through it instead.
    fn maybe_found(&mut self, myself: &ActorRef<MetadataMsg>) {
        let ctx = &self.ctx;
        if self.founding_check
            || ctx.config.node.seeds.is_empty()
            || self.raft.is_member()
            || !self.raft.conf_state().voters.is_empty()
        {
            return;
        }
        let seeds = ctx.membership.borrow().seeds.clone();
        if seeds.is_empty() || !seeds.iter().all(|s| s.connected) {
            return;
        }
        self.founding_check = true;
        let (ctx, myself) = (ctx.clone(), myself.clone());
        tokio::spawn(async move {
            let mut smallest = true;
            let mut any_member = false;
            let peers = crate::cluster::peer::other_peers(&ctx);
            let mut answered = 0usize;
            for peer in &peers {
                let status = daftka_protocol::rpc::call(
                    peer,
                    |reply| crate::cluster::peer::PeerMsg::Status { reply },
                    ctx.config.router.request_timeout,
                    "a peer",
                )
                .await;
                match status {
                    Ok(s) => {
                        answered += 1;
                        any_member |= s.member;
                        smallest &= ctx.node < s.node;
                    }
                    Err(_) => smallest = false,
                }
            }
            if answered > 0 && smallest && !any_member {
                let _ = myself.cast(MetadataMsg::Found);
            }
            let _ = myself.cast(MetadataMsg::FoundingCheckDone);
        });
    }

    /// On the leader, with no change pending: the group's next membership change
    /// ([`daftka_core::reconfig::metadata_step`]): members of removed nodes leave, registered
    /// nodes join (voters while the group has fewer than `cluster.metadata_voters` or three, else
    /// learners), a voter down past `rebalance.node_down_timeout` is replaced by a caught-up
    /// learner and then demoted.
    fn add_members(&mut self) {
        use daftka_core::reconfig::{metadata_step, Follower, MetaChange, MetaMembers};
        use raft::eraftpb::ConfChangeType;
        if !self.raft.is_leader() || self.raft.conf_change_pending() {
            return;
        }
        let cs = self.raft.conf_state();
        let listed = &self.ctx.config.cluster.metadata_voters;
        let state = &self.raft.machine.state;
        let registered: Vec<(u64, bool)> = state
            .nodes
            .values()
            .map(|n| (n.raft_id, listed.is_empty() || listed.contains(&n.name)))
            .collect();
        let dead: std::collections::BTreeSet<u64> = self
            .ctx
            .dead_nodes
            .borrow()
            .iter()
            .filter_map(|n| state.nodes.get(n).map(|m| m.raft_id))
            .collect();
        let members = MetaMembers {
            leader: self.raft.id(),
            conf: &cs,
            registered: &registered,
            removed: &state.retired_raft_ids,
            dead: &dead,
            voters_wanted: if listed.is_empty() {
                METADATA_VOTERS_DEFAULT
            } else {
                listed.len()
            },
        };
        let last = self.raft.last_index();
        let step = metadata_step(&members, |id| {
            self.raft
                .progress(id)
                .map(|(matched, replicating)| Follower {
                    matched,
                    replicating: replicating
                        && matched + self.ctx.config.rebalance.catch_up_entries >= last,
                })
        });
        let Some(step) = step else { return };
        let name = |id: u64| {
            state
                .nodes
                .values()
                .find(|n| n.raft_id == id)
                .map_or_else(|| format!("raft id {id}"), |n| n.name.clone())
        };
        let (id, change, what) = match step {
            MetaChange::TransferLeader(id) => {
                tracing::info!(to = %name(id), "the metadata leader's node was removed: handing leadership over");
                self.raft.transfer_to(id);
                return;
            }
            MetaChange::Add { id, voter: true } => (id, ConfChangeType::AddNode, "adding a voter"),
            MetaChange::Add { id, voter: false } => {
                (id, ConfChangeType::AddLearnerNode, "adding a learner")
            }
            MetaChange::Remove(id) => (id, ConfChangeType::RemoveNode, "removing a removed node"),
            MetaChange::Promote(id) => (
                id,
                ConfChangeType::AddNode,
                "promoting a learner: the group is short of live voters",
            ),
            MetaChange::Demote(id) => (
                id,
                ConfChangeType::AddLearnerNode,
                "demoting a voter down past rebalance.node_down_timeout",
            ),
        };
        let who = name(id);
        let mut cc = raft::eraftpb::ConfChange {
            node_id: id,
            ..Default::default()
        };
        cc.set_change_type(change);
        match self.raft.propose_conf_change(cc) {
            Ok(()) => tracing::info!(node = %who, "metadata group: {what}"),
            Err(e) => {
                tracing::debug!(node = %who, error = %e, "metadata membership change deferred")
            }
        }
    }

    /// On the leader, every `groups.expiry_check_interval`: proposes removing the group members
    /// whose session timed out. Apply checks again against the group clock, so a heartbeat
    /// that commits first keeps its member.
    fn expire_group_members(&mut self) {
        if !self.raft.is_leader() {
            self.leader_since = None;
            return;
        }
        let now = Instant::now();
        let since = *self.leader_since.get_or_insert(now);
        if now.duration_since(self.expiry_checked) < self.ctx.config.groups.expiry_check_interval {
            return;
        }
        self.expiry_checked = now;
        let led_ms = u64::try_from(now.duration_since(since).as_millis()).unwrap_or(u64::MAX);
        let wall_ms = wall_clock_ms();
        let state = &self.raft.machine.state;
        let expiries: Vec<MetadataCommand> = state
            .expired_members(wall_ms)
            .into_iter()
            .filter_map(|(group, members)| {
                let g = state.groups.get(&group)?;
                let members: Vec<String> = members
                    .into_iter()
                    .filter(|id| {
                        g.members
                            .get(id)
                            .is_some_and(|m| m.session_timeout_ms <= led_ms)
                    })
                    .collect();
                (!members.is_empty()).then(|| {
                    tracing::info!(%group, ?members, "group members missed their session timeout");
                    MetadataCommand::Group {
                        group,
                        command: daftka_core::groups::GroupCommand::Expire { members },
                        now_ms: wall_ms,
                    }
                })
            })
            .collect();
        for command in expiries {
            match encode_command(&command) {
                // Nobody waits for the outcome: a failed expiry is proposed again next check.
                Ok(data) => {
                    let (reply, _) = ractor::concurrency::oneshot();
                    self.raft.propose(data, reply.into());
                }
                Err(e) => tracing::warn!(error = %e, "group expiry not proposed"),
            }
        }
    }

    fn publish(&self) {
        let st = &self.raft.machine.state;
        let loaded = self.raft.recovered() && self.raft.is_member();
        tracing::trace!(node = %self.ctx.node, loaded, conf = ?self.raft.conf_state(), applied = self.raft.machine.applied, leader = self.raft.leader_id(), "metadata published");
        let leader_id = self.raft.leader_id();
        let leader = st
            .nodes
            .values()
            .find(|n| n.raft_id == leader_id)
            .map(|n| n.name.clone())
            .or_else(|| (leader_id == self.ctx.raft_id).then(|| self.ctx.node.clone()));
        let conf = self.raft.conf_state();
        self.ctx.metadata.send_replace(MetadataView {
            state: Arc::new(st.clone()),
            loaded,
            leader,
            applied: self.raft.machine.applied,
            voters: conf.voters,
            learners: conf.learners,
        });
        // Ready once the log is replayed and this node is registered (placement needs it).
        self.ctx
            .readiness
            .set_metadata_loaded(loaded && st.nodes.contains_key(&self.ctx.node));
    }
}

/// Milliseconds since the Unix epoch: the time group commands are stamped with.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Proposes `command` to this node's Metadata actor, which takes it only if it leads the group.
pub async fn propose_local(ctx: &NodeContext, command: MetadataCommand) -> Result<Applied, Error> {
    daftka_protocol::rpc::call_named(
        &names::metadata(&ctx.node),
        |reply| MetadataMsg::Propose { command, reply },
        ctx.config.router.request_timeout,
        "metadata",
    )
    .await
}

/// Proposes `command` to the metadata group through its leader, wherever it runs: this node's
/// Metadata actor when it leads, else the leader's node when the view names it, else (on a node
/// that joins through seeds and knows no leader yet) any node this one can reach. Retried with backoff while
/// the answer says the command was not taken (`not_leader`, `unavailable`), until the request
/// deadline; an unknown outcome (`timeout`) is returned, never retried.
pub async fn propose(ctx: &NodeContext, command: MetadataCommand) -> Result<MetadataEvent, Error> {
    let cfg = &ctx.config.router;
    let deadline = Instant::now() + cfg.request_timeout;
    if ctx.membership.borrow().minority {
        return Err(Error::unavailable(
            "this node is cut off from the majority of the cluster: the metadata cannot change through it",
        ));
    }
    let attempt = |n: usize| {
        let command = command.clone();
        async move {
            match ctx.metadata_view().leader.as_deref() {
                Some(leader) if leader == ctx.node => propose_local(ctx, command).await,
                Some(leader) => propose_at(ctx, leader, command).await,
                // A founder is a member from the start: it waits for the election instead of
                // asking whoever it can reach (in a process hosting several clusters, not its own).
                None if ctx.config.node.seeds.is_empty() => {
                    Err(Error::unavailable("no metadata leader is elected yet"))
                }
                None => {
                    let peers = crate::cluster::peer::other_peers(ctx);
                    match peers.get(n % peers.len().max(1)) {
                        Some(peer) => propose_via(ctx, peer, command).await,
                        None => Err(Error::unavailable(
                            "no metadata leader is known or reachable",
                        )),
                    }
                }
            }
        }
    };
    let applied = daftka_protocol::rpc::retry_not_taken(
        deadline,
        cfg.retry_backoff_min,
        cfg.retry_backoff_max,
        |_| true,
        attempt,
    )
    .await?;
    // Read your writes through this node: wait (within the deadline) until its own copy has
    // applied the command too. The command is committed either way.
    let until = tokio::time::Instant::from_std(deadline);
    ctx.wait_metadata(until, |v| (v.applied >= applied.index).then_some(()))
        .await;
    Ok(applied.event)
}

/// Proposes through node `node` (the leader as this node knows it), unless the heartbeat says it
/// is unresponsive.
async fn propose_at(
    ctx: &NodeContext,
    node: &str,
    command: MetadataCommand,
) -> Result<Applied, Error> {
    crate::cluster::peer::call_peer(
        ctx,
        node,
        |reply| crate::cluster::peer::PeerMsg::ProposeMetadata {
            command: Wire::ok(command),
            reply,
        },
        ctx.config.router.request_timeout,
        "the metadata leader",
        crate::cluster::peer::Abandon::OutcomeUnknown,
    )
    .await
}

async fn propose_via(
    ctx: &NodeContext,
    peer: &ActorRef<crate::cluster::peer::PeerMsg>,
    command: MetadataCommand,
) -> Result<Applied, Error> {
    daftka_protocol::rpc::call(
        peer,
        |reply| crate::cluster::peer::PeerMsg::ProposeMetadata {
            command: Wire::ok(command),
            reply,
        },
        ctx.config.router.request_timeout,
        "the metadata leader",
    )
    .await
}

/// Most attempts to record one leader report.
pub const LEADER_REPORT_ATTEMPTS_MAX: usize = 20;

/// Reports this node as the leader of partition group `group`, in the background (best effort:
/// retried with backoff on retryable errors; leadership in the metadata is only a routing
/// hint).
pub fn report_leader(ctx: &Arc<NodeContext>, group: GroupId) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut backoff = ctx.config.router.retry_backoff_min;
        // Bounded: a report that keeps failing is given up; the next election reports again.
        for _ in 0..LEADER_REPORT_ATTEMPTS_MAX {
            let cmd = MetadataCommand::SetLeader {
                group,
                leader: ctx.node.clone(),
            };
            match propose(&ctx, cmd).await {
                Ok(_) => return,
                Err(e) if e.retryable() => {
                    tracing::debug!(%group, error = %e, "leader report retried");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ctx.config.router.retry_backoff_max);
                }
                Err(e) => {
                    tracing::warn!(%group, error = %e, "leader report refused");
                    return;
                }
            }
        }
    });
}

/// MetadataSup (rest_for_one) with the Metadata actor, as a child of the Root.
/// rest_for_one: children added after the Metadata actor depend on it and restart after it.
pub fn spec(ctx: Arc<NodeContext>) -> ChildSpec {
    let node = ctx.node.clone();
    let c = ctx.clone();
    let metadata = child(
        "metadata",
        Restart::Permanent,
        Some(names::metadata(&node)),
        move || (Metadata, MetadataArgs { ctx: c.clone() }),
    );
    let policy = ctx.config.restart_policy();
    let on_restart = crate::root::restart_counter(&ctx);
    crate::supervision::supervisor_child(
        "metadata_sup",
        Restart::Permanent,
        Some(names::metadata_sup(&node)),
        SupervisorArgs {
            strategy: Strategy::RestForOne,
            policy,
            children: vec![metadata],
            on_restart: Some(on_restart),
        },
    )
}

/// Queues a `ProcessReady` if the group has work and none is queued yet. Failing to send to
/// ourselves means we are stopping: nothing to queue.
fn queue_round<M: crate::consensus::StateMachine<Batch = WriteBatch>>(
    myself: &ActorRef<MetadataMsg>,
    raft: &mut RaftGroup<M>,
) {
    if raft.wants_round() {
        let _ = myself.cast(MetadataMsg::ProcessReady);
    }
}
