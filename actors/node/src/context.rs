//! What every actor of one node shares: configuration, the fjall store, metrics, readiness, the
//! published metadata view and the Raft transport. Built once by [`crate::root::start`];
//! it outlives every actor restart (it holds no actor state, only handles).

use std::net::SocketAddr;
use std::sync::Arc;

use daftka_core::config::Config;
use daftka_core::metadata::MetadataState;
use daftka_storage::Store;
use tokio::sync::watch;

use crate::consensus::RaftTransport;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// The metadata as last applied on this node, published by the Metadata actor after every round.
#[derive(Debug, Clone, Default)]
pub struct MetadataView {
    pub state: Arc<MetadataState>,
    /// True once the metadata group has applied everything committed when it opened; until then
    /// nobody may act on the (possibly stale or empty) state, e.g. delete "orphaned" replicas.
    pub loaded: bool,
    /// The metadata group's leader, by node name, if known.
    pub leader: Option<String>,
    /// The last metadata log index `state` includes.
    pub applied: u64,
    /// The metadata group's voters and learners (raft ids), as this node applied them.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// One peer node as membership sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's cluster address as this node sees the session.
    pub addr: String,
    /// An authenticated session with it is open and its heartbeats arrive.
    pub up: bool,
}

/// What the Cluster actor knows of the other nodes and of its seeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Peers by node name.
    pub peers: std::collections::BTreeMap<String, Peer>,
    pub seeds: Vec<daftka_protocol::SeedInfo>,
    /// This node reaches no majority of the registered nodes (itself included): it is cut off
    /// from the rest of the cluster, and says so instead of waiting for answers that cannot come.
    pub minority: bool,
}

/// The shared handles of one node.
pub struct NodeContext {
    /// This node's name (scopes every registered actor name).
    pub node: String,
    /// This node's id inside Raft groups.
    pub raft_id: u64,
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// The Metadata actor publishes here; the Router and the Placement subscribe.
    pub metadata: watch::Sender<MetadataView>,
    pub transport: Arc<dyn RaftTransport>,
    /// The Cluster actor publishes the peers it sees here; the Router reads it.
    pub membership: watch::Sender<Membership>,
    pub http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Bytes of requests in flight on the node (`limits.inflight_bytes_max`).
    pub budget: crate::budget::ByteBudget,
    /// Drives the Raft clock of this node's partition replicas.
    pub ticker: crate::partitions::ticker::Ticker,
    /// Set once the cluster refuses this node for good (it was removed, or its data directory is
    /// not the one registered under its name): the node stops and says why.
    pub refused: watch::Sender<Option<String>>,
    /// On the metadata leader: the nodes down past `rebalance.node_down_timeout`, as the
    /// Rebalancer counts them (empty elsewhere). The Metadata actor replaces such voters.
    pub dead_nodes: watch::Sender<std::collections::BTreeSet<String>>,
    /// The node's rate of move catch-up bytes (`rebalance.move_bytes_per_sec`).
    pub move_throttle: crate::budget::Throttle,
}

impl NodeContext {
    /// The cluster refuses this node for good: logs why once and asks the node to stop.
    pub fn refuse(&self, why: String) {
        self.refused.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            tracing::error!(node = %self.node, "{why}");
            *r = Some(why);
            true
        });
    }

    /// Whether `node` can be reached now: this node, or a peer with an authenticated session
    /// whose heartbeats arrive.
    pub fn reachable(&self, node: &str) -> bool {
        node == self.node
            || self
                .membership
                .borrow()
                .peers
                .get(node)
                .is_some_and(|p| p.up)
    }

    /// The registered nodes that can be reached now (sorted): where new replicas may go.
    pub fn live_nodes(&self, state: &daftka_core::metadata::MetadataState) -> Vec<String> {
        state
            .nodes
            .keys()
            .filter(|n| self.reachable(n))
            .cloned()
            .collect()
    }

    /// Resolves once `node` is not reachable (at once if it is not now); never for this node.
    pub async fn unreachable(&self, node: &str) {
        let mut rx = self.membership.subscribe();
        loop {
            let up =
                node == self.node || rx.borrow_and_update().peers.get(node).is_some_and(|p| p.up);
            if !up {
                return;
            }
            if rx.changed().await.is_err() {
                // The node is shutting down: nothing will change any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The current metadata view.
    pub fn metadata_view(&self) -> MetadataView {
        self.metadata.borrow().clone()
    }

    /// Waits until `check` finds what it looks for in this node's metadata view, or `deadline`
    /// passes (`None`).
    pub async fn wait_metadata<T>(
        &self,
        deadline: tokio::time::Instant,
        check: impl Fn(&MetadataView) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.metadata.subscribe();
        loop {
            if let Some(found) = check(&rx.borrow_and_update()) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
}
