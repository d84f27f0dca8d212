//! Properties of every assignor: each partition of a subscribed topic goes to exactly one member
//! subscribed to it; loads are balanced (per topic for `range`, overall for the others, when members
//! share their subscriptions); `sticky` moves only the partitions that must move when a member joins
//! or leaves a balanced group.

use std::collections::{BTreeMap, BTreeSet};

use daftka_core::assignor::{Assignment, Assignor};
use proptest::prelude::*;

fn group(n: usize, topics: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    (0..n)
        .map(|i| (format!("m{i:02}"), topics.iter().cloned().collect()))
        .collect()
}

fn topic_map(counts: &[u32]) -> BTreeMap<String, u32> {
    counts
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("t{i}"), *n))
        .collect()
}

/// Every partition of every topic is owned exactly once, by a member subscribed to its topic.
fn assert_exact(
    a: &Assignment,
    members: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, u32>,
) {
    let mut seen = BTreeSet::new();
    for (m, parts) in a {
        for (t, p) in parts {
            assert!(members[m].contains(t), "{m} reads {t} without subscribing");
            assert!(*p < topics[t], "{t}/{p} does not exist");
            assert!(seen.insert((t.clone(), *p)), "{t}/{p} assigned twice");
        }
    }
    let subscribed: BTreeSet<&String> = members.values().flatten().collect();
    let expected: usize = topics
        .iter()
        .filter(|(t, _)| subscribed.contains(t))
        .map(|(_, n)| *n as usize)
        .sum();
    assert_eq!(seen.len(), expected, "every partition is assigned");
}

fn spread(loads: impl Iterator<Item = usize>) -> usize {
    let loads: Vec<usize> = loads.collect();
    loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0)
}

/// Partitions whose owner differs between two assignments (or that one of them lacks).
fn moved(before: &Assignment, after: &Assignment) -> usize {
    let owner = |a: &Assignment| -> BTreeMap<(String, u32), String> {
        a.iter()
            .flat_map(|(m, ps)| ps.iter().map(move |tp| (tp.clone(), m.clone())))
            .collect()
    };
    let (b, a) = (owner(before), owner(after));
    a.iter().filter(|(tp, m)| b.get(*tp) != Some(*m)).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_assignor_is_exact_and_balanced(
        n in 1usize..8,
        counts in prop::collection::vec(0u32..20, 1..4),
    ) {
        let topics = topic_map(&counts);
        let names: Vec<String> = topics.keys().cloned().collect();
        let members = group(n, &names);
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            let a = assignor.assign(&members, &topics, &Assignment::new());
            assert_exact(&a, &members, &topics);
            prop_assert_eq!(a.len(), n, "every member is listed");
            if assignor == Assignor::Range {
                for t in &names {
                    let per_topic = a.values().map(|ps| ps.iter().filter(|(x, _)| x == t).count());
                    prop_assert!(spread(per_topic) <= 1, "range unbalanced on {}", t);
                }
            } else {
                prop_assert!(spread(a.values().map(BTreeSet::len)) <= 1, "{:?} unbalanced: {:?}", assignor, a);
            }
        }
    }

    #[test]
    fn assignors_respect_subscriptions(
        subs in prop::collection::vec(prop::collection::btree_set(0usize..3, 0..3), 1..6),
        counts in prop::collection::vec(0u32..10, 3),
    ) {
        let topics = topic_map(&counts);
        let members: BTreeMap<String, BTreeSet<String>> = subs
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("m{i}"), s.iter().map(|t| format!("t{t}")).collect()))
            .collect();
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            assert_exact(&assignor.assign(&members, &topics, &Assignment::new()), &members, &topics);
        }
    }

    #[test]
    fn sticky_moves_only_what_must_move(
        n in 1usize..7,
        counts in prop::collection::vec(0u32..20, 1..4),
        leaver in 0usize..7,
    ) {
        let topics = topic_map(&counts);
        let names: Vec<String> = topics.keys().cloned().collect();
        let members = group(n, &names);
        let before = Assignor::Sticky.assign(&members, &topics, &Assignment::new());

        // A member joins: only the partitions the newcomer ends up with move.
        let mut joined = members.clone();
        joined.insert("new".into(), names.iter().cloned().collect());
        let after = Assignor::Sticky.assign(&joined, &topics, &before);
        assert_exact(&after, &joined, &topics);
        prop_assert!(spread(after.values().map(BTreeSet::len)) <= 1);
        prop_assert_eq!(moved(&before, &after), after["new"].len());

        // A member leaves: only its partitions move.
        if n > 1 {
            let gone = format!("m{:02}", leaver % n);
            let mut left = members.clone();
            left.remove(&gone);
            let after = Assignor::Sticky.assign(&left, &topics, &before);
            assert_exact(&after, &left, &topics);
            prop_assert!(spread(after.values().map(BTreeSet::len)) <= 1);
            prop_assert_eq!(moved(&before, &after), before[&gone].len());
        }

        // Nothing changes: nothing moves.
        prop_assert_eq!(moved(&before, &Assignor::Sticky.assign(&members, &topics, &before)), 0);
    }
}
