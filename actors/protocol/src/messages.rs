//! The typed messages of Daftka's exposed actor, the Router (registered as [`crate::names::router`]).
//!
//! Every operation a client can do goes through [`RouterMsg`]; the HTTP gateway uses the same messages
//! through [`crate::Client`], and so do other Rust actor systems over ractor_cluster. Replies are
//! [`Wire`] results: expected failures travel in the reply.

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{Offset, PartitionId};
use crate::record::{Record, RecordRef, StoredRecord};
use crate::wire::{share_each, Framed, FromFrame, Wire};

/// What a client asks for when it creates a topic. `None` takes the node's configured default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: Option<u32>,
    pub replication_factor: Option<u32>,
}

/// What a client changes in a topic (`None`: unchanged). Partitions only grow; a retention of
/// `Some(None)` returns to the node's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicAlter {
    pub partitions: Option<u32>,
    pub retention_time_ms: Option<Option<u64>>,
    pub retention_bytes: Option<Option<u64>>,
}

/// One partition as described to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: PartitionId,
    pub leader: Option<String>,
    pub replicas: Vec<String>,
    pub log_start_offset: Offset,
    pub high_watermark: Offset,
    /// Fewer replicas than the topic's replication factor (topped up once enough nodes live).
    pub under_replicated: bool,
    /// While a replica move is in flight: the replicas it moves to; empty otherwise.
    pub moving_to: Vec<String>,
    /// Every replica (a move's destinations included) as the leader sees it; empty when the
    /// leader could not be asked.
    pub replica_states: Vec<ReplicaStatus>,
}

/// A topic as described to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub name: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionDescription>,
    /// The topic's own retention by time (ms), if it has one (else `topics.retention_time`).
    pub retention_time_ms: Option<u64>,
    /// The topic's own retention by size (bytes per partition), if it has one (else
    /// `topics.retention_bytes`).
    pub retention_bytes: Option<u64>,
}

/// A record to produce, with an optional explicit partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRecord {
    /// Explicit partition; else a stable hash of the key; else spread across partitions.
    pub partition: Option<PartitionId>,
    pub record: Record,
}

/// [`ProduceRecord`] as it lies in a received frame (see [`crate::wire::Framed`]).
#[derive(Deserialize)]
struct ProduceRecordRef<'a> {
    partition: Option<PartitionId>,
    #[serde(borrow)]
    record: RecordRef<'a>,
}

impl FromFrame for Vec<ProduceRecord> {
    fn from_frame(frame: &bytes::Bytes) -> Result<Result<Self, Error>, postcard::Error> {
        share_each(frame, |r: ProduceRecordRef<'_>, frame| ProduceRecord {
            partition: r.partition,
            record: r.record.share(frame),
        })
    }
}

/// Where one produced record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPosition {
    pub partition: PartitionId,
    pub offset: Offset,
}

/// Where a fetch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchOffset {
    /// The partition's log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    At(Offset),
}

/// A read of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: PartitionId,
    pub offset: FetchOffset,
    /// At most this many records (the node also caps it by config).
    pub max_records: u32,
    /// At most about this many record bytes; at least one record is returned if one is there.
    pub max_bytes: u32,
    /// At the high watermark, wait up to this long for new records.
    pub max_wait_ms: u32,
}

/// Records read from one partition. Only committed records are ever returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchResponse {
    pub records: Vec<StoredRecord>,
    /// The offset to fetch next.
    pub next_offset: Offset,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

/// A consumer group's position in one partition: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPartitionOffset {
    pub topic: String,
    pub partition: PartitionId,
    pub offset: Offset,
}

/// A committed offset with the partition's high watermark and the group's lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: PartitionId,
    pub offset: Offset,
    pub high_watermark: Offset,
    pub lag: u64,
}

/// A consumer group's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffsets {
    pub group: String,
    pub offsets: Vec<CommittedOffset>,
}

