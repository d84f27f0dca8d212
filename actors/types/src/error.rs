//! Error codes and the error value every reply carries.
//!
//! Codes are stable snake_case names; the HTTP gateway maps each to a status in one function.
//! Operating errors (not leader, unknown topic, timeout) are values; they never crash an actor.

use serde::{Deserialize, Serialize};

/// A stable error code. New codes are added at the end; none is ever renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, bad parameter, empty batch, bad name.
    InvalidRequest,
    UnknownTopic,
    UnknownPartition,
    TopicExists,
    /// The fetch offset is outside `[log_start_offset, high_watermark]`.
    OffsetOutOfRange,
    /// A body, batch, key, value or header exceeds its configured limit.
    PayloadTooLarge,
    /// The service cannot answer now (no leader, replica restarting, overloaded): retry.
    Unavailable,
    /// The request did not complete within its deadline: its outcome is unknown; retry may duplicate.
    Timeout,
    /// This replica is not the partition's leader: the router retries elsewhere.
    NotLeader,
    /// A broken invariant or a storage failure.
    Internal,
    /// The route does not exist (HTTP only).
    NotFound,
    /// A consumer-group member sent a generation older than the one that owns what it names:
    /// it lost (or has not yet taken up) its assignment. It should heartbeat and carry on.
    StaleGeneration,
    /// A member committed or read a partition that is not assigned to it.
    NotAssigned,
    /// The member is not in the group (it left, or missed its session timeout): join again.
    UnknownMember,
    /// The consumer group does not exist.
    UnknownGroup,
    /// The operation needs a group without members (a commit without `member_id`, a reset).
    GroupActive,
    /// A commit would move a committed offset backwards; only a reset may.
    OffsetBackwards,
    /// A member asked for another assignor than the one the group's members use.
    AssignorMismatch,
    /// No node of that name is registered in the cluster.
    UnknownNode,
    /// The change would leave partitions with fewer replicas than their factor, for want of
    /// nodes to hold them (draining the last node that could hold a replica).
    NotEnoughNodes,
    /// The node is up and still holds replicas: drain it before removing it.
    NodeActive,
    /// The node was removed from the cluster (or is registered with another data directory): a
    /// node of that name joins again only with an empty data directory.
    NodeRemoved,
}

impl ErrorCode {
    /// The stable snake_case name used in JSON bodies and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnknownTopic => "unknown_topic",
            ErrorCode::UnknownPartition => "unknown_partition",
            ErrorCode::TopicExists => "topic_exists",
            ErrorCode::OffsetOutOfRange => "offset_out_of_range",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
            ErrorCode::StaleGeneration => "stale_generation",
            ErrorCode::NotAssigned => "not_assigned",
            ErrorCode::UnknownMember => "unknown_member",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::GroupActive => "group_active",
            ErrorCode::OffsetBackwards => "offset_backwards",
            ErrorCode::AssignorMismatch => "assignor_mismatch",
            ErrorCode::UnknownNode => "unknown_node",
            ErrorCode::NotEnoughNodes => "not_enough_nodes",
            ErrorCode::NodeActive => "node_active",
            ErrorCode::NodeRemoved => "node_removed",
        }
    }

    /// Every code, in the order they were added.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::InvalidRequest,
        ErrorCode::UnknownTopic,
        ErrorCode::UnknownPartition,
        ErrorCode::TopicExists,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::NotLeader,
        ErrorCode::Internal,
        ErrorCode::NotFound,
        ErrorCode::StaleGeneration,
        ErrorCode::NotAssigned,
        ErrorCode::UnknownMember,
        ErrorCode::UnknownGroup,
        ErrorCode::GroupActive,
        ErrorCode::OffsetBackwards,
        ErrorCode::AssignorMismatch,
        ErrorCode::UnknownNode,
        ErrorCode::NotEnoughNodes,
        ErrorCode::NodeActive,
        ErrorCode::NodeRemoved,
    ];

    /// The code whose [`as_str`](Self::as_str) name is `name` (a JSON error body's `code`).
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether a client may retry the same request and expect it to succeed later.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::NotLeader
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply: a code, a human message, and for `offset_out_of_range` the valid range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Set with [`ErrorCode::OffsetOutOfRange`]: the partition's first readable offset.
    pub log_start_offset: Option<u64>,
    /// Set with [`ErrorCode::OffsetOutOfRange`]: the partition's high watermark.
    pub high_watermark: Option<u64>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            log_start_offset: None,
            high_watermark: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Timeout, message)
    }
    pub fn unknown_topic(topic: &str) -> Self {
        Self::new(
            ErrorCode::UnknownTopic,
            format!("topic {topic:?} does not exist"),
        )
    }
    pub fn unknown_partition(topic: &str, partition: u32) -> Self {
        Self::new(
            ErrorCode::UnknownPartition,
            format!("topic {topic:?} has no partition {partition}"),
        )
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }
    pub fn not_leader(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotLeader, message)
    }
    pub fn offset_out_of_range(offset: u64, log_start_offset: u64, high_watermark: u64) -> Self {
        Error {
            code: ErrorCode::OffsetOutOfRange,
            message: format!("offset {offset} is outside [{log_start_offset}, {high_watermark}]"),
            log_start_offset: Some(log_start_offset),
            high_watermark: Some(high_watermark),
        }
    }
    /// Whether a client may retry.
    pub fn retryable(&self) -> bool {
        self.code.retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_found_by_its_name() {
        // HTTP clients turn a body's `code` back into the code: every name must lead back to it.
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_name("no_such_code"), None);
        // Exhaustive on purpose: a new code must be added to ALL (and here) to compile.
        let listed = |c: ErrorCode| match c {
            ErrorCode::InvalidRequest
            | ErrorCode::UnknownTopic
            | ErrorCode::UnknownPartition
            | ErrorCode::TopicExists
            | ErrorCode::OffsetOutOfRange
            | ErrorCode::PayloadTooLarge
            | ErrorCode::Unavailable
            | ErrorCode::Timeout
            | ErrorCode::NotLeader
            | ErrorCode::Internal
            | ErrorCode::NotFound
            | ErrorCode::StaleGeneration
            | ErrorCode::NotAssigned
            | ErrorCode::UnknownMember
            | ErrorCode::UnknownGroup
            | ErrorCode::GroupActive
            | ErrorCode::OffsetBackwards
            | ErrorCode::AssignorMismatch
            | ErrorCode::UnknownNode
            | ErrorCode::NotEnoughNodes
            | ErrorCode::NodeActive
            | ErrorCode::NodeRemoved => ErrorCode::ALL.contains(&c),
        };
        assert!(ErrorCode::ALL.into_iter().all(listed));
    }
}
