//! The metadata state machine, replicated by the metadata Raft group (group 0).
//!
//! It holds the cluster's nodes, topics with their partitions, each partition's Raft group id,
//! replicas and last reported leader, and every consumer group's committed offsets.
//! [`MetadataState::apply`] is deterministic: every replica applying the same committed commands in
//! the same order reaches the same state. Commands are validated again at apply, because the state a
//! proposer saw may have changed before its command committed.
//!
//! # Invariants
//! - Raft group ids are assigned at apply from `next_group_id`, never reused.
//! - A topic's partitions are numbered `0..n` and each has `replication_factor` distinct replicas.
//! - Committed offsets exist only for partitions that exist; deleting a topic drops them.
//! - Consumer groups follow the rules of [`crate::groups`]: a partition is owned by at most one
//!   member, and a committed offset moves back only through a reset.

use std::collections::{BTreeMap, BTreeSet};

use daftka_types::{ids::validate_name, Error, ErrorCode, GroupId, PartitionId};
use serde::{Deserialize, Serialize};

use crate::groups::{GroupCommand, GroupState, MemberView};

/// One node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub name: String,
    /// The node's id inside Raft groups (raft-rs peer id, never 0).
    pub raft_id: u64,
    pub cluster_addr: String,
    pub http_addr: String,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub partition: PartitionId,
    /// The partition's Raft group.
    pub group: GroupId,
    /// Node names holding a replica; the first is the preferred leader.
    pub replicas: Vec<String>,
    /// The last leader that reported its election, if any.
    pub leader: Option<String>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionMeta>,
}

/// A topic's own settings; `None` takes the node's default (`topics.retention_time`,
/// `topics.retention_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Records older than this (ms) are deleted.
    pub retention_time_ms: Option<u64>,
    /// Past this many bytes per partition, the oldest batches are deleted.
    pub retention_bytes: Option<u64>,
}

/// A change to a topic's settings: `None` leaves one as it is, `Some(None)` returns it to the
/// node's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsChange {
    pub retention_time_ms: Option<Option<u64>>,
    pub retention_bytes: Option<Option<u64>>,
}

/// A change to the metadata, proposed through Raft. Variants are only ever appended (wire and disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    RegisterNode(NodeMeta),
    CreateTopic {
        name: String,
        replication_factor: u32,
        /// One replica list per partition, chosen by the proposer with [`place_replicas`].
        placement: Vec<Vec<String>>,
    },
    DeleteTopic {
        name: String,
    },
    CommitOffsets {
        group: String,
        offsets: Vec<(String, PartitionId, u64)>,
    },
    /// A partition leader reports its election.
    SetLeader {
        group: GroupId,
        leader: String,
    },
    /// A consumer-group command (see [`crate::groups`]), at its proposer's wall-clock time.
    Group {
        group: String,
        command: GroupCommand,
        now_ms: u64,
    },
    /// Starts moving a partition's replicas from `from` (its replicas now) to `to`: the group's
    /// leader carries it out as Raft membership changes (see [`crate::reconfig`]).
    StartMove {
        group: GroupId,
        from: Vec<String>,
        to: Vec<String>,
        now_ms: u64,
    },
    /// The group's leader reports that its configuration is the move's `to`.
    FinishMove {
        group: GroupId,
        to: Vec<String>,
    },
    /// Changes nothing: a proposer that waits for it to apply locally sees every change committed
    /// before it (a topic's default replication factor counts every registered node).
    Barrier,
    /// Starts or ends the drain of a node: while draining, the Rebalancer moves its replicas to
    /// other nodes and places nothing new on it.
    SetDraining {
        node: String,
        draining: bool,
    },
    /// Gives a move in flight towards `from_to` a new destination `to` (one of its destinations
    /// died): the group's leader steers to it from wherever the move stands.
    RedirectMove {
        group: GroupId,
        from_to: Vec<String>,
        to: Vec<String>,
    },
    /// Registers a node with the incarnation of its data directory (what nodes send since
    /// incarnations exist; [`MetadataCommand::RegisterNode`] stays for old logs). Refused for the
    /// incarnation of a removed node, and for a name registered with another incarnation.
    JoinNode {
        node: NodeMeta,
        incarnation: u64,
    },
    /// Forgets a node: it leaves the metadata group, its replicas are created again elsewhere, and
    /// its data directory may never join again (its incarnation is remembered).
    RemoveNode {
        name: String,
    },
    /// Grows a topic by the partitions of `add_partitions` (one replica list each, placed by the
    /// proposer; numbered after the existing ones) and changes its settings. Consumer groups
    /// subscribed to it rebalance when it grows.
    AlterTopic {
        name: String,
        add_partitions: Vec<Vec<String>>,
        settings: SettingsChange,
    },
}

/// What applying a command changed, for the proposer's reply and for watchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataEvent {
    NodeRegistered(NodeMeta),
    TopicCreated(TopicMeta),
    TopicDeleted(TopicMeta),
    OffsetsCommitted,
    LeaderSet {
        group: GroupId,
        leader: String,
    },
    /// A group member's state after its join, heartbeat or poll.
    Member(MemberView),
    /// Members that left or expired (possibly none, when an expiry found them alive again).
    MembersRemoved(Vec<String>),
    MoveStarted {
        group: GroupId,
        from: Vec<String>,
        to: Vec<String>,
    },
    MoveFinished {
        group: GroupId,
        replicas: Vec<String>,
    },
    Barrier,
    Draining {
        node: String,
        draining: bool,
    },
    MoveRedirected {
        group: GroupId,
        to: Vec<String>,
    },
    NodeRemoved {
        name: String,
    },
    TopicAltered(TopicMeta),
}

