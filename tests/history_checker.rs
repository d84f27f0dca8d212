//! The history checker of the chaos tests catches every kind of violation it is meant to, so a
//! green chaos run means something.

mod support;

use std::collections::BTreeMap;

use support::history::{History, StoredLog};

fn history(acked: &[(&str, u32, u64)], unknown: &[&str], refused: &[&str]) -> History {
    let mut h = History::default();
    for (v, p, o) in acked {
        h.sent.insert(v.to_string());
        h.acked.insert(v.to_string(), (*p, *o));
    }
    for v in unknown {
        h.sent.insert(v.to_string());
        h.unknown.insert(v.to_string());
    }
    for v in refused {
        h.sent.insert(v.to_string());
    }
    h
}

fn log(p: u32, values: &[&str]) -> StoredLog {
    BTreeMap::from([(
        p,
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, v.to_string()))
            .collect(),
    )])
}

/// A faithful log passes; unknown outcomes may appear; each kind of violation is caught.
#[test]
fn the_checker_catches_every_kind_of_violation() {
    let h = history(&[("p0-1", 0, 0), ("p0-2", 0, 1)], &["p1-1"], &["p2-1"]);
    let ok = h.check(&log(0, &["p0-1", "p0-2", "p1-1"]));
    assert!(ok.violations.is_empty(), "{:?}", ok.violations);
    assert_eq!((ok.stored, ok.acked, ok.unknown_stored), (3, 2, 1));

    let cases: Vec<(&str, StoredLog)> = vec![
        ("lost", log(0, &["p0-1"])),
        ("not at its acknowledged", log(0, &["p0-2", "p0-1"])),
        ("stored 2 times", log(0, &["p0-1", "p0-2", "p0-2"])),
        ("never sent", log(0, &["p0-1", "p0-2", "p9-9"])),
        (
            "refused with a definite error",
            log(0, &["p0-1", "p0-2", "p2-1"]),
        ),
    ];
    for (what, stored) in cases {
        let r = h.check(&stored);
        assert!(
            r.violations.iter().any(|v| v.contains(what)),
            "{what} not caught: {:?}",
            r.violations
        );
    }
    let mut gap = log(0, &["p0-1", "p0-2"]);
    gap.get_mut(&0).expect("partition 0")[1].0 = 5;
    assert!(h
        .check(&gap)
        .violations
        .iter()
        .any(|v| v.contains("not contiguous")));
    let swapped = history(&[("p0-1", 0, 1), ("p0-2", 0, 0)], &[], &[]);
    let r = swapped.check(&log(0, &["p0-2", "p0-1"]));
    assert!(r.violations.iter().any(|v| v.contains("producer order")));
}

/// One offset acknowledged for two records is caught, even when the log holds one of them there.
#[test]
fn an_offset_acknowledged_twice_is_caught() {
    let h = history(&[("p0-1", 0, 0), ("p1-1", 0, 0)], &[], &[]);
    let r = h.check(&log(0, &["p0-1"]));
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("acknowledged for both p0-1 and p1-1")),
        "{:?}",
        r.violations
    );
}
