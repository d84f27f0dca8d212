//! Chaos on a real three-process cluster on loopback. While producers write through all three
//! nodes over HTTP, the test kills -9 a random node and starts it again, and kills random Raft,
//! Storage, Server, Router and Metadata actors through the chaos admin endpoint (the seed is
//! printed first; `CHAOS_SEED=n` replays a run). After healing, the history checker must find 0
//! lost, 0 reordered and 0 unexpected acknowledged records, and every replica of every partition
//! must hold the same committed log, read straight from each node's fjall store.
//!
//! It also prints the figures the closing note asks for: the time from a kill -9 of a node to the
//! first acknowledged produce on each partition that node led, and the acknowledged records per
//! second during the chaos.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::eventually;
use support::procs::{actor_targets, http_client, slots, stop_all, wait_ready, Slot};
use support::produce::Producers;
use support::readback::{assert_replicas_agree, check_history, leaders, metric_hwms};

const PARTITIONS: u32 = 3;
const BATCH: u64 = 20;
const ROUNDS: usize = 8;
const TOPIC: &str = "chaos";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_kill_9_and_actor_kills() {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos seed: {seed} (CHAOS_SEED={seed} replays the choices)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().expect("temp dir");
    let http = http_client();
    let mut nodes = slots(root.path(), "chaos-cookie");
    for n in nodes.iter_mut() {
        n.start();
        wait_ready(&http, &n.url()).await;
    }
    let urls: Vec<String> = nodes.iter().map(Slot::url).collect();

    let created = http
        .post(format!("{}/v1/topics", urls[0]))
        .json(&json!({"name": TOPIC, "partitions": PARTITIONS}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.expect("create answer");
    assert_eq!(created["replication_factor"], 3);

    let started = Instant::now();
    let producers = Producers::start(3, &urls, (TOPIC, PARTITIONS, BATCH));

    // Failover figures: (kill time, partitions the killed node led).
    let mut kills: Vec<(Instant, Vec<u32>)> = Vec::new();
    let acked = || producers.acked();
    for round in 0..ROUNDS {
        // Let the producers make progress between faults: a few more acknowledged batches.
        let (before, more) = (acked(), rng.gen_range(20..=60) * BATCH as usize);
        eventually(
            "progress between faults",
            Duration::from_secs(60),
            async || (acked() >= before + more).then_some(()),
        )
        .await;
        let victim = rng.gen_range(0..nodes.len());
        if round % 2 == 0 {
            let led: Vec<u32> = leaders(&http, &urls[(victim + 1) % 3], TOPIC)
                .await
                .into_iter()
                .filter(|(_, l)| *l == nodes[victim].name)
                .map(|(p, _)| p)
                .collect();
            println!(
                "round {round}: kill -9 node {} (leads {led:?})",
                nodes[victim].name
            );
            if let Some(p) = nodes[victim].proc.as_mut() {
                p.kill9();
            }
            kills.push((Instant::now(), led));
            // Restart it once the others have noticed and served without it.
            let witness = &urls[(victim + 1) % nodes.len()];
            let name = nodes[victim].name.clone();
            eventually(
                "the others to see the killed node down",
                Duration::from_secs(30),
                async || {
                    let v: Value = http
                        .get(format!("{witness}/v1/cluster"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    v["nodes"]
                        .as_array()?
                        .iter()
                        .any(|n| n["name"] == name.as_str() && n["status"] == "down")
                        .then_some(())
                },
            )
            .await;
            let before = acked();
            eventually(
                "an acknowledgement without the killed node",
                Duration::from_secs(30),
                async || (acked() > before).then_some(()),
            )
            .await;
            nodes[victim].start();
            wait_ready(&http, &nodes[victim].url()).await;
        } else {
            let kinds = [".raft", ".reader", ".server", ".router", ".metadata"];
            let targets = actor_targets(&http, &nodes[victim].url(), &kinds).await;
            if targets.is_empty() {
                continue;
            }
            let actor = &targets[rng.gen_range(0..targets.len())];
            println!("round {round}: kill actor {actor}");
            let _ = http
                .delete(format!("{}/v1/admin/actors/{actor}", nodes[victim].url()))
                .send()
                .await;
        }
    }
    // Heal: every node ready, producers stopped, then every replica caught up with the leader.
    for n in &nodes {
        wait_ready(&http, &n.url()).await;
    }
    // Keep producing until each partition acknowledged something after the last fault.
    let healed = Instant::now();
    eventually(
        "every partition to acknowledge after healing",
        Duration::from_secs(60),
        async || {
            let s = producers.shared.lock().expect("lock");
            (0..PARTITIONS)
                .all(|p| {
                    s.acks
                        .get(&p)
                        .and_then(|a| a.last())
                        .is_some_and(|t| *t > healed)
                })
                .then_some(())
        },
    )
    .await;
    let shared = producers.finish().await;
    let elapsed = started.elapsed();
    let report = check_history(&http, &urls[0], TOPIC, PARTITIONS, &shared.history).await;
    println!(
        "chaos: {} acknowledged of {} sent, {} stored, {} stored with unknown outcome; {:.0} acknowledged records/s over {:.1}s",
        report.acked,
        shared.history.sent.len(),
        report.stored,
        report.unknown_stored,
        report.acked as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    assert!(report.acked > 0, "producers got acknowledgements");

    // Failover: from each kill -9 to the first acknowledgement on each partition the node led.
    let mut failovers: Vec<Duration> = Vec::new();
    for (at, led) in &kills {
        for p in led {
            if let Some(t) = shared.acks.get(p).and_then(|a| a.iter().find(|t| *t > at)) {
                failovers.push(*t - *at);
            }
        }
    }
    failovers.sort();
    println!(
        "failover (kill -9 of a leader's node -> first acknowledged produce on its partitions): {:?}; median {:?}",
        failovers,
        failovers.get(failovers.len() / 2)
    );

    // Every replica holds the same committed log: wait until all report the same high
    // watermarks, stop them all, and compare what each store holds.
    eventually(
        "replicas to catch up",
        Duration::from_secs(60),
        async || {
            let mut all = Vec::new();
            for n in &nodes {
                all.push(
                    metric_hwms(&http, &format!("http://127.0.0.1:{}", n.metrics), TOPIC).await?,
                );
            }
            (all.iter()
                .all(|h| h.len() == PARTITIONS as usize && *h == all[0]))
            .then_some(())
        },
    )
    .await;
    stop_all(&mut nodes);
    let stores: Vec<(&str, &Path)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.dir.as_path()))
        .collect();
    assert_replicas_agree(&stores, PARTITIONS, report.stored);
}
