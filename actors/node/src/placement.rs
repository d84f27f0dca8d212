//! Placement: makes this node host exactly the replicas the metadata places on it.
//!
//! Parent: Root (one_for_one). Registered as `names::placement(node)`.
//! Messages in: `MetadataChanged` (from its own watch task), `Reconcile` (from the Router, which
//! waits for it after a topic create or delete so the reply means the change is carried out).
//! It starts a ReplicaSup under Partitions for every placed replica that is not running, terminates
//! the ones no longer placed here and deletes their data, and deletes data of groups that no topic
//! knows (left over by a crash between a delete and its clean-up). Where replicas go is decided
//! when a topic is created (`place_replicas`) and by replica moves (`daftka_core::reconfig`): a
//! move's destinations host a replica while it is in flight, and this actor nudges the local
//! replica of every moving group (its leader takes the next step). On the metadata leader it is also
//! the Rebalancer's repair: it starts moves that bring partitions below their replication factor
//! back to it, onto live nodes.
//!
//! # Invariants
//! - Nothing is started or deleted before the metadata view is `loaded`.
//!
//! It also reconciles every [`RECONCILE_INTERVAL`], which brings replicas back after the
//! Partitions supervisor restarted as a whole.
//!
//! # Crash and recovery
//! Stateless: after a restart it reconciles from the metadata view and the running children.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use daftka_protocol::{names, Error, GroupId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::NodeContext;
use crate::partitions::raft::RaftMsg;
use crate::partitions::replica_child_id;
use crate::partitions::replica_sup::{self, ReplicaId};
use crate::supervision::{self, SupervisorMsg};
use daftka_core::metadata::MetadataCommand;

pub struct PlacementArgs {
    pub ctx: Arc<NodeContext>,
}

/// How often the Placement reconciles without being asked: this is how replicas come back after
/// the Partitions supervisor itself restarted (nothing else tells a sibling that happened).
pub const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

pub struct PlacementState {
    ctx: Arc<NodeContext>,
    /// The replicas placed here at the last reconcile (`None` before the first): data of a group
    /// that leaves this set is deleted, and the first reconcile looks at every stored group.
    placed: Option<BTreeSet<GroupId>>,
    watch: tokio::task::JoinHandle<()>,
    interval: tokio::task::JoinHandle<()>,
    /// When this node (as the metadata leader) last looked for partitions to repair.
    repairs_checked: Option<std::time::Instant>,
    /// Registered nodes this node cannot reach, since when (kept while it is the metadata leader).
    down_since: BTreeMap<String, std::time::Instant>,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum PlacementMsg {
    MetadataChanged,
    Reconcile {
        reply: RpcReplyPort<Result<(), Error>>,
    },
}

pub struct Placement;

impl Actor for Placement {
    type Msg = PlacementMsg;
    type State = PlacementState;
    type Arguments = PlacementArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PlacementMsg>,
        args: PlacementArgs,
    ) -> Result<PlacementState, ActorProcessingErr> {
        let mut rx = args.ctx.metadata.subscribe();
        let me = myself.clone();
        let watch = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if me.cast(PlacementMsg::MetadataChanged).is_err() {
                    break;
                }
            }
        });
        let _ = myself.cast(PlacementMsg::MetadataChanged);
        let interval = myself.send_interval(RECONCILE_INTERVAL, || PlacementMsg::MetadataChanged);
        Ok(PlacementState {
            ctx: args.ctx,
            placed: None,
            watch,
            interval,
            repairs_checked: None,
            down_since: BTreeMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PlacementMsg>,
        state: &mut PlacementState,
    ) -> Result<(), ActorProcessingErr> {
        state.watch.abort();
        state.interval.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<PlacementMsg>,
        msg: PlacementMsg,
        state: &mut PlacementState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PlacementMsg::MetadataChanged => {
                match state.reconcile().await {
                    Ok(()) => {}
                    // Normal while the node starts or a sibling restarts; retried soon.
                    Err(e) if e.retryable() => tracing::debug!(error = %e, "reconcile deferred"),
                    Err(e) => tracing::warn!(error = %e, "reconcile failed"),
                }
            }
            PlacementMsg::Reconcile { reply } => {
                let _ = reply.send(state.reconcile().await);
            }
        }
        Ok(())
    }
}

