//! Replica moves as Raft membership changes: what a group's leader does next to bring its
//! configuration to a move's destination ([`next_step`]), and which moves the Rebalancer starts
//! ([`plan_repairs`]).
//!
//! A move never copies data behind Raft's back. Its steps, each one applied before the next is
//! looked at:
//! 1. the destinations that are not members yet join as **learners** (they catch up from the log,
//!    or a snapshot where the log was compacted by retention);
//! 2. once every learner of the destination is caught up, one `ConfChangeV2` enters the **joint**
//!    configuration (old voters and new voters both must agree: never below a quorum of caught-up
//!    voters on either side);
//! 3. a leader that is not among the new voters hands leadership to one that is;
//! 4. the leader leaves the joint configuration; learners that are not destinations are removed.
//!
//! The steps are a function of the applied configuration and the leader's view of its followers,
//! so a leader that crashes anywhere is replaced by one that takes up the move where it stands.

use std::collections::BTreeSet;

use raft::eraftpb::ConfState;

use crate::metadata::{MetadataCommand, MetadataState};

/// What a follower looks like to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// The last log index known to be on it.
    pub matched: u64,
    /// It answers appends and takes entries as they come (raft's `Replicate` state): not probed
    /// (it has not answered yet, or lost its place) and not being sent a snapshot.
    pub replicating: bool,
}

/// The leader's view of its group, as [`next_step`] reads it.
#[derive(Debug, Clone)]
pub struct LeaderView<'a> {
    /// This leader's raft id.
    pub id: u64,
    /// The configuration as applied.
    pub conf: &'a ConfState,
    /// A configuration change is proposed and not yet applied.
    pub conf_change_pending: bool,
    /// The leader's last log index.
    pub last_index: u64,
    /// Entries a learner may still be behind and count as caught up.
    pub catch_up_lag: u64,
}

/// The next thing a leader does for a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The configuration is the destination: report the move finished.
    Done,
    /// Nothing now: a change is being applied, or learners are catching up.
    Wait,
    /// Add these as learners.
    AddLearners(Vec<u64>),
    /// Enter the joint configuration: these learners become voters, these voters leave.
    EnterJoint { promote: Vec<u64>, demote: Vec<u64> },
    /// Hand leadership to this voter of the destination (the leader is not one).
    TransferLeader(u64),
    /// Leave the joint configuration.
    LeaveJoint,
    /// Remove these learners (not destinations: left over from a move that changed its mind).
    RemoveLearners(Vec<u64>),
}

/// The next step towards the voters `target`, given how `follower` answers for each id.
pub fn next_step(
    view: &LeaderView<'_>,
    target: &[u64],
    follower: impl Fn(u64) -> Option<Follower>,
) -> Step {
    if view.conf_change_pending {
        return Step::Wait;
    }
    let caught_up = |id: u64| {
        id == view.id
            || follower(id).is_some_and(|f| {
                // A follower that never answered is not caught up, however short the log.
                f.replicating && f.matched + view.catch_up_lag >= view.last_index
            })
    };
    let target: BTreeSet<u64> = target.iter().copied().collect();
    let voters: BTreeSet<u64> = view.conf.voters.iter().copied().collect();
    let learners: BTreeSet<u64> = view.conf.learners.iter().copied().collect();
    if !view.conf.voters_outgoing.is_empty() {
        // Joint: the incoming voters are `voters`. Leave once the leader is one of them.
        if !voters.contains(&view.id) {
            return match voters.iter().copied().find(|id| caught_up(*id)) {
                Some(id) => Step::TransferLeader(id),
                None => Step::Wait,
            };
        }
        return Step::LeaveJoint;
    }
    let missing: Vec<u64> = target
        .iter()
        .copied()
        .filter(|id| !voters.contains(id) && !learners.contains(id))
        .collect();
    if !missing.is_empty() {
        return Step::AddLearners(missing);
    }
    let promote: Vec<u64> = learners.intersection(&target).copied().collect();
    let demote: Vec<u64> = voters.difference(&target).copied().collect();
    if !promote.is_empty() || !demote.is_empty() {
        if !promote.iter().all(|id| caught_up(*id)) {
            return Step::Wait;
        }
        return Step::EnterJoint { promote, demote };
    }
    let extra: Vec<u64> = learners.difference(&target).copied().collect();
    if !extra.is_empty() {
        return Step::RemoveLearners(extra);
    }
    Step::Done
}