/// One node of the cluster as described to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub cluster_addr: String,
    pub http_addr: String,
    /// `up` or `down`.
    pub status: String,
    /// `active`, `draining` (its replicas are moving away), `drained` (draining, and it holds
    /// none any more) or `down` (registered, not reachable).
    pub state: String,
    /// Partition replicas placed on it (a move's destinations included).
    pub replicas: u32,
    /// Partitions it leads, as the metadata last heard.
    pub leaders: u32,
    /// Its place in the metadata group: `voter`, `learner` or `none`.
    pub metadata_role: String,
}

/// A replica move in flight: a partition's replicas going from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: PartitionId,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// When it started (ms since the Unix epoch).
    pub started_ms: u64,
    /// Where the partition's leader stands with it (`adding_learners`, `catching_up`,
    /// `entering_joint`, `transferring_leadership`, `leaving_joint`, `removing_learners`,
    /// `finishing`); `None` when the leader could not be asked.
    pub phase: Option<String>,
    /// Bytes the leader sent to the new replicas for this move (throttled catch-up).
    pub bytes_copied: u64,
    /// The partition's stored bytes when the leader took the move up: what a new replica copies.
    pub bytes_total: u64,
}

/// A partition's Raft group as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The leader's last log index.
    pub last_index: u64,
    /// Every voter and learner, the leader included.
    pub members: Vec<MemberStatus>,
    /// The move this leader is carrying out, if any.
    pub moving: Option<MoveStatus>,
}

/// One member of a group as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub raft_id: u64,
    pub leader: bool,
    pub learner: bool,
    /// The last index known to be on it.
    pub matched: u64,
    /// It answered the leader lately (raft's `recent_active`).
    pub active: bool,
}

/// A move as the leader carrying it out sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveStatus {
    pub phase: String,
    pub bytes_copied: u64,
    pub bytes_total: u64,
}

/// One replica of a partition as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub node: String,
    /// `leader`, `follower`, `learner` or `offline` (not answering the leader, or not a member).
    pub state: String,
    /// Entries behind the leader.
    pub lag: u64,
}

/// A seed this node dials to join the cluster, and how that goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedInfo {
    /// The seed as configured, `host[:port]`.
    pub seed: String,
    /// A session with it is open and authenticated.
    pub connected: bool,
    /// Sessions with it that closed before authenticating (wrong cookie, not a Daftka node...).
    pub failed_attempts: u64,
}

/// The cluster as described to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub nodes: Vec<NodeInfo>,
    pub metadata_leader: Option<String>,
    /// This node's seeds (empty for a node that joins nobody).
    pub seeds: Vec<SeedInfo>,
}

/// The partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<PartitionId>,
}

impl TopicPartitions {
    /// The (topic, partition) pairs of `list`.
    pub fn pairs(list: &[TopicPartitions]) -> impl Iterator<Item = (String, PartitionId)> + '_ {
        list.iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.clone(), *p)))
    }

    /// (topic, partition) pairs grouped by topic, topics in order.
    pub fn group(list: &[(String, PartitionId)]) -> Vec<TopicPartitions> {
        let mut out: std::collections::BTreeMap<&str, Vec<PartitionId>> = Default::default();
        for (t, p) in list {
            out.entry(t).or_default().push(*p);
        }
        out.into_iter()
            .map(|(topic, partitions)| TopicPartitions {
                topic: topic.to_string(),
                partitions,
            })
            .collect()
    }
}

/// A request to join a consumer group. `None` takes the node's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGroup {
    pub group: String,
    pub topics: Vec<String>,
    pub session_timeout_ms: Option<u64>,
    /// `range`, `round_robin` or `sticky` (the default).
    pub assignor: Option<String>,
}

/// A member's standing in its group, as a join, heartbeat or poll answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAssignment {
    pub member_id: String,
    /// The generation to send with commits.
    pub generation: u64,
    /// The partitions to read now.
    pub assignment: Vec<TopicPartitions>,
    /// Partitions the member still owns but must give up: stop reading them, commit what was
    /// processed, then heartbeat with `owned` leaving them out.
    pub revoking: Vec<TopicPartitions>,
    /// The member has not reached its share of the group's assignment yet.
    pub rebalancing: bool,
    /// The group's committed offsets of the assigned partitions.
    pub committed: Vec<TopicPartitionOffset>,
}