/// A replica move in flight: the partition's group goes from the voters `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// When it started (the proposer's clock, ms since the Unix epoch).
    pub started_ms: u64,
}

/// A command's outcome with the log index it was applied at (a node that applies up to that index
/// shows the change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub index: u64,
    pub event: MetadataEvent,
}

/// The replicated metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    pub nodes: BTreeMap<String, NodeMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Committed offsets: group -> (topic, partition) -> next offset to read.
    pub group_offsets: BTreeMap<String, BTreeMap<(String, PartitionId), u64>>,
    /// The next Raft group id to hand out (group 0 is the metadata group itself).
    pub next_group_id: u64,
    /// Consumer groups that have had members: their coordinator state.
    pub groups: BTreeMap<String, GroupState>,
    /// The largest proposer time seen (ms since the Unix epoch): the groups' clock.
    pub clock_ms: u64,
    /// Replica moves in flight, by partition group.
    pub moves: BTreeMap<GroupId, Move>,
    /// Partition groups whose voters changed since they were created: a replica of one that has
    /// no stored state starts unconfigured and waits for the leader, instead of bootstrapping a
    /// configuration the group no longer has.
    pub reconfigured: BTreeSet<GroupId>,
    /// Nodes being drained (or drained): their replicas move away, nothing new goes to them.
    pub draining: BTreeSet<String>,
    /// The incarnation of each registered node's data directory (absent for nodes registered
    /// before incarnations existed, until they register again).
    pub incarnations: BTreeMap<String, u64>,
    /// Removed nodes: the incarnation (0 if unknown) whose data directory may not join again.
    pub removed: BTreeMap<String, u64>,
    /// Raft ids of removed nodes (kept after a new node of the same name joins, with another id):
    /// the metadata group's leader takes them out of the group.
    pub retired_raft_ids: BTreeSet<u64>,
    /// Topics' own settings (absent: every setting is the node's default).
    pub topic_settings: BTreeMap<String, TopicSettings>,
}

impl Default for MetadataState {
    fn default() -> Self {
        MetadataState {
            nodes: BTreeMap::new(),
            topics: BTreeMap::new(),
            group_offsets: BTreeMap::new(),
            next_group_id: 1,
            groups: BTreeMap::new(),
            clock_ms: 0,
            moves: BTreeMap::new(),
            reconfigured: BTreeSet::new(),
            draining: BTreeSet::new(),
            incarnations: BTreeMap::new(),
            removed: BTreeMap::new(),
            retired_raft_ids: BTreeSet::new(),
            topic_settings: BTreeMap::new(),
        }
    }
}

/// Limits the state machine enforces on every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    pub partitions_per_topic_max: u32,
}

