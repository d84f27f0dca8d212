//! Prometheus metrics of one node. Every name starts with `daftka_`.
//!
//! One [`Metrics`] per node, shared by `Arc`; each node has its own registry, so several nodes in one
//! test process never collide. Served as text on `--metrics-addr` by [`serve`].

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The metric families of one node.
pub struct Metrics {
    pub registry: Registry,
    /// Records appended, by topic and partition.
    pub append_records: IntCounterVec,
    /// Produce latency from proposal to acknowledgement, seconds, by topic.
    pub append_latency: HistogramVec,
    /// Records returned by fetches, by topic and partition.
    pub fetch_records: IntCounterVec,
    /// High watermark, by topic and partition.
    pub high_watermark: IntGaugeVec,
    /// Bytes of the node's fjall database on disk.
    pub storage_bytes: IntGauge,
    /// Current Raft term, by raft group.
    pub raft_term: IntGaugeVec,
    /// Partition replicas by `state`: `ticking` (driven by the Raft clock) or `quiet` (the
    /// only member of its group, and its leader: nothing for the clock to do).
    pub raft_replicas: IntGaugeVec,
    /// Leader changes observed, by raft group.
    pub raft_leader_changes: IntCounterVec,
    /// Supervisor restarts, by child id.
    pub supervisor_restarts: IntCounterVec,
    /// HTTP requests, by route and status.
    pub http_requests: IntCounterVec,
    /// Time from a request's arrival to its answer, seconds, by route.
    pub http_request_duration: HistogramVec,
    /// Time of each group-commit writer round, seconds, by `step`: `commit` (the round's batches
    /// into fjall, waiting for its journal lock included) and `persist` (the fsync).
    pub storage_round_seconds: HistogramVec,
    /// fsync rounds of the group-commit writer.
    pub storage_commit_rounds: IntGauge,
    /// Raft messages handed to a peer, by outcome (`sent`, `dropped`).
    pub raft_messages: IntCounterVec,
    /// Snapshots by raft group and event: `stored` (this replica compacted its log) or
    /// `installed` (a leader's snapshot replaced this replica's log).
    pub raft_snapshots: IntCounterVec,
    /// Offset commits this node handled, by consumer group.
    pub group_commits: IntCounterVec,
    /// Members of each consumer group (the metadata as this node sees it).
    pub group_members: IntGaugeVec,
    /// Rebalances of each consumer group since it was first joined (replicated count).
    pub group_rebalances: IntCounterVec,
    /// Times the node handed free heap memory back to the OS (`memory`).
    pub memory_trims: prometheus::IntCounter,
    /// Bytes this node's partition leaders sent to the new replicas of moves.
    pub move_bytes: prometheus::IntCounter,
    /// Requests refused because the node's in-flight byte budget was spent.
    pub overload_rejections: prometheus::IntCounter,
    /// Records between a group's committed offset and the high watermark, for the partitions
    /// this node leads, by group, topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// 1 while a peer is reachable (authenticated session, heartbeats arriving), else 0, by peer.
    pub peer_up: IntGaugeVec,
    /// Calls to a peer not made (`skipped`) or given up while waiting (`abandoned`) because the
    /// heartbeat marked the peer unresponsive, by peer and outcome.
    pub peer_calls: IntCounterVec,
    /// 1 while this node reaches no majority of the registered nodes (itself included).
    pub minority: IntGauge,
    /// Partitions with fewer replicas than their topic's factor, or with a replica on a node
    /// this node cannot reach, as this node's metadata shows them.
    pub under_replicated_partitions: IntGauge,
    /// Replica moves in flight in the cluster, as this node's metadata shows them.
    pub moves_in_flight: IntGauge,
    /// Partition replicas placed on each registered node (a move's destinations included).
    pub node_replicas: IntGaugeVec,
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            // Names are static and unique within this fresh registry: failure is a programming error.
            r.register(Box::new(c.clone()))
                .expect("metric registered twice");
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str| {
            reg(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let append_records = counter(
            "daftka_append_records_total",
            "Records appended (committed and acknowledged)",
            &["topic", "partition"],
        );
        let fetch_records = counter(
            "daftka_fetch_records_total",
            "Records returned by fetches",
            &["topic", "partition"],
        );
        let high_watermark = gauge_vec(
            "daftka_high_watermark",
            "High watermark of a partition replica",
            &["topic", "partition"],
        );
        let storage_bytes = gauge(
            "daftka_storage_bytes",
            "Bytes of the fjall database on disk",
        );
        let storage_commit_rounds = gauge(
            "daftka_storage_commit_rounds",
            "Group-commit fsync rounds since start",
        );
        let raft_term = gauge_vec("daftka_raft_term", "Current Raft term", &["group"]);
        let raft_replicas = gauge_vec(
            "daftka_raft_replicas",
            "Partition replicas on this node: ticking (driven by the Raft clock) or quiet",
            &["state"],
        );
        let raft_leader_changes = counter(
            "daftka_raft_leader_changes_total",
            "Leader changes observed",
            &["group"],
        );
        let supervisor_restarts = counter(
            "daftka_supervisor_restarts_total",
            "Child restarts made by supervisors",
            &["child"],
        );
        let http_requests = counter(
            "daftka_http_requests_total",
            "HTTP requests served",
            &["route", "status"],
        );
        let raft_messages = counter(
            "daftka_raft_messages_total",
            "Raft messages to peers, by outcome: sent, or dropped (queue full, peer unreachable)",
            &["outcome"],
        );
        let raft_snapshots = counter(
            "daftka_raft_snapshots_total",
            "Raft snapshots: stored (log compacted here) or installed (sent by a leader)",
            &["group", "event"],
        );
        let group_commits = counter(
            "daftka_group_commits_total",
            "Offset commits handled by this node, by consumer group",
            &["group"],
        );
        let group_members = gauge_vec(
            "daftka_group_members",
            "Members of a consumer group",
            &["group"],
        );
        let group_rebalances = counter(
            "daftka_group_rebalances_total",
            "Rebalances of a consumer group since it was first joined",
            &["group"],
        );
        let consumer_lag = gauge_vec(
            "daftka_consumer_lag",
            "Records between a group's committed offset and the high watermark (partitions led here)",
            &["group", "topic", "partition"],
        );
        let peer_up = gauge_vec(
            "daftka_peer_up",
            "1 while a peer is reachable (session open, heartbeats arriving), else 0",
            &["peer"],
        );
        let peer_calls = counter(
            "daftka_peer_calls_total",
            "Calls to a peer skipped or abandoned because the heartbeat marked it unresponsive",
            &["peer", "outcome"],
        );
        let minority = gauge(
            "daftka_minority",
            "1 while this node reaches no majority of the registered nodes (itself included)",
        );
        let under_replicated_partitions = gauge(
            "daftka_under_replicated_partitions",
            "Partitions with fewer replicas than their factor or a replica on an unreachable node",
        );
        let moves_in_flight = gauge(
            "daftka_moves_in_flight",
            "Replica moves in flight in the cluster (this node's metadata view)",
        );
        let node_replicas = gauge_vec(
            "daftka_node_replicas",
            "Partition replicas placed on a node (a move's destinations included)",
            &["node"],
        );
        let single_counter = |name: &str, help: &str| {
            reg(
                &registry,
                prometheus::IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>, label: &str| {
            reg(
                &registry,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])
                    .expect("valid metric"),
            )
        };
        let overload_rejections = single_counter(
            "daftka_overload_rejections_total",
            "Requests refused (unavailable) because limits.inflight_bytes_max was in use",
        );
        let memory_trims = single_counter(
            "daftka_memory_trims_total",
            "Times the node handed free heap memory back to the OS (limits.memory_trim_interval)",
        );
        let move_bytes = single_counter(
            "daftka_move_bytes_total",
            "Bytes this node's partition leaders sent to the new replicas of moves (catch-up, throttled to rebalance.move_bytes_per_sec)",
        );
        let append_latency = histogram(
            "daftka_append_latency_seconds",
            "Time from proposal to acknowledgement of a produce",
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
            "topic",
        );
        let http_request_duration = histogram(
            "daftka_http_request_duration_seconds",
            "Time from an HTTP request's arrival to its answer",
            vec![
                0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0,
            ],
            "route",
        );
        let storage_round_seconds = histogram(
            "daftka_storage_round_seconds",
            "Group-commit writer rounds: commit (batches into fjall) and persist (fsync)",
            vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
            "step",
        );
        Arc::new(Metrics {
            storage_round_seconds,
            http_request_duration,
            registry,
            append_records,
            append_latency,
            fetch_records,
            high_watermark,
            storage_bytes,
            raft_term,
            raft_replicas,
            raft_leader_changes,
            supervisor_restarts,
            http_requests,
            storage_commit_rounds,
            raft_messages,
            raft_snapshots,
            group_commits,
            group_members,
            group_rebalances,
            consumer_lag,
            peer_up,
            peer_calls,
            minority,
            under_replicated_partitions,
            moves_in_flight,
            node_replicas,
            overload_rejections,
            memory_trims,
            move_bytes,
        })
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use warp::Filter;
    let route = warp::path::full().map(move |path: warp::path::FullPath| {
        if path.as_str() != "/metrics" {
            let mut reply = warp::reply::Response::new("not found: try /metrics\n".into());
            *reply.status_mut() = warp::http::StatusCode::NOT_FOUND;
            return reply;
        }
        {
            let mut reply = warp::reply::Response::new(metrics.render().into());
            reply.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            reply
        }
    });
    warp::serve(route)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// Where the metrics endpoint listens, for logs.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}