impl PlacementState {
    async fn reconcile(&mut self) -> Result<(), Error> {
        let ctx = &self.ctx;
        let view = ctx.metadata_view();
        if !view.loaded {
            return Err(Error::unavailable("metadata is loading"));
        }
        if view.state.removed.get(&ctx.node) == Some(&ctx.store.incarnation()) {
            let why = format!(
                "node {} was removed from the cluster: it stops, and joins again only with an \
                 empty data directory",
                ctx.node
            );
            ctx.refuse(why.clone());
            return Err(Error::new(daftka_protocol::ErrorCode::NodeRemoved, why));
        }
        let partitions: ActorRef<SupervisorMsg> =
            ractor::registry::where_is(names::partitions(&ctx.node))
                .ok_or_else(|| Error::unavailable("partitions supervisor restarting"))?
                .into();
        let mut desired: BTreeMap<GroupId, ReplicaId> = BTreeMap::new();
        for (t, p) in view.state.replicas_on(&ctx.node) {
            // Only an original replica of a group that never changed its voters bootstraps the
            // group's configuration; any other starts unconfigured, and the leader brings it in.
            let original =
                p.replicas.contains(&ctx.node) && !view.state.reconfigured.contains(&p.group);
            let voters = if original {
                raft_ids(&view.state, &p.replicas)
            } else {
                Vec::new()
            };
            desired.insert(
                p.group,
                ReplicaId {
                    topic: t.name.clone(),
                    partition: p.partition,
                    group: p.group,
                    voters,
                },
            );
        }
        ctx.readiness.set_expected_replicas(
            desired
                .keys()
                .map(|g| (*g, names::replica_raft(&ctx.node, *g)))
                .collect(),
        );
        let running = supervision::which_children(&partitions)
            .await
            .map_err(|e| Error::unavailable(format!("partitions supervisor: {e}")))?;
        let running: BTreeMap<String, ()> = running.into_iter().map(|(id, _)| (id, ())).collect();
        for (group, replica) in &desired {
            if running.contains_key(&replica_child_id(*group)) {
                continue;
            }
            ctx.readiness.replica_recovering(*group);
            let spec = replica_sup::spec(ctx.clone(), replica.clone());
            supervision::start_child(&partitions, spec)
                .await
                .map_err(|e| Error::unavailable(format!("replica {group} did not start: {e}")))?;
        }
        for id in running.keys() {
            let Some(group) = id
                .strip_prefix("replica-")
                .and_then(|g| g.parse().ok())
                .map(GroupId)
            else {
                continue;
            };
            if !desired.contains_key(&group) {
                supervision::terminate_child(&partitions, id.clone())
                    .await
                    .map_err(|e| Error::unavailable(format!("partitions supervisor: {e}")))?;
                ctx.readiness.replica_ready(group);
                // Its gauges go with it (a replica moved away must not report a stale position).
                if let Ok((topic, p)) = view.state.partition_by_group(group) {
                    let partition = p.partition.to_string();
                    let _ = ctx
                        .metrics
                        .high_watermark
                        .remove_label_values(&[topic.as_str(), partition.as_str()]);
                }
                let _ = ctx
                    .metrics
                    .raft_term
                    .remove_label_values(&[group.to_string().as_str()]);
            }
        }
        // Data of a group not placed here: its topic was deleted, or it lives elsewhere. The
        // first reconcile of this incarnation looks at every stored group (left over by a crash
        // between a delete and its clean-up); later ones only at the groups that left.
        let candidates = match &self.placed {
            None => ctx.store.groups().map_err(Error::from)?,
            Some(before) => before.iter().copied().collect(),
        };
        for group in candidates {
            if group != GroupId::METADATA && !desired.contains_key(&group) {
                ctx.store.delete_group(group).await.map_err(Error::from)?;
            }
        }
        self.placed = Some(desired.keys().copied().collect());
        ctx.readiness.set_replicas_placed();
        publish_gauges(ctx, &view.state);
        // Moves of groups with a replica here: the leader among them takes the next step.
        for (group, m) in &view.state.moves {
            if !desired.contains_key(group) {
                continue;
            }
            if let Some(raft) = ractor::registry::where_is(names::replica_raft(&ctx.node, *group)) {
                let msg = RaftMsg::Reconfigure {
                    target: raft_ids(&view.state, &m.to),
                    to: m.to.clone(),
                };
                // A replica restarting misses this nudge; the next reconcile sends it again.
                let _ = ActorRef::<RaftMsg>::from(raft).cast(msg);
            }
        }
        if view.leader.as_deref() == Some(ctx.node.as_str()) {
            self.plan_repairs(&view.state);
        } else {
            self.down_since.clear();
            ctx.dead_nodes.send_if_modified(|d| {
                let changed = !d.is_empty();
                d.clear();
                changed
            });
        }
        Ok(())
    }

