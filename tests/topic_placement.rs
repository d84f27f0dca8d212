//! A topic created the moment a new cluster is ready gets the replication factor it asked for:
//! three `daftka` processes started as the README says, each `/readyz` 200 and the first node
//! listing all three, then `POST /v1/topics` with no `replication_factor` on the second node. The
//! factor is 3 (the registered nodes), and every partition ends with three distinct replicas,
//! whether all three nodes were live for the create or a missing replica was added afterwards by
//! the Rebalancer. Ten fresh clusters in a row.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, free_port, BinaryNode};

const RUNS: usize = 10;
const WAIT: Duration = Duration::from_secs(30);

fn node(name: &str, dir: &Path, port: u16, seeds: &[u16]) -> BinaryNode {
    let mut args = vec![
        "--cluster-addr".to_string(),
        format!("127.0.0.1:{port}"),
        "--cookie".to_string(),
        "s3cret".to_string(),
    ];
    if !seeds.is_empty() {
        args.push("--seeds".into());
        args.push(
            seeds
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    BinaryNode::spawn_with(name, &dir.join(name), &args)
}

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_at_startup_gets_three_replicas() {
    let http = reqwest::Client::new();
    for run in 0..RUNS {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pa, pb, pc) = (free_port(), free_port(), free_port());
        let a = node("a", dir.path(), pa, &[]);
        let b = node("b", dir.path(), pb, &[pa]);
        let c = node("c", dir.path(), pc, &[pa, pb]);
        for n in [&a, &b, &c] {
            n.wait_ready(&http).await;
        }
        eventually("the first node to list all three", WAIT, async || {
            let v = get(&http, &format!("{}/v1/cluster", a.url())).await?;
            (v["nodes"].as_array()?.len() == 3).then_some(())
        })
        .await;

        let created = http
            .post(format!("{}/v1/topics", b.url()))
            .json(&json!({"name": "orders", "partitions": 6}))
            .send()
            .await
            .expect("create");
        assert_eq!(created.status(), 201, "run {run}");
        let created: Value = created.json().await.expect("json");
        assert_eq!(created["replication_factor"], 3, "run {run}: {created}");

        let url = format!("{}/v1/topics/orders", b.url());
        let last = eventually("every partition to have 3 replicas", WAIT, async || {
            let t = get(&http, &url).await?;
            let done = t["partitions"].as_array()?.iter().all(|p| {
                let replicas: Vec<&str> = p["replicas"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut distinct = replicas.clone();
                distinct.sort_unstable();
                distinct.dedup();
                distinct.len() == 3 && replicas.len() == 3 && p["under_replicated"] == false
            });
            done.then_some(t)
        })
        .await;
        assert_eq!(last["partitions"].as_array().map(Vec::len), Some(6));
        for p in last["partitions"].as_array().expect("partitions") {
            assert_eq!(p["desired_replication_factor"], 3, "run {run}: {p}");
        }
    }
}