/// How many partition replicas each of `nodes` hosts (a move's destinations included).
pub fn replica_load<'a>(
    state: &MetadataState,
    nodes: &'a [String],
) -> std::collections::BTreeMap<&'a str, usize> {
    let mut load: std::collections::BTreeMap<&str, usize> =
        nodes.iter().map(|n| (n.as_str(), 0)).collect();
    for t in state.topics.values() {
        for p in &t.partitions {
            for n in state.hosts(p) {
                if let Some(c) = load.get_mut(n.as_str()) {
                    *c += 1;
                }
            }
        }
    }
    load
}

/// The moves that bring partitions back to their factor, the most missing replicas first, while
/// fewer than `max_parallel` moves are in flight: a replica on a `dead` node (down past
/// `rebalance.node_down_timeout`) or on a draining one is replaced, and an under-replicated
/// partition gets the replicas it lacks. New replicas go to `live` nodes (sorted names) holding no replica of the
/// partition, those with the fewest replicas first; a replaced replica's place in the list (its
/// turn as preferred leader) goes to its replacement. A partition whose live replicas are not a
/// majority of its voters is left alone: its group could not commit the change.
pub fn plan_repairs(
    state: &MetadataState,
    live: &[String],
    dead: &BTreeSet<String>,
    max_parallel: usize,
    now_ms: u64,
) -> Vec<MetadataCommand> {
    let mut load = replica_load(state, live);
    let is_live = |n: &String| live.contains(n);
    let gone_from = |n: &String| gone(state, dead, n);
    let mut short: Vec<(usize, &crate::metadata::PartitionMeta, usize)> = state
        .topics
        .values()
        .flat_map(|t| {
            let rf = t.replication_factor as usize;
            t.partitions.iter().map(move |p| (rf, p))
        })
        .filter(|(_, p)| !state.moves.contains_key(&p.group))
        .filter(|(_, p)| p.replicas.iter().filter(|r| is_live(r)).count() * 2 > p.replicas.len())
        .filter_map(|(rf, p)| {
            let gone = p.replicas.iter().filter(|r| gone_from(r)).count();
            let missing = rf.saturating_sub(p.replicas.len()) + gone;
            (missing > 0).then_some((missing, p, rf))
        })
        .collect();
    short.sort_by_key(|(missing, p, _)| (std::cmp::Reverse(*missing), p.group));
    let mut room = max_parallel.saturating_sub(state.moves.len());
    let mut out = redirects(state, live, dead);
    for (_, p, rf) in short {
        if room == 0 {
            break;
        }
        let mut candidates: Vec<&str> = live
            .iter()
            .map(String::as_str)
            .filter(|n| !p.replicas.iter().any(|r| r == n) && !state.draining.contains(*n))
            .collect();
        candidates.sort_by_key(|n| (load.get(n).copied().unwrap_or(0), *n));
        let mut candidates = candidates.into_iter();
        let mut to: Vec<String> = p
            .replicas
            .iter()
            .map(
                |r| match gone_from(r).then(|| candidates.next()).flatten() {
                    Some(c) => c.to_string(),
                    None => r.clone(),
                },
            )
            .collect();
        while to.len() < rf {
            match candidates.next() {
                Some(c) => to.push(c.to_string()),
                None => break,
            }
        }
        if to == p.replicas {
            continue;
        }
        for n in to.iter().filter(|n| !p.replicas.contains(n)) {
            if let Some(c) = load.get_mut(n.as_str()) {
                *c += 1;
            }
        }
        out.push(MetadataCommand::StartMove {
            group: p.group,
            from: p.replicas.clone(),
            to,
            now_ms,
        });
        room -= 1;
    }
    out
}

