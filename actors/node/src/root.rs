//! Root: the root of a node's supervision tree, and the node's start and stop.
//!
//! Strategy one_for_one over, in start order: Peer (other nodes' entry point), Cluster,
//! MetadataSup (rest_for_one: Metadata),
//! Partitions (dynamic), Placement, Router, Gateway. Partitions starts before the Placement,
//! which fills it, and the Router and Gateway come last so requests find everything up. When the
//! Root itself exceeds its restart intensity it stops, and [`run`] ends the process with an
//! error: a node that cannot keep its tree up must not pretend to serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daftka_core::config::{Config, ConfigError};
use daftka_protocol::{names, Client};
use daftka_storage::{RoundObserver, RoundTiming, StorageError, Store, StoreOptions};
use ractor::ActorRef;
use tokio::sync::watch;

use crate::cluster::peer::{Peer, PeerArgs};
use crate::cluster::transport::ClusterTransport;
use crate::cluster::{Cluster, ClusterArgs};
use crate::context::{MetadataView, NodeContext};
use crate::gateway::{Gateway, GatewayArgs, GatewayState};
use crate::metrics::Metrics;
use crate::placement::{Placement, PlacementArgs};
use crate::readiness::Readiness;
use crate::router::{Router, RouterArgs};
use crate::supervision::{
    child, start_supervisor, ChildSpec, OnRestart, Restart, Strategy, SupervisorArgs, SupervisorMsg,
};

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("starting the supervision tree: {0}")]
    Spawn(String),
    #[error("the node's root supervisor stopped: restart intensity exceeded")]
    RootDown,
    #[error("the cluster refuses this node: {0}")]
    Refused(String),
}

/// The node's bound sockets. Binding is separate from starting so tests can bind port 0 and
/// learn the address, and so a restarted Gateway keeps its port.
pub struct Listeners {
    pub http: std::net::TcpListener,
    pub metrics: std::net::TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub fn bind(config: &Config) -> Result<Listeners, NodeError> {
        let bind = |what, addr: &str| {
            std::net::TcpListener::bind(addr).map_err(|source| NodeError::Bind {
                what,
                addr: addr.to_string(),
                source,
            })
        };
        Ok(Listeners {
            http: bind("the HTTP API", &config.node.http_addr)?,
            metrics: bind("the metrics endpoint", &config.node.metrics_addr)?,
        })
    }
}

/// How long [`Node::shutdown`] waits for the last holder of the store to let go.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(30);

/// A running node.
pub struct Node {
    pub name: String,
    pub http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// A native client of this node's Router.
    pub client: Client,
    ctx: Arc<NodeContext>,
    root: ActorRef<SupervisorMsg>,
    root_handle: tokio::task::JoinHandle<()>,
}

/// A restart callback that counts restarts per child id in `daftka_supervisor_restarts_total`.
pub fn restart_counter(ctx: &NodeContext) -> OnRestart {
    let counter = ctx.metrics.supervisor_restarts.clone();
    Arc::new(move |child: &str| {
        tracing::warn!(child, "supervisor restarted a child");
        counter.with_label_values(&[child]).inc();
    })
}

