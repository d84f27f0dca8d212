//! Domain newtypes. Wire and disk forms are fixed-width integers (never `usize`).

use serde::{Deserialize, Serialize};

/// A partition's index within its topic, from 0.
pub type PartitionId = u32;

/// A record's partition-local position: contiguous from 0, assigned at apply, never reused.
pub type Offset = u64;

/// The id of one Raft group (and of its slice of the node's fjall keyspaces).
/// Group 0 is the metadata group; partition groups are numbered from 1 by the metadata state machine,
/// never reused, so a topic deleted and created again never sees the old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The metadata Raft group.
    pub const METADATA: GroupId = GroupId(0);
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// The longest topic or group name accepted (Kafka's limit).
pub const NAME_LEN_MAX: usize = 249;

/// Checks a topic or consumer-group name against `[A-Za-z0-9._-]{1,249}`.
pub fn validate_name(kind: &str, name: &str) -> Result<(), crate::Error> {
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return Err(crate::Error::invalid(format!(
            "{kind} name must be 1 to {NAME_LEN_MAX} characters, got {}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(crate::Error::invalid(format!(
            "{kind} name may only hold [A-Za-z0-9._-], found {c:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names follow Kafka's alphabet and length.
    #[test]
    fn names_are_checked() {
        assert!(validate_name("topic", "orders.v1_x-2").is_ok());
        assert!(validate_name("topic", "").is_err());
        assert!(validate_name("topic", "a/b").is_err());
        assert!(validate_name("topic", &"a".repeat(249)).is_ok());
        assert!(validate_name("topic", &"a".repeat(250)).is_err());
    }
}

/// A node's id inside Raft groups, derived from its name (FNV-1a, 64 bits; never 0), so every node
/// computes every other node's id without asking. Two names with one id are refused when the
/// second registers.
pub fn raft_id(node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// The Raft id of a node whose data directory was created with `incarnation` (since incarnations
/// exist): FNV-1a over the name and the incarnation, never 0. A node that joins again under the
/// same name with a new, empty directory is thus a new member of every Raft group, never taken
/// for the old one that lost its log. Nodes learn each other's ids from the metadata.
pub fn raft_id_of_incarnation(node: &str, incarnation: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.as_bytes().iter().chain(&incarnation.to_be_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

#[cfg(test)]
mod raft_id_tests {
    /// The id is a pure function of the name (the disk and the wire depend on it).
    #[test]
    fn raft_ids_are_stable() {
        assert_eq!(super::raft_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::raft_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(super::raft_id("b"), super::raft_id("a"));
        assert_eq!(
            super::raft_id_of_incarnation("a", 7),
            super::raft_id_of_incarnation("a", 7)
        );
        assert_ne!(
            super::raft_id_of_incarnation("a", 7),
            super::raft_id_of_incarnation("a", 8)
        );
    }
}
