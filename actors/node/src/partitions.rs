//! Partitions: the dynamic supervisor of this node's partition replicas.
//!
//! Parent: Root (one_for_one). Registered as `names::partitions(node)`. The Placement
//! starts and terminates one ReplicaSup child per replica (child id `replica-<group>`), following the
//! metadata. Restart strategy one_for_one over the replicas: a replica that keeps crashing exhausts the
//! restart intensity and escalates, which restarts the whole Partitions subtree from disk.
//!
//! # Crash and recovery
//! Nothing is kept in memory that is not on disk: after a restart the Placement re-reads the
//! metadata and starts every replica again; each recovers from fjall.

pub mod raft;
pub mod reader;
pub mod replica_sup;
pub mod server;
pub mod ticker;

use std::sync::Arc;

use daftka_protocol::{names, GroupId};

use crate::context::NodeContext;
use crate::supervision::{ChildSpec, Restart, Strategy, SupervisorArgs};

/// The child id of a replica under Partitions.
pub fn replica_child_id(group: GroupId) -> String {
    format!("replica-{}", group.0)
}

/// The Partitions dynamic supervisor, as a child of the Root.
pub fn spec(ctx: Arc<NodeContext>) -> ChildSpec {
    crate::supervision::supervisor_child(
        "partitions",
        Restart::Permanent,
        Some(names::partitions(&ctx.node)),
        SupervisorArgs {
            strategy: Strategy::OneForOne,
            policy: ctx.config.restart_policy(),
            children: Vec::new(),
            on_restart: Some(crate::root::restart_counter(&ctx)),
        },
    )
}