/// Starts a node on `listeners`: opens its store and builds its supervision tree.
pub async fn start(config: Config, listeners: Listeners) -> Result<Node, NodeError> {
    config.validate()?;
    let node = config.node.name.clone();
    let dir = config.data_dir();
    std::fs::create_dir_all(&dir).map_err(|source| NodeError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let metrics = Metrics::new();
    let on_round = {
        let (commit, persist) = (
            metrics.storage_round_seconds.with_label_values(&["commit"]),
            metrics
                .storage_round_seconds
                .with_label_values(&["persist"]),
        );
        RoundObserver(Arc::new(move |t: &RoundTiming| {
            commit.observe(t.commit.as_secs_f64());
            if let Some(p) = t.persist {
                persist.observe(p.as_secs_f64());
            }
        }))
    };
    let store = Store::open(
        &dir.join("fjall"),
        StoreOptions {
            fsync: config.storage.fsync,
            commit_requests_max: config.storage.commit_requests_max,
            cache_size_bytes: config.storage.cache_bytes,
            journal_size_bytes_max: config.storage.journal_bytes_max,
            memtable_size_bytes_max: config.storage.memtable_bytes_max,
            worker_threads: config.storage.worker_threads,
            on_round: Some(on_round),
        },
    )?;
    let incarnation = store.incarnation();
    let raft_id = store.raft_id(|new| {
        if new {
            daftka_protocol::ids::raft_id_of_incarnation(&node, incarnation)
        } else {
            daftka_protocol::ids::raft_id(&node)
        }
    })?;
    let local = |l: &std::net::TcpListener, what| {
        l.local_addr().map_err(|source| NodeError::Bind {
            what,
            addr: String::new(),
            source,
        })
    };
    let http_addr = local(&listeners.http, "the HTTP API")?;
    let metrics_addr = local(&listeners.metrics, "the metrics endpoint")?;
    let (metadata_tx, _) = watch::channel(MetadataView::default());
    let transport = ClusterTransport::new();
    let budget = crate::budget::ByteBudget::new(
        config.limits.inflight_bytes_max,
        metrics.overload_rejections.clone(),
    );
    let move_bytes_per_sec = config.rebalance.move_bytes_per_sec;
    let ctx = Arc::new(NodeContext {
        node: node.clone(),
        raft_id,
        config,
        store,
        metrics: metrics.clone(),
        readiness: Readiness::new(),
        metadata: metadata_tx,
        transport: transport.clone(),
        membership: watch::channel(Default::default()).0,
        http_addr,
        metrics_addr,
        budget,
        ticker: Default::default(),
        refused: watch::channel(None).0,
        dead_nodes: watch::channel(Default::default()).0,
        move_throttle: crate::budget::Throttle::new(move_bytes_per_sec),
    });

    transport.attach(&ctx);

    listeners
        .metrics
        .set_nonblocking(true)
        .map_err(|source| NodeError::Bind {
            what: "the metrics endpoint",
            addr: metrics_addr.to_string(),
            source,
        })?;
    let services = services(&ctx, Arc::new(listeners.metrics));

    let children = {
        let c = ctx.clone();
        let peer = child(
            "peer",
            Restart::Permanent,
            Some(names::peer(&node)),
            move || (Peer, PeerArgs { ctx: c.clone() }),
        );
        let c = ctx.clone();
        let cluster = child(
            "cluster",
            Restart::Permanent,
            Some(names::cluster(&node)),
            move || (Cluster, ClusterArgs { ctx: c.clone() }),
        );
        let c = ctx.clone();
        let placement = child(
            "placement",
            Restart::Permanent,
            Some(names::placement(&node)),
            move || (Placement, PlacementArgs { ctx: c.clone() }),
        );
        let c = ctx.clone();
        let router = child(
            "router",
            Restart::Permanent,
            Some(names::router(&node)),
            move || (Router, RouterArgs { ctx: c.clone() }),
        );
        let gateway = {
            let listener = Arc::new(listeners.http);
            let state_ctx = ctx.clone();
            let node = node.clone();
            child(
                "gateway",
                Restart::Permanent,
                Some(names::gateway(&node)),
                move || {
                    let state = GatewayState {
                        // By name: the gateway keeps working when the Router restarts alone.
                        client: Client::local(&node),
                        limits: state_ctx.config.limits.clone(),
                        readiness: state_ctx.readiness.clone(),
                        metrics: state_ctx.metrics.clone(),
                        chaos_node: state_ctx.config.debug.chaos.then(|| state_ctx.node.clone()),
                        budget: state_ctx.budget.clone(),
                    };
                    let listener = listener
                        .try_clone()
                        .expect("cloning a bound listener only fails when out of descriptors");
                    (Gateway, GatewayArgs { listener, state })
                },
            )
        };
        let mut children = services;
        children.extend([
            peer,
            cluster,
            crate::metadata::spec(ctx.clone()),
            crate::partitions::spec(ctx.clone()),
            placement,
            router,
            gateway,
        ]);
        children
    };
    let (root, root_handle) = start_supervisor(
        Some(names::root(&node)),
        SupervisorArgs {
            strategy: Strategy::OneForOne,
            policy: ctx.config.restart_policy(),
            children,
            on_restart: Some(restart_counter(&ctx)),
        },
        None,
    )
    .await
    .map_err(|e| NodeError::Spawn(e.to_string()))?;

    let client = Client::connect_local(&node).map_err(|e| NodeError::Spawn(e.to_string()))?;
    tracing::info!(node = %node, http = %http_addr, metrics = %metrics_addr, "node started");
    Ok(Node {
        name: node,
        http_addr,
        metrics_addr,
        client,
        ctx,
        root,
        root_handle,
    })
}

impl Node {
    /// Waits until `/readyz` would answer 200, or `timeout` passes (then says why not).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.ctx.readiness.check() {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() >= deadline => return Err(why),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// The node's readiness flags.
    pub fn readiness(&self) -> &Readiness {
        &self.ctx.readiness
    }

    /// Stops the tree gracefully (every `post_stop` runs, the services' tasks end with them) and
    /// returns once the store is closed: the data directory can be opened again at once (a read
    /// still running on a blocking thread when the tree stopped holds it until it ends).
    pub async fn shutdown(self) {
        let Node {
            ctx,
            root,
            root_handle,
            ..
        } = self;
        let closed = ctx.store.closed();
        let _ = root
            .stop_and_wait(Some("shutdown".to_string()), Some(Duration::from_secs(10)))
            .await;
        ctx.transport.close();
        let _ = root_handle.await;
        drop(ctx);
        if tokio::time::timeout(STORE_CLOSE_WAIT, closed.wait())
            .await
            .is_err()
        {
            tracing::error!(
                waited = ?STORE_CLOSE_WAIT,
                "the store is still open after the node stopped: a task outlived the tree"
            );
        }
    }

    /// Resolves with the reason once the cluster refuses this node for good (it was removed, or
    /// started on a removed node's data directory): the caller shuts it down.
    pub fn refused(&self) -> impl Future<Output = String> + Send + 'static {
        let mut rx = self.ctx.refused.subscribe();
        async move {
            loop {
                if let Some(why) = rx.borrow_and_update().clone() {
                    return why;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Resolves when the Root stops on its own (restart intensity exceeded).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.root_handle).await;
    }
}

/// The node's long-lived tasks as supervised services, started first: the metrics endpoint on
/// `metrics` (a clone of the bound listener per start), the replicas' clock, the allocator's trim
/// and the storage gauges.
fn services(ctx: &Arc<NodeContext>, metrics: Arc<std::net::TcpListener>) -> Vec<ChildSpec> {
    let node = &ctx.node;
    let c = ctx.clone();
    let endpoint = crate::service::spec(node, "metrics", move || {
        let c = c.clone();
        let listener = metrics
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std);
        Box::pin(async move {
            match listener {
                Ok(l) => crate::metrics::serve(l, c.metrics.clone(), std::future::pending()).await,
                // Returning ends the service: its supervisor starts it again.
                Err(e) => tracing::error!(error = %e, "the metrics listener cannot be used"),
            }
        })
    });
    let c = ctx.clone();
    let ticker = crate::service::spec(node, "ticker", move || {
        let c = c.clone();
        Box::pin(async move {
            let cfg = &c.config;
            c.ticker
                .run(
                    cfg.raft.tick,
                    cfg.topics.retention_check_interval,
                    c.metrics.clone(),
                )
                .await
        })
    });
    let c = ctx.clone();
    let memory = crate::service::spec(node, "memory", move || {
        let c = c.clone();
        Box::pin(async move {
            let l = &c.config.limits;
            crate::memory::trim_loop(
                l.memory_trim_interval,
                l.memory_trim_free_bytes_min,
                c.metrics.clone(),
            )
            .await
        })
    });
    let c = ctx.clone();
    let gauges = crate::service::spec(node, "gauges", move || {
        let c = c.clone();
        Box::pin(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                // fjall measures its journal under the journal's lock, which the storage writer
                // holds through every fsync: off the runtime, or a slow fsync stalls its workers.
                let store = c.store.clone();
                if let Ok(bytes) = tokio::task::spawn_blocking(move || store.disk_bytes()).await {
                    c.metrics.storage_bytes.set(bytes as i64);
                }
                c.metrics
                    .storage_commit_rounds
                    .set(c.store.commit_rounds() as i64);
            }
        })
    });
    vec![endpoint, ticker, memory, gauges]
}

/// Runs a node until `shutdown` resolves (or its root supervisor gives up).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    config.validate()?;
    let listeners = Listeners::bind(&config)?;
    let mut node = start(config, listeners).await?;
    let refused = node.refused();
    tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down");
            node.shutdown().await;
            Ok(())
        }
        why = refused => {
            node.shutdown().await;
            Err(NodeError::Refused(why))
        }
        _ = node.stopped() => Err(NodeError::RootDown),
    }
}
