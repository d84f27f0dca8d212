//! Router: the node's client entry point and Daftka's exposed actor ([`RouterMsg`]).
//!
//! Parent: ControlPlane (one_for_one). Registered as `names::router(node)`.
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

use daftka_core::metadata::{place_replicas, MetadataCommand, MetadataEvent, TopicMeta};
use daftka_core::partition::choose_partition;
use daftka_protocol::{
    ids::validate_name, names, rpc, ClusterInfo, CommittedOffset, Error, ErrorCode, FetchRequest,
    FetchResponse, GroupId, GroupOffsets, NodeInfo, PartitionDescription, ProduceRecord, Record,
    RecordPosition, RouterMsg, TopicDescription, TopicPartitionOffset, TopicSpec,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::NodeContext;
use crate::partitions::server::ServerMsg;

pub struct RouterArgs {
    pub ctx: Arc<NodeContext>,
}

pub struct RouterState {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<NodeContext>,
    /// Spreads keyless records without an explicit partition across partitions.
    spread: AtomicU64,
}

pub struct Router;

impl Actor for Router {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RouterMsg>,
        args: RouterArgs,
    ) -> Result<RouterState, ActorProcessingErr> {
        Ok(RouterState {
            inner: Arc::new(Inner {
                ctx: args.ctx,
                spread: AtomicU64::new(0),
            }),
        })
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
                answer(reply, async move { r.create_topic(spec).await })
            }
            RouterMsg::ListTopics { reply } => answer(reply, async move { r.list_topics().await }),
            RouterMsg::DescribeTopic { topic, reply } => {
                answer(reply, async move { r.describe_topic(&topic).await })
            }
            RouterMsg::DeleteTopic { topic, reply } => {
                answer(reply, async move { r.delete_topic(&topic).await })
            }
            RouterMsg::Produce {
                topic,
                records,
                reply,
            } => {
                let span = tracing::info_span!("produce", topic = %topic, records = records.len());
                answer_in(span, reply, async move { r.produce(&topic, records).await })
            }
            RouterMsg::Fetch { request, reply } => {
                let span = tracing::info_span!(
                    "fetch",
                    topic = %request.topic,
                    partition = request.partition,
                    offset = ?request.offset
                );
                answer_in(span, reply, async move { r.fetch(request).await })
            }
            RouterMsg::CommitOffsets {
                group,
                offsets,
                reply,
            } => answer(reply, async move { r.commit_offsets(group, offsets).await }),
            RouterMsg::FetchOffsets { group, reply } => {
                answer(reply, async move { r.fetch_offsets(&group).await })
            }
            RouterMsg::ClusterInfo { reply } => answer(reply, async move { r.cluster_info() }),
        }
        Ok(())
    }
}

/// Runs `work` in its own task and sends its result to `reply`.
fn answer<T: Send + 'static>(
    reply: RpcReplyPort<Result<T, Error>>,
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) {
    answer_in(tracing::Span::none(), reply, work)
}