/// Whether replicas on `node` are to be created again elsewhere: it is down past the timeout
/// (`dead`), draining (it never receives new ones either), or removed from the cluster.
fn gone(state: &MetadataState, dead: &BTreeSet<String>, node: &String) -> bool {
    dead.contains(node) || state.draining.contains(node) || !state.nodes.contains_key(node)
}

/// Moves in flight towards a dead, draining or removed node get a new destination: each such node is
/// replaced by a live, undrained one, a node the move comes from first (a rollback: it holds the
/// data), else the node holding fewest replicas. Without a replacement the move is left to wait.
fn redirects(
    state: &MetadataState,
    live: &[String],
    dead: &BTreeSet<String>,
) -> Vec<MetadataCommand> {
    let gone = |n: &String| gone(state, dead, n);
    let load = replica_load(state, live);
    let mut out = Vec::new();
    for (group, m) in &state.moves {
        if !m.to.iter().any(gone) {
            continue;
        }
        let mut candidates: Vec<&String> = live
            .iter()
            .filter(|n| !gone(n) && !m.to.contains(n))
            .collect();
        candidates.sort_by_key(|n| (!m.from.contains(n), load.get(n.as_str()).copied(), *n));
        let mut candidates = candidates.into_iter();
        let mut to: Vec<String> = Vec::new();
        for n in &m.to {
            if gone(n) {
                match candidates.next() {
                    Some(c) => to.push(c.clone()),
                    None => break,
                }
            } else {
                to.push(n.clone());
            }
        }
        if to.len() < m.to.len() {
            continue;
        }
        out.push(MetadataCommand::RedirectMove {
            group: *group,
            from_to: m.to.clone(),
            to,
        });
    }
    out
}

/// One move that evens out a topic's replicas across `eligible` nodes (live, undrained; sorted
/// names), once nothing else moves: on the first topic (by name) whose busiest node holds two or
/// more replicas of it than the idlest, the first partition (by number) with a replica on the
/// busiest and none on the idlest gets the idlest in that replica's place (its turn as preferred
/// leader included). Only partitions at their factor with every replica eligible are moved. Called
/// again after each move, it brings every topic's per-node counts within one of each other.
pub fn plan_balance(
    state: &MetadataState,
    eligible: &[String],
    now_ms: u64,
) -> Option<MetadataCommand> {
    if !state.moves.is_empty() || eligible.len() < 2 {
        return None;
    }
    for t in state.topics.values() {
        let rf = t.replication_factor as usize;
        let mut count: std::collections::BTreeMap<&str, usize> =
            eligible.iter().map(|n| (n.as_str(), 0)).collect();
        for p in &t.partitions {
            for r in &p.replicas {
                if let Some(c) = count.get_mut(r.as_str()) {
                    *c += 1;
                }
            }
        }
        // Busiest first by count (then name), idlest last.
        let mut order: Vec<(&str, usize)> = count.into_iter().collect();
        order.sort_by_key(|(n, c)| (std::cmp::Reverse(*c), *n));
        let (Some(&(busy, most)), Some(&(idle, least))) = (order.first(), order.last()) else {
            continue;
        };
        if most <= least + 1 {
            continue;
        }
        let movable = t.partitions.iter().find(|p| {
            p.replicas.len() == rf
                && p.replicas.iter().all(|r| eligible.contains(r))
                && p.replicas.iter().any(|r| r == busy)
                && !p.replicas.iter().any(|r| r == idle)
        });
        if let Some(p) = movable {
            let to = p
                .replicas
                .iter()
                .map(|r| {
                    if r == busy {
                        idle.to_string()
                    } else {
                        r.clone()
                    }
                })
                .collect();
            return Some(MetadataCommand::StartMove {
                group: p.group,
                from: p.replicas.clone(),
                to,
                now_ms,
            });
        }
    }
    None
}

