//! Router: the node's client entry point and Daftka's exposed actor ([`RouterMsg`]).
//!
//! Parent: Root (one_for_one). Registered as `names::router(node)` and a member of the pg
//! group `names::routers_group(cluster)`, through which other Rust actor systems connected to the
//! node (same cookie) reach it: [`RouterMsg`] crosses the network.
//! Every request runs in its own task, so a slow partition never holds up others: topic operations
//! and offset commits go through the metadata group; produce and fetch find the partition's replica
//! and forward to its Server, retrying with backoff while the answer is `not_leader` or the replica
//! is not running (`unavailable`), until the request deadline. An answer whose outcome is unknown
//! (`timeout`) is never retried here: a retry could store the records twice.
//!
//! # Crash and recovery
//! Stateless: a restart loses only the requests in flight, whose callers see their reply drop.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daftka_core::metadata::{
    place_replicas, MetadataCommand, MetadataEvent, PartitionMeta, TopicMeta,
};
use daftka_core::partition::choose_partition;
use daftka_protocol::wire::Framed;
use daftka_protocol::{
    ids::validate_name, names, rpc, ClusterInfo, CommittedOffset, Error, FetchRequest,
    FetchResponse, GroupId, GroupOffsets, NodeInfo, PartitionDescription, ProduceRecord, Record,
    RecordPosition, RouterMsg, TopicAlter, TopicDescription, TopicSpec, Wire,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

mod groups;

use crate::cluster::peer::{call_peer, wall_ms, Abandon, PeerMsg};
use crate::context::NodeContext;
use crate::partitions::server::ServerMsg;

pub struct RouterArgs {
    pub ctx: Arc<NodeContext>,
}

pub struct RouterState {
    inner: Arc<Inner>,
    /// The task that updates the consumer-group metrics.
    metrics: Option<tokio::task::JoinHandle<()>>,
}

struct Inner {
    ctx: Arc<NodeContext>,
    /// Spreads keyless records without an explicit partition across partitions.
    spread: AtomicU64,
    /// The node whose replica last answered, by partition group: where the leader probably is.
    leaders: std::sync::Mutex<std::collections::HashMap<GroupId, String>>,
}

pub struct Router;

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RouterMsg>,
        args: RouterArgs,
    ) -> Result<RouterState, ActorProcessingErr> {
        // Other Rust actor systems connected to this node find the Router here.
        ractor::pg::join(
            names::routers_group(&args.ctx.config.cluster.name),
            vec![myself.get_cell()],
        );
        let inner = Arc::new(Inner {
            ctx: args.ctx,
            spread: AtomicU64::new(0),
            leaders: Default::default(),
        });
        let metrics = {
            let inner = inner.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(inner.ctx.config.groups.lag_metrics_interval);
                loop {
                    every.tick().await;
                    inner.update_group_metrics().await;
                }
            })
        };
        Ok(RouterState {
            inner,
            metrics: Some(metrics),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RouterMsg>,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.metrics.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        msg: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        let r = state.inner.clone();
        match msg {
            RouterMsg::CreateTopic { spec, reply } => {
                answer(reply, async move { r.create_topic(spec.0?).await })
            }
            RouterMsg::AlterTopic {
                topic,
                alter,
                reply,
            } => answer(
                reply,
                async move { r.alter_topic(topic.0?, alter.0?).await },
            ),
            RouterMsg::ListTopics { reply } => answer(reply, async move { r.list_topics().await }),
            RouterMsg::DescribeTopic { topic, reply } => {
                answer(reply, async move { r.describe_topic(&topic.0?).await })
            }
            RouterMsg::DeleteTopic { topic, reply } => {
                answer(reply, async move { r.delete_topic(&topic.0?).await })
            }
            RouterMsg::Produce {
                topic,
                records,
                reply,
            } => {
                let span = tracing::info_span!("produce", topic = tracing::field::Empty);
                answer_in(span.clone(), reply, async move {
                    let topic = topic.0?;
                    span.record("topic", topic.as_str());
                    r.produce(&topic, records.0?).await
                })
            }
            RouterMsg::Fetch { request, reply } => {
                let span = tracing::info_span!("fetch");
                answer_in(span, reply, async move { r.fetch(request.0?).await })
            }
            RouterMsg::CommitOffsets {
                group,
                offsets,
                reply,
            } => answer(reply, async move {
                let request = daftka_protocol::GroupCommit {
                    group: group.0?,
                    member: None,
                    offsets: offsets.0?,
                };
                r.commit_group(request).await
            }),
            RouterMsg::FetchOffsets { group, reply } => {
                answer(reply, async move { r.fetch_offsets(&group.0?).await })
            }
            RouterMsg::ClusterInfo { reply } => answer(reply, async move { r.cluster_info() }),
            RouterMsg::Reassign {
                topic,
                partition,
                replicas,
                reply,
            } => answer(reply, async move {
                r.reassign(topic.0?, partition.0?, replicas.0?).await
            }),
            RouterMsg::ListReassignments { reply } => {
                answer(reply, async move { Ok(r.reassignments().await) })
            }
            RouterMsg::DrainNode {
                node,
                draining,
                reply,
            } => answer(
                reply,
                async move { r.drain_node(node.0?, draining.0?).await },
            ),
            RouterMsg::RemoveNode { node, reply } => {
                answer(reply, async move { r.remove_node(node.0?).await })
            }
            RouterMsg::JoinGroup { request, reply } => {
                answer(reply, async move { r.join_group(request.0?).await })
            }
            RouterMsg::GroupHeartbeat { request, reply } => {
                answer(reply, async move { r.heartbeat(request.0?).await })
            }
            RouterMsg::LeaveGroup { request, reply } => {
                answer(reply, async move { r.leave_group(request.0?).await })
            }
            RouterMsg::PollGroup { request, reply } => {
                let span = tracing::info_span!("poll");
                answer_in(span, reply, async move { r.poll_group(request.0?).await })
            }
            RouterMsg::CommitGroupOffsets { request, reply } => {
                answer(reply, async move { r.commit_group(request.0?).await })
            }
            RouterMsg::ListGroups { reply } => answer(reply, async move { r.list_groups() }),
            RouterMsg::DescribeGroup { group, reply } => {
                answer(reply, async move { r.describe_group(&group.0?).await })
            }
            RouterMsg::ResetGroupOffsets { request, reply } => {
                answer(reply, async move { r.reset_offsets(request.0?).await })
            }
        }
        Ok(())
    }
}