impl MetadataState {
    /// Applies one committed command. An `Err` is a rejected command: the state is unchanged.
    pub fn apply(
        &mut self,
        cmd: MetadataCommand,
        limits: MetadataLimits,
    ) -> Result<MetadataEvent, Error> {
        match cmd {
            MetadataCommand::RegisterNode(node) => {
                self.check_registration(&node)?;
                self.nodes.insert(node.name.clone(), node.clone());
                Ok(MetadataEvent::NodeRegistered(node))
            }
            MetadataCommand::JoinNode { node, incarnation } => {
                if incarnation == 0 {
                    return Err(Error::invalid("a node's incarnation must not be 0"));
                }
                let name = &node.name;
                if self.removed.get(name) == Some(&incarnation) {
                    return Err(Error::new(
                        ErrorCode::NodeRemoved,
                        format!(
                            "node {name:?} was removed from the cluster and this is its old data \
                             directory: start it with an empty data directory to join again"
                        ),
                    ));
                }
                if self.nodes.contains_key(name)
                    && self
                        .incarnations
                        .get(name)
                        .is_some_and(|i| *i != incarnation)
                {
                    return Err(Error::new(
                        ErrorCode::NodeRemoved,
                        format!(
                            "node {name:?} is registered with another data directory: remove it \
                             (DELETE /v1/cluster/nodes/{name}) before a node with this one joins"
                        ),
                    ));
                }
                if self.removed.contains_key(name)
                    && self.topics.values().any(|t| {
                        t.partitions
                            .iter()
                            .any(|p| self.hosts(p).iter().any(|h| h == name))
                    })
                {
                    return Err(Error::unavailable(format!(
                        "node {name:?} was removed and its replicas are still being created again \
                         elsewhere: a new node of that name joins once that is done"
                    )));
                }
                self.check_registration(&node)?;
                self.removed.remove(name);
                self.incarnations.insert(name.clone(), incarnation);
                self.nodes.insert(name.clone(), node.clone());
                Ok(MetadataEvent::NodeRegistered(node))
            }
            MetadataCommand::RemoveNode { name } => {
                if !self.nodes.contains_key(&name) {
                    return Err(Error::new(
                        ErrorCode::UnknownNode,
                        format!("no node {name:?} is registered"),
                    ));
                }
                if let Some(n) = self.nodes.remove(&name) {
                    self.retired_raft_ids.insert(n.raft_id);
                }
                self.draining.remove(&name);
                let incarnation = self.incarnations.remove(&name).unwrap_or(0);
                self.removed.insert(name.clone(), incarnation);
                Ok(MetadataEvent::NodeRemoved { name })
            }
            MetadataCommand::CreateTopic {
                name,
                replication_factor,
                placement,
            } => {
                validate_name("topic", &name)?;
                if self.topics.contains_key(&name) {
                    return Err(Error::new(
                        ErrorCode::TopicExists,
                        format!("topic {name:?} already exists"),
                    ));
                }
                let n = placement.len() as u64;
                if n == 0 || n > u64::from(limits.partitions_per_topic_max) {
                    return Err(Error::invalid(format!(
                        "partitions must be 1 to {}, got {n}",
                        limits.partitions_per_topic_max
                    )));
                }
                for replicas in &placement {
                    check_replicas(replicas, replication_factor, &self.nodes)?;
                }
                let partitions = placement
                    .into_iter()
                    .enumerate()
                    .map(|(i, replicas)| {
                        let group = GroupId(self.next_group_id);
                        self.next_group_id += 1;
                        PartitionMeta {
                            partition: i as PartitionId,
                            group,
                            replicas,
                            leader: None,
                        }
                    })
                    .collect();
                let topic = TopicMeta {
                    name: name.clone(),
                    replication_factor,
                    partitions,
                };
                self.topics.insert(name.clone(), topic.clone());
                self.rebalance_subscribers(&name);
                Ok(MetadataEvent::TopicCreated(topic))
            }
            MetadataCommand::DeleteTopic { name } => {
                let topic = self
                    .topics
                    .remove(&name)
                    .ok_or_else(|| Error::unknown_topic(&name))?;
                for p in &topic.partitions {
                    self.moves.remove(&p.group);
                    self.reconfigured.remove(&p.group);
                }
                for offsets in self.group_offsets.values_mut() {
                    offsets.retain(|(t, _), _| t != &name);
                }
                self.group_offsets.retain(|_, o| !o.is_empty());
                self.topic_settings.remove(&name);
                self.rebalance_subscribers(&name);
                Ok(MetadataEvent::TopicDeleted(topic))
            }
            MetadataCommand::AlterTopic {
                name,
                add_partitions,
                settings,
            } => {
                let topic = self
                    .topics
                    .get(&name)
                    .ok_or_else(|| Error::unknown_topic(&name))?;
                let total = topic.partitions.len() as u64 + add_partitions.len() as u64;
                if total > u64::from(limits.partitions_per_topic_max) {
                    return Err(Error::invalid(format!(
                        "partitions must be 1 to {}, got {total}",
                        limits.partitions_per_topic_max
                    )));
                }
                for replicas in &add_partitions {
                    check_replicas(replicas, topic.replication_factor, &self.nodes)?;
                }
                for v in [settings.retention_time_ms, settings.retention_bytes] {
                    if v == Some(Some(0)) {
                        return Err(Error::invalid(
                            "a retention must be positive (null returns it to the default)",
                        ));
                    }
                }
                let grows = !add_partitions.is_empty();
                let first = topic.partitions.len();
                let mut added = Vec::with_capacity(add_partitions.len());
                for (i, replicas) in add_partitions.into_iter().enumerate() {
                    let group = GroupId(self.next_group_id);
                    self.next_group_id += 1;
                    added.push(PartitionMeta {
                        partition: (first + i) as PartitionId,
                        group,
                        replicas,
                        leader: None,
                    });
                }
                let t = self
                    .topics
                    .get_mut(&name)
                    .ok_or_else(|| Error::unknown_topic(&name))?;
                t.partitions.extend(added);
                let altered = t.clone();
                let s = self.topic_settings.entry(name.clone()).or_default();
                if let Some(v) = settings.retention_time_ms {
                    s.retention_time_ms = v;
                }
                if let Some(v) = settings.retention_bytes {
                    s.retention_bytes = v;
                }
                if *s == TopicSettings::default() {
                    self.topic_settings.remove(&name);
                }
                if grows {
                    self.rebalance_subscribers(&name);
                }
                Ok(MetadataEvent::TopicAltered(altered))
            }
            MetadataCommand::CommitOffsets { group, offsets } => {
                self.apply_plain_commit(group, offsets)
            }
            MetadataCommand::SetLeader { group, leader } => {
                let p = self
                    .topics
                    .values_mut()
                    .flat_map(|t| t.partitions.iter_mut())
                    .find(|p| p.group == group)
                    .ok_or_else(|| {
                        Error::new(ErrorCode::UnknownPartition, format!("no partition {group}"))
                    })?;
                let joining = self
                    .moves
                    .get(&group)
                    .is_some_and(|m| m.to.contains(&leader));
                if !p.replicas.contains(&leader) && !joining {
                    return Err(Error::invalid(format!(
                        "{leader:?} holds no replica of {group}"
                    )));
                }
                p.leader = Some(leader.clone());
                Ok(MetadataEvent::LeaderSet { group, leader })
            }
            MetadataCommand::Group {
                group,
                command,
                now_ms,
            } => self.apply_group(group, command, now_ms),
            MetadataCommand::StartMove {
                group,
                from,
                to,
                now_ms,
            } => {
                let (topic, p) = self.partition_by_group(group)?;
                let rf = self.topics[&topic].replication_factor;
                if self.moves.contains_key(&group) {
                    return Err(Error::invalid(format!("{group} is already moving")));
                }
                if p.replicas != from {
                    return Err(Error::invalid(format!(
                        "{group} has replicas {:?}, not {from:?}",
                        p.replicas
                    )));
                }
                check_replicas(&to, rf, &self.nodes)?;
                if to == from {
                    return Err(Error::invalid(format!(
                        "{group} already has replicas {to:?}"
                    )));
                }
                self.moves.insert(
                    group,
                    Move {
                        from: from.clone(),
                        to: to.clone(),
                        started_ms: now_ms,
                    },
                );
                Ok(MetadataEvent::MoveStarted { group, from, to })
            }
            MetadataCommand::Barrier => Ok(MetadataEvent::Barrier),
            MetadataCommand::RedirectMove { group, from_to, to } => {
                let (topic, _) = self.partition_by_group(group)?;
                let rf = self.topics[&topic].replication_factor;
                match self.moves.get(&group) {
                    Some(m) if m.to == from_to => {}
                    _ => {
                        return Err(Error::invalid(format!(
                            "{group} is not moving to {from_to:?}"
                        )))
                    }
                }
                check_replicas(&to, rf, &self.nodes)?;
                if let Some(m) = self.moves.get_mut(&group) {
                    m.to = to.clone();
                }
                Ok(MetadataEvent::MoveRedirected { group, to })
            }
            MetadataCommand::SetDraining { node, draining } => {
                if !self.nodes.contains_key(&node) {
                    return Err(Error::new(
                        ErrorCode::UnknownNode,
                        format!("no node {node:?} is registered"),
                    ));
                }
                if draining {
                    self.draining.insert(node.clone());
                } else {
                    self.draining.remove(&node);
                }
                Ok(MetadataEvent::Draining { node, draining })
            }
            MetadataCommand::FinishMove { group, to } => {
                match self.moves.get(&group) {
                    Some(m) if m.to == to => {}
                    _ => return Err(Error::invalid(format!("{group} is not moving to {to:?}"))),
                }
                self.moves.remove(&group);
                self.reconfigured.insert(group);
                let p = self.partition_by_group_mut(group)?;
                p.replicas = to.clone();
                if p.leader.as_ref().is_some_and(|l| !to.contains(l)) {
                    p.leader = None;
                }
                Ok(MetadataEvent::MoveFinished {
                    group,
                    replicas: to,
                })
            }
        }
    }