/// One membership change of the metadata group, as its leader plans it with [`metadata_step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaChange {
    /// A registered node is not a member: add it as a voter (while the group has fewer than it
    /// should) or as a learner.
    Add { id: u64, voter: bool },
    /// The member belongs to a removed node: take it out.
    Remove(u64),
    /// A caught-up learner on a live node becomes a voter (the group is short of healthy voters).
    Promote(u64),
    /// A voter down past the timeout becomes a learner, once a replacement has been promoted.
    Demote(u64),
    /// The leader itself must go: it hands leadership to this voter first.
    TransferLeader(u64),
}

/// What [`metadata_step`] looks at.
#[derive(Debug, Clone)]
pub struct MetaMembers<'a> {
    /// The leader's raft id, and the configuration as applied.
    pub leader: u64,
    pub conf: &'a ConfState,
    /// Registered nodes: (raft id, may be a voter) — `cluster.metadata_voters` lists who may,
    /// or everybody when it is empty.
    pub registered: &'a [(u64, bool)],
    /// Raft ids of removed nodes.
    pub removed: &'a BTreeSet<u64>,
    /// Raft ids of nodes down past `rebalance.node_down_timeout`.
    pub dead: &'a BTreeSet<u64>,
    /// How many voters the group should have.
    pub voters_wanted: usize,
}

