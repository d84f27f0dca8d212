//! Membership with the real binary as separate processes on loopback: nodes with the same cookie
//! join through their seeds and see each other up; a paused (SIGSTOP) peer, whose session stays open,
//! shows down once its heartbeats stop and up again after SIGCONT; a node with a wrong cookie is never
//! admitted; a killed peer shows down; a node dials its seed again after the seed restarts; and a
//! node given seeds without a cookie refuses to start; nodes meet registered nodes that are not
//! their seeds.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, free_port, BinaryNode};

fn cluster_args(port: u16, cookie: &str, seeds: Option<u16>) -> Vec<String> {
    let mut a = vec![
        "--cluster-addr".to_string(),
        format!("127.0.0.1:{port}"),
        "--cookie".to_string(),
        cookie.to_string(),
    ];
    if let Some(seed) = seeds {
        a.push("--seeds".into());
        a.push(format!("127.0.0.1:{seed}"));
    }
    a
}

async fn cluster(http: &reqwest::Client, node: &BinaryNode) -> Option<Value> {
    let r = http
        .get(format!("{}/v1/cluster", node.url()))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// The status `node` reports for `peer`, if it lists it.
fn status_of(view: &Value, peer: &str) -> Option<String> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == peer)
        .and_then(|n| n["status"].as_str().map(str::to_string))
}

/// Waits until `node` reports `peer` with `status`; returns its `/v1/cluster` view.
async fn see(http: &reqwest::Client, node: &BinaryNode, peer: &str, status: &str) -> Value {
    let what = format!("{} to see {peer} {status}", node.name);
    eventually(&what, Duration::from_secs(30), async || {
        cluster(http, node)
            .await
            .filter(|v| status_of(v, peer).as_deref() == Some(status))
    })
    .await
}