    /// On the metadata leader, at most every `rebalance.check_interval`: starts the moves that
    /// bring partitions below their replication factor back to it, onto live nodes; with none to
    /// make, one that evens out a topic's replicas across nodes.
    fn plan_repairs(&mut self, state: &daftka_core::metadata::MetadataState) {
        let cfg = &self.ctx.config.rebalance;
        let now = std::time::Instant::now();
        if self
            .repairs_checked
            .is_some_and(|at| now.duration_since(at) < cfg.check_interval)
        {
            return;
        }
        self.repairs_checked = Some(now);
        let live = self.ctx.live_nodes(state);
        // How long each unreachable node has been so, as this node saw it (a new metadata leader
        // starts counting afresh: it waits longer, never shorter).
        self.down_since
            .retain(|n, _| !live.contains(n) && state.nodes.contains_key(n));
        for n in state.nodes.keys().filter(|n| !live.contains(n)) {
            self.down_since.entry(n.clone()).or_insert(now);
        }
        let dead: std::collections::BTreeSet<String> = self
            .down_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= cfg.node_down_timeout)
            .map(|(n, _)| n.clone())
            .collect();
        self.ctx.dead_nodes.send_if_modified(|d| {
            let changed = *d != dead;
            d.clone_from(&dead);
            changed
        });
        let now_ms = u64::try_from(crate::partitions::server::now_ms()).unwrap_or(0);
        let mut moves = daftka_core::reconfig::plan_repairs(
            state,
            &live,
            &dead,
            cfg.max_parallel_moves as usize,
            now_ms,
        );
        let partition = |group: &daftka_protocol::GroupId| {
            state
                .partition_by_group(*group)
                .map(|(t, p)| format!("{t}/{}", p.partition))
                .unwrap_or_default()
        };
        for cmd in &moves {
            match cmd {
                MetadataCommand::StartMove {
                    group, from, to, ..
                } => {
                    let gone: Vec<&String> = from
                        .iter()
                        .filter(|n| dead.contains(*n) || state.draining.contains(*n))
                        .collect();
                    tracing::info!(partition = %partition(group), %group, ?from, ?to, ?gone, "starting a move: the partition is below its replication factor, or has replicas on nodes that are draining, removed, or down past rebalance.node_down_timeout");
                }
                MetadataCommand::RedirectMove { group, from_to, to } => {
                    tracing::info!(partition = %partition(group), %group, ?from_to, ?to, "redirecting a move: a destination is draining, removed, or down past rebalance.node_down_timeout");
                }
                _ => {}
            }
        }
        // Balancing goes after repairs, one move at a time, with nothing else in flight.
        if moves.is_empty() {
            let eligible: Vec<String> = live
                .iter()
                .filter(|n| !state.draining.contains(*n))
                .cloned()
                .collect();
            if let Some(m) = daftka_core::reconfig::plan_balance(state, &eligible, now_ms) {
                if let MetadataCommand::StartMove {
                    group, from, to, ..
                } = &m
                {
                    tracing::info!(partition = %partition(group), %group, ?from, ?to, "starting a move: evening out a topic's replicas across nodes");
                }
                moves.push(m);
            }
        }
        for cmd in moves {
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::metadata::propose(&ctx, cmd).await {
                    tracing::debug!(error = %e, "a move did not start; planned again later");
                }
            });
        }
    }
}

/// The cluster's replica gauges from this node's metadata view.
fn publish_gauges(ctx: &NodeContext, state: &daftka_core::metadata::MetadataState) {
    let m = &ctx.metrics;
    let under = state
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .filter(|(t, p)| {
            p.replicas.len() < t.replication_factor as usize
                || p.replicas.iter().any(|r| !ctx.reachable(r))
        })
        .count();
    m.under_replicated_partitions
        .set(i64::try_from(under).unwrap_or(i64::MAX));
    m.moves_in_flight
        .set(i64::try_from(state.moves.len()).unwrap_or(i64::MAX));
    let nodes: Vec<String> = state.nodes.keys().cloned().collect();
    for (n, c) in daftka_core::reconfig::replica_load(state, &nodes) {
        m.node_replicas
            .with_label_values(&[n])
            .set(i64::try_from(c).unwrap_or(i64::MAX));
    }
}

/// The raft ids of the registered nodes among `names`, in order.
fn raft_ids(state: &daftka_core::metadata::MetadataState, names: &[String]) -> Vec<u64> {
    names
        .iter()
        .filter_map(|r| state.nodes.get(r).map(|n| n.raft_id))
        .collect()
}

/// Asks this node's Placement to reconcile now and waits for it.
pub async fn reconcile(ctx: &NodeContext) -> Result<(), Error> {
    daftka_protocol::rpc::call_named(
        &names::placement(&ctx.node),
        |reply| PlacementMsg::Reconcile { reply },
        ctx.config.router.request_timeout,
        "the placement",
    )
    .await
}