/// The next membership change of the metadata group, one at a time (the caller proposes it only
/// when no change is pending), in this order: members of removed nodes leave (the leader hands
/// leadership over first); registered nodes that are not members join; a group short of healthy
/// voters promotes a caught-up learner on a live node; then a dead voter beyond the count is
/// demoted. Promotion goes first so the group never drops below the voters it has alive.
pub fn metadata_step(
    m: &MetaMembers,
    follower: impl Fn(u64) -> Option<Follower>,
) -> Option<MetaChange> {
    let voters = &m.conf.voters;
    let learners = &m.conf.learners;
    let caught_up = |id: u64| follower(id).is_some_and(|f| f.replicating);
    if let Some(gone) = voters
        .iter()
        .chain(learners)
        .copied()
        .find(|id| m.removed.contains(id))
    {
        if gone != m.leader {
            return Some(MetaChange::Remove(gone));
        }
        let heir = voters.iter().copied().find(|v| {
            *v != m.leader && !m.removed.contains(v) && !m.dead.contains(v) && caught_up(*v)
        });
        return heir.map(MetaChange::TransferLeader);
    }
    let member = |id: &u64| voters.contains(id) || learners.contains(id);
    if let Some((id, may_vote)) = m.registered.iter().copied().find(|(id, _)| !member(id)) {
        return Some(MetaChange::Add {
            id,
            voter: may_vote && voters.len() < m.voters_wanted,
        });
    }
    let healthy = voters.iter().filter(|v| !m.dead.contains(v)).count();
    if healthy < m.voters_wanted {
        let candidate = m.registered.iter().copied().find(|(id, may_vote)| {
            *may_vote && learners.contains(id) && !m.dead.contains(id) && caught_up(*id)
        });
        if let Some((id, _)) = candidate {
            return Some(MetaChange::Promote(id));
        }
    }
    if voters.len() > m.voters_wanted {
        if let Some(dead) = voters
            .iter()
            .copied()
            .find(|v| m.dead.contains(v) && *v != m.leader)
        {
            return Some(MetaChange::Demote(dead));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64], learners: &[u64], outgoing: &[u64]) -> ConfState {
        ConfState {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            voters_outgoing: outgoing.to_vec(),
            ..ConfState::default()
        }
    }

    fn view(id: u64, conf: &ConfState) -> LeaderView<'_> {
        LeaderView {
            id,
            conf,
            conf_change_pending: false,
            last_index: 100,
            catch_up_lag: 10,
        }
    }

    fn at(matched: u64) -> Option<Follower> {
        Some(Follower {
            matched,
            replicating: true,
        })
    }

    /// A move from {1} to {1,2,3}: learners, catch-up, joint, leave, done.
    #[test]
    fn growing_a_group_goes_through_learners_and_joint() {
        let c = conf(&[1], &[], &[]);
        assert_eq!(
            next_step(&view(1, &c), &[1, 2, 3], |_| None),
            Step::AddLearners(vec![2, 3])
        );
        let c = conf(&[1], &[2, 3], &[]);
        // One learner still far behind, another being sent a snapshot: wait.
        assert_eq!(
            next_step(&view(1, &c), &[1, 2, 3], |id| if id == 2 {
                at(50)
            } else {
                at(100)
            }),
            Step::Wait
        );
        let snapshotting = |_| {
            Some(Follower {
                matched: 100,
                replicating: false,
            })
        };
        assert_eq!(
            next_step(&view(1, &c), &[1, 2, 3], snapshotting),
            Step::Wait
        );
        // A learner that never answered (probed, nothing matched) is not caught up, even when the
        // whole log is shorter than the allowed lag.
        let mut short = view(1, &c);
        short.last_index = 5;
        let silent = |_| {
            Some(Follower {
                matched: 0,
                replicating: false,
            })
        };
        assert_eq!(next_step(&short, &[1, 2, 3], silent), Step::Wait);
        assert_eq!(
            next_step(&view(1, &c), &[1, 2, 3], |_| at(95)),
            Step::EnterJoint {
                promote: vec![2, 3],
                demote: vec![]
            }
        );
        let c = conf(&[1, 2, 3], &[], &[1]);
        assert_eq!(
            next_step(&view(1, &c), &[1, 2, 3], |_| at(100)),
            Step::LeaveJoint
        );
        let c = conf(&[1, 2, 3], &[], &[]);
        assert_eq!(next_step(&view(1, &c), &[1, 2, 3], |_| at(100)), Step::Done);
        let mut v = view(1, &c);
        v.conf_change_pending = true;
        assert_eq!(next_step(&v, &[1, 2, 4], |_| at(100)), Step::Wait);
    }

    /// A leader that leaves the group hands leadership to a caught-up new voter before the joint
    /// configuration is left.
    #[test]
    fn a_leaving_leader_transfers_first() {
        let c = conf(&[1, 2], &[3], &[]);
        assert_eq!(
            next_step(&view(1, &c), &[2, 3], |_| at(100)),
            Step::EnterJoint {
                promote: vec![3],
                demote: vec![1]
            }
        );
        let c = conf(&[2, 3], &[], &[1, 2]);
        assert_eq!(
            next_step(&view(1, &c), &[2, 3], |id| if id == 2 {
                at(10)
            } else {
                at(100)
            }),
            Step::TransferLeader(3)
        );
        assert_eq!(next_step(&view(1, &c), &[2, 3], |_| at(10)), Step::Wait);
        // The new leader (3) leaves the joint configuration.
        assert_eq!(
            next_step(&view(3, &c), &[2, 3], |_| at(100)),
            Step::LeaveJoint
        );
    }

    /// Learners outside the destination (a move replaced by another) are removed at the end.
    #[test]
    fn stray_learners_are_removed() {
        let c = conf(&[1, 2], &[4], &[]);
        assert_eq!(
            next_step(&view(1, &c), &[1, 2], |_| at(100)),
            Step::RemoveLearners(vec![4])
        );
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A state with nodes a, b, c and d registered (raft ids 1 to 4), and the limits to apply with.
    fn four_nodes() -> (MetadataState, crate::metadata::MetadataLimits) {
        use crate::metadata::{MetadataLimits, NodeMeta};
        let limits = MetadataLimits {
            partitions_per_topic_max: 10,
        };
        let mut s = MetadataState::default();
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            s.apply(
                MetadataCommand::RegisterNode(NodeMeta {
                    name: n.to_string(),
                    raft_id: i as u64 + 1,
                    cluster_addr: String::new(),
                    http_addr: String::new(),
                }),
                limits,
            )
            .expect("register");
        }
        (s, limits)
    }

    /// Under-replicated partitions get moves to live nodes without a replica, the least loaded
    /// first, most missing first, within the parallel budget.
    #[test]
    fn repairs_top_up_on_the_least_loaded_live_nodes() {
        let (mut s, limits) = four_nodes();
        s.apply(
            MetadataCommand::CreateTopic {
                name: "t".into(),
                replication_factor: 3,
                placement: vec![names(&["a"]), names(&["a", "b"]), names(&["b", "c", "a"])],
            },
            limits,
        )
        .expect("create");
        let live = names(&["a", "b", "c"]);
        let none = BTreeSet::new();
        let moves = plan_repairs(&s, &live, &none, 2, 9);
        let groups: Vec<_> = s.topics["t"].partitions.iter().map(|p| p.group).collect();
        assert_eq!(
            moves,
            vec![
                MetadataCommand::StartMove {
                    group: groups[0],
                    from: names(&["a"]),
                    to: names(&["a", "c", "b"]),
                    now_ms: 9
                },
                MetadataCommand::StartMove {
                    group: groups[1],
                    from: names(&["a", "b"]),
                    to: names(&["a", "b", "c"]),
                    now_ms: 9
                },
            ]
        );
        // One move already in flight leaves room for one more; d is not live.
        for m in moves.into_iter().take(1) {
            s.apply(m, limits).expect("start");
        }
        let moves = plan_repairs(&s, &live, &none, 2, 9);
        assert_eq!(moves.len(), 1);
        assert!(plan_repairs(&s, &live, &none, 1, 9).is_empty());
        // With only the partition's own nodes alive, nothing can be done.
        assert!(plan_repairs(&s, &names(&["a", "b"]), &none, 5, 9)
            .iter()
            .all(
                |m| !matches!(m, MetadataCommand::StartMove { group, .. } if *group == groups[1])
            ));
    }

    /// A replica on a dead node is replaced in its place by a live node; without a spare node
    /// nothing moves; a partition whose live replicas are no majority is left alone.
    #[test]
    fn dead_replicas_are_replaced_in_place() {
        let (mut s, limits) = four_nodes();
        s.apply(
            MetadataCommand::CreateTopic {
                name: "t".into(),
                replication_factor: 3,
                placement: vec![names(&["c", "a", "b"]), names(&["c", "d", "b"])],
            },
            limits,
        )
        .expect("create");
        let groups: Vec<_> = s.topics["t"].partitions.iter().map(|p| p.group).collect();
        let dead: BTreeSet<String> = ["c".to_string()].into();
        assert_eq!(
            plan_repairs(&s, &names(&["a", "b", "d"]), &dead, 2, 1),
            vec![
                MetadataCommand::StartMove {
                    group: groups[0],
                    from: names(&["c", "a", "b"]),
                    to: names(&["d", "a", "b"]),
                    now_ms: 1
                },
                MetadataCommand::StartMove {
                    group: groups[1],
                    from: names(&["c", "d", "b"]),
                    to: names(&["a", "d", "b"]),
                    now_ms: 1
                }
            ]
        );
        // Only the partition's own live nodes: no spare, nothing moves.
        assert!(plan_repairs(&s, &names(&["a", "b"]), &dead, 2, 1)
            .iter()
            .all(
                |m| !matches!(m, MetadataCommand::StartMove { group, .. } if *group == groups[0])
            ));
        // c and d both down: partition 1 has one live replica of three, and is left alone.
        let dead: BTreeSet<String> = ["c".to_string(), "d".to_string()].into();
        let moves = plan_repairs(&s, &names(&["a", "b"]), &dead, 2, 1);
        assert!(moves.iter().all(
            |m| !matches!(m, MetadataCommand::StartMove { group, .. } if *group == groups[1])
        ));
    }

    /// The metadata group: removed members leave (the leader hands over first), registered
    /// nodes join, a dead voter is replaced by a caught-up live learner and then demoted.
    #[test]
    fn the_metadata_group_heals() {
        let up = |_: u64| {
            Some(Follower {
                matched: 10,
                replicating: true,
            })
        };
        let none: BTreeSet<u64> = BTreeSet::new();
        let all = [(1, true), (2, true), (3, true), (4, true)];
        let c = conf(&[1, 2, 3], &[4], &[]);
        let members = |conf, removed, dead, registered| MetaMembers {
            leader: 1,
            conf,
            registered,
            removed,
            dead,
            voters_wanted: 3,
        };
        assert_eq!(metadata_step(&members(&c, &none, &none, &all), up), None);
        // A new registered node joins as a learner (three voters already).
        let five = [(1, true), (2, true), (3, true), (4, true), (5, true)];
        assert_eq!(
            metadata_step(&members(&c, &none, &none, &five), up),
            Some(MetaChange::Add {
                id: 5,
                voter: false
            })
        );
        // Voter 3 is dead: learner 4 is promoted, then 3 demoted.
        let dead: BTreeSet<u64> = [3].into();
        assert_eq!(
            metadata_step(&members(&c, &none, &dead, &all), up),
            Some(MetaChange::Promote(4))
        );
        assert_eq!(
            metadata_step(&members(&c, &none, &dead, &all), |_| None),
            None,
            "a learner that does not replicate is not promoted"
        );
        let promoted = conf(&[1, 2, 3, 4], &[], &[]);
        assert_eq!(
            metadata_step(&members(&promoted, &none, &dead, &all), up),
            Some(MetaChange::Demote(3))
        );
        // Node 2 is removed: its member leaves; the leader, removed, hands over first.
        let removed: BTreeSet<u64> = [2].into();
        let left = [(1, true), (3, true), (4, true)];
        assert_eq!(
            metadata_step(&members(&c, &removed, &none, &left), up),
            Some(MetaChange::Remove(2))
        );
        let removed_leader: BTreeSet<u64> = [1].into();
        assert_eq!(
            metadata_step(&members(&c, &removed_leader, &none, &all[1..]), up),
            Some(MetaChange::TransferLeader(2))
        );
        // After the removal, the group is short of a voter: the learner is promoted.
        let two = conf(&[1, 3], &[4], &[]);
        assert_eq!(
            metadata_step(&members(&two, &none, &none, &left), up),
            Some(MetaChange::Promote(4))
        );
    }

    /// A removed node's replicas are replaced at once, without waiting for it to count as dead.
    #[test]
    fn a_removed_nodes_replicas_are_replaced_at_once() {
        let (mut s, limits) = four_nodes();
        s.apply(
            MetadataCommand::CreateTopic {
                name: "t".into(),
                replication_factor: 3,
                placement: vec![names(&["c", "a", "b"])],
            },
            limits,
        )
        .expect("create");
        let group = s.topics["t"].partitions[0].group;
        s.apply(MetadataCommand::RemoveNode { name: "c".into() }, limits)
            .expect("remove");
        assert_eq!(
            plan_repairs(&s, &names(&["a", "b", "d"]), &BTreeSet::new(), 2, 1),
            vec![MetadataCommand::StartMove {
                group,
                from: names(&["c", "a", "b"]),
                to: names(&["d", "a", "b"]),
                now_ms: 1
            }]
        );
    }

    /// A draining node's replicas move to other nodes, and it receives none.
    #[test]
    fn a_draining_node_is_emptied_and_never_chosen() {
        let (mut s, limits) = four_nodes();
        s.apply(
            MetadataCommand::CreateTopic {
                name: "t".into(),
                replication_factor: 2,
                placement: vec![names(&["a", "b"]), names(&["c"])],
            },
            limits,
        )
        .expect("create");
        for node in ["a", "d"] {
            s.apply(
                MetadataCommand::SetDraining {
                    node: node.into(),
                    draining: true,
                },
                limits,
            )
            .expect("drain");
        }
        let groups: Vec<_> = s.topics["t"].partitions.iter().map(|p| p.group).collect();
        let live = names(&["a", "b", "c", "d"]);
        assert_eq!(
            plan_repairs(&s, &live, &BTreeSet::new(), 5, 1),
            vec![
                MetadataCommand::StartMove {
                    group: groups[0],
                    from: names(&["a", "b"]),
                    to: names(&["c", "b"]),
                    now_ms: 1
                },
                MetadataCommand::StartMove {
                    group: groups[1],
                    from: names(&["c"]),
                    to: names(&["c", "b"]),
                    now_ms: 1
                },
            ]
        );
    }

    /// A node with no replicas receives moves until every node holds a topic's fair share
    /// (within one), the busiest giving first; nothing moves while a move is in flight.
    #[test]
    fn balancing_evens_out_a_topic() {
        let (mut s, limits) = four_nodes();
        let three = names(&["a", "b", "c"]);
        s.apply(
            MetadataCommand::CreateTopic {
                name: "t".into(),
                replication_factor: 2,
                placement: crate::metadata::place_replicas(&three, 6, 2, 0).expect("placed"),
            },
            limits,
        )
        .expect("create");
        let all = names(&["a", "b", "c", "d"]);
        let mut moves = 0;
        while let Some(m) = plan_balance(&s, &all, 1) {
            let MetadataCommand::StartMove { group, to, .. } = m.clone() else {
                panic!("{m:?}");
            };
            s.apply(m, limits).expect("start");
            assert_eq!(plan_balance(&s, &all, 1), None, "one move at a time");
            s.apply(MetadataCommand::FinishMove { group, to }, limits)
                .expect("finish");
            moves += 1;
            assert!(moves <= 6, "balancing converges");
        }
        let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
        for p in &s.topics["t"].partitions {
            for r in &p.replicas {
                *count.entry(r.as_str()).or_default() += 1;
            }
        }
        assert_eq!(
            count.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
        assert_eq!(moves, 3, "d took one replica from each");
        assert!(s.topics["t"]
            .partitions
            .iter()
            .any(|p| p.replicas[0] == "d"));
    }

    /// A move towards a node that died is redirected: back to a node it comes from first.
    #[test]
    fn a_move_towards_a_dead_node_is_redirected() {
        let (mut s, limits) = four_nodes();
        s.apply(
            MetadataCommand::CreateTopic {
                name: "t".into(),
                replication_factor: 3,
                placement: vec![names(&["a", "b", "c"])],
            },
            limits,
        )
        .expect("create");
        let group = s.topics["t"].partitions[0].group;
        s.apply(
            MetadataCommand::StartMove {
                group,
                from: names(&["a", "b", "c"]),
                to: names(&["a", "b", "d"]),
                now_ms: 1,
            },
            limits,
        )
        .expect("start");
        let dead: BTreeSet<String> = ["d".to_string()].into();
        let live = names(&["a", "b", "c"]);
        let planned = plan_repairs(&s, &live, &dead, 2, 1);
        assert_eq!(
            planned,
            vec![MetadataCommand::RedirectMove {
                group,
                from_to: names(&["a", "b", "d"]),
                to: names(&["a", "b", "c"]),
            }]
        );
        for m in planned {
            s.apply(m, limits).expect("redirect");
        }
        assert_eq!(s.moves[&group].to, names(&["a", "b", "c"]));
        assert!(plan_repairs(&s, &live, &dead, 2, 1).is_empty());
    }
}
