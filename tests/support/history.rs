//! The history checker of the chaos tests. Producers record what they sent and what they learned;
//! after healing, the test reads every partition back and [`History::check`] says whether the log
//! keeps Daftka's promises:
//! - every acknowledged record is stored exactly once, at its acknowledged (partition, offset);
//! - no (partition, offset) is acknowledged for two different records;
//! - per-partition offsets are contiguous from 0;
//! - each producer's records keep their send order within a partition;
//! - nothing is stored that was never sent, and nothing whose send was refused with a definite
//!   error: duplicates and strays are allowed only for sends whose outcome the client never learned.
//!
//! Values are unique per send attempt and look like `p<producer>-<seq, zero-padded>`.

use std::collections::{BTreeMap, BTreeSet};

/// A log as read back: partition -> records in offset order as (offset, value).
pub type StoredLog = BTreeMap<u32, Vec<(u64, String)>>;

/// What producers sent and learned.
#[derive(Default, Debug)]
pub struct History {
    /// Every value ever sent.
    pub sent: BTreeSet<String>,
    /// Acknowledged values and where the broker said they are.
    pub acked: BTreeMap<String, (u32, u64)>,
    /// Values whose send ended without a definite answer (`timeout`, lost connection).
    pub unknown: BTreeSet<String>,
}

/// What a check found: counts for the closing note, and every violation.
#[derive(Default, Debug)]
pub struct Report {
    pub stored: usize,
    pub acked: usize,
    /// Stored values whose outcome the client never learned (allowed).
    pub unknown_stored: usize,
    pub violations: Vec<String>,
}

/// The producer part of a value `p<producer>-<seq>`.
fn producer_of(v: &str) -> &str {
    v.split_once('-').map_or(v, |(p, _)| p)
}

impl History {
    /// The next batch of producer `id`: `n` unique values (recorded as sent), for the partition
    /// its sequence `seq` points at, cycling over `partitions` one batch at a time.
    pub fn next_batch(
        &mut self,
        id: u64,
        seq: &mut u64,
        n: u64,
        partitions: u32,
    ) -> (u32, Vec<String>) {
        let partition = ((*seq / n) % u64::from(partitions)) as u32;
        let values: Vec<String> = (0..n).map(|i| format!("p{id}-{:08}", *seq + i)).collect();
        *seq += n;
        self.sent.extend(values.iter().cloned());
        (partition, values)
    }

    /// Checks `stored`: partition -> records in offset order as (offset, value).
    pub fn check(&self, stored: &StoredLog) -> Report {
        let mut r = Report {
            acked: self.acked.len(),
            ..Report::default()
        };
        let mut at: BTreeMap<&str, Vec<(u32, u64)>> = BTreeMap::new();
        for (p, recs) in stored {
            let mut last: BTreeMap<&str, &str> = BTreeMap::new();
            for (i, (offset, v)) in recs.iter().enumerate() {
                r.stored += 1;
                if *offset != i as u64 {
                    r.violations.push(format!(
                        "partition {p}: offset {offset} at position {i}: not contiguous from 0"
                    ));
                }
                if !self.sent.contains(v) {
                    r.violations
                        .push(format!("partition {p} offset {offset}: {v} was never sent"));
                }
                at.entry(v).or_default().push((*p, *offset));
                if let Some(prev) = last.insert(producer_of(v), v) {
                    if prev >= v.as_str() {
                        r.violations.push(format!(
                            "partition {p}: {prev} is stored before {v}: producer order broken"
                        ));
                    }
                }
            }
        }
        for (v, places) in &at {
            let acked = self.acked.get(*v);
            match acked {
                Some(pos) => {
                    if places.len() > 1 {
                        r.violations.push(format!(
                            "acknowledged {v} is stored {} times: {places:?}",
                            places.len()
                        ));
                    }
                    if !places.contains(pos) {
                        r.violations.push(format!(
                            "acknowledged {v} is at {places:?}, not at its acknowledged {pos:?}"
                        ));
                    }
                }
                None if self.unknown.contains(*v) => r.unknown_stored += 1,
                None if self.sent.contains(*v) => r.violations.push(format!(
                    "{v} is stored but its send was refused with a definite error"
                )),
                None => {}
            }
        }
        let mut owner: BTreeMap<(u32, u64), &str> = BTreeMap::new();
        for (v, pos) in &self.acked {
            if let Some(other) = owner.insert(*pos, v) {
                r.violations.push(format!(
                    "offset {pos:?} was acknowledged for both {other} and {v}"
                ));
            }
        }
        for (v, pos) in &self.acked {
            if !at.contains_key(v.as_str()) {
                r.violations
                    .push(format!("acknowledged {v} at {pos:?} is lost"));
            }
        }
        r
    }
}
