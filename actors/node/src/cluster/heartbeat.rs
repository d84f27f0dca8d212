//! Heartbeat: receives the other nodes' heartbeats for the Cluster actor.
//!
//! Parent: Cluster (linked; spawned and stopped by it). Registered as `names::heartbeat(node)` and a
//! member of the pg group [`names::HEARTBEAT_GROUP`], which ractor_cluster synchronises across
//! authenticated sessions, so every node's Cluster actor finds the others' Heartbeat actors there.
//! Its message is the only one that crosses the network for now: [`HeartbeatMsg::Beat`], a node
//! name and a sequence number (wire format: variant name and field order, never changed).
//!
//! # Crash and recovery
//! Stateless: its Cluster actor fails with it (linked) and starts a new one.

use daftka_protocol::names;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::ClusterMsg;

/// Messages between nodes' Heartbeat actors.
#[derive(ractor_cluster::RactorClusterMessage)]
pub enum HeartbeatMsg {
    /// Node `from` is alive; `seq` counts its beats since its Cluster actor started.
    Beat(String, u64),
}

pub struct HeartbeatArgs {
    pub cluster: ActorRef<ClusterMsg>,
}

pub struct Heartbeat;

impl Actor for Heartbeat {
    type Msg = HeartbeatMsg;
    type State = ActorRef<ClusterMsg>;
    type Arguments = HeartbeatArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HeartbeatMsg>,
        args: HeartbeatArgs,
    ) -> Result<ActorRef<ClusterMsg>, ActorProcessingErr> {
        ractor::pg::join(names::HEARTBEAT_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(args.cluster)
    }

    async fn handle(
        &self,
        _myself: ActorRef<HeartbeatMsg>,
        msg: HeartbeatMsg,
        cluster: &mut ActorRef<ClusterMsg>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HeartbeatMsg::Beat(from, _seq) => {
                cluster.cast(ClusterMsg::Heard { from })?;
            }
        }
        Ok(())
    }
}