    /// The topic name and partition of the Raft group `group`.
    pub fn partition_by_group(&self, group: GroupId) -> Result<(String, &PartitionMeta), Error> {
        self.topics
            .values()
            .find_map(|t| {
                t.partitions
                    .iter()
                    .find(|p| p.group == group)
                    .map(|p| (t.name.clone(), p))
            })
            .ok_or_else(|| Error::new(ErrorCode::UnknownPartition, format!("no partition {group}")))
    }

    fn partition_by_group_mut(&mut self, group: GroupId) -> Result<&mut PartitionMeta, Error> {
        self.topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .find(|p| p.group == group)
            .ok_or_else(|| Error::new(ErrorCode::UnknownPartition, format!("no partition {group}")))
    }

    /// The nodes that should hold a replica of `p` now: its replicas, and while it moves, the
    /// move's destinations too.
    pub fn hosts(&self, p: &PartitionMeta) -> Vec<String> {
        let mut hosts = p.replicas.clone();
        if let Some(m) = self.moves.get(&p.group) {
            hosts.extend(m.to.iter().filter(|n| !p.replicas.contains(n)).cloned());
        }
        hosts
    }

    /// The partition `partition` of `topic`, or the matching not-found error.
    pub fn partition(&self, topic: &str, partition: PartitionId) -> Result<&PartitionMeta, Error> {
        let t = self
            .topics
            .get(topic)
            .ok_or_else(|| Error::unknown_topic(topic))?;
        t.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::unknown_partition(topic, partition))
    }

    /// Every partition replica placed on `node`, a move's destinations included: (topic,
    /// partition meta).
    pub fn replicas_on<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a TopicMeta, &'a PartitionMeta)> + 'a {
        self.topics.values().flat_map(move |t| {
            t.partitions
                .iter()
                .filter(move |p| {
                    p.replicas.iter().any(|r| r == node)
                        || self
                            .moves
                            .get(&p.group)
                            .is_some_and(|m| m.to.iter().any(|r| r == node))
                })
                .map(move |p| (t, p))
        })
    }
}

