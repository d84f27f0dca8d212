//! The consumer-group coordinator inside the metadata state machine: joins, releases, expiry,
//! fencing of commits, resets, and topic changes; then a property test over random histories.

use std::collections::{BTreeMap, BTreeSet};

use daftka_core::assignor::Assignor;
use daftka_core::groups::{GroupCommand, MemberView};
use daftka_core::metadata::{
    MetadataCommand, MetadataEvent, MetadataLimits, MetadataState, NodeMeta,
};
use daftka_types::{Error, ErrorCode};
use proptest::prelude::*;

const LIMITS: MetadataLimits = MetadataLimits {
    partitions_per_topic_max: 64,
};

fn state_with_topic(partitions: u32) -> MetadataState {
    let mut s = MetadataState::default();
    let node = MetadataCommand::RegisterNode(NodeMeta {
        name: "a".into(),
        raft_id: 1,
        cluster_addr: String::new(),
        http_addr: String::new(),
    });
    s.apply(node, LIMITS).expect("register");
    create(&mut s, "t", partitions).expect("create");
    s
}

fn create(s: &mut MetadataState, name: &str, partitions: u32) -> Result<MetadataEvent, Error> {
    s.apply(
        MetadataCommand::CreateTopic {
            name: name.into(),
            replication_factor: 1,
            placement: (0..partitions).map(|_| vec!["a".to_string()]).collect(),
        },
        LIMITS,
    )
}

fn group(
    s: &mut MetadataState,
    command: GroupCommand,
    now_ms: u64,
) -> Result<MetadataEvent, Error> {
    s.apply(
        MetadataCommand::Group {
            group: "g".into(),
            command,
            now_ms,
        },
        LIMITS,
    )
}

fn member(event: Result<MetadataEvent, Error>) -> MemberView {
    match event {
        Ok(MetadataEvent::Member(v)) => v,
        other => panic!("expected a member view, got {other:?}"),
    }
}

fn join(s: &mut MetadataState, id: &str, now_ms: u64) -> MemberView {
    member(group(
        s,
        GroupCommand::Join {
            member_id: id.into(),
            topics: vec!["t".into()],
            session_timeout_ms: 1000,
            assignor: Assignor::Sticky,
        },
        now_ms,
    ))
}

fn heartbeat(s: &mut MetadataState, id: &str, owned: Option<Vec<u32>>, now_ms: u64) -> MemberView {
    member(group(
        s,
        GroupCommand::Heartbeat {
            member_id: id.into(),
            owned: owned.map(|ps| ps.into_iter().map(|p| ("t".to_string(), p)).collect()),
        },
        now_ms,
    ))
}

fn parts(v: &MemberView) -> Vec<u32> {
    v.assignment.iter().map(|(_, p)| *p).collect()
}

fn commit(
    s: &mut MetadataState,
    id: &str,
    generation: u64,
    partition: u32,
    offset: u64,
) -> Result<MetadataEvent, Error> {
    group(
        s,
        GroupCommand::Commit {
            member_id: id.into(),
            generation,
            offsets: vec![("t".into(), partition, offset)],
        },
        0,
    )
}

fn code(r: Result<MetadataEvent, Error>) -> Option<ErrorCode> {
    r.err().map(|e| e.code)
}

