//! Registered actor names. ractor's registry is global to the process, so every name carries the
//! node name: several nodes can then live in one test process. Names are built here only.

use crate::ids::GroupId;

/// The actor of this process known as `name`: the registered one, or else a local member of a pg
/// group with that name. For actors that are pg members (the Router) only: in a process that
/// hosts several nodes linked by ractor_cluster sessions (tests), a session's proxy of a pg member
/// carries the member's name, and ractor removes that name from the registry when the proxy
/// stops; the member is still found through its groups. Actors that join no group are never
/// proxied: look them up with `ractor::registry::where_is` (no scan of every group).
pub fn find(name: &str) -> Option<ractor::ActorCell> {
    ractor::registry::where_is(name).or_else(|| {
        ractor::pg::which_groups()
            .into_iter()
            .flat_map(|g| ractor::pg::get_members(&g))
            .find(|c| c.get_id().is_local() && c.get_name().as_deref() == Some(name))
    })
}

/// The exposed client entry point of a node: [`crate::RouterMsg`].
pub fn router(node: &str) -> String {
    format!("daftka.{node}.router")
}
/// The node's root supervisor.
pub fn root(node: &str) -> String {
    format!("daftka.{node}.root")
}
pub fn cluster(node: &str) -> String {
    format!("daftka.{node}.cluster")
}
pub fn metadata_sup(node: &str) -> String {
    format!("daftka.{node}.metadata_sup")
}
pub fn metadata(node: &str) -> String {
    format!("daftka.{node}.metadata")
}
pub fn placement(node: &str) -> String {
    format!("daftka.{node}.placement")
}
pub fn gateway(node: &str) -> String {
    format!("daftka.{node}.gateway")
}
pub fn partitions(node: &str) -> String {
    format!("daftka.{node}.partitions")
}
/// One partition replica's supervisor.
pub fn replica_sup(node: &str, group: GroupId) -> String {
    format!("daftka.{node}.replica.{}.sup", group.0)
}
pub fn replica_raft(node: &str, group: GroupId) -> String {
    format!("daftka.{node}.replica.{}.raft", group.0)
}
pub fn replica_reader(node: &str, group: GroupId) -> String {
    format!("daftka.{node}.replica.{}.reader", group.0)
}
pub fn replica_server(node: &str, group: GroupId) -> String {
    format!("daftka.{node}.replica.{}.server", group.0)
}
/// The pg group of every node's Heartbeat actor (remote members appear once sessions authenticate).
pub const HEARTBEAT_GROUP: &str = "daftka.heartbeat";

/// A node's Heartbeat actor, which receives the other nodes' heartbeats.
pub fn heartbeat(node: &str) -> String {
    format!("daftka.{node}.heartbeat")
}

/// A node's long-lived task `what` (`ticker`, `metrics`, `memory`, `gauges`) as a supervised actor.
pub fn service(node: &str, what: &str) -> String {
    format!("daftka.{node}.service.{what}")
}

/// The ractor_cluster NodeServer run by the Cluster actor.
pub fn node_server(node: &str) -> String {
    format!("daftka.{node}.node_server")
}

/// A node's Peer actor: the node's entry point for other nodes (Raft messages, forwarded requests).
pub fn peer(node: &str) -> String {
    format!("daftka.{node}.peer")
}

/// The pg group of the Peer actor of the node with Raft id `raft_id` in cluster `cluster`.
/// Scoped by cluster name, so nodes of different clusters in one process never meet.
pub fn peer_group(cluster: &str, raft_id: u64) -> String {
    format!("daftka.{cluster}.peer.{raft_id}")
}

/// The pg group of every Peer actor of cluster `cluster` (how a joining node finds the others).
pub fn peers_group(cluster: &str) -> String {
    format!("daftka.{cluster}.peers")
}

/// The pg group of every node's Router in cluster `cluster`: where another Rust actor system,
/// once connected to a node, finds an entry point.
pub fn routers_group(cluster: &str) -> String {
    format!("daftka.{cluster}.routers")
}
