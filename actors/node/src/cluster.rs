//! Cluster: this node's membership.
//!
//! Parent: ControlPlane (one_for_one). Registered as `names::cluster(node)`.
//! For now a cluster is one node: the actor registers this node (name, Raft id, addresses) in the
//! metadata group, retrying with backoff until it is recorded, and again whenever its addresses
//! changed since the last start. Seeds, cookies and failure detection come with the cluster issue.
//!
//! # Crash and recovery
//! Stateless: a restarted Cluster actor checks the metadata and registers again if needed.

use std::sync::Arc;
use std::time::Duration;

use daftka_core::metadata::{MetadataCommand, NodeMeta};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::NodeContext;

pub struct ClusterArgs {
    pub ctx: Arc<NodeContext>,
}

pub struct ClusterState {
    ctx: Arc<NodeContext>,
    /// Delay before the next registration attempt; doubles up to the router's backoff max.
    backoff: Duration,
}

pub enum ClusterMsg {
    /// Registers this node in the metadata if it is not there as it is now.
    Register,
}

pub struct Cluster;

impl Actor for Cluster {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Arguments = ClusterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ClusterMsg>,
        args: ClusterArgs,
    ) -> Result<ClusterState, ActorProcessingErr> {
        let _ = myself.cast(ClusterMsg::Register);
        Ok(ClusterState {
            backoff: args.ctx.config.router.retry_backoff_min,
            ctx: args.ctx,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ClusterMsg>,
        msg: ClusterMsg,
        state: &mut ClusterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClusterMsg::Register => {
                let ctx = &state.ctx;
                let me = NodeMeta {
                    name: ctx.node.clone(),
                    raft_id: ctx.raft_id,
                    cluster_addr: ctx.config.node.cluster_addr.clone(),
                    http_addr: ctx.http_addr.to_string(),
                };
                let view = ctx.metadata_view();
                if view.loaded && view.state.nodes.get(&me.name) == Some(&me) {
                    return Ok(());
                }
                let result = if view.loaded {
                    crate::metadata::propose(ctx, MetadataCommand::RegisterNode(me)).await
                } else {
                    Err(daftka_protocol::Error::unavailable("metadata is loading"))
                };
                match result {
                    Ok(_) => {
                        tracing::info!(node = %ctx.node, "node registered in the metadata");
                        state.backoff = ctx.config.router.retry_backoff_min;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "node registration retried");
                        myself.send_after(state.backoff, || ClusterMsg::Register);
                        state.backoff =
                            (state.backoff * 2).min(ctx.config.router.retry_backoff_max);
                    }
                }
            }
        }
        Ok(())
    }
}