/// A second member gets its partitions only once the first has released them, and the first
/// may commit them until then with its old generation.
#[test]
fn partitions_move_only_after_release() {
    let mut s = state_with_topic(4);
    let a = join(&mut s, "a", 10);
    assert_eq!((a.generation, parts(&a)), (1, vec![0, 1, 2, 3]));
    assert!(!a.rebalancing);
    let b = join(&mut s, "b", 20);
    assert_eq!(b.generation, 2);
    assert!(b.assignment.is_empty(), "a still owns everything");
    assert!(b.rebalancing);
    // a learns it must give two partitions back; it still owns them.
    let a2 = heartbeat(&mut s, "a", None, 30);
    assert_eq!(a2.generation, 1, "a keeps generation 1 until it releases");
    assert_eq!(a2.revoking.len(), 2);
    let revoked = a2.revoking[0].1;
    commit(&mut s, "a", 1, revoked, 5).expect("a commits a revoking partition");
    assert_eq!(
        code(commit(&mut s, "b", 2, revoked, 6)),
        Some(ErrorCode::NotAssigned),
        "b does not own it yet"
    );
    // a releases by heartbeating what it still reads.
    let a3 = heartbeat(&mut s, "a", Some(parts(&a2)), 40);
    assert_eq!(a3.generation, 2);
    assert!(a3.revoking.is_empty() && !a3.rebalancing);
    let b2 = heartbeat(&mut s, "b", None, 50);
    assert_eq!(b2.assignment.len(), 2);
    assert!(!b2.rebalancing);
    assert!(b2.assignment.iter().any(|(_, p)| *p == revoked));
    // Now a's old-generation commit of the moved partition is refused; b's is taken.
    assert_eq!(
        code(commit(&mut s, "a", 1, revoked, 7)),
        Some(ErrorCode::NotAssigned)
    );
    commit(&mut s, "b", 2, revoked, 6).expect("b commits");
    // a keeps its other partitions: a commit with generation 1 of a kept one still counts.
    commit(&mut s, "a", 1, parts(&a3)[0], 1).expect("kept since generation 1");
    // A generation from the future is stale.
    assert_eq!(
        code(commit(&mut s, "b", 3, revoked, 8)),
        Some(ErrorCode::StaleGeneration)
    );
    assert_eq!(s.groups["g"].state_name(), "stable");
}

/// A member that regained a partition cannot commit it with the generation of its first spell.
#[test]
fn regained_partition_fences_old_generation() {
    let mut s = state_with_topic(1);
    join(&mut s, "a", 0);
    join(&mut s, "b", 0); // b sorts after a: a keeps partition 0.
    group(
        &mut s,
        GroupCommand::Leave {
            member_id: "a".into(),
        },
        0,
    )
    .expect("a leaves");
    let b = heartbeat(&mut s, "b", None, 0);
    assert_eq!(parts(&b), vec![0]);
    let a = join(&mut s, "a", 0);
    assert!(a.assignment.is_empty());
    group(
        &mut s,
        GroupCommand::Leave {
            member_id: "b".into(),
        },
        0,
    )
    .expect("b leaves");
    let a = heartbeat(&mut s, "a", None, 0);
    assert_eq!(parts(&a), vec![0]);
    let since = a.generation;
    assert_eq!(
        code(commit(&mut s, "a", since - 1, 0, 1)),
        Some(ErrorCode::StaleGeneration)
    );
    commit(&mut s, "a", since, 0, 1).expect("current generation");
    assert_eq!(
        code(commit(&mut s, "b", 1, 0, 2)),
        Some(ErrorCode::UnknownMember)
    );
}

/// Committed offsets never move back, except through a reset of a group without members.
#[test]
fn offsets_never_move_back_unless_reset() {
    let mut s = state_with_topic(1);
    let a = join(&mut s, "a", 0);
    commit(&mut s, "a", a.generation, 0, 10).expect("commit");
    commit(&mut s, "a", a.generation, 0, 10).expect("the same offset again");
    assert_eq!(
        code(commit(&mut s, "a", a.generation, 0, 9)),
        Some(ErrorCode::OffsetBackwards)
    );
    let reset = |s: &mut MetadataState, to| {
        group(
            s,
            GroupCommand::Reset {
                offsets: vec![("t".into(), 0, to)],
            },
            0,
        )
    };
    assert_eq!(code(reset(&mut s, 2)), Some(ErrorCode::GroupActive));
    let plain = MetadataCommand::CommitOffsets {
        group: "g".into(),
        offsets: vec![("t".into(), 0, 11)],
    };
    assert_eq!(
        code(s.apply(plain.clone(), LIMITS)),
        Some(ErrorCode::GroupActive)
    );
    group(
        &mut s,
        GroupCommand::Leave {
            member_id: "a".into(),
        },
        0,
    )
    .expect("leave");
    reset(&mut s, 2).expect("reset an empty group");
    assert_eq!(s.group_offsets["g"][&("t".to_string(), 0)], 2);
    s.apply(plain, LIMITS)
        .expect("a plain commit to an empty group");
    assert_eq!(s.group_offsets["g"][&("t".to_string(), 0)], 11);
}