/// A member's heartbeat. With `owned`, the member releases every revoking partition not in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub group: String,
    pub member_id: String,
    pub owned: Option<Vec<TopicPartitions>>,
}

/// One member of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRef {
    pub group: String,
    pub member_id: String,
}

/// A member's poll of its assigned partitions, from the group's positions (see
/// [`RouterMsg::PollGroup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRequest {
    pub group: String,
    pub member_id: String,
    pub max_records: u32,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
}

/// A record read by a group member, with where it is from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub topic: String,
    pub partition: PartitionId,
    pub record: StoredRecord,
}

/// The answer of a poll: records, and the member's standing after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollResponse {
    pub records: Vec<GroupRecord>,
    pub member: MemberAssignment,
}

/// A commit of a group's offsets. Members send their id and generation; without them the group
/// must have no members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCommit {
    pub group: String,
    pub member: Option<(String, u64)>,
    pub offsets: Vec<TopicPartitionOffset>,
}

/// A group in the list of groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    /// `empty`, `stable` or `rebalancing`.
    pub state: String,
    pub generation: u64,
    pub members: u32,
}

/// One member as a group description shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDescription {
    pub member_id: String,
    pub topics: Vec<String>,
    pub generation: u64,
    pub assignment: Vec<TopicPartitions>,
    pub revoking: Vec<TopicPartitions>,
    pub session_timeout_ms: u64,
    /// When the member was last heard from (ms since the Unix epoch, the group's clock).
    pub last_heartbeat_ms: u64,
}

/// One partition a group reads or has committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: PartitionId,
    /// The group's committed offset; none before its first commit.
    pub committed: Option<Offset>,
    pub log_start_offset: Offset,
    pub high_watermark: Offset,
    /// Records between the committed offset (or the log start) and the high watermark.
    pub lag: u64,
    /// The member that owns the partition now, if any.
    pub member: Option<String>,
}

/// A consumer group in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub generation: u64,
    pub assignor: String,
    pub members: Vec<MemberDescription>,
    pub partitions: Vec<PartitionLag>,
    /// The sum of the partitions' lag.
    pub lag: u64,
}

/// Where a reset moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(Offset),
}

/// An operator's reset of a group's committed offsets for one topic (or one partition of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetOffsets {
    pub group: String,
    pub topic: String,
    pub partition: Option<PartitionId>,
    pub to: ResetTo,
}

