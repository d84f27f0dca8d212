//! Consumer-group partition assignment: which member reads which partition.
//!
//! An assignment maps each member to the (topic, partition) pairs it reads. Every assignor gives each
//! partition of a subscribed topic to exactly one member subscribed to that topic, and is a pure
//! function of its inputs (members and topics are taken in sorted order), so every node computes the
//! same result.
//!
//! - [`Assignor::Range`]: per topic, the members subscribed to it (sorted) get contiguous ranges of
//!   partitions; the first `partitions % members` get one more. Balanced per topic.
//! - [`Assignor::RoundRobin`]: all partitions (sorted by topic, then partition) dealt in turn to the
//!   members subscribed to their topic. Balanced overall when members share their subscriptions.
//! - [`Assignor::Sticky`] (the default): keeps every current assignment that is still valid, gives
//!   unowned partitions to the least-loaded eligible member, then moves partitions from the most
//!   loaded to the least loaded member only while their loads differ by two or more. When a member
//!   joins or leaves a balanced group with shared subscriptions, only the partitions that must move
//!   do.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One partition of one topic.
pub type TopicPartition = (String, u32);

/// Member id -> the partitions it reads.
pub type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// How a group spreads partitions over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignor {
    Range,
    RoundRobin,
    #[default]
    Sticky,
}

impl Assignor {
    /// The assignor named `name` (`range`, `round_robin`, `sticky`).
    pub fn parse(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "round_robin" => Some(Assignor::RoundRobin),
            "sticky" => Some(Assignor::Sticky),
            _ => None,
        }
    }

    /// Assigns the partitions of `topics` (name -> partition count) to `members` (id -> the topics
    /// it subscribes to). `current` is the assignment in force (only `Sticky` reads it). Every
    /// member appears in the result, possibly with nothing.
    pub fn assign(
        self,
        members: &BTreeMap<String, BTreeSet<String>>,
        topics: &BTreeMap<String, u32>,
        current: &Assignment,
    ) -> Assignment {
        let mut out: Assignment = members
            .keys()
            .map(|m| (m.clone(), BTreeSet::new()))
            .collect();
        match self {
            Assignor::Range => {
                for (topic, &n) in topics {
                    let subs = subscribers(members, topic);
                    if subs.is_empty() {
                        continue;
                    }
                    let m = subs.len() as u32;
                    let (each, extra) = (n / m, n % m);
                    let mut next = 0u32;
                    for (i, member) in subs.iter().enumerate() {
                        let take = each + u32::from((i as u32) < extra);
                        let set = out.entry((*member).clone()).or_default();
                        for p in next..next + take {
                            set.insert((topic.clone(), p));
                        }
                        next += take;
                    }
                }
            }
            Assignor::RoundRobin => {
                let ids: Vec<&String> = members.keys().collect();
                let mut turn = 0usize;
                for (topic, &n) in topics {
                    for p in 0..n {
                        // The next member in turn that subscribes to this topic.
                        for k in 0..ids.len() {
                            let member = ids[(turn + k) % ids.len()];
                            if members[member].contains(topic) {
                                out.entry(member.clone())
                                    .or_default()
                                    .insert((topic.clone(), p));
                                turn = (turn + k + 1) % ids.len();
                                break;
                            }
                        }
                    }
                }
            }
            Assignor::Sticky => sticky(members, topics, current, &mut out),
        }
        out
    }
}

/// The members subscribed to `topic`, sorted.
fn subscribers<'a>(
    members: &'a BTreeMap<String, BTreeSet<String>>,
    topic: &str,
) -> Vec<&'a String> {
    members
        .iter()
        .filter(|(_, t)| t.contains(topic))
        .map(|(m, _)| m)
        .collect()
}

fn sticky(
    members: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, u32>,
    current: &Assignment,
    out: &mut Assignment,
) {
    let eligible = |member: &str, (topic, p): &TopicPartition| {
        members.get(member).is_some_and(|t| t.contains(topic))
            && topics.get(topic).is_some_and(|n| p < n)
    };
    // 1. Keep what is still valid, each partition once.
    let mut owned: BTreeSet<TopicPartition> = BTreeSet::new();
    for (member, parts) in current {
        for tp in parts {
            if eligible(member, tp) && owned.insert(tp.clone()) {
                out.entry(member.clone()).or_default().insert(tp.clone());
            }
        }
    }
    // 2. Unowned partitions go to the least-loaded eligible member (ties: the smallest id).
    for (topic, &n) in topics {
        for p in 0..n {
            let tp = (topic.clone(), p);
            if owned.contains(&tp) {
                continue;
            }
            let target = out
                .iter()
                .filter(|(m, _)| eligible(m, &tp))
                .min_by_key(|(m, set)| (set.len(), (*m).clone()))
                .map(|(m, _)| m.clone());
            if let Some(m) = target {
                out.entry(m).or_default().insert(tp.clone());
                owned.insert(tp);
            }
        }
    }
    // 3. Balance: move one partition from the most to the least loaded member while they differ by
    //    two or more and the least loaded may read it.
    loop {
        let mut by_load: Vec<(&String, usize)> = out.iter().map(|(m, s)| (m, s.len())).collect();
        by_load.sort_by_key(|(m, l)| (*l, (*m).clone()));
        let mut moved = None;
        'search: for (low, low_load) in &by_load {
            for (high, high_load) in by_load.iter().rev() {
                if *high_load < low_load + 2 {
                    break;
                }
                if let Some(tp) = out[*high].iter().find(|tp| eligible(low, tp)) {
                    moved = Some(((*high).clone(), (*low).clone(), tp.clone()));
                    break 'search;
                }
            }
        }
        let Some((from, to, tp)) = moved else { break };
        if let Some(s) = out.get_mut(&from) {
            s.remove(&tp);
        }
        out.entry(to).or_default().insert(tp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str], topics: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        ids.iter()
            .map(|m| {
                (
                    m.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    /// Range gives contiguous ranges per topic, the extra ones to the first members.
    #[test]
    fn range_is_contiguous_per_topic() {
        let m = members(&["a", "b"], &["t"]);
        let topics = BTreeMap::from([("t".to_string(), 5)]);
        let a = Assignor::Range.assign(&m, &topics, &Assignment::new());
        let parts = |id: &str| a[id].iter().map(|(_, p)| *p).collect::<Vec<_>>();
        assert_eq!(parts("a"), vec![0, 1, 2]);
        assert_eq!(parts("b"), vec![3, 4]);
    }

    /// Names parse back; the default is sticky.
    #[test]
    fn names_parse() {
        assert_eq!(Assignor::parse("range"), Some(Assignor::Range));
        assert_eq!(Assignor::parse("round_robin"), Some(Assignor::RoundRobin));
        assert_eq!(Assignor::parse("sticky"), Some(Assignor::default()));
        assert_eq!(Assignor::parse("other"), None);
    }
}