/// Like [`answer`], inside `span`; the outcome is logged in it at debug level.
fn answer_in<T: Send + 'static>(
    span: tracing::Span,
    reply: RpcReplyPort<Result<T, Error>>,
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) {
    use tracing::Instrument;
    tokio::spawn(
        async move {
            let result = work.await;
            if let Err(e) = &result {
                tracing::debug!(code = %e.code, error = %e.message, "request failed");
            }
            let _ = reply.send(result);
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
        let view = self.ctx.metadata_view();
        let nodes: Vec<String> = view.state.nodes.keys().cloned().collect();
        if !view.loaded || nodes.is_empty() {
            return Err(Error::unavailable("metadata is loading"));
        }
        let rf = spec.replication_factor.unwrap_or_else(|| {
            cfg.default_replication_factor
                .min(nodes.len().max(1) as u32)
        });
        let placement = place_replicas(&nodes, partitions, rf, view.state.topics.len())?;
        let cmd = MetadataCommand::CreateTopic {
            name: spec.name.clone(),
            replication_factor: rf,
            placement,
        };
        match crate::metadata::propose(&self.ctx, cmd).await? {
            MetadataEvent::TopicCreated(t) => {
                crate::rebalancer::reconcile(&self.ctx).await?;
                Ok(describe_unpositioned(&t))
            }
            other => Err(Error::internal(format!(
                "unexpected metadata event {other:?}"
            ))),
        }
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

    /// A topic with each partition's offsets; a partition whose replica does not answer shows 0s.
    async fn describe(&self, t: &TopicMeta) -> TopicDescription {
        let mut d = describe_unpositioned(t);
        let asks = t.partitions.iter().map(|p| self.positions(p.group));
        let positions = futures::future::join_all(asks).await;
        for (pd, pos) in d.partitions.iter_mut().zip(positions) {
            if let Ok((start, hwm)) = pos {
                pd.log_start_offset = start;
                pd.high_watermark = hwm;
            }
        }
        d
    }

    async fn positions(&self, group: GroupId) -> Result<(u64, u64), Error> {
        self.call_server(group, |reply| ServerMsg::Positions { reply })
            .await
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
        // Stop the replicas and remove their data before answering.
        crate::rebalancer::reconcile(&self.ctx).await
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
        let total: usize = by_partition.values().map(|(idx, _)| idx.len()).sum();
        let sends = by_partition.into_iter().map(|(p, (idx, recs))| {
            let group = t.partitions[p as usize].group;
            async move {
                let base = self
                    .call_server_retrying(group, recs, |recs, reply| ServerMsg::Produce {
                        records: recs,
                        reply,
                    })
                    .await?;
                Ok::<_, Error>((p, idx, base))
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
        for r in results {
            let (p, idx, base) = r?;
            for (k, i) in idx.into_iter().enumerate() {
                positions[i] = RecordPosition {
                    partition: p,
                    offset: base + k as u64,
                };
            }
        }
        Ok(positions)
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
        self.call_server_deadline(p.group, wait, |reply| ServerMsg::Fetch {
            request: request.clone(),
            reply,
        })
        .await
    }

    async fn commit_offsets(
        &self,
        group: String,
        offsets: Vec<TopicPartitionOffset>,
    ) -> Result<(), Error> {
        validate_name("group", &group)?;
        if offsets.is_empty() {
            return Err(Error::invalid("a commit needs at least one offset"));
        }
        daftka_core::limits::check_commit(offsets.len(), &self.ctx.config.limits)?;
        let view = self.ctx.metadata_view();
        for o in &offsets {
            view.state.partition(&o.topic, o.partition)?;
        }
        let cmd = MetadataCommand::CommitOffsets {
            group,
            offsets: offsets
                .into_iter()
                .map(|o| (o.topic, o.partition, o.offset))
                .collect(),
        };
        crate::metadata::propose(&self.ctx, cmd).await.map(|_| ())
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
                    Ok(p) => self.positions(p.group).await.map(|(_, h)| h).unwrap_or(0),
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
            .map(|n| NodeInfo {
                name: n.name.clone(),
                cluster_addr: n.cluster_addr.clone(),
                http_addr: n.http_addr.clone(),
                status: status(&n.name),
            })
            .collect();
        for (name, peer) in &membership.peers {
            if !view.state.nodes.contains_key(name) {
                nodes.push(NodeInfo {
                    name: name.clone(),
                    cluster_addr: peer.addr.clone(),
                    http_addr: String::new(),
                    status: status(name),
                });
            }
        }
        Ok(ClusterInfo {
            nodes,
            metadata_leader: view.leader,
            seeds: membership.seeds,
        })
    }

    /// Calls the Server of `group` once, with the request deadline.
    async fn call_server<T: Send + 'static>(
        &self,
        group: GroupId,
        build: impl Fn(RpcReplyPort<Result<T, Error>>) -> ServerMsg,
    ) -> Result<T, Error> {
        self.call_server_deadline(group, Duration::ZERO, build)
            .await
    }

    /// Calls the Server of `group`, retrying while the answer says the request was not taken
    /// (`not_leader`, `unavailable`), until the request deadline plus `extra`.
    async fn call_server_deadline<T: Send + 'static>(
        &self,
        group: GroupId,
        extra: Duration,
        build: impl Fn(RpcReplyPort<Result<T, Error>>) -> ServerMsg,
    ) -> Result<T, Error> {
        let cfg = &self.ctx.config.router;
        let deadline = Instant::now() + cfg.request_timeout + extra;
        let mut backoff = cfg.retry_backoff_min;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let server = names::replica_server(&self.ctx.node, group);
            let result = rpc::call_named(&server, &build, left, "the replica").await;
            match result {
                Err(e)
                    if matches!(e.code, ErrorCode::NotLeader | ErrorCode::Unavailable)
                        && Instant::now() + backoff < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cfg.retry_backoff_max);
                }
                other => return other,
            }
        }
    }

    /// Like [`Self::call_server_deadline`] for a produce, whose records must move into each try.
    async fn call_server_retrying(
        &self,
        group: GroupId,
        records: Vec<Record>,
        build: impl Fn(Vec<Record>, RpcReplyPort<Result<u64, Error>>) -> ServerMsg,
    ) -> Result<u64, Error> {
        self.call_server_deadline(group, Duration::ZERO, |reply| build(records.clone(), reply))
            .await
    }
}

/// A topic description before asking the replicas for their offsets.
fn describe_unpositioned(t: &TopicMeta) -> TopicDescription {
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
            })
            .collect(),
    }
}
