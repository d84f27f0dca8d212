//! ReplicaSup: one partition replica, supervised one_for_all.
//!
//! Parent: Partitions (dynamic). Registered as `names::replica_sup(node, group)`. Children, in start
//! order: Storage (reads and long polls), Raft (the group's RawNode; applies and reports the high
//! watermark to Storage), Server (the replica's front door). one_for_all: the three share the
//! replica's view of its log (high watermark, leadership), so when one dies all restart together
//! and rebuild that view from fjall; no child can run against a stale sibling.

use std::sync::Arc;

use daftka_protocol::{names, GroupId, PartitionId};

use crate::context::NodeContext;
use crate::supervision::{child, ChildSpec, Restart, Strategy, SupervisorArgs};

use super::raft::{ReplicaRaft, ReplicaRaftArgs};
use super::reader::{ReplicaReader, ReplicaReaderArgs};
use super::server::{Server, ServerArgs};

/// What identifies one replica.
#[derive(Debug, Clone)]
pub struct ReplicaId {
    pub topic: String,
    pub partition: PartitionId,
    pub group: GroupId,
    /// Raft ids of the group's voters (used only to bootstrap a new group).
    pub voters: Vec<u64>,
}

/// The ReplicaSup of `replica`, as a child of Partitions.
pub fn spec(ctx: Arc<NodeContext>, replica: ReplicaId) -> ChildSpec {
    let node = ctx.node.clone();
    let group = replica.group;
    let children = {
        let (c1, r1) = (ctx.clone(), replica.clone());
        let (c2, r2) = (ctx.clone(), replica.clone());
        let (c3, r3) = (ctx.clone(), replica.clone());
        vec![
            child(
                "reader",
                Restart::Permanent,
                Some(names::replica_reader(&node, group)),
                move || {
                    (
                        ReplicaReader,
                        ReplicaReaderArgs {
                            ctx: c1.clone(),
                            replica: r1.clone(),
                        },
                    )
                },
            ),
            child(
                "raft",
                Restart::Permanent,
                Some(names::replica_raft(&node, group)),
                move || {
                    (
                        ReplicaRaft,
                        ReplicaRaftArgs {
                            ctx: c2.clone(),
                            replica: r2.clone(),
                        },
                    )
                },
            ),
            child(
                "server",
                Restart::Permanent,
                Some(names::replica_server(&node, group)),
                move || {
                    (
                        Server,
                        ServerArgs {
                            ctx: c3.clone(),
                            replica: r3.clone(),
                        },
                    )
                },
            ),
        ]
    };
    let policy = ctx.config.restart_policy();
    let on_restart = crate::root::restart_counter(&ctx);
    crate::supervision::supervisor_child(
        super::replica_child_id(group),
        Restart::Transient,
        Some(names::replica_sup(&node, group)),
        SupervisorArgs {
            strategy: Strategy::OneForAll,
            policy,
            children,
            on_restart: Some(on_restart),
        },
    )
}
