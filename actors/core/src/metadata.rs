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

use std::collections::BTreeMap;

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
                self.nodes.insert(node.name.clone(), node.clone());
                Ok(MetadataEvent::NodeRegistered(node))
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
                for offsets in self.group_offsets.values_mut() {
                    offsets.retain(|(t, _), _| t != &name);
                }
                self.group_offsets.retain(|_, o| !o.is_empty());
                self.rebalance_subscribers(&name);
                Ok(MetadataEvent::TopicDeleted(topic))
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
                if !p.replicas.contains(&leader) {
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
        }
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

    /// Every partition replica placed on `node`: (topic, partition meta).
    pub fn replicas_on<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a TopicMeta, &'a PartitionMeta)> + 'a {
        self.topics.values().flat_map(move |t| {
            t.partitions
                .iter()
                .filter(move |p| p.replicas.iter().any(|r| r == node))
                .map(move |p| (t, p))
        })
    }
}

fn check_replicas(
    replicas: &[String],
    replication_factor: u32,
    nodes: &BTreeMap<String, NodeMeta>,
) -> Result<(), Error> {
    if replication_factor == 0 || replicas.len() != replication_factor as usize {
        return Err(Error::invalid(format!(
            "replication factor {replication_factor} needs as many replicas, placement has {}",
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

/// The metadata as snapshots before consumer groups stored it (no `groups`, no `clock_ms`).
#[derive(Deserialize)]
struct MetadataStateV1 {
    nodes: BTreeMap<String, NodeMeta>,
    topics: BTreeMap<String, TopicMeta>,
    group_offsets: BTreeMap<String, BTreeMap<(String, PartitionId), u64>>,
    next_group_id: u64,
}

impl MetadataState {
    /// Encodes the state for a snapshot.
    pub fn encode_snapshot(&self) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(self)
            .map_err(|e| Error::internal(format!("encode the metadata snapshot: {e}")))
    }

    /// Decodes a snapshot, of this version or of the one before consumer groups (which had no
    /// group members and no group clock). The whole input must be one state.
    pub fn decode_snapshot(data: &[u8]) -> Result<MetadataState, Error> {
        if let Ok((state, [])) = postcard::take_from_bytes::<MetadataState>(data) {
            return Ok(state);
        }
        match postcard::take_from_bytes::<MetadataStateV1>(data) {
            Ok((old, [])) => Ok(MetadataState {
                nodes: old.nodes,
                topics: old.topics,
                group_offsets: old.group_offsets,
                next_group_id: old.next_group_id,
                groups: BTreeMap::new(),
                clock_ms: 0,
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
        assert!(MetadataState::decode_snapshot(&[0xff, 0x01]).is_err());
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
