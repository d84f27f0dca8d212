//! The consumer-group coordinator: members, generations, assignments and commit fencing, as part of
//! the replicated metadata state machine (so it survives the loss of any node and no gateway holds
//! group state).
//!
//! # Protocol
//! A member joins with its topics and a session timeout and gets an id. Every change of the
//! group's membership or of its topics' partitions is a *rebalance*: the group's generation grows
//! by one and the group's assignor computes a new *target* assignment. Members reach the target in
//! two steps, so a partition is never read by two members at once:
//!
//! 1. A member that owns partitions its target gives to others is told to give them back: they are
//!    *revoking*. It keeps owning them (and may still commit them) until it *releases* them: a
//!    heartbeat whose `owned` list leaves them out, or a records poll (which owns nothing between
//!    two polls). A member that misses its session timeout is removed and releases everything.
//! 2. A member whose revocations are done takes up the group's generation, and every partition of
//!    its target that no other member owns any more. A partition still owned by another member is
//!    added when that member releases it.
//!
//! # Fencing
//! Each owned partition remembers the generation its ownership began at. A commit by member `m`
//! with generation `g` is accepted for partition `p` only if `m` owns `p` now and has owned it
//! since generation `g` or earlier, and `g` is not newer than `m`'s generation; otherwise it is
//! refused (`not_assigned`, `stale_generation`, or `unknown_member` for a member that left or
//! expired). A committed offset never moves backwards, except through an explicit reset, which
//! needs a group without members.
//!
//! # Time
//! The state machine reads no clock: each command carries its proposer's wall-clock time and the
//! state keeps the largest seen (`clock_ms`), so time never goes back inside the state machine.
//! Session expiry is proposed by the metadata leader and checked again at apply against that clock.
//! Clocks of the nodes are assumed roughly in step (NTP); a skew shortens or lengthens sessions by
//! as much.

use std::collections::{BTreeMap, BTreeSet};

use daftka_types::{ids::validate_name, Error, ErrorCode, PartitionId};
use serde::{Deserialize, Serialize};

use crate::assignor::{Assignment, Assignor, TopicPartition};
use crate::metadata::{MetadataEvent, MetadataState};

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u64,
    /// The group clock at its last join, heartbeat, commit or poll.
    pub last_seen_ms: u64,
    /// The group generation whose assignment it has taken up.
    pub generation: u64,
    /// The partitions it owns (may read and commit), each with the generation its ownership began.
    /// Those its target gives to others are *revoking* ([`GroupState::revoking`]): it must
    /// release them.
    pub owned: BTreeMap<TopicPartition, u64>,
    /// Where its records polls read next, by owned partition (the HTTP records endpoint).
    pub positions: BTreeMap<TopicPartition, u64>,
}

/// One consumer group's coordinator state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub assignor: Assignor,
    /// Grows by one at every rebalance; 0 before the first member joined.
    pub generation: u64,
    pub members: BTreeMap<String, MemberMeta>,
    /// The assignment computed at `generation`.
    pub target: Assignment,
    /// Rebalances since the group was first joined.
    pub rebalances: u64,
}

/// What a member learns from a join, a heartbeat or a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub member_id: String,
    /// The member's generation: the one to send with commits.
    pub generation: u64,
    /// The partitions to read now: owned, minus those being revoked.
    pub assignment: Vec<TopicPartition>,
    /// Partitions the member owns but must release (stop reading, commit, then heartbeat).
    pub revoking: Vec<TopicPartition>,
    /// The member has not reached its target yet.
    pub rebalancing: bool,
    /// The records endpoint's read positions of the assigned partitions.
    pub positions: Vec<(TopicPartition, u64)>,
    /// The group's committed offsets of the assigned partitions.
    pub committed: Vec<(TopicPartition, u64)>,
}