/// Runs `work` in its own task and sends its result to `reply`.
fn answer<T: Send + 'static>(
    reply: RpcReplyPort<Wire<T>>,
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) {
    answer_in(tracing::Span::none(), reply, work)
}

/// Like [`answer`], inside `span`; the outcome is logged in it at debug level.
fn answer_in<T: Send + 'static>(
    span: tracing::Span,
    reply: RpcReplyPort<Wire<T>>,
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) {
    use tracing::Instrument;
    tokio::spawn(
        async move {
            let result = work.await;
            if let Err(e) = &result {
                tracing::debug!(code = %e.code, error = %e.message, "request failed");
            }
            let _ = reply.send(Wire(result));
        }
        .instrument(span),
    );
}

impl Inner {
    fn topic(&self, name: &str) -> Result<TopicMeta, Error> {
        let view = self.ctx.metadata_view();
        if !view.loaded {
            return Err(Error::unavailable("metadata is loading"));
        }
        view.state
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| Error::unknown_topic(name))
    }

    async fn create_topic(&self, spec: TopicSpec) -> Result<TopicDescription, Error> {
        validate_name("topic", &spec.name)?;
        let cfg = &self.ctx.config.topics;
        let partitions = spec.partitions.unwrap_or(cfg.default_partitions);
        if partitions == 0 || partitions > cfg.partitions_max {
            return Err(Error::invalid(format!(
                "partitions must be 1 to {}, got {partitions}",
                cfg.partitions_max
            )));
        }
        if !self.ctx.metadata_view().loaded {
            return Err(Error::unavailable("metadata is loading"));
        }
        // A view that has applied everything committed so far: it counts every registered node,
        // also one whose registration this node has not applied yet.
        crate::metadata::propose(&self.ctx, MetadataCommand::Barrier).await?;
        let view = self.ctx.metadata_view();
        if view.state.nodes.is_empty() {
            return Err(Error::unavailable("metadata is loading"));
        }
        // The factor is capped by the registered nodes (not by who answered a heartbeat in the
        // last second). Replicas go to live nodes only: this one, and peers with a session and
        // heartbeats. With fewer live nodes than the factor the partitions start
        // under-replicated, and the Rebalancer tops them up once enough nodes are alive.
        let registered = view.state.nodes.len() as u32;
        let rf = match spec.replication_factor {
            Some(rf) if rf > registered => {
                return Err(Error::invalid(format!(
                    "replication_factor {rf} exceeds the {registered} registered node(s)"
                )))
            }
            Some(rf) => rf,
            None => cfg.default_replication_factor.min(registered.max(1)),
        };
        let placement = self.place(&view.state, partitions, rf, view.state.topics.len())?;
        let cmd = MetadataCommand::CreateTopic {
            name: spec.name.clone(),
            replication_factor: rf,
            placement,
        };
        match crate::metadata::propose(&self.ctx, cmd).await? {
            MetadataEvent::TopicCreated(t) => {
                let t = self.wait_for_leaders(t).await;
                crate::placement::reconcile(&self.ctx).await?;
                Ok(describe_unpositioned(&t, &self.ctx.metadata_view().state))
            }
            other => Err(Error::internal(format!(
                "unexpected metadata event {other:?}"
            ))),
        }
    }

    /// Replica lists for `partitions` new partitions of factor `rf` on the live nodes that are
    /// not draining (nothing new goes to a draining node), `rf` or as many as are live (the
    /// Rebalancer tops the rest up), spread from `offset`.
    fn place(
        &self,
        state: &daftka_core::metadata::MetadataState,
        partitions: u32,
        rf: u32,
        offset: usize,
    ) -> Result<Vec<Vec<String>>, Error> {
        let live: Vec<String> = self
            .ctx
            .live_nodes(state)
            .into_iter()
            .filter(|n| !state.draining.contains(n))
            .collect();
        if live.is_empty() {
            return Err(Error::unavailable("no live node that is not draining"));
        }
        place_replicas(&live, partitions, rf.min(live.len() as u32), offset)
    }

    /// Grows a topic (new partitions placed like a new topic's, on live undrained nodes) and
    /// changes its settings; answers its description once the new partitions have leaders (or
    /// the deadline passed).
    async fn alter_topic(
        &self,
        topic: String,
        alter: TopicAlter,
    ) -> Result<TopicDescription, Error> {
        validate_name("topic", &topic)?;
        let cfg = &self.ctx.config.topics;
        crate::metadata::propose(&self.ctx, MetadataCommand::Barrier).await?;
        let view = self.ctx.metadata_view();
        let t = view
            .state
            .topics
            .get(&topic)
            .ok_or_else(|| Error::unknown_topic(&topic))?;
        let have = t.partitions.len() as u32;
        let add = match alter.partitions {
            Some(n) if n < have => {
                return Err(Error::invalid(format!(
                    "partitions only grow: topic {topic:?} has {have}, asked for {n}"
                )))
            }
            Some(n) if n > cfg.partitions_max => {
                return Err(Error::invalid(format!(
                    "partitions must be 1 to {}, got {n}",
                    cfg.partitions_max
                )))
            }
            Some(n) => n - have,
            None => 0,
        };
        for (what, v) in [
            ("retention_time_ms", alter.retention_time_ms),
            ("retention_bytes", alter.retention_bytes),
        ] {
            if v == Some(Some(0)) {
                return Err(Error::invalid(format!(
                    "{what} must be positive (null returns it to the node's default)"
                )));
            }
        }
        let add_partitions = if add == 0 {
            Vec::new()
        } else {
            self.place(&view.state, add, t.replication_factor, have as usize)?
        };
        let cmd = MetadataCommand::AlterTopic {
            name: topic.clone(),
            add_partitions,
            settings: daftka_core::metadata::SettingsChange {
                retention_time_ms: alter.retention_time_ms,
                retention_bytes: alter.retention_bytes,
            },
        };
        match crate::metadata::propose(&self.ctx, cmd).await? {
            MetadataEvent::TopicAltered(t) => {
                tracing::info!(%topic, partitions = t.partitions.len(), ?alter, "topic altered");
                let t = self.wait_for_leaders(t).await;
                crate::placement::reconcile(&self.ctx).await?;
                Ok(self.describe(&t).await)
            }
            other => Err(Error::internal(format!(
                "unexpected metadata event {other:?}"
            ))),
        }
    }

    /// The topic once this node's metadata has applied its creation (the leader may be another
    /// node) and every partition has reported a leader; or as it is when the request deadline
    /// passes first (it exists either way; produce retries while leaders are elected).
    async fn wait_for_leaders(&self, created: TopicMeta) -> TopicMeta {
        let first_group = created.partitions.first().map(|p| p.group);
        self.wait_view(|v| {
            let t = v.state.topics.get(&created.name)?;
            let same = t.partitions.first().map(|p| p.group) == first_group;
            (same && t.partitions.iter().all(|p| p.leader.is_some())).then(|| t.clone())
        })
        .await
        .unwrap_or(created)
    }

    /// Waits until `check` finds what it looks for in this node's metadata view, or the request
    /// deadline passes (`None`).
    async fn wait_view<T>(
        &self,
        check: impl Fn(&crate::context::MetadataView) -> Option<T>,
    ) -> Option<T> {
        self.wait_view_within(self.ctx.config.router.request_timeout, check)
            .await
    }

    /// Like [`Inner::wait_view`], for at most `wait`.
    async fn wait_view_within<T>(
        &self,
        wait: Duration,
        check: impl Fn(&crate::context::MetadataView) -> Option<T>,
    ) -> Option<T> {
        self.ctx
            .wait_metadata(tokio::time::Instant::now() + wait, check)
            .await
    }

    async fn list_topics(&self) -> Result<Vec<TopicDescription>, Error> {
        let view = self.ctx.metadata_view();
        if !view.loaded {
            return Err(Error::unavailable("metadata is loading"));
        }
        let mut out = Vec::with_capacity(view.state.topics.len());
        for t in view.state.topics.values() {
            out.push(self.describe(t).await);
        }
        Ok(out)
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, Error> {
        validate_name("topic", topic)?;
        let t = self.topic(topic)?;
        Ok(self.describe(&t).await)
    }

    /// A topic with each partition's offsets and replica states; a partition whose replica
    /// does not answer shows 0s, one whose leader does not, no replica states.
    async fn describe(&self, t: &TopicMeta) -> TopicDescription {
        let view = self.ctx.metadata_view();
        let mut d = describe_unpositioned(t, &view.state);
        let asks = t
            .partitions
            .iter()
            .map(|p| async move { tokio::join!(self.positions(p), self.group_status(p)) });
        let answers = futures::future::join_all(asks).await;
        for ((pd, p), (pos, status)) in d.partitions.iter_mut().zip(&t.partitions).zip(answers) {
            if let Ok((start, hwm)) = pos {
                pd.log_start_offset = start;
                pd.high_watermark = hwm;
            }
            if let Some(status) = status {
                pd.replica_states = replica_states(&view.state, p, &status);
            }
        }
        d
    }

    async fn positions(&self, p: &PartitionMeta) -> Result<(u64, u64), Error> {
        self.call_replica(p, Duration::ZERO, Positions).await
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), Error> {
        validate_name("topic", topic)?;
        self.topic(topic)?;
        crate::metadata::propose(
            &self.ctx,
            MetadataCommand::DeleteTopic {
                name: topic.to_string(),
            },
        )
        .await?;
        // `propose` answers once this node has applied the deletion: stop its replicas and
        // remove their data.
        crate::placement::reconcile(&self.ctx).await
    }

    async fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<RecordPosition>, Error> {
        validate_name("topic", topic)?;
        if records.is_empty() {
            return Err(Error::invalid(
                "a produce request needs at least one record",
            ));
        }
        daftka_core::limits::check_produce(
            records.iter().map(|r| &r.record),
            &self.ctx.config.limits,
        )?;
        let size: usize = records.iter().map(|r| r.record.size_bytes()).sum();
        let _held = self.ctx.budget.reserve(size as u64)?;
        let t = self.topic(topic)?;
        let n = t.partitions.len() as u32;
        // Group by partition, keeping request order inside each partition.
        let mut by_partition: std::collections::BTreeMap<u32, (Vec<usize>, Vec<Record>)> =
            Default::default();
        let spread = self.spread.fetch_add(1, Ordering::Relaxed);
        for (i, pr) in records.into_iter().enumerate() {
            let p = match pr.partition {
                Some(p) if p >= n => return Err(Error::unknown_partition(topic, p)),
                Some(p) => p,
                None => choose_partition(pr.record.key.as_deref(), n, spread + i as u64),
            };
            let slot = by_partition.entry(p).or_default();
            slot.0.push(i);
            slot.1.push(pr.record);
        }
        // Refuse before sending anything when a partition cannot commit from here: `unavailable`
        // promises that nothing was stored.
        for p in by_partition.keys() {
            self.quorum_reachable(&t.partitions[*p as usize])?;
        }
        let total: usize = by_partition.values().map(|(idx, _)| idx.len()).sum();
        let sends = by_partition.into_iter().map(|(p, (idx, recs))| {
            let meta = &t.partitions[p as usize];
            async move {
                let base = self.call_replica(meta, Duration::ZERO, Produce(recs)).await;
                (p, idx, base)
            }
        });
        let results = futures::future::join_all(sends).await;
        let mut positions = vec![
            RecordPosition {
                partition: 0,
                offset: 0
            };
            total
        ];
        let mut stored = Vec::new();
        let mut failed: Vec<(u32, Error)> = Vec::new();
        for (p, idx, base) in results {
            match base {
                Ok(base) => {
                    stored.push(p);
                    for (k, i) in idx.into_iter().enumerate() {
                        positions[i] = RecordPosition {
                            partition: p,
                            offset: base + k as u64,
                        };
                    }
                }
                Err(e) => failed.push((p, e)),
            }
        }
        combine_outcomes(positions, &stored, failed)
    }

    async fn fetch(&self, mut request: FetchRequest) -> Result<FetchResponse, Error> {
        validate_name("topic", &request.topic)?;
        let t = self.topic(&request.topic)?;
        let p = t
            .partitions
            .get(request.partition as usize)
            .ok_or_else(|| Error::unknown_partition(&request.topic, request.partition))?;
        let limits = &self.ctx.config.limits;
        request.max_records = request.max_records.clamp(1, limits.fetch_records_max);
        request.max_bytes = request
            .max_bytes
            .clamp(1, u32::try_from(limits.fetch_bytes_max).unwrap_or(u32::MAX));
        request.max_wait_ms = request
            .max_wait_ms
            .min(u32::try_from(limits.fetch_wait_max.as_millis()).unwrap_or(u32::MAX));
        let wait = Duration::from_millis(u64::from(request.max_wait_ms));
        self.call_replica(p, wait, Fetch(request)).await
    }

    async fn fetch_offsets(&self, group: &str) -> Result<GroupOffsets, Error> {
        validate_name("group", group)?;
        let view = self.ctx.metadata_view();
        if !view.loaded {
            return Err(Error::unavailable("metadata is loading"));
        }
        let mut offsets = Vec::new();
        if let Some(committed) = view.state.group_offsets.get(group) {
            for ((topic, partition), offset) in committed {
                let hwm = match view.state.partition(topic, *partition) {
                    Ok(p) => self.positions(p).await.map(|(_, h)| h).unwrap_or(0),
                    Err(_) => 0,
                };
                offsets.push(CommittedOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    high_watermark: hwm,
                    lag: hwm.saturating_sub(*offset),
                });
            }
        }
        Ok(GroupOffsets {
            group: group.to_string(),
            offsets,
        })
    }

    /// The nodes the metadata knows plus the peers membership sees; status `up` for this node and
    /// for peers with an open authenticated session, `down` for peers whose session closed,
    /// `unknown` for registered nodes membership has not seen.
    fn cluster_info(&self) -> Result<ClusterInfo, Error> {
        let view = self.ctx.metadata_view();
        let membership = self.ctx.membership.borrow().clone();
        let status = |name: &str| {
            if name == self.ctx.node {
                "up"
            } else {
                match membership.peers.get(name) {
                    Some(p) if p.up => "up",
                    Some(_) => "down",
                    None => "unknown",
                }
            }
            .to_string()
        };
        let mut nodes: Vec<NodeInfo> = view
            .state
            .nodes
            .values()
            .map(|n| self.node_info(&view, n, status(&n.name)))
            .collect();
        for (name, peer) in &membership.peers {
            if !view.state.nodes.contains_key(name) {
                nodes.push(NodeInfo {
                    name: name.clone(),
                    cluster_addr: peer.addr.clone(),
                    http_addr: String::new(),
                    status: status(name),
                    state: "active".into(),
                    replicas: 0,
                    leaders: 0,
                    metadata_role: "none".into(),
                });
            }
        }
        Ok(ClusterInfo {
            nodes,
            metadata_leader: view.leader,
            seeds: membership.seeds,
        })
    }

    /// Starts moving partition `partition` of `topic` to `replicas`. Refused (400) for replicas
    /// that repeat a node, name an unregistered one, are none or more than the topic's factor,
    /// equal the current ones, or while the partition is already moving.
    async fn reassign(
        &self,
        topic: String,
        partition: daftka_protocol::PartitionId,
        replicas: Vec<String>,
    ) -> Result<daftka_protocol::Reassignment, Error> {
        validate_name("topic", &topic)?;
        let view = self.ctx.metadata_view();
        let p = view.state.partition(&topic, partition)?.clone();
        if let Some(m) = view.state.moves.get(&p.group) {
            return Err(Error::invalid(format!(
                "{topic}/{partition} is already moving to {:?}",
                m.to
            )));
        }
        let now_ms = u64::try_from(crate::partitions::server::now_ms()).unwrap_or(0);
        let cmd = MetadataCommand::StartMove {
            group: p.group,
            from: p.replicas.clone(),
            to: replicas.clone(),
            now_ms,
        };
        crate::metadata::propose(&self.ctx, cmd).await?;
        tracing::info!(%topic, partition, from = ?p.replicas, to = ?replicas, "reassignment started");
        Ok(daftka_protocol::Reassignment {
            topic,
            partition,
            from: p.replicas,
            to: replicas,
            started_ms: now_ms,
            phase: None,
            bytes_copied: 0,
            bytes_total: 0,
        })
    }

    /// Every replica move in flight, by topic and partition, with its phase and bytes as the
    /// partition's leader reports them (none from a leader that does not answer in time).
    async fn reassignments(&self) -> Vec<daftka_protocol::Reassignment> {
        let view = self.ctx.metadata_view();
        let s = &view.state;
        let mut moving: Vec<(&TopicMeta, &PartitionMeta, &daftka_core::metadata::Move)> = s
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter_map(|(t, p)| Some((t, p, s.moves.get(&p.group)?)))
            .collect();
        moving.sort_by(|a, b| (&a.0.name, a.1.partition).cmp(&(&b.0.name, b.1.partition)));
        let statuses =
            futures::future::join_all(moving.iter().map(|(_, p, _)| self.group_status(p))).await;
        moving
            .into_iter()
            .zip(statuses)
            .map(|((t, p, m), status)| {
                let progress = status.and_then(|s| s.moving);
                daftka_protocol::Reassignment {
                    topic: t.name.clone(),
                    partition: p.partition,
                    from: m.from.clone(),
                    to: m.to.clone(),
                    started_ms: m.started_ms,
                    phase: progress.as_ref().map(|g| g.phase.clone()),
                    bytes_copied: progress.as_ref().map_or(0, |g| g.bytes_copied),
                    bytes_total: progress.as_ref().map_or(0, |g| g.bytes_total),
                }
            })
            .collect()
    }

    /// Partition `p`'s group as its leader sees it, if the leader answers within
    /// [`STATUS_WAIT`].
    async fn group_status(&self, p: &PartitionMeta) -> Option<daftka_protocol::GroupStatus> {
        tokio::time::timeout(
            STATUS_WAIT,
            self.call_replica(p, Duration::ZERO, StatusCall),
        )
        .await
        .ok()?
        .ok()
    }

    /// A registered node as the cluster shows it: reachability, drain state, replicas, leaders.
    fn node_info(
        &self,
        view: &crate::context::MetadataView,
        n: &daftka_core::metadata::NodeMeta,
        status: String,
    ) -> NodeInfo {
        let state = &view.state;
        let name = std::slice::from_ref(&n.name);
        let replicas = daftka_core::reconfig::replica_load(state, name)
            .values()
            .sum::<usize>();
        let leaders = state
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader.as_deref() == Some(n.name.as_str()))
            .count();
        let state_name = if !self.ctx.reachable(&n.name) {
            "down"
        } else if state.draining.contains(&n.name) {
            if replicas == 0 {
                "drained"
            } else {
                "draining"
            }
        } else {
            "active"
        };
        NodeInfo {
            name: n.name.clone(),
            cluster_addr: n.cluster_addr.clone(),
            http_addr: n.http_addr.clone(),
            status,
            state: state_name.to_string(),
            replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
            leaders: u32::try_from(leaders).unwrap_or(u32::MAX),
            metadata_role: {
                if view.voters.contains(&n.raft_id) {
                    "voter"
                } else if view.learners.contains(&n.raft_id) {
                    "learner"
                } else {
                    "none"
                }
                .to_string()
            },
        }
    }

    /// Starts or ends the drain of `node`. A drain is refused (`not_enough_nodes`) when a
    /// partition with a replica there has no other registered, undrained node without one to
    /// move it to (it would fall below its factor for good); the message names them.
    async fn drain_node(&self, node: String, draining: bool) -> Result<NodeInfo, Error> {
        validate_name("node", &node)?;
        crate::metadata::propose(&self.ctx, MetadataCommand::Barrier).await?;
        let view = self.ctx.metadata_view();
        if !view.state.nodes.contains_key(&node) {
            return Err(Error::new(
                daftka_protocol::ErrorCode::UnknownNode,
                format!("no node {node:?} is registered"),
            ));
        }
        if draining {
            let stuck: Vec<String> = view
                .state
                .topics
                .values()
                .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
                .filter(|(_, p)| p.replicas.contains(&node))
                .filter(|(_, p)| {
                    !view.state.nodes.keys().any(|n| {
                        *n != node && !p.replicas.contains(n) && !view.state.draining.contains(n)
                    })
                })
                .map(|(t, p)| format!("{}/{}", t.name, p.partition))
                .collect();
            if !stuck.is_empty() {
                return Err(Error::new(
                    daftka_protocol::ErrorCode::NotEnoughNodes,
                    format!(
                        "draining {node:?} would leave {} below their replication factor: no other \
                         node can take their replica: {}",
                        stuck.len(),
                        stuck.join(", ")
                    ),
                ));
            }
        }
        let cmd = MetadataCommand::SetDraining {
            node: node.clone(),
            draining,
        };
        crate::metadata::propose(&self.ctx, cmd).await?;
        tracing::info!(%node, draining, "node drain state set");
        let view = self.ctx.metadata_view();
        let meta = view
            .state
            .nodes
            .get(&node)
            .ok_or_else(|| Error::internal(format!("node {node:?} vanished")))?;
        let status = if self.ctx.reachable(&node) {
            "up"
        } else {
            "down"
        };
        Ok(self.node_info(&view, meta, status.to_string()))
    }

    /// Forgets `node`: refused (`node_active`) while it is up and holds replicas (drain it
    /// first). A node that is down may be removed with its replicas: the Rebalancer creates them
    /// again elsewhere at once. The node stops if it runs, and its data directory may never
    /// join again.
    async fn remove_node(&self, node: String) -> Result<NodeInfo, Error> {
        validate_name("node", &node)?;
        crate::metadata::propose(&self.ctx, MetadataCommand::Barrier).await?;
        let view = self.ctx.metadata_view();
        let Some(meta) = view.state.nodes.get(&node) else {
            return Err(Error::new(
                daftka_protocol::ErrorCode::UnknownNode,
                format!("no node {node:?} is registered"),
            ));
        };
        let up = self.ctx.reachable(&node);
        let mut info = self.node_info(&view, meta, if up { "up" } else { "down" }.to_string());
        if up && info.replicas > 0 {
            return Err(Error::new(
                daftka_protocol::ErrorCode::NodeActive,
                format!(
                    "node {node:?} is up and holds {} replicas: drain it first (POST \
                     /v1/cluster/nodes/{node}/drain), remove it once it is drained",
                    info.replicas
                ),
            ));
        }
        crate::metadata::propose(
            &self.ctx,
            MetadataCommand::RemoveNode { name: node.clone() },
        )
        .await?;
        tracing::info!(%node, replicas = info.replicas, "node removed from the cluster");
        info.state = "removed".into();
        Ok(info)
    }

    /// Calls partition `p`'s leader replica, wherever it runs, retrying with backoff while the
    /// answer says the request was not taken (`not_leader`, `unavailable`: the replica is a
    /// follower, restarting, or its node is unreachable), until the request deadline plus
    /// `extra`.
    ///
    /// Only replicas on reachable nodes are called (this one, and peers whose heartbeats arrive),
    /// best first ([`replica_order`]): the last one that answered, else the leader the metadata
    /// names now, else the preferred leader. A call waiting on a peer that stops answering is
    /// abandoned at once (a produce then answers `timeout`: it may still be carried out). A read
    /// gets its share of what is left of the budget per replica, so one stuck replica cannot
    /// spend it all. When this node reaches no majority of the partition's replicas, no leader
    /// it can reach can commit: it answers `unavailable` at once.
    async fn call_replica<C: ReplicaCall>(
        &self,
        p: &PartitionMeta,
        extra: Duration,
        request: C,
    ) -> Result<C::Out, Error> {
        let cfg = &self.ctx.config.router;
        let start = Instant::now();
        let base_deadline = start + cfg.request_timeout;
        let deadline = base_deadline + extra;
        let mut backoff = cfg.retry_backoff_min;
        let mut tried: Vec<String> = Vec::new();
        let mut last: Option<Error> = None;
        loop {
            self.quorum_reachable(p)?;
            let order = self.replica_order(p, last.is_some());
            let untried: Vec<&String> = order.iter().filter(|n| !tried.contains(n)).collect();
            let Some(node) = untried.first().map(|n| (*n).clone()) else {
                // A full turn over the reachable replicas without a leader: wait for an election.
                if Instant::now() + backoff >= deadline {
                    return Err(last.unwrap_or_else(|| {
                        Error::unavailable(format!("partition group {} has no leader", p.group))
                    }));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.retry_backoff_max);
                tried.clear();
                continue;
            };
            let now = Instant::now();
            let wait = deadline.saturating_duration_since(base_deadline.max(now));
            let left = base_deadline.saturating_duration_since(now);
            let timeout = if C::READ {
                left / untried.len() as u32 + wait
            } else {
                left + wait
            };
            tried.push(node.clone());
            match self
                .call_replica_at(&node, p.group, request.clone(), now + timeout)
                .await
            {
                Ok(v) => {
                    self.leaders
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(p.group, node);
                    return Ok(v);
                }
                Err(e) if rpc::not_taken(&e) => {
                    // Not the leader (any more): the next request starts elsewhere.
                    let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
                    if leaders.get(&p.group) == Some(&node) {
                        leaders.remove(&p.group);
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `Ok` when this node reaches a majority of partition `p`'s replicas (itself included):
    /// otherwise no leader it can reach can commit, and waiting would only end in a timeout.
    fn quorum_reachable(&self, p: &PartitionMeta) -> Result<(), Error> {
        let reached = p.replicas.iter().filter(|n| self.ctx.reachable(n)).count();
        if reached * 2 > p.replicas.len() {
            Ok(())
        } else {
            Err(Error::unavailable(format!(
                "this node reaches {reached} of the {} replicas of partition group {}, not a majority: it is cut off from the rest of the cluster",
                p.replicas.len(),
                p.group
            )))
        }
    }

    /// The replicas of `p` on reachable nodes, best first. `p` comes from the metadata view the
    /// request read as it started; on a retry (`retry`) the leader the metadata names is read
    /// again, since an election may have reported a new one meanwhile.
    fn replica_order(&self, p: &PartitionMeta, retry: bool) -> Vec<String> {
        let answered = self
            .leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p.group)
            .cloned();
        let named = if retry {
            self.ctx
                .metadata_view()
                .state
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .find(|q| q.group == p.group)
                .and_then(|q| q.leader.clone())
        } else {
            p.leader.clone()
        };
        let order = replica_order(&p.replicas, answered, named, |n| self.ctx.reachable(n));
        for skipped in p.replicas.iter().filter(|n| !order.contains(n)) {
            self.ctx
                .metrics
                .peer_calls
                .with_label_values(&[skipped.as_str(), "skipped"])
                .inc();
        }
        order
    }

    /// One call to the replica of `group` on `node`, until `deadline`: in this process
    /// directly, else through that node's Peer actor.
    async fn call_replica_at<C: ReplicaCall>(
        &self,
        node: &str,
        group: GroupId,
        request: C,
        deadline: Instant,
    ) -> Result<C::Out, Error> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        if node == self.ctx.node {
            let server = names::replica_server(&self.ctx.node, group);
            return rpc::call_named(
                &server,
                |r| request.local(deadline, r),
                timeout,
                "the replica",
            )
            .await;
        }
        let abandon = if C::READ {
            Abandon::Retry
        } else {
            Abandon::OutcomeUnknown
        };
        let deadline_ms = wall_ms(deadline);
        call_peer(
            &self.ctx,
            node,
            |r| request.remote(group, deadline_ms, r),
            timeout,
            "a remote replica",
            abandon,
        )
        .await
    }
}

/// The answer to a produce whose records went to several partitions: the positions if every
/// partition stored its records; if none did, the error that says the most (an unknown outcome
/// before a definite refusal); if some did and some did not, `timeout` naming both: the request
/// as a whole is partly done, so it must not be answered as refused (`unavailable` promises that
/// nothing was stored), and sending it again stores the stored part twice.
fn combine_outcomes(
    positions: Vec<RecordPosition>,
    stored: &[u32],
    mut failed: Vec<(u32, Error)>,
) -> Result<Vec<RecordPosition>, Error> {
    failed.sort_by_key(|(_, e)| rpc::not_taken(e));
    let Some((p, e)) = failed.into_iter().next() else {
        return Ok(positions);
    };
    if stored.is_empty() {
        return Err(e);
    }
    Err(Error::timeout(format!(
        "partially stored: partitions {stored:?} stored their records, partition {p} did not ({e}); sending the request again stores the stored records twice"
    )))
}

/// The replicas worth calling, best first: the one that answered last (`answered`), then the
/// leader the metadata names (`named`), then the others in placement order (the first is the
/// preferred leader); only those `reachable` says can be reached.
fn replica_order(
    replicas: &[String],
    answered: Option<String>,
    named: Option<String>,
    reachable: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(replicas.len());
    for n in answered
        .into_iter()
        .chain(named)
        .chain(replicas.iter().cloned())
    {
        if replicas.contains(&n) && !out.contains(&n) && reachable(&n) {
            out.push(n);
        }
    }
    out
}

/// A request to a partition replica, local ([`ServerMsg`]) or through another node ([`PeerMsg`]).
trait ReplicaCall: Clone + Send + 'static {
    type Out: Send + 'static;
    /// A read: sending it again cannot change anything.
    const READ: bool;
    fn local(self, deadline: Instant, reply: RpcReplyPort<Result<Self::Out, Error>>) -> ServerMsg;
    fn remote(
        self,
        group: GroupId,
        deadline_ms: u64,
        reply: RpcReplyPort<Wire<Self::Out>>,
    ) -> PeerMsg;
}

#[derive(Clone)]
struct Produce(Vec<Record>);

impl ReplicaCall for Produce {
    type Out = u64;
    const READ: bool = false;
    fn local(self, deadline: Instant, reply: RpcReplyPort<Result<u64, Error>>) -> ServerMsg {
        ServerMsg::Produce {
            records: self.0,
            deadline,
            reply,
        }
    }
    fn remote(self, group: GroupId, deadline_ms: u64, reply: RpcReplyPort<Wire<u64>>) -> PeerMsg {
        PeerMsg::Produce {
            target: Wire::ok((group, deadline_ms)),
            records: Framed::ok(self.0),
            reply,
        }
    }
}

#[derive(Clone)]
struct Fetch(FetchRequest);

impl ReplicaCall for Fetch {
    type Out = FetchResponse;
    const READ: bool = true;
    fn local(self, _: Instant, reply: RpcReplyPort<Result<FetchResponse, Error>>) -> ServerMsg {
        ServerMsg::Fetch {
            request: self.0,
            reply,
        }
    }
    fn remote(self, group: GroupId, _: u64, reply: RpcReplyPort<Wire<FetchResponse>>) -> PeerMsg {
        PeerMsg::Fetch {
            request: Wire::ok((group, self.0)),
            reply,
        }
    }
}

/// How long a describe or a list of moves waits for a partition leader's status.
const STATUS_WAIT: Duration = Duration::from_secs(1);

/// Every replica of `p` (a move's destinations included) as its leader's `status` shows it.
fn replica_states(
    state: &daftka_core::metadata::MetadataState,
    p: &PartitionMeta,
    status: &daftka_protocol::GroupStatus,
) -> Vec<daftka_protocol::ReplicaStatus> {
    state
        .hosts(p)
        .into_iter()
        .map(|node| {
            let member = state
                .nodes
                .get(&node)
                .and_then(|n| status.members.iter().find(|m| m.raft_id == n.raft_id));
            let (state, lag) = match member {
                None => ("offline", status.last_index),
                Some(m) => {
                    let lag = status.last_index.saturating_sub(m.matched);
                    let state = if m.leader {
                        "leader"
                    } else if !m.active {
                        "offline"
                    } else if m.learner {
                        "learner"
                    } else {
                        "follower"
                    };
                    (state, if m.leader { 0 } else { lag })
                }
            };
            daftka_protocol::ReplicaStatus {
                node,
                state: state.to_string(),
                lag,
            }
        })
        .collect()
}

#[derive(Clone)]
struct StatusCall;

impl ReplicaCall for StatusCall {
    type Out = daftka_protocol::GroupStatus;
    const READ: bool = true;
    fn local(
        self,
        _: Instant,
        reply: RpcReplyPort<Result<daftka_protocol::GroupStatus, Error>>,
    ) -> ServerMsg {
        ServerMsg::GroupStatus { reply }
    }
    fn remote(
        self,
        group: GroupId,
        _: u64,
        reply: RpcReplyPort<Wire<daftka_protocol::GroupStatus>>,
    ) -> PeerMsg {
        PeerMsg::GroupStatus {
            group: Wire::ok(group),
            reply,
        }
    }
}

#[derive(Clone)]
struct Positions;

impl ReplicaCall for Positions {
    type Out = (u64, u64);
    const READ: bool = true;
    fn local(self, _: Instant, reply: RpcReplyPort<Result<(u64, u64), Error>>) -> ServerMsg {
        ServerMsg::Positions { reply }
    }
    fn remote(self, group: GroupId, _: u64, reply: RpcReplyPort<Wire<(u64, u64)>>) -> PeerMsg {
        PeerMsg::Positions {
            group: Wire::ok(group),
            reply,
        }
    }
}

/// A topic description before asking the replicas for their offsets (moves in flight from `state`).
fn describe_unpositioned(
    t: &TopicMeta,
    state: &daftka_core::metadata::MetadataState,
) -> TopicDescription {
    TopicDescription {
        name: t.name.clone(),
        replication_factor: t.replication_factor,
        partitions: t
            .partitions
            .iter()
            .map(|p| PartitionDescription {
                partition: p.partition,
                leader: p.leader.clone(),
                replicas: p.replicas.clone(),
                log_start_offset: 0,
                high_watermark: 0,
                replica_states: Vec::new(),
                under_replicated: p.replicas.len() < t.replication_factor as usize,
                moving_to: state
                    .moves
                    .get(&p.group)
                    .map(|m| m.to.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        retention_time_ms: state
            .topic_settings
            .get(&t.name)
            .and_then(|s| s.retention_time_ms),
        retention_bytes: state
            .topic_settings
            .get(&t.name)
            .and_then(|s| s.retention_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daftka_protocol::ErrorCode;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The replica that answered last comes first, then the leader the metadata names, then
    /// placement order; unreachable nodes and nodes that hold no replica are left out.
    #[test]
    fn replicas_are_tried_best_first_and_only_when_reachable() {
        let replicas = names(&["a", "b", "c"]);
        let all = |_: &str| true;
        assert_eq!(
            replica_order(&replicas, Some("c".into()), Some("b".into()), all),
            names(&["c", "b", "a"])
        );
        assert_eq!(replica_order(&replicas, None, None, all), replicas);
        // Liveness beats "answered last": c is cut off.
        assert_eq!(
            replica_order(&replicas, Some("c".into()), Some("c".into()), |n| n != "c"),
            names(&["a", "b"])
        );
        // A stale guess naming a node without a replica is ignored.
        assert_eq!(
            replica_order(&replicas, Some("z".into()), Some("b".into()), all),
            names(&["b", "a", "c"])
        );
        assert!(replica_order(&replicas, None, None, |_| false).is_empty());
    }

    fn at(partition: u32, offset: u64) -> RecordPosition {
        RecordPosition { partition, offset }
    }

    /// All stored: the positions. None stored: the most telling error (an unknown outcome beats
    /// a refusal). Some stored: never `unavailable` (which promises nothing was stored).
    #[test]
    fn a_produce_over_several_partitions_answers_what_happened() {
        let positions = vec![at(0, 5), at(1, 7)];
        assert_eq!(
            combine_outcomes(positions.clone(), &[0, 1], vec![]),
            Ok(positions.clone())
        );
        let refused = Error::unavailable("no leader");
        let unknown = Error::timeout("no answer");
        let none = combine_outcomes(
            positions.clone(),
            &[],
            vec![(0, refused.clone()), (1, unknown.clone())],
        );
        assert_eq!(none.unwrap_err().code, ErrorCode::Timeout);
        let none = combine_outcomes(positions.clone(), &[], vec![(1, refused.clone())]);
        assert_eq!(none.unwrap_err().code, ErrorCode::Unavailable);
        let some = combine_outcomes(positions, &[0], vec![(1, refused)]).unwrap_err();
        assert_eq!(some.code, ErrorCode::Timeout);
        assert!(some.message.contains("partially stored"), "{some}");
        assert!(some.message.contains("[0]"), "{some}");
    }
}