/// Expiry removes only members whose session timed out by the group clock, which never goes back.
#[test]
fn expiry_follows_the_group_clock() {
    let mut s = state_with_topic(2);
    join(&mut s, "a", 1_000);
    join(&mut s, "b", 1_000);
    heartbeat(&mut s, "b", None, 1_900);
    assert_eq!(
        s.expired_members(2_000),
        vec![("g".to_string(), vec!["a".to_string()])]
    );
    // The proposer's clock went back: the group clock did not.
    let removed = group(
        &mut s,
        GroupCommand::Expire {
            members: vec!["a".into(), "b".into()],
        },
        500,
    );
    assert_eq!(removed, Ok(MetadataEvent::MembersRemoved(vec![])));
    let removed = group(
        &mut s,
        GroupCommand::Expire {
            members: vec!["a".into(), "b".into()],
        },
        2_000,
    );
    assert_eq!(removed, Ok(MetadataEvent::MembersRemoved(vec!["a".into()])));
    let b = heartbeat(&mut s, "b", Some(vec![]), 2_100);
    assert_eq!(parts(&b), vec![0, 1], "b takes a's partitions");
}

/// Creating a subscribed topic and deleting one rebalance the group.
#[test]
fn topic_changes_rebalance() {
    let mut s = state_with_topic(2);
    let a = member(group(
        &mut s,
        GroupCommand::Join {
            member_id: "a".into(),
            topics: vec!["t".into(), "u".into()],
            session_timeout_ms: 1000,
            assignor: Assignor::RoundRobin,
        },
        0,
    ));
    assert_eq!(a.assignment.len(), 2);
    create(&mut s, "u", 3).expect("create u");
    let a = heartbeat(&mut s, "a", None, 0);
    assert_eq!(a.assignment.len(), 5);
    assert_eq!(a.generation, 2);
    s.apply(MetadataCommand::DeleteTopic { name: "t".into() }, LIMITS)
        .expect("delete t");
    let a = heartbeat(&mut s, "a", None, 0);
    assert_eq!(a.assignment.len(), 3);
    assert!(
        a.revoking.is_empty(),
        "partitions of a deleted topic are just gone"
    );
    assert_eq!(s.groups["g"].rebalances, 3);
    // Another assignor is refused while members use this one.
    let other = group(
        &mut s,
        GroupCommand::Join {
            member_id: "b".into(),
            topics: vec!["u".into()],
            session_timeout_ms: 1000,
            assignor: Assignor::Range,
        },
        0,
    );
    assert_eq!(code(other), Some(ErrorCode::AssignorMismatch));
}

/// Rejected group commands leave the state unchanged.
#[test]
fn rejections_change_nothing() {
    let mut s = state_with_topic(2);
    join(&mut s, "a", 0);
    let before = s.clone();
    let bad = [
        GroupCommand::Join {
            member_id: "a".into(),
            topics: vec!["t".into()],
            session_timeout_ms: 1000,
            assignor: Assignor::Sticky,
        },
        GroupCommand::Join {
            member_id: "c".into(),
            topics: vec![],
            session_timeout_ms: 1000,
            assignor: Assignor::Sticky,
        },
        GroupCommand::Join {
            member_id: "c".into(),
            topics: vec!["t".into()],
            session_timeout_ms: 0,
            assignor: Assignor::Sticky,
        },
        GroupCommand::Heartbeat {
            member_id: "zz".into(),
            owned: None,
        },
        GroupCommand::Commit {
            member_id: "a".into(),
            generation: 1,
            offsets: vec![("t".into(), 7, 1)],
        },
        GroupCommand::Commit {
            member_id: "a".into(),
            generation: 1,
            offsets: vec![],
        },
    ];
    for cmd in bad {
        assert!(group(&mut s, cmd.clone(), 0).is_err(), "{cmd:?}");
        assert_eq!(s, before, "{cmd:?} changed the state");
    }
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Join(u8),
    Leave(u8),
    /// Heartbeat without releasing.
    Beat(u8),
    /// Heartbeat that releases everything being revoked.
    Release(u8),
    /// Time passes by this many ms, then the expired members are removed.
    Expire(u16),
    Commit(u8, u8, u64),
    CreateTopic(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6).prop_map(Step::Join),
        (0u8..6).prop_map(Step::Leave),
        (0u8..6).prop_map(Step::Beat),
        (0u8..6).prop_map(Step::Release),
        (0u16..1500).prop_map(Step::Expire),
        (0u8..6, 0u8..8, 0u64..100).prop_map(|(m, p, o)| Step::Commit(m, p, o)),
        (1u8..5).prop_map(Step::CreateTopic),
    ]
}