/// The messages of the Router, Daftka's exposed actor. See [`crate::Client`] for typed calls.
///
/// They cross the network: another Rust actor system connected to a node (ractor_cluster, same
/// cookie) finds the Routers in the pg group [`crate::names::routers_group`] and sends these.
/// Every payload and reply is a [`Wire`] value, which decodes into a `Result` (bytes that do not
/// decode become an error reply, never a crash). Wire rule: variants and fields are only ever
/// added, never renamed or reordered (the variant name and the field order are the format).
#[derive(Debug, ractor_cluster::RactorClusterMessage)]
pub enum RouterMsg {
    #[rpc]
    CreateTopic {
        spec: Wire<TopicSpec>,
        reply: RpcReplyPort<Wire<TopicDescription>>,
    },
    #[rpc]
    ListTopics {
        reply: RpcReplyPort<Wire<Vec<TopicDescription>>>,
    },
    #[rpc]
    DescribeTopic {
        topic: Wire<String>,
        reply: RpcReplyPort<Wire<TopicDescription>>,
    },
    #[rpc]
    DeleteTopic {
        topic: Wire<String>,
        reply: RpcReplyPort<Wire<()>>,
    },
    /// Appends records to `topic`; the reply lists each record's position in request order,
    /// sent only after every record is committed by a quorum and fsynced.
    #[rpc]
    Produce {
        topic: Wire<String>,
        records: Framed<Vec<ProduceRecord>>,
        reply: RpcReplyPort<Wire<Vec<RecordPosition>>>,
    },
    #[rpc]
    Fetch {
        request: Wire<FetchRequest>,
        reply: RpcReplyPort<Wire<FetchResponse>>,
    },
    /// Commits a group's offsets; durable and replicated before the reply.
    #[rpc]
    CommitOffsets {
        group: Wire<String>,
        offsets: Wire<Vec<TopicPartitionOffset>>,
        reply: RpcReplyPort<Wire<()>>,
    },
    #[rpc]
    FetchOffsets {
        group: Wire<String>,
        reply: RpcReplyPort<Wire<GroupOffsets>>,
    },
    #[rpc]
    ClusterInfo {
        reply: RpcReplyPort<Wire<ClusterInfo>>,
    },
    /// Joins a consumer group as a new member.
    #[rpc]
    JoinGroup {
        request: Wire<JoinGroup>,
        reply: RpcReplyPort<Wire<MemberAssignment>>,
    },
    #[rpc]
    GroupHeartbeat {
        request: Wire<Heartbeat>,
        reply: RpcReplyPort<Wire<MemberAssignment>>,
    },
    #[rpc]
    LeaveGroup {
        request: Wire<MemberRef>,
        reply: RpcReplyPort<Wire<()>>,
    },
    /// Reads the member's assigned partitions from the group's positions (the member's read
    /// position since its last poll, else the committed offset, else the log start), long-polling
    /// up to `max_wait_ms`. A poll also heartbeats and releases what the member was asked to give
    /// up: between two polls a member owns nothing in progress.
    #[rpc]
    PollGroup {
        request: Wire<PollRequest>,
        reply: RpcReplyPort<Wire<PollResponse>>,
    },
    /// Commits offsets, as a member (fenced by its generation) or for a group without members.
    /// Durable and replicated before the reply.
    #[rpc]
    CommitGroupOffsets {
        request: Wire<GroupCommit>,
        reply: RpcReplyPort<Wire<()>>,
    },
    #[rpc]
    ListGroups {
        reply: RpcReplyPort<Wire<Vec<GroupSummary>>>,
    },
    #[rpc]
    DescribeGroup {
        group: Wire<String>,
        reply: RpcReplyPort<Wire<GroupDescription>>,
    },
    /// Moves a group's committed offsets, backwards too; the group must have no members.
    #[rpc]
    ResetGroupOffsets {
        request: Wire<ResetOffsets>,
        reply: RpcReplyPort<Wire<Vec<TopicPartitionOffset>>>,
    },
    /// Starts (`draining`) or ends the drain of a node: its replicas move to other nodes, and
    /// nothing new is placed on it. Answers the node as the cluster shows it then. Refused
    /// (`not_enough_nodes`) when some partition on it would have no other node to go to.
    /// Moves one partition's replicas to `replicas` (distinct registered nodes, at most the
    /// topic's factor), through Raft membership changes; answers the move once it is started.
    #[rpc]
    Reassign {
        topic: Wire<String>,
        partition: Wire<PartitionId>,
        replicas: Wire<Vec<String>>,
        reply: RpcReplyPort<Wire<Reassignment>>,
    },
    /// Every replica move in flight.
    #[rpc]
    ListReassignments {
        reply: RpcReplyPort<Wire<Vec<Reassignment>>>,
    },
    #[rpc]
    DrainNode {
        node: Wire<String>,
        draining: Wire<bool>,
        reply: RpcReplyPort<Wire<NodeInfo>>,
    },
    /// Forgets a node (down, or holding no replica); answers it as it was, `state` "removed".
    /// Grows a topic and changes its settings; answers the topic as it is then.
    #[rpc]
    AlterTopic {
        topic: Wire<String>,
        alter: Wire<TopicAlter>,
        reply: RpcReplyPort<Wire<TopicDescription>>,
    },
    #[rpc]
    RemoveNode {
        node: Wire<String>,
        reply: RpcReplyPort<Wire<NodeInfo>>,
    },
}