/// A group command: every variant names its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    Join {
        member_id: String,
        topics: Vec<String>,
        session_timeout_ms: u64,
        assignor: Assignor,
    },
    /// Keeps the member alive. With `owned`, releases every revoking partition not in it.
    Heartbeat {
        member_id: String,
        owned: Option<Vec<TopicPartition>>,
    },
    Leave {
        member_id: String,
    },
    /// Removes the members whose session timed out (checked again against the group clock).
    Expire {
        members: Vec<String>,
    },
    /// A member's commit, fenced by its generation.
    Commit {
        member_id: String,
        generation: u64,
        offsets: Vec<(String, PartitionId, u64)>,
    },
    /// A records poll delivered records up to these offsets (exclusive) from owned partitions.
    Advance {
        member_id: String,
        positions: Vec<(String, PartitionId, u64)>,
    },
    /// An operator sets committed offsets, backwards too; the group must have no members.
    Reset {
        offsets: Vec<(String, PartitionId, u64)>,
    },
}

impl GroupState {
    fn new(assignor: Assignor) -> Self {
        GroupState {
            assignor,
            generation: 0,
            members: BTreeMap::new(),
            target: Assignment::new(),
            rebalances: 0,
        }
    }

    /// Whether every member has reached the target and taken up the generation.
    pub fn stable(&self) -> bool {
        self.members.iter().all(|(id, m)| !self.rebalancing(id, m))
    }