/// No partition is ever owned by two members; commits are accepted only from owners and never
/// move an offset back; once everyone releases, every member reaches the target, which covers
/// every partition of the subscribed topics exactly once.
fn check(s: &MetadataState) -> Result<(), TestCaseError> {
    let Some(g) = s.groups.get("g") else {
        return Ok(());
    };
    let mut owned = BTreeSet::new();
    for (id, m) in &g.members {
        for tp in m.owned.keys() {
            prop_assert!(owned.insert(tp.clone()), "{tp:?} owned twice ({id})");
            prop_assert!(s.partition(&tp.0, tp.1).is_ok(), "{tp:?} does not exist");
        }
        // A member that still has partitions to give back has not taken up the generation.
        prop_assert!(g.revoking(id, m).is_empty() || m.generation < g.generation);
        prop_assert!(m.generation <= g.generation);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_histories_keep_the_invariants(steps in prop::collection::vec(step(), 1..60)) {
        let mut s = state_with_topic(4);
        let mut now = 0u64;
        let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
        let topics = ["t".to_string(), "u".to_string()];
        for st in steps {
            let id = |m: u8| format!("m{m}");
            match st {
                Step::Join(m) => {
                    let _ = group(&mut s, GroupCommand::Join {
                        member_id: id(m),
                        topics: topics[..1 + usize::from(m % 2)].to_vec(),
                        session_timeout_ms: 1000,
                        assignor: Assignor::Sticky,
                    }, now);
                }
                Step::Leave(m) => {
                    let _ = group(&mut s, GroupCommand::Leave { member_id: id(m) }, now);
                }
                Step::Beat(m) => {
                    let _ = group(&mut s, GroupCommand::Heartbeat { member_id: id(m), owned: None }, now);
                }
                Step::Release(m) => {
                    let _ = group(&mut s, GroupCommand::Heartbeat { member_id: id(m), owned: Some(vec![]) }, now);
                }
                Step::Expire(ms) => {
                    now += u64::from(ms);
                    for (g, members) in s.expired_members(now) {
                        s.apply(MetadataCommand::Group {
                            group: g,
                            command: GroupCommand::Expire { members },
                            now_ms: now,
                        }, LIMITS).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                }
                Step::Commit(m, p, o) => {
                    let p = u32::from(p);
                    let generation = s.groups.get("g").and_then(|g| g.members.get(&id(m))).map(|mm| mm.generation);
                    let owner = s.groups.get("g").and_then(|g| g.members.get(&id(m)))
                        .is_some_and(|mm| mm.owned.contains_key(&("t".to_string(), p)));
                    let r = group(&mut s, GroupCommand::Commit {
                        member_id: id(m),
                        generation: generation.unwrap_or(1),
                        offsets: vec![("t".into(), p, o)],
                    }, now);
                    let backwards = committed.get(&p).is_some_and(|c| o < *c);
                    prop_assert_eq!(r.is_ok(), owner && !backwards, "commit {} {} {}: {:?}", m, p, o, r);
                    if r.is_ok() {
                        committed.insert(p, o);
                    }
                }
                Step::CreateTopic(n) => {
                    if !s.topics.contains_key("u") {
                        create(&mut s, "u", u32::from(n)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    } else {
                        s.apply(MetadataCommand::DeleteTopic { name: "u".into() }, LIMITS)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                }
            }
            check(&s)?;
        }
        // Everyone releases twice (the first round may free partitions others then take up).
        let ids: Vec<String> = s.groups.get("g").map(|g| g.members.keys().cloned().collect()).unwrap_or_default();
        for _ in 0..2 {
            for m in &ids {
                group(&mut s, GroupCommand::Heartbeat { member_id: m.clone(), owned: Some(vec![]) }, now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        check(&s)?;
        if let Some(g) = s.groups.get("g") {
            prop_assert!(g.stable(), "not stable after everyone released: {:?}", g);
            let mut expected = BTreeSet::new();
            for t in g.members.values().flat_map(|m| m.topics.iter()).collect::<BTreeSet<_>>() {
                if let Some(meta) = s.topics.get(t) {
                    for p in 0..meta.partitions.len() as u32 {
                        expected.insert((t.clone(), p));
                    }
                }
            }
            let got: BTreeSet<_> = g.members.values().flat_map(|m| m.owned.keys().cloned()).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
