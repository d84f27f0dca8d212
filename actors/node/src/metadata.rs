//! Metadata: the node's replica of the metadata Raft group (group 0) and its state machine.
//!
//! Parent: MetadataSup (rest_for_one), under ControlPlane. Registered as `names::metadata(node)`.
//! Messages in: [`MetadataMsg::Propose`] (a [`MetadataCommand`], answered with its
//! [`MetadataEvent`] once committed and applied, or its rejection), `Tick`, `Step` from peers.
//! Out: after every round it publishes a [`MetadataView`] on the node's watch channel; the Router and
//! the Rebalancer read it.
//!
//! The state machine is kept in memory and rebuilt at start by replaying the group's committed log
//! from fjall (no compaction yet), so the state is exactly the log's.
//!
//! # Invariants
//! - The published view is flagged `loaded` only once every entry committed before the start has
//!   been applied again: nobody acts on a half-replayed state.
//!
//! # Crash and recovery
//! A kill loses only the in-memory state and the waiting proposers (who see their reply drop); the
//! restarted actor replays the log and publishes again.

use std::sync::Arc;

use daftka_core::metadata::{
    decode_command, encode_command, MetadataCommand, MetadataEvent, MetadataLimits, MetadataState,
};
use daftka_protocol::{names, Error, GroupId};
use daftka_storage::WriteBatch;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::consensus::{RaftGroup, StateMachine};
use crate::context::{MetadataView, NodeContext};
use crate::supervision::{child, ChildSpec, Restart, Strategy, SupervisorArgs};

/// The metadata state machine as the Raft driver sees it.
pub struct MetadataMachine {
    pub state: MetadataState,
    limits: MetadataLimits,
}

impl StateMachine for MetadataMachine {
    type Output = MetadataEvent;

    fn apply_entry(
        &mut self,
        _index: u64,
        data: &[u8],
        _batch: &mut WriteBatch,
    ) -> Result<MetadataEvent, Error> {
        let cmd = decode_command(data)?;
        self.state.apply(cmd, self.limits)
    }

    fn finish_round(&mut self, _applied_index: u64, _batch: &mut WriteBatch) {}
}

pub struct MetadataArgs {
    pub ctx: Arc<NodeContext>,
}

pub struct MetadataActorState {
    ctx: Arc<NodeContext>,
    raft: RaftGroup<MetadataMachine>,
    tick: Option<tokio::task::JoinHandle<()>>,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum MetadataMsg {
    Propose {
        command: MetadataCommand,
        reply: RpcReplyPort<Result<MetadataEvent, Error>>,
    },
    Step(Box<raft::eraftpb::Message>),
    Tick,
    ProcessReady,
}

pub struct Metadata;

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
        let machine = MetadataMachine {
            state: MetadataState::default(),
            limits: MetadataLimits {
                partitions_per_topic_max: ctx.config.topics.partitions_max,
            },
        };
        let raft = RaftGroup::open(
            ctx.store.clone(),
            GroupId::METADATA,
            ctx.raft_id,
            &[ctx.raft_id],
            &ctx.config.raft,
            machine,
            0,
            ctx.transport.clone(),
        )
        .await?;
        let tick = myself.send_interval(ctx.config.raft.tick, || MetadataMsg::Tick);
        let mut state = MetadataActorState {
            ctx,
            raft,
            tick: Some(tick),
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
            MetadataMsg::Step(m) => {
                state.raft.step(*m);
                queue_round(&myself, &mut state.raft);
            }
            MetadataMsg::Tick => {
                if state.raft.tick() {
                    let _ = myself.cast(MetadataMsg::ProcessReady);
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
                if outcome.applied_entries > 0 || outcome.leader_changed.is_some() {
                    state.publish();
                }
                queue_round(&myself, &mut state.raft);
            }
        }
        Ok(())
    }
}

impl MetadataActorState {
    fn publish(&self) {
        let loaded = self.raft.recovered();
        let st = &self.raft.machine.state;
        let leader_id = self.raft.leader_id();
        let leader = st
            .nodes
            .values()
            .find(|n| n.raft_id == leader_id)
            .map(|n| n.name.clone())
            .or_else(|| (leader_id == self.ctx.raft_id).then(|| self.ctx.node.clone()));
        self.ctx.metadata.send_replace(MetadataView {
            state: Arc::new(st.clone()),
            loaded,
            leader,
        });
        // Ready once the log is replayed and this node is registered (placement needs it).
        self.ctx
            .readiness
            .set_metadata_loaded(loaded && st.nodes.contains_key(&self.ctx.node));
    }
}

/// Proposes `command` to the metadata group through this node's Metadata actor.
pub async fn propose(ctx: &NodeContext, command: MetadataCommand) -> Result<MetadataEvent, Error> {
    daftka_protocol::rpc::call_named(
        &names::metadata(&ctx.node),
        |reply| MetadataMsg::Propose { command, reply },
        ctx.config.router.request_timeout,
        "metadata",
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

/// MetadataSup (rest_for_one) with the Metadata actor, as a child of the ControlPlane.
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
    let on_restart = crate::control_plane::restart_counter(&ctx);
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
fn queue_round<M: crate::consensus::StateMachine>(
    myself: &ActorRef<MetadataMsg>,
    raft: &mut RaftGroup<M>,
) {
    if raft.wants_round() {
        let _ = myself.cast(MetadataMsg::ProcessReady);
    }
}