fn check_replicas(
    replicas: &[String],
    replication_factor: u32,
    nodes: &BTreeMap<String, NodeMeta>,
) -> Result<(), Error> {
    // Fewer replicas than the factor is an under-replicated partition (not enough nodes were
    // alive): the Rebalancer tops it up later.
    if replication_factor == 0
        || replicas.is_empty()
        || replicas.len() > replication_factor as usize
    {
        return Err(Error::invalid(format!(
            "replication factor {replication_factor} needs 1 to {replication_factor} replicas, \
             placement has {}",
            replicas.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in replicas {
        if !nodes.contains_key(r) {
            return Err(Error::invalid(format!(
                "replica node {r:?} is not registered"
            )));
        }
        if !seen.insert(r) {
            return Err(Error::invalid(format!("replica node {r:?} appears twice")));
        }
    }
    Ok(())
}

/// Places `partitions` partitions of `replication_factor` replicas on distinct nodes of `nodes`
/// (sorted names), rotating the first replica (the preferred leader) so leaders spread evenly.
/// `offset` rotates the start so that successive topics do not all lead on the first node.
pub fn place_replicas(
    nodes: &[String],
    partitions: u32,
    replication_factor: u32,
    offset: usize,
) -> Result<Vec<Vec<String>>, Error> {
    if replication_factor == 0 {
        return Err(Error::invalid("replication_factor must be at least 1"));
    }
    if replication_factor as usize > nodes.len() {
        return Err(Error::invalid(format!(
            "replication_factor {replication_factor} exceeds the {} live node(s)",
            nodes.len()
        )));
    }
    Ok((0..partitions as usize)
        .map(|p| {
            (0..replication_factor as usize)
                .map(|r| nodes[(offset + p + r) % nodes.len()].clone())
                .collect()
        })
        .collect())
}

/// The metadata as snapshots before replica moves stored it (no `moves`, no `reconfigured`).
#[derive(Deserialize)]
struct MetadataStateV2 {
    nodes: BTreeMap<String, NodeMeta>,
    topics: BTreeMap<String, TopicMeta>,
    group_offsets: BTreeMap<String, BTreeMap<(String, PartitionId), u64>>,
    next_group_id: u64,
    groups: BTreeMap<String, GroupState>,
    clock_ms: u64,
}

/// The metadata as snapshots before consumer groups stored it (no `groups`, no `clock_ms`).
#[derive(Deserialize)]
struct MetadataStateV1 {
    nodes: BTreeMap<String, NodeMeta>,
    topics: BTreeMap<String, TopicMeta>,
    group_offsets: BTreeMap<String, BTreeMap<(String, PartitionId), u64>>,
    next_group_id: u64,
}

impl MetadataState {
    /// A node may change its addresses, never its Raft identity, and ids are unique.
    fn check_registration(&self, node: &NodeMeta) -> Result<(), Error> {
        validate_name("node", &node.name)?;
        // A node may change its addresses, never its Raft identity, and ids are unique.
        if node.raft_id == 0 {
            return Err(Error::invalid("a node's raft id must not be 0"));
        }
        if let Some(other) = self
            .nodes
            .values()
            .find(|n| n.raft_id == node.raft_id && n.name != node.name)
        {
            return Err(Error::invalid(format!(
                "raft id {} already belongs to node {:?}",
                node.raft_id, other.name
            )));
        }
        if let Some(old) = self.nodes.get(&node.name) {
            if old.raft_id != node.raft_id {
                return Err(Error::invalid(format!(
                    "node {:?} has raft id {}, not {}",
                    node.name, old.raft_id, node.raft_id
                )));
            }
        }
        Ok(())
    }

    /// Encodes the state for a snapshot.
    pub fn encode_snapshot(&self) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(self)
            .map_err(|e| Error::internal(format!("encode the metadata snapshot: {e}")))
    }

    /// Decodes a snapshot, of this version, of the one before replica moves (none in flight,
    /// none done) or of the one before consumer groups (which had no group members and no group
    /// clock). The whole input must be one state.
    pub fn decode_snapshot(data: &[u8]) -> Result<MetadataState, Error> {
        if let Ok((state, [])) = postcard::take_from_bytes::<MetadataState>(data) {
            return Ok(state);
        }
        if let Ok((old, [])) = postcard::take_from_bytes::<MetadataStateV2>(data) {
            return Ok(MetadataState {
                nodes: old.nodes,
                topics: old.topics,
                group_offsets: old.group_offsets,
                next_group_id: old.next_group_id,
                groups: old.groups,
                clock_ms: old.clock_ms,
                ..MetadataState::default()
            });
        }
        match postcard::take_from_bytes::<MetadataStateV1>(data) {
            Ok((old, [])) => Ok(MetadataState {
                nodes: old.nodes,
                topics: old.topics,
                group_offsets: old.group_offsets,
                next_group_id: old.next_group_id,
                ..MetadataState::default()
            }),
            Ok(_) => Err(Error::internal(
                "decode the metadata snapshot: trailing bytes",
            )),
            Err(e) => Err(Error::internal(format!(
                "decode the metadata snapshot: {e}"
            ))),
        }
    }
}

/// Encodes a command as a Raft entry's data.
pub fn encode_command(cmd: &MetadataCommand) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(cmd).map_err(|e| Error::internal(format!("encode command: {e}")))
}

/// Decodes a Raft entry's data into a command; corrupt data is an error value.
pub fn decode_command(data: &[u8]) -> Result<MetadataCommand, Error> {
    postcard::from_bytes(data).map_err(|e| Error::internal(format!("decode command: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MetadataLimits = MetadataLimits {
        partitions_per_topic_max: 100,
    };

    fn node(name: &str, id: u64) -> MetadataCommand {
        MetadataCommand::RegisterNode(NodeMeta {
            name: name.into(),
            raft_id: id,
            cluster_addr: String::new(),
            http_addr: String::new(),
        })
    }

    fn create(name: &str, n: u32) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            replication_factor: 1,
            placement: (0..n).map(|_| vec!["a".to_string()]).collect(),
        }
    }

    fn join(name: &str, id: u64, incarnation: u64) -> MetadataCommand {
        MetadataCommand::JoinNode {
            node: NodeMeta {
                name: name.into(),
                raft_id: id,
                cluster_addr: String::new(),
                http_addr: String::new(),
            },
            incarnation,
        }
    }

    /// A node joins again with the same data directory; a removed node's directory is refused,
    /// and so is another directory under a registered name; a fresh one joins after the removal,
    /// with a raft id of its own.
    #[test]
    fn incarnations_fence_removed_nodes() -> Result<(), Error> {
        let mut s = MetadataState::default();
        s.apply(join("a", 1, 10), LIMITS)?;
        s.apply(node("b", 2), LIMITS)?;
        s.apply(join("a", 1, 10), LIMITS)?;
        s.apply(
            MetadataCommand::SetDraining {
                node: "a".into(),
                draining: true,
            },
            LIMITS,
        )?;
        let code = |r: Result<MetadataEvent, Error>| r.err().map(|e| e.code);
        assert_eq!(
            code(s.apply(join("a", 7, 11), LIMITS)),
            Some(ErrorCode::NodeRemoved)
        );
        assert_eq!(
            code(s.apply(join("a", 1, 0), LIMITS)),
            Some(ErrorCode::InvalidRequest)
        );
        let before = s.clone();
        assert_eq!(
            code(s.apply(MetadataCommand::RemoveNode { name: "z".into() }, LIMITS)),
            Some(ErrorCode::UnknownNode)
        );
        assert_eq!(s, before, "a rejected removal changes nothing");
        s.apply(MetadataCommand::RemoveNode { name: "a".into() }, LIMITS)?;
        assert!(!s.nodes.contains_key("a") && !s.draining.contains("a"));
        assert_eq!(s.removed.get("a"), Some(&10));
        assert!(s.retired_raft_ids.contains(&1));
        let refused = s
            .apply(join("a", 1, 10), LIMITS)
            .expect_err("old data directory");
        assert_eq!(refused.code, ErrorCode::NodeRemoved);
        assert!(
            refused.message.contains("empty data directory"),
            "{}",
            refused.message
        );
        s.apply(join("a", 7, 12), LIMITS)?;
        assert_eq!(s.nodes["a"].raft_id, 7);
        assert!(s.removed.is_empty());
        // A node registered before incarnations (b) takes one when it joins.
        s.apply(join("b", 2, 20), LIMITS)?;
        assert_eq!(s.incarnations.get("b"), Some(&20));
        let snap = MetadataState::decode_snapshot(&s.encode_snapshot()?)?;
        assert_eq!(snap, s);
        Ok(())
    }

    /// A topic grows by new partitions with new groups (never above the limit, never onto
    /// unknown nodes) and takes settings of its own; null returns one to the default.
    #[test]
    fn topics_grow_and_take_settings() -> Result<(), Error> {
        let mut s = MetadataState::default();
        s.apply(node("a", 1), LIMITS)?;
        s.apply(create("t", 2), LIMITS)?;
        let alter = |add: usize, settings: SettingsChange| MetadataCommand::AlterTopic {
            name: "t".into(),
            add_partitions: (0..add).map(|_| vec!["a".to_string()]).collect(),
            settings,
        };
        let set = SettingsChange {
            retention_time_ms: Some(Some(60_000)),
            retention_bytes: Some(Some(1 << 20)),
        };
        s.apply(alter(2, set), LIMITS)?;
        let t = &s.topics["t"];
        assert_eq!(t.partitions.len(), 4);
        assert_eq!(
            (t.partitions[3].partition, t.partitions[3].group),
            (3, GroupId(4))
        );
        assert_eq!(s.topic_settings["t"].retention_bytes, Some(1 << 20));
        let before = s.clone();
        let code = |r: Result<MetadataEvent, Error>| r.err().map(|e| e.code);
        assert_eq!(
            code(s.apply(alter(97, SettingsChange::default()), LIMITS)),
            Some(ErrorCode::InvalidRequest)
        );
        let zero = SettingsChange {
            retention_bytes: Some(Some(0)),
            ..SettingsChange::default()
        };
        assert_eq!(
            code(s.apply(alter(0, zero), LIMITS)),
            Some(ErrorCode::InvalidRequest)
        );
        let elsewhere = MetadataCommand::AlterTopic {
            name: "t".into(),
            add_partitions: vec![vec!["zz".to_string()]],
            settings: SettingsChange::default(),
        };
        assert!(s.apply(elsewhere, LIMITS).is_err());
        assert_eq!(s, before, "rejected changes change nothing");
        let back = SettingsChange {
            retention_time_ms: Some(None),
            retention_bytes: Some(None),
        };
        s.apply(alter(0, back), LIMITS)?;
        assert!(!s.topic_settings.contains_key("t"), "all defaults again");
        s.apply(alter(0, set), LIMITS)?;
        s.apply(MetadataCommand::DeleteTopic { name: "t".into() }, LIMITS)?;
        assert!(s.topic_settings.is_empty(), "settings go with the topic");
        Ok(())
    }

    /// Group ids are handed out in order and never reused after a delete.
    #[test]
    fn group_ids_are_never_reused() -> Result<(), Error> {
        let mut s = MetadataState::default();
        s.apply(node("a", 1), LIMITS)?;
        s.apply(create("t", 2), LIMITS)?;
        assert_eq!(s.partition("t", 1)?.group, GroupId(2));
        s.apply(MetadataCommand::DeleteTopic { name: "t".into() }, LIMITS)?;
        s.apply(create("t", 1), LIMITS)?;
        assert_eq!(s.partition("t", 0)?.group, GroupId(3));
        Ok(())
    }

    /// Rejected commands leave the state unchanged and carry the right code.
    #[test]
    fn rejections_have_codes() -> Result<(), Error> {
        let mut s = MetadataState::default();
        s.apply(node("a", 1), LIMITS)?;
        s.apply(create("t", 1), LIMITS)?;
        let before = s.clone();
        let code = |r: Result<MetadataEvent, Error>| r.err().map(|e| e.code);
        assert_eq!(
            code(s.apply(create("t", 1), LIMITS)),
            Some(ErrorCode::TopicExists)
        );
        assert_eq!(
            code(s.apply(create("bad/name", 1), LIMITS)),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(s.apply(create("u", 0), LIMITS)),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(s.apply(create("u", 101), LIMITS)),
            Some(ErrorCode::InvalidRequest)
        );
        let commit = |t: &str, p| MetadataCommand::CommitOffsets {
            group: "g".into(),
            offsets: vec![(t.into(), p, 5)],
        };
        assert_eq!(
            code(s.apply(commit("x", 0), LIMITS)),
            Some(ErrorCode::UnknownTopic)
        );
        assert_eq!(
            code(s.apply(commit("t", 1), LIMITS)),
            Some(ErrorCode::UnknownPartition)
        );
        assert_eq!(s, before);
        s.apply(commit("t", 0), LIMITS)?;
        assert_eq!(s.group_offsets["g"][&("t".to_string(), 0)], 5);
        s.apply(MetadataCommand::DeleteTopic { name: "t".into() }, LIMITS)?;
        assert!(
            s.group_offsets.is_empty(),
            "offsets of a deleted topic go with it"
        );
        Ok(())
    }

    /// Nodes keep their Raft identity; leaders must be replicas; commits must name an offset.
    #[test]
    fn identities_leaders_and_empty_commits() -> Result<(), Error> {
        let mut s = MetadataState::default();
        s.apply(node("a", 1), LIMITS)?;
        assert!(s.apply(node("b", 1), LIMITS).is_err(), "raft id 1 is a's");
        assert!(s.apply(node("a", 2), LIMITS).is_err(), "a keeps raft id 1");
        assert!(
            s.apply(node("c", 0), LIMITS).is_err(),
            "raft id 0 is reserved"
        );
        let moved = MetadataCommand::RegisterNode(NodeMeta {
            name: "a".into(),
            raft_id: 1,
            cluster_addr: "x:1".into(),
            http_addr: "x:2".into(),
        });
        s.apply(moved, LIMITS)?;
        assert_eq!(s.nodes["a"].http_addr, "x:2", "addresses may change");
        s.apply(create("t", 1), LIMITS)?;
        let lead = |who: &str| MetadataCommand::SetLeader {
            group: GroupId(1),
            leader: who.into(),
        };
        assert!(s.apply(lead("zz"), LIMITS).is_err());
        s.apply(lead("a"), LIMITS)?;
        assert_eq!(s.partition("t", 0)?.leader.as_deref(), Some("a"));
        let empty = MetadataCommand::CommitOffsets {
            group: "g".into(),
            offsets: vec![],
        };
        assert!(s.apply(empty, LIMITS).is_err());
        assert!(s.group_offsets.is_empty());
        Ok(())
    }

    /// A snapshot of the version before consumer groups decodes, with no groups; the current one
    /// round-trips; garbage is an error.
    #[test]
    fn snapshots_of_both_versions_decode() -> Result<(), Error> {
        #[derive(Serialize)]
        struct V1<'a> {
            nodes: &'a BTreeMap<String, NodeMeta>,
            topics: &'a BTreeMap<String, TopicMeta>,
            group_offsets: &'a BTreeMap<String, BTreeMap<(String, PartitionId), u64>>,
            next_group_id: u64,
        }
        let mut s = MetadataState::default();
        s.apply(node("a", 1), LIMITS)?;
        s.apply(create("t", 2), LIMITS)?;
        s.apply(
            MetadataCommand::CommitOffsets {
                group: "g".into(),
                offsets: vec![("t".into(), 1, 4)],
            },
            LIMITS,
        )?;
        let old = postcard::to_allocvec(&V1 {
            nodes: &s.nodes,
            topics: &s.topics,
            group_offsets: &s.group_offsets,
            next_group_id: s.next_group_id,
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        assert_eq!(MetadataState::decode_snapshot(&old)?, s);
        s.apply(
            MetadataCommand::Group {
                group: "g2".into(),
                command: GroupCommand::Join {
                    member_id: "m".into(),
                    topics: vec!["t".into()],
                    session_timeout_ms: 1000,
                    assignor: crate::assignor::Assignor::Sticky,
                },
                now_ms: 7,
            },
            LIMITS,
        )?;
        assert_eq!(MetadataState::decode_snapshot(&s.encode_snapshot()?)?, s);
        // The version before replica moves: groups and clock kept, no moves.
        #[derive(Serialize)]
        struct V2<'a> {
            nodes: &'a BTreeMap<String, NodeMeta>,
            topics: &'a BTreeMap<String, TopicMeta>,
            group_offsets: &'a BTreeMap<String, BTreeMap<(String, PartitionId), u64>>,
            next_group_id: u64,
            groups: &'a BTreeMap<String, GroupState>,
            clock_ms: u64,
        }
        let v2 = postcard::to_allocvec(&V2 {
            nodes: &s.nodes,
            topics: &s.topics,
            group_offsets: &s.group_offsets,
            next_group_id: s.next_group_id,
            groups: &s.groups,
            clock_ms: s.clock_ms,
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        assert_eq!(MetadataState::decode_snapshot(&v2)?, s);
        s.apply(node("b", 2), LIMITS)?;
        let group = s.topics["t"].partitions[0].group;
        s.apply(start_move(group, &["a"], &["b"]), LIMITS)?;
        assert_eq!(MetadataState::decode_snapshot(&s.encode_snapshot()?)?, s);
        assert!(MetadataState::decode_snapshot(&[0xff, 0x01]).is_err());
        Ok(())
    }

    fn start_move(group: GroupId, from: &[&str], to: &[&str]) -> MetadataCommand {
        MetadataCommand::StartMove {
            group,
            from: from.iter().map(|s| s.to_string()).collect(),
            to: to.iter().map(|s| s.to_string()).collect(),
            now_ms: 5,
        }
    }

    /// A move is checked against the partition's replicas and factor, hosts both sides while in
    /// flight, and when finished leaves the new replicas (and the group marked reconfigured).
    #[test]
    fn moves_start_host_both_sides_and_finish() -> Result<(), Error> {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut s = MetadataState::default();
        for (n, id) in [("a", 1), ("b", 2), ("c", 3)] {
            s.apply(node(n, id), LIMITS)?;
        }
        // Factor 2, created with one replica: under-replicated, allowed.
        s.apply(
            MetadataCommand::CreateTopic {
                name: "t".into(),
                replication_factor: 2,
                placement: vec![names(&["a"])],
            },
            LIMITS,
        )?;
        let group = s.topics["t"].partitions[0].group;
        // Wrong `from`, more replicas than the factor, unknown or repeated nodes: refused.
        assert!(s
            .apply(start_move(group, &["b"], &["a", "b"]), LIMITS)
            .is_err());
        assert!(s
            .apply(start_move(group, &["a"], &["a", "b", "c"]), LIMITS)
            .is_err());
        assert!(s
            .apply(start_move(group, &["a"], &["a", "x"]), LIMITS)
            .is_err());
        assert!(s
            .apply(start_move(group, &["a"], &["b", "b"]), LIMITS)
            .is_err());
        assert!(s.apply(start_move(group, &["a"], &["a"]), LIMITS).is_err());
        s.apply(start_move(group, &["a"], &["b", "c"]), LIMITS)?;
        assert!(
            s.apply(start_move(group, &["a"], &["a", "c"]), LIMITS)
                .is_err(),
            "one move at a time"
        );
        let p = s.topics["t"].partitions[0].clone();
        assert_eq!(s.hosts(&p), names(&["a", "b", "c"]));
        assert_eq!(s.replicas_on("c").count(), 1);
        // A destination may report leadership while the move is in flight.
        s.apply(
            MetadataCommand::SetLeader {
                group,
                leader: "a".into(),
            },
            LIMITS,
        )?;
        assert!(s
            .apply(
                MetadataCommand::FinishMove {
                    group,
                    to: names(&["a", "c"])
                },
                LIMITS
            )
            .is_err());
        s.apply(
            MetadataCommand::FinishMove {
                group,
                to: names(&["b", "c"]),
            },
            LIMITS,
        )?;
        let p = &s.topics["t"].partitions[0];
        assert_eq!(
            (p.replicas.clone(), p.leader.clone()),
            (names(&["b", "c"]), None)
        );
        assert!(s.moves.is_empty() && s.reconfigured.contains(&group));
        assert_eq!(s.replicas_on("a").count(), 0);
        // Deleting the topic forgets the group.
        s.apply(MetadataCommand::DeleteTopic { name: "t".into() }, LIMITS)?;
        assert!(s.reconfigured.is_empty());
        Ok(())
    }

    /// Placement puts replicas on distinct nodes and rotates leaders.
    #[test]
    fn placement_spreads_leaders() -> Result<(), Error> {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let p = place_replicas(&nodes, 6, 3, 0)?;
        let leaders: Vec<&str> = p.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(leaders, vec!["a", "b", "c", "a", "b", "c"]);
        for r in &p {
            let mut d = r.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3);
        }
        assert!(place_replicas(&nodes, 1, 4, 0).is_err());
        Ok(())
    }
}