    /// `empty`, `stable` or `rebalancing`.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "empty"
        } else if self.stable() {
            "stable"
        } else {
            "rebalancing"
        }
    }

    fn rebalancing(&self, id: &str, m: &MemberMeta) -> bool {
        let target = self.target.get(id);
        m.generation != self.generation
            || !self.revoking(id, m).is_empty()
            || target.map_or(0, |t| t.len()) != m.owned.len()
    }

    /// The partitions member `id` owns that its target gives to others.
    pub fn revoking(&self, id: &str, m: &MemberMeta) -> BTreeSet<TopicPartition> {
        revoking(self.target.get(id), m)
    }

    /// What member `id` learns about itself.
    pub fn view(&self, id: &str) -> Result<MemberView, Error> {
        let m = self.member(id)?;
        let revoking = self.revoking(id, m);
        let assignment: Vec<TopicPartition> = m
            .owned
            .keys()
            .filter(|tp| !revoking.contains(*tp))
            .cloned()
            .collect();
        let positions = assignment
            .iter()
            .filter_map(|tp| m.positions.get(tp).map(|o| (tp.clone(), *o)))
            .collect();
        Ok(MemberView {
            member_id: id.to_string(),
            generation: m.generation,
            assignment,
            revoking: revoking.into_iter().collect(),
            rebalancing: self.rebalancing(id, m),
            positions,
            committed: Vec::new(),
        })
    }

    fn member(&self, id: &str) -> Result<&MemberMeta, Error> {
        self.members.get(id).ok_or_else(|| unknown_member(id))
    }

    /// A new generation: the assignor computes the target from the members' subscriptions and the
    /// topics' partition counts (`topics`), keeping the previous target where it may (sticky).
    fn rebalance(&mut self, topics: &BTreeMap<String, u32>) {
        self.generation += 1;
        self.rebalances += 1;
        let exists = |(t, p): &TopicPartition| topics.get(t).is_some_and(|n| p < n);
        // Partitions of deleted topics are gone: nobody owns or releases them.
        for m in self.members.values_mut() {
            m.owned.retain(|tp, _| exists(tp));
            m.positions.retain(|tp, _| exists(tp));
        }
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        let subscribed: BTreeMap<String, u32> = topics
            .iter()
            .filter(|(t, _)| subscriptions.values().any(|s| s.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        self.target = self
            .assignor
            .assign(&subscriptions, &subscribed, &self.target);
        self.reconcile();
    }

    /// Moves every member as far towards its target as releases allow (see the module docs).
    fn reconcile(&mut self) {
        let mut taken: BTreeSet<TopicPartition> = self
            .members
            .values()
            .flat_map(|m| m.owned.keys().cloned())
            .collect();
        for (id, m) in self.members.iter_mut() {
            if !revoking(self.target.get(id), m).is_empty() {
                continue;
            }
            m.generation = self.generation;
            for tp in self.target.get(id).into_iter().flatten() {
                if taken.insert(tp.clone()) {
                    m.owned.insert(tp.clone(), self.generation);
                }
            }
        }
    }

    /// Releases member `id`'s revoking partitions that are not in `owned`, then reconciles.
    fn release(&mut self, id: &str, owned: &[TopicPartition]) {
        let target = self.target.get(id);
        if let Some(m) = self.members.get_mut(id) {
            let keep: BTreeSet<&TopicPartition> = owned.iter().collect();
            for tp in revoking(target, m) {
                if !keep.contains(&tp) {
                    m.owned.remove(&tp);
                    m.positions.remove(&tp);
                }
            }
        }
        self.reconcile();
    }

    /// Checks that member `id` at `generation` may commit `offsets` (see the module docs).
    fn check_member_commit(
        &self,
        id: &str,
        generation: u64,
        offsets: &[(String, PartitionId, u64)],
    ) -> Result<(), Error> {
        let m = self.member(id)?;
        if generation > m.generation {
            return Err(stale(format!(
                "generation {generation} is newer than member {id:?}'s {}",
                m.generation
            )));
        }
        for (topic, partition, _) in offsets {
            match m.owned.get(&(topic.clone(), *partition)) {
                None => {
                    return Err(Error::new(
                        ErrorCode::NotAssigned,
                        format!("{topic}/{partition} is not assigned to member {id:?}"),
                    ))
                }
                Some(since) if *since > generation => {
                    return Err(stale(format!(
                        "member {id:?} owns {topic}/{partition} since generation {since}, \
                         not {generation}"
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The partitions `m` owns that are not in its `target`.
fn revoking(target: Option<&BTreeSet<TopicPartition>>, m: &MemberMeta) -> BTreeSet<TopicPartition> {
    m.owned
        .keys()
        .filter(|tp| !target.is_some_and(|t| t.contains(*tp)))
        .cloned()
        .collect()
}

fn stale(message: String) -> Error {
    Error::new(ErrorCode::StaleGeneration, message)
}

fn unknown_member(id: &str) -> Error {
    Error::new(
        ErrorCode::UnknownMember,
        format!("member {id:?} is not in the group (it left or its session expired): join again"),
    )
}

impl MetadataState {
    /// Applies a group command at proposer time `now_ms`.
    pub(crate) fn apply_group(
        &mut self,
        group: String,
        cmd: GroupCommand,
        now_ms: u64,
    ) -> Result<MetadataEvent, Error> {
        validate_name("group", &group)?;
        let before = self.clock_ms;
        self.clock_ms = self.clock_ms.max(now_ms);
        let applied = self.apply_group_at(group, cmd);
        if applied.is_err() {
            // A rejected command changes nothing, not even the clock.
            self.clock_ms = before;
        }
        applied
    }

    fn apply_group_at(&mut self, group: String, cmd: GroupCommand) -> Result<MetadataEvent, Error> {
        let clock = self.clock_ms;
        let sizes = self.topic_sizes();
        match cmd {
            GroupCommand::Join {
                member_id,
                topics,
                session_timeout_ms,
                assignor,
            } => {
                validate_name("member", &member_id)?;
                if topics.is_empty() {
                    return Err(Error::invalid("a member subscribes to at least one topic"));
                }
                for t in &topics {
                    validate_name("topic", t)?;
                }
                if session_timeout_ms == 0 {
                    return Err(Error::invalid("session_timeout_ms must be positive"));
                }
                if let Some(g) = self.groups.get(&group) {
                    if g.members.contains_key(&member_id) {
                        return Err(Error::invalid(format!("member id {member_id:?} is taken")));
                    }
                    if !g.members.is_empty() && g.assignor != assignor {
                        return Err(Error::new(
                            ErrorCode::AssignorMismatch,
                            format!(
                                "group {group:?} uses the {:?} assignor, not {assignor:?}",
                                g.assignor
                            ),
                        ));
                    }
                }
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| GroupState::new(assignor));
                g.assignor = assignor;
                g.members.insert(
                    member_id.clone(),
                    MemberMeta {
                        topics: topics.into_iter().collect(),
                        session_timeout_ms,
                        last_seen_ms: clock,
                        generation: 0,
                        owned: BTreeMap::new(),
                        positions: BTreeMap::new(),
                    },
                );
                g.rebalance(&sizes);
                self.member_event(&group, &member_id)
            }
            GroupCommand::Heartbeat { member_id, owned } => {
                let g = self.group_with_member(&group, &member_id)?;
                if let Some(m) = g.members.get_mut(&member_id) {
                    m.last_seen_ms = clock;
                }
                if let Some(owned) = owned {
                    g.release(&member_id, &owned);
                }
                self.member_event(&group, &member_id)
            }
            GroupCommand::Leave { member_id } => {
                let g = self.group_with_member(&group, &member_id)?;
                g.members.remove(&member_id);
                g.target.remove(&member_id);
                g.rebalance(&sizes);
                Ok(MetadataEvent::MembersRemoved(vec![member_id]))
            }
            GroupCommand::Expire { members } => {
                let g = self
                    .groups
                    .get_mut(&group)
                    .ok_or_else(|| unknown_group(&group))?;
                let expired: Vec<String> = members
                    .into_iter()
                    .filter(|id| {
                        g.members.get(id).is_some_and(|m| {
                            clock.saturating_sub(m.last_seen_ms) >= m.session_timeout_ms
                        })
                    })
                    .collect();
                if expired.is_empty() {
                    return Ok(MetadataEvent::MembersRemoved(expired));
                }
                for id in &expired {
                    g.members.remove(id);
                    g.target.remove(id);
                }
                g.rebalance(&sizes);
                Ok(MetadataEvent::MembersRemoved(expired))
            }
            GroupCommand::Commit {
                member_id,
                generation,
                offsets,
            } => {
                self.check_offsets(&group, &offsets, false)?;
                let g = self.group_with_member(&group, &member_id)?;
                g.check_member_commit(&member_id, generation, &offsets)?;
                if let Some(m) = g.members.get_mut(&member_id) {
                    m.last_seen_ms = clock;
                }
                self.store_offsets(group, offsets);
                Ok(MetadataEvent::OffsetsCommitted)
            }
            GroupCommand::Advance {
                member_id,
                positions,
            } => {
                let g = self.group_with_member(&group, &member_id)?;
                let m = g
                    .members
                    .get_mut(&member_id)
                    .ok_or_else(|| unknown_member(&member_id))?;
                m.last_seen_ms = clock;
                // A partition released meanwhile is read again from the commits by its next owner.
                for (topic, partition, offset) in positions {
                    let tp = (topic, partition);
                    if m.owned.contains_key(&tp) {
                        let at = m.positions.entry(tp).or_insert(offset);
                        *at = (*at).max(offset);
                    }
                }
                self.member_event(&group, &member_id)
            }
            GroupCommand::Reset { offsets } => {
                if self
                    .groups
                    .get(&group)
                    .is_some_and(|g| !g.members.is_empty())
                {
                    return Err(group_active(&group));
                }
                self.check_offsets(&group, &offsets, true)?;
                self.store_offsets(group, offsets);
                Ok(MetadataEvent::OffsetsCommitted)
            }
        }
    }

    /// What member `id` of `group` learns, with the group's commits of its assigned partitions.
    pub fn member_view(&self, group: &str, id: &str) -> Result<MemberView, Error> {
        let g = self.groups.get(group).ok_or_else(|| unknown_member(id))?;
        let mut view = g.view(id)?;
        if let Some(committed) = self.group_offsets.get(group) {
            view.committed = view
                .assignment
                .iter()
                .filter_map(|tp| committed.get(tp).map(|o| (tp.clone(), *o)))
                .collect();
        }
        Ok(view)
    }

    fn member_event(&self, group: &str, id: &str) -> Result<MetadataEvent, Error> {
        self.member_view(group, id).map(MetadataEvent::Member)
    }

    /// A commit without a member: only for a group that has no members.
    pub(crate) fn apply_plain_commit(
        &mut self,
        group: String,
        offsets: Vec<(String, PartitionId, u64)>,
    ) -> Result<MetadataEvent, Error> {
        validate_name("group", &group)?;
        if self
            .groups
            .get(&group)
            .is_some_and(|g| !g.members.is_empty())
        {
            return Err(group_active(&group));
        }
        self.check_offsets(&group, &offsets, false)?;
        self.store_offsets(group, offsets);
        Ok(MetadataEvent::OffsetsCommitted)
    }

    /// Checks that `offsets` is not empty, names existing partitions, and (unless `backwards`
    /// is allowed) moves no committed offset back.
    fn check_offsets(
        &self,
        group: &str,
        offsets: &[(String, PartitionId, u64)],
        backwards: bool,
    ) -> Result<(), Error> {
        if offsets.is_empty() {
            return Err(Error::invalid("a commit needs at least one offset"));
        }
        let committed = self.group_offsets.get(group);
        for (topic, partition, offset) in offsets {
            self.partition(topic, *partition)?;
            let before = committed.and_then(|c| c.get(&(topic.clone(), *partition)));
            if let Some(before) = before.filter(|b| !backwards && offset < *b) {
                return Err(Error::new(
                    ErrorCode::OffsetBackwards,
                    format!(
                        "{topic}/{partition} is committed at {before}; {offset} would move it \
                         back (reset the group's offsets to do that)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn store_offsets(&mut self, group: String, offsets: Vec<(String, PartitionId, u64)>) {
        let entry = self.group_offsets.entry(group).or_default();
        for (topic, partition, offset) in offsets {
            entry.insert((topic, partition), offset);
        }
    }

    fn group_with_member(&mut self, group: &str, member: &str) -> Result<&mut GroupState, Error> {
        match self.groups.get_mut(group) {
            Some(g) if g.members.contains_key(member) => Ok(g),
            _ => Err(unknown_member(member)),
        }
    }

    /// Every topic's partition count.
    fn topic_sizes(&self) -> BTreeMap<String, u32> {
        self.topics
            .iter()
            .map(|(name, t)| (name.clone(), t.partitions.len() as u32))
            .collect()
    }

    /// Rebalances every group with a member subscribed to `topic` (created or deleted).
    pub(crate) fn rebalance_subscribers(&mut self, topic: &str) {
        let sizes = self.topic_sizes();
        for g in self.groups.values_mut() {
            if g.members.values().any(|m| m.topics.contains(topic)) {
                g.rebalance(&sizes);
            }
        }
    }

    /// The members whose session has timed out by `now_ms` (or the group clock, if later), by group.
    pub fn expired_members(&self, now_ms: u64) -> Vec<(String, Vec<String>)> {
        let clock = self.clock_ms.max(now_ms);
        self.groups
            .iter()
            .filter_map(|(name, g)| {
                let expired: Vec<String> = g
                    .members
                    .iter()
                    .filter(|(_, m)| clock.saturating_sub(m.last_seen_ms) >= m.session_timeout_ms)
                    .map(|(id, _)| id.clone())
                    .collect();
                (!expired.is_empty()).then(|| (name.clone(), expired))
            })
            .collect()
    }
}

fn unknown_group(group: &str) -> Error {
    Error::new(
        ErrorCode::UnknownGroup,
        format!("group {group:?} does not exist"),
    )
}

fn group_active(group: &str) -> Error {
    Error::new(
        ErrorCode::GroupActive,
        format!(
            "group {group:?} has members: commit as a member (member_id and generation), or \
             reset once it has none"
        ),
    )
}
