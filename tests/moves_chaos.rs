//! Replica moves interrupted, on four real processes: while producers write through every node,
//! each round drains one node (its replicas move to the others) and, in the middle of the moves,
//! either kills -9 a random node (a destination, a leader, the metadata leader: whatever it hosts)
//! and starts it again, or kills a random Raft, Reader, Server, Router, Metadata or Placement
//! (the Rebalancer) actor through the chaos endpoint; then the node is taken back (undrain). Every
//! drain must end (`drained`), nothing may stay moving, the history checker must find 0 lost,
//! 0 reordered and 0 unexpected records, and every node holding a partition must hold the same
//! log, read from its fjall store. The seed is printed; `MOVES_CHAOS_SEED=n` replays the choices.

mod support;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::eventually;
use support::procs::{
    actor_targets, create_topic, http_client, slots_n, start_all, wait_ready, Slot,
};
use support::produce::Producers;
use support::readback::settle_moves;

const TOPIC: &str = "moving";
const PARTITIONS: u32 = 4;
const BATCH: u64 = 10;
/// Rounds in `cargo test`; `MOVES_CHAOS_ROUNDS` asks for more (`just chaos` runs 12).
const ROUNDS: usize = 3;
const WAIT: Duration = Duration::from_secs(120);

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// The state of `node` as the node at `url` shows the cluster.
async fn state_of(http: &reqwest::Client, url: &str, node: &str) -> Option<String> {
    let v = get(http, &format!("{url}/v1/cluster")).await?;
    v["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["state"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_survive_kill_9_and_actor_kills() {
    let seed: u64 = std::env::var("MOVES_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("moves chaos seed: {seed} (MOVES_CHAOS_SEED={seed} replays the choices)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().expect("temp dir");
    let http = http_client();
    let mut nodes = slots_n(root.path(), "moves-cookie", 4);
    start_all(&http, &mut nodes).await;
    let urls: Vec<String> = nodes.iter().map(Slot::url).collect();
    create_topic(&http, &urls[0], TOPIC, PARTITIONS).await;

    let producers = Producers::start(3, &urls, (TOPIC, PARTITIONS, BATCH));
    let acked = || producers.acked();

    let rounds: usize = std::env::var("MOVES_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS);
    for round in 0..rounds {
        let before = acked();
        eventually("progress between rounds", WAIT, async || {
            (acked() >= before + 100).then_some(())
        })
        .await;
        let drained = rng.gen_range(0..nodes.len());
        let name = nodes[drained].name.clone();
        let witness = urls[(drained + 1) % urls.len()].clone();
        println!("round {round}: drain {name}");
        let r = http
            .post(format!("{witness}/v1/cluster/nodes/{name}/drain"))
            .send()
            .await
            .expect("drain");
        assert_eq!(r.status().as_u16(), 202, "drain {name}");

        // A fault while the moves run.
        let victim = rng.gen_range(0..nodes.len());
        if rng.gen_bool(0.5) {
            println!("round {round}: kill -9 node {}", nodes[victim].name);
            if let Some(p) = nodes[victim].proc.as_mut() {
                p.kill9();
            }
            let seen_by = urls[(victim + 1) % urls.len()].clone();
            let victim_name = nodes[victim].name.clone();
            eventually("the others to see the killed node down", WAIT, async || {
                let v = get(&http, &format!("{seen_by}/v1/cluster")).await?;
                v["nodes"]
                    .as_array()?
                    .iter()
                    .any(|n| n["name"] == victim_name.as_str() && n["status"] == "down")
                    .then_some(())
            })
            .await;
            nodes[victim].start();
            wait_ready(&http, &nodes[victim].url()).await;
        } else {
            let kinds = [
                ".raft",
                ".reader",
                ".server",
                ".router",
                ".metadata",
                ".placement",
            ];
            let targets = actor_targets(&http, &nodes[victim].url(), &kinds).await;
            if !targets.is_empty() {
                let actor = &targets[rng.gen_range(0..targets.len())];
                println!("round {round}: kill actor {actor}");
                let _ = http
                    .delete(format!("{}/v1/admin/actors/{actor}", nodes[victim].url()))
                    .send()
                    .await;
            }
        }

        eventually("the drain to end", WAIT, async || {
            (state_of(&http, &witness, &name).await? == "drained").then_some(())
        })
        .await;
        let r = http
            .post(format!("{witness}/v1/cluster/nodes/{name}/undrain"))
            .send()
            .await
            .expect("undrain");
        assert_eq!(r.status().as_u16(), 202, "undrain {name}");
    }

    let report = settle_moves(&http, &mut nodes, producers, (TOPIC, PARTITIONS)).await;
    println!(
        "moves chaos: {} acknowledged, {} stored, {} stored with unknown outcome",
        report.acked, report.stored, report.unknown_stored
    );
}
