//! Repair on real processes: four nodes a, b, c, d (RF 3, `rebalance.node_down_timeout` = 3 s)
//! under producers through a and b. d is killed -9 for good: every partition is back at three
//! replicas on a, b and c. d is removed (`DELETE /v1/cluster/nodes/d`), then c is killed -9: every
//! partition still takes writes (two of its three replicas alive). d started again on its old data
//! directory is refused: it exits non-zero and says why. A fresh fifth node e joins: c's replicas
//! (down past the timeout) are created again on it. The history checker finds nothing lost,
//! duplicated without cause or reordered, and a, b and e hold the same log.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::eventually;
use support::procs::{create_topic, http_client, slots_n, start_all, stop_all, wait_ready, Slot};
use support::produce::Producers;
use support::readback::{assert_replicas_agree, check_history};

const TOPIC: &str = "healed";
const PARTITIONS: u32 = 4;
const BATCH: u64 = 10;
const WAIT: Duration = Duration::from_secs(90);

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Resolves once every partition of the topic (as `url` describes it) has three replicas, none
/// moving, all among `on`.
async fn replicas_on(http: &reqwest::Client, url: &str, on: &[&str]) {
    eventually(
        "every partition at three replicas on the live nodes",
        WAIT,
        async || {
            let d = get(http, &format!("{url}/v1/topics/{TOPIC}")).await?;
            let ok = d["partitions"].as_array()?.iter().all(|p| {
                let r: Vec<&str> = p["replicas"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                r.len() == 3 && r.iter().all(|n| on.contains(n)) && p.get("moving_to").is_none()
            });
            ok.then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_nodes_are_repaired_removed_fenced_and_replaced() {
    let root = tempfile::tempdir().expect("temp dir");
    let config = root.path().join("rebalance.toml");
    std::fs::write(
        &config,
        "[rebalance]\nnode_down_timeout = \"3s\"\ncheck_interval = \"200ms\"\n",
    )
    .expect("config file");
    let http = http_client();
    let mut nodes = slots_n(root.path(), "repair-cookie", 5);
    for n in &mut nodes {
        n.push_args(&["--config".to_string(), config.display().to_string()]);
    }
    start_all(&http, &mut nodes[..4]).await;
    let urls: Vec<String> = nodes.iter().map(Slot::url).collect();
    create_topic(&http, &urls[1], TOPIC, PARTITIONS).await;
    let producers = Producers::start(2, &urls[..2], (TOPIC, PARTITIONS, BATCH));
    let acked = || producers.acked();
    let more_acks = async |what: &str| {
        let before = acked();
        eventually(what, WAIT, async || (acked() >= before + 200).then_some(())).await;
    };
    more_acks("acknowledgements before the faults").await;

    // d dies for good: past the timeout its replicas are created again on a, b and c.
    nodes[3].proc.as_mut().expect("d runs").kill9();
    replicas_on(&http, &urls[0], &["a", "b", "c"]).await;
    more_acks("acknowledgements after d's repair").await;

    // d is removed; then c dies too: two of every partition's three replicas remain.
    let removed = http
        .delete(format!("{}/v1/cluster/nodes/d", urls[1]))
        .send()
        .await
        .expect("remove d");
    assert_eq!(removed.status().as_u16(), 200);
    let active = http
        .delete(format!("{}/v1/cluster/nodes/a", urls[1]))
        .send()
        .await
        .expect("remove a");
    assert_eq!(active.status().as_u16(), 409, "a is up with replicas");
    nodes[2].proc.as_mut().expect("c runs").kill9();
    more_acks("acknowledgements with c down").await;

    // d on its old data directory is refused, and says why.
    let old_d = nodes[3]
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn d");
    let pid = old_d.id();
    let exit = tokio::task::spawn_blocking(move || old_d.wait_with_output());
    let Ok(output) = tokio::time::timeout(WAIT, exit).await else {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        panic!("d was not refused");
    };
    let output = output.expect("join").expect("d's exit");
    let (status, stderr) = (output.status, String::from_utf8_lossy(&output.stderr));
    assert!(!status.success(), "d must fail: {stderr}");
    assert!(
        stderr.contains("removed") && stderr.contains("empty data directory"),
        "{stderr}"
    );

    // A fresh node e joins: c, down past the timeout, has its replicas created again on it.
    nodes[4].start();
    wait_ready(&http, &urls[4]).await;
    replicas_on(&http, &urls[0], &["a", "b", "e"]).await;
    more_acks("acknowledgements after e joined").await;

    let shared = producers.finish().await;
    let report = check_history(&http, &urls[0], TOPIC, PARTITIONS, &shared.history).await;
    println!(
        "repair: {} acknowledged of {} sent, {} stored, {} stored with unknown outcome",
        report.acked,
        shared.history.sent.len(),
        report.stored,
        report.unknown_stored
    );
    stop_all(&mut nodes);
    let stores: Vec<(&str, &Path)> = [0, 1, 4]
        .iter()
        .map(|&i| (nodes[i].name.as_str(), nodes[i].dir.as_path()))
        .collect();
    assert_replicas_agree(&stores, PARTITIONS, report.stored);
}
