//! The typed messages of Daftka's exposed actor, the Router (registered as [`crate::names::router`]).
//!
//! Every operation a client can do goes through [`RouterMsg`]; the HTTP gateway uses the same messages
//! through [`crate::Client`]. Replies are `Result<T, Error>`: expected failures travel in the reply.
//! Wire rule: variants are only ever added at the end, never renamed or reordered.

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{Offset, PartitionId};
use crate::record::{Record, StoredRecord};

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
#[derive(Debug, ractor_cluster::RactorMessage)]
pub enum RouterMsg {
    CreateTopic {
        spec: TopicSpec,
        reply: RpcReplyPort<Result<TopicDescription, Error>>,
    },
    ListTopics {
        reply: RpcReplyPort<Result<Vec<TopicDescription>, Error>>,
    },
    DescribeTopic {
        topic: String,
        reply: RpcReplyPort<Result<TopicDescription, Error>>,
    },
    DeleteTopic {
        topic: String,
        reply: RpcReplyPort<Result<(), Error>>,
    },
    /// Appends records; the reply lists each record's position in request order, sent only after
    /// every record is committed by a quorum and fsynced.
    Produce {
        topic: String,
        records: Vec<ProduceRecord>,
        reply: RpcReplyPort<Result<Vec<RecordPosition>, Error>>,
    },
    Fetch {
        request: FetchRequest,
        reply: RpcReplyPort<Result<FetchResponse, Error>>,
    },
    /// Commits a group's offsets; durable and replicated before the reply.
    CommitOffsets {
        group: String,
        offsets: Vec<TopicPartitionOffset>,
        reply: RpcReplyPort<Result<(), Error>>,
    },
    FetchOffsets {
        group: String,
        reply: RpcReplyPort<Result<GroupOffsets, Error>>,
    },
    ClusterInfo {
        reply: RpcReplyPort<Result<ClusterInfo, Error>>,
    },
}
