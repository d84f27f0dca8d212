//! Moves interrupted at chosen points, on four real processes under producers (the phases come
//! from `GET /v1/reassignments`):
//! - the destination is killed -9 mid-catch-up (it is paused first, so the move is certainly
//!   copying to it: `catching_up`, bytes sent), then started again;
//! - the leader is killed -9 while the group is joint (`leaving_joint` or
//!   `transferring_leadership`, which the leader reports only while its applied configuration is
//!   joint), then started again.
//!
//! Every move must end, the history checker must find 0 lost, 0 reordered and 0 unexpected
//! records, and every node holding a partition must hold the same log, read from its fjall store.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::eventually;
use support::procs::{create_topic, http_client, slots_n, start_all, wait_ready, Slot};
use support::produce::Producers;
use support::readback::settle_moves;

const TOPIC: &str = "targeted";
const PARTITIONS: u32 = 4;
const BATCH: u64 = 10;
const WAIT: Duration = Duration::from_secs(120);

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Partition `p`'s replicas and leader as the node at `url` describes them.
async fn partition(http: &reqwest::Client, url: &str, p: u32) -> Option<(Vec<String>, String)> {
    let d = get(http, &format!("{url}/v1/topics/{TOPIC}")).await?;
    let part = &d["partitions"][p as usize];
    let replicas = part["replicas"]
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    Some((replicas, part["leader"].as_str()?.to_string()))
}

/// Partition `p`'s move in flight, as the node at `url` lists it.
async fn move_of(http: &reqwest::Client, url: &str, p: u32) -> Option<Value> {
    let v = get(http, &format!("{url}/v1/reassignments")).await?;
    v["reassignments"]
        .as_array()?
        .iter()
        .find(|m| m["topic"] == TOPIC && m["partition"] == p)
        .cloned()
}

/// Moves partition `p` to `to` through the node at `url`.
async fn reassign(http: &reqwest::Client, url: &str, p: u32, to: &[String]) -> u16 {
    http.post(format!("{url}/v1/topics/{TOPIC}/partitions/{p}/reassign"))
        .json(&json!({ "replicas": to }))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The node that leads partition `p` now, as the leader itself reports its replicas.
async fn leader_now(http: &reqwest::Client, url: &str, p: u32) -> Option<String> {
    let d = get(http, &format!("{url}/v1/topics/{TOPIC}")).await?;
    d["partitions"][p as usize]["replica_states"]
        .as_array()?
        .iter()
        .find(|r| r["state"] == "leader")
        .and_then(|r| r["node"].as_str().map(str::to_string))
}

fn index_of(nodes: &[Slot], name: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.name == name)
        .expect("a node of the cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_survive_targeted_kills() {
    let root = tempfile::tempdir().expect("temp dir");
    let http = http_client();
    let mut nodes = slots_n(root.path(), "targeted-cookie", 4);
    start_all(&http, &mut nodes).await;
    let urls: Vec<String> = nodes.iter().map(Slot::url).collect();
    create_topic(&http, &urls[0], TOPIC, PARTITIONS).await;
    let producers = Producers::start(3, &urls, (TOPIC, PARTITIONS, BATCH));
    let acked = || producers.acked();
    eventually("records before the moves", WAIT, async || {
        (acked() >= 500).then_some(())
    })
    .await;

    // 1. The destination, paused, is killed -9 mid-catch-up.
    let (replicas, _) = eventually("partition 0", WAIT, async || {
        partition(&http, &urls[0], 0).await
    })
    .await;
    let dest = nodes
        .iter()
        .find(|n| !replicas.contains(&n.name))
        .expect("a node without a replica")
        .name
        .clone();
    let d = index_of(&nodes, &dest);
    let witness = urls[(d + 1) % urls.len()].clone();
    nodes[d].proc.as_ref().expect("runs").signal("STOP");
    let to = vec![dest.clone(), replicas[1].clone(), replicas[2].clone()];
    assert_eq!(reassign(&http, &witness, 0, &to).await, 202);
    let copying = eventually("the move to copy to the paused node", WAIT, async || {
        let m = move_of(&http, &witness, 0).await?;
        (m["phase"] == "catching_up" && m["bytes_copied"].as_u64()? > 0).then_some(m)
    })
    .await;
    println!("killing {dest} mid-catch-up: {copying}");
    nodes[d].proc.as_mut().expect("runs").kill9();
    nodes[d].start();
    wait_ready(&http, &urls[d]).await;
    // It ends (the Rebalancer may then even the replicas out again, d's included).
    eventually("the move to end", WAIT, async || {
        let ended = move_of(&http, &witness, 0).await.is_none();
        let (now, _) = partition(&http, &witness, 0).await?;
        (ended && now.len() == 3).then_some(())
    })
    .await;

    // 2. The leader is killed -9 while the group is joint. The window is about one Placement
    // nudge: tried on each partition until one is caught in it.
    let mut caught = false;
    let mut killed = 0;
    for p in 1..PARTITIONS {
        let (replicas, leader) = eventually("the partition and its leader", WAIT, async || {
            partition(&http, &urls[0], p).await
        })
        .await;
        let Some(outsider) = nodes.iter().find(|n| !replicas.contains(&n.name)) else {
            continue;
        };
        // A follower's replica goes: the leader stays in both halves of the joint configuration,
        // which it leaves at the Placement's next nudge (up to 500 ms later).
        let Some(leaving) = replicas.iter().find(|r| **r != leader).cloned() else {
            continue;
        };
        let to: Vec<String> = replicas
            .iter()
            .map(|r| {
                if *r == leaving {
                    outsider.name.clone()
                } else {
                    r.clone()
                }
            })
            .collect();
        let l = index_of(&nodes, &leader);
        let witness = urls[(l + 1) % urls.len()].clone();
        if reassign(&http, &witness, p, &to).await != 202 {
            continue;
        }
        // Joint, with the leader that reports it (the old one handing over, or the new one),
        // or the move already over.
        let joint_leader = eventually("the move to be joint or over", WAIT, async || {
            let Some(m) = move_of(&http, &witness, p).await else {
                return Some(None);
            };
            let phase = m["phase"].as_str()?;
            if !matches!(phase, "transferring_leadership" | "leaving_joint") {
                return None;
            }
            let leader = leader_now(&http, &witness, p).await?;
            Some(Some((leader, phase.to_string())))
        })
        .await;
        if let Some((leader, phase)) = joint_leader {
            println!("killing leader {leader} of partition {p} while joint: {phase}");
            killed = index_of(&nodes, &leader);
            nodes[killed].proc.as_mut().expect("runs").kill9();
            caught = true;
        }
        if caught {
            nodes[killed].start();
            wait_ready(&http, &urls[killed]).await;
            eventually("the interrupted move to end", WAIT, async || {
                move_of(&http, &witness, p).await.is_none().then_some(())
            })
            .await;
            break;
        }
        eventually("the move to end", WAIT, async || {
            move_of(&http, &witness, p).await.is_none().then_some(())
        })
        .await;
    }
    assert!(caught, "no move was caught while its group was joint");

    let before = acked();
    eventually("acknowledgements after the kills", WAIT, async || {
        (acked() >= before + 200).then_some(())
    })
    .await;
    let report = settle_moves(&http, &mut nodes, producers, (TOPIC, PARTITIONS)).await;
    println!(
        "targeted: {} acknowledged, {} stored, {} stored with unknown outcome",
        report.acked, report.stored, report.unknown_stored
    );
}
