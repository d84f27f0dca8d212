//! The Raft driver under a seeded deterministic simulator (`sim`): 3 and 5 replicas over a lossy,
//! reordering, partitioning network and disks that lose what was not made durable, with crashes
//! (also in the middle of a round), restarts, leader transfers and membership changes. Every
//! step is checked (one leader per term, committed entries never change and stay on a quorum's
//! durable logs, the durable commit index never goes back, log matching, acknowledged values at
//! their offsets on every replica), and each run ends healed with every replica converged.
//!
//! A failure prints its seed: `DAFTKA_SIM_SEED=<n> cargo test -p daftka-core --test raft_sim`
//! replays it exactly. `DAFTKA_SIM_SEEDS=<count>` runs that many seeds from a random start
//! (printed) instead of the fixed set `cargo test` runs.

mod sim;

use std::time::Instant;

use sim::{run, Faults, Stats};

/// Seeds per test in a plain `cargo test`.
const SEEDS_DEFAULT: u64 = 40;
/// Random steps per seed before healing.
const STEPS: u64 = 5_000;

fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("DAFTKA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    match std::env::var("DAFTKA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(count) => {
            let base: u64 = rand::random::<u32>() as u64 * 1_000;
            println!("seeds {base}..{}", base + count);
            (base..base + count).collect()
        }
        None => (1..=SEEDS_DEFAULT).collect(),
    }
}

fn run_all(n: u64, faults: Faults) -> Stats {
    let started = Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    let seeds = seeds();
    for seed in &seeds {
        match run(*seed, n, STEPS, faults.clone()) {
            Ok(s) => {
                total.steps += s.steps;
                total.delivered += s.delivered;
                total.proposals += s.proposals;
                total.acked += s.acked;
                total.crashes += s.crashes;
                total.elections += s.elections;
                total.conf_changes += s.conf_changes;
                total.snapshots += s.snapshots;
                total.moves += s.moves;
                total.moves_started += s.moves_started;
            }
            Err(v) => {
                println!(
                    "seed {seed} failed: {} (DAFTKA_SIM_SEED={seed} replays it)",
                    v.0
                );
                failures.push(*seed);
            }
        }
    }
    println!(
        "{n} replicas: {} seeds, {} steps, {} messages delivered, {} proposals ({} acknowledged), {} crashes, {} elections, {} membership changes, {} replica moves ({} finished), {} snapshot writes, in {:.1?}",
        seeds.len(),
        total.steps,
        total.delivered,
        total.proposals,
        total.acked,
        total.crashes,
        total.elections,
        total.conf_changes,
        total.moves_started,
        total.moves,
        total.snapshots,
        started.elapsed()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    assert!(total.acked > 0, "some proposals were acknowledged");
    total
}

#[test]
fn three_replicas_keep_their_promises_under_faults() {
    run_all(
        3,
        Faults {
            membership: 0.0,
            ..Faults::default()
        },
    );
}

#[test]
fn five_replicas_keep_their_promises_under_faults_and_membership_changes() {
    run_all(5, Faults::default());
}

/// Replica moves (learners, catch-up, joint configuration, the leader handing over before it
/// leaves) run to their end often enough to be judged: fewer crashes and losses, more moves.
#[test]
fn five_replicas_keep_their_promises_while_replicas_move() {
    let total = run_all(
        5,
        Faults {
            drop: 0.01,
            duplicate: 0.01,
            crash: 0.002,
            crash_mid_round: 0.0005,
            partition: 0.003,
            membership: 0.03,
            ..Faults::default()
        },
    );
    // Under load a move waits long for its learners and its configuration entries (the
    // simulated group commits slowly); some must still finish for the run to judge them.
    assert!(
        total.moves > 0,
        "no move finished of {}",
        total.moves_started
    );
}