fn spawn(name: &str, dir: &Path, args: Vec<String>) -> BinaryNode {
    BinaryNode::spawn_with(name, &dir.join(name), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_with_the_cookie_and_only_with_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let wait = Duration::from_secs(30);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let mut a = spawn("a", dir.path(), cluster_args(pa, "s3cret", None));
    a.wait_ready(&http).await;
    let b = spawn("b", dir.path(), cluster_args(pb, "s3cret", Some(pa)));
    let c = spawn("c", dir.path(), cluster_args(pc, "wrong", Some(pa)));
    b.wait_ready(&http).await;
    // c serves HTTP but is never ready: it cannot join the metadata group without the cookie.
    c.wait_live(&http).await;

    // a and b see each other up, with b's advertised cluster address.
    let view = see(&http, &a, "b", "up").await;
    let b_entry = view["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == "b").cloned())
        .expect("b listed");
    assert_eq!(b_entry["cluster_addr"], format!("127.0.0.1:{pb}"));
    see(&http, &b, "a", "up").await;

    // Pause b: no session closes, but its heartbeats stop, so a sees it down; resume: up again.
    b.signal("STOP");
    see(&http, &a, "b", "down").await;
    b.signal("CONT");
    see(&http, &a, "b", "up").await;

    // c tried and was refused, more than once; a never admitted it.
    let c_view = eventually("c to fail twice", wait, async || {
        cluster(&http, &c)
            .await
            .filter(|v| v["seeds"][0]["failed_attempts"].as_u64() >= Some(2))
    })
    .await;
    assert_eq!(c_view["seeds"][0]["connected"], false);
    assert_eq!(status_of(&c_view, "a"), None, "c never saw a");
    let a_view = cluster(&http, &a).await.expect("a answers");
    assert_eq!(status_of(&a_view, "c"), None, "a never admitted c");
    let ready = http
        .get(format!("{}/readyz", c.url()))
        .send()
        .await
        .expect("c answers");
    assert_eq!(
        ready.status().as_u16(),
        503,
        "c is not ready: it never joined"
    );

    // kill -9 the seed: b sees it down; start it again: b dials it again and sees it up.
    a.kill9();
    see(&http, &b, "a", "down").await;
    let a = BinaryNode::spawn_with(
        "a",
        &dir.path().join("a"),
        &cluster_args(pa, "s3cret", None),
    );
    a.wait_ready(&http).await;
    see(&http, &b, "a", "up").await;
}

/// A node given seeds but no cookie refuses to start and says why.
#[test]
fn seeds_without_a_cookie_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_daftka"))
        .args(["--node-name", "x", "--seeds", "127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("DAFTKA_COOKIE")
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node.cookie"), "stderr: {stderr}");
}

/// Three nodes that each name the other two as seeds (`daftka --node-name a --seeds b,c` on real
/// hosts): exactly one founds the metadata group, the others join it, and all serve one cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_seeds_form_one_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let ports = [free_port(), free_port(), free_port()];
    let nodes: Vec<BinaryNode> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let seeds: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("127.0.0.1:{}", ports[j]))
                .collect();
            let args = vec![
                "--cluster-addr".to_string(),
                format!("127.0.0.1:{}", ports[i]),
                "--cookie".to_string(),
                "s3cret".to_string(),
                "--seeds".to_string(),
                seeds.join(","),
            ];
            spawn(name, dir.path(), args)
        })
        .collect();
    for n in &nodes {
        n.wait_ready(&http).await;
    }
    // One metadata leader, the same for all, and every node lists all three.
    let mut leaders = Vec::new();
    for n in &nodes {
        let v = eventually(
            "a metadata leader and three nodes",
            Duration::from_secs(30),
            async || {
                cluster(&http, n)
                    .await
                    .filter(|v| v["metadata_leader"].is_string())
                    .filter(|v| v["nodes"].as_array().is_some_and(|a| a.len() == 3))
            },
        )
        .await;
        leaders.push(v["metadata_leader"].clone());
    }
    assert!(leaders.iter().all(|l| *l == leaders[0]), "{leaders:?}");
    let created = http
        .post(format!("{}/v1/topics", nodes[2].url()))
        .json(&serde_json::json!({"name": "t", "partitions": 3}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let t: Value = created.json().await.expect("json");
    assert_eq!(t["replication_factor"], 3);
}

/// Nodes dial every node registered in the metadata, not only their seeds: b and c both name only
/// a, yet meet each other (a partition replicated on all three needs every pair connected), and
/// meet again after c restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_meet_registered_nodes_that_are_not_their_seeds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = spawn("a", dir.path(), cluster_args(pa, "s3cret", None));
    a.wait_ready(&http).await;
    let b = spawn("b", dir.path(), cluster_args(pb, "s3cret", Some(pa)));
    let mut c = spawn("c", dir.path(), cluster_args(pc, "s3cret", Some(pa)));
    b.wait_ready(&http).await;
    c.wait_ready(&http).await;
    see(&http, &b, "c", "up").await;
    see(&http, &c, "b", "up").await;
    // A topic replicated on all three takes records through c.
    let created = http
        .post(format!("{}/v1/topics", c.url()))
        .json(&serde_json::json!({"name": "t", "partitions": 3, "replication_factor": 3}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let produced = http
        .post(format!("{}/v1/topics/t/records", c.url()))
        .json(&serde_json::json!({"records": [{"key": "k1", "value": "v"}, {"key": "k2", "value": "v"}, {"key": "k3", "value": "v"}]}))
        .send()
        .await
        .expect("produce");
    assert_eq!(produced.status().as_u16(), 200);

    c.kill9();
    see(&http, &b, "c", "down").await;
    let c = BinaryNode::spawn_with(
        "c",
        &dir.path().join("c"),
        &cluster_args(pc, "s3cret", Some(pa)),
    );
    c.wait_ready(&http).await;
    see(&http, &b, "c", "up").await;
    see(&http, &c, "b", "up").await;
}
