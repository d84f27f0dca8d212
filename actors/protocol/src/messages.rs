//! The typed messages of Daftka's exposed actor, the Router (registered as [`crate::names::router`]).
//!
//! Every operation a client can do goes through [`RouterMsg`]; the HTTP gateway uses the same messages
//! through [`crate::Client`], and so do other Rust actor systems over ractor_cluster. Replies are
//! [`Wire`] results: expected failures travel in the reply.

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

use crate::ids::{Offset, PartitionId};
use crate::record::{Record, StoredRecord};
use crate::wire::Wire;

/// What a client asks for when it creates a topic. `None` takes the node's configured default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: Option<u32>,
    pub replication_factor: Option<u32>,
}

/// One partition as described to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: PartitionId,
    pub leader: Option<String>,
    pub replicas: Vec<String>,
    pub log_start_offset: Offset,
    pub high_watermark: Offset,
}

/// A topic as described to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub name: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionDescription>,
}

/// A record to produce, with an optional explicit partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRecord {
    /// Explicit partition; else a stable hash of the key; else spread across partitions.
    pub partition: Option<PartitionId>,
    pub record: Record,
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
        records: Wire<Vec<ProduceRecord>>,
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
}
