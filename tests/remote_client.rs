//! `examples/remote_client.rs`, a program that depends only on daftka-protocol, run as its own
//! process against a real three-process cluster: it joins the cluster's ractor_cluster network with
//! the cookie, finds a Router through pg and does its work with typed messages. What it wrote is
//! then read over HTTP through another node. With a wrong cookie it fails with a clear error.

mod support;

use std::path::PathBuf;
use std::process::Command;

use daftka_protocol::remote::{self, RemoteOptions};
use serde_json::Value;
use support::procs::{slots, wait_ready};

/// The example's binary, brought up to date with `cargo build --example` (a no-op when
/// `cargo test` already built it with the other targets).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example");
    assert!(status.success(), "building the example failed");
    dir.join(name)
}

async fn run_example(args: Vec<String>) -> std::process::Output {
    let exe = example("remote_client");
    tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the example")
    })
    .await
    .expect("example task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_client_example_works_against_three_processes() {
    let root = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let mut nodes = slots(root.path(), "remote-cookie");
    for n in nodes.iter_mut() {
        n.start();
        wait_ready(&http, &n.url()).await;
    }

    // Through node b's cluster listener.
    let out = run_example(vec![nodes[1].cluster_addr.clone(), "remote-cookie".into()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "example failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("produced 5 records"), "{stdout}");
    assert!(stdout.contains("fetched offset 4: hello 4"), "{stdout}");
    assert!(stdout.contains("done"), "{stdout}");

    // What it wrote, read over HTTP through node c.
    let v: Value = http
        .get(format!(
            "{}/v1/topics/remote-demo/partitions/0/records?offset=earliest",
            nodes[2].url()
        ))
        .send()
        .await
        .expect("fetch")
        .json()
        .await
        .expect("json");
    let values: Vec<&str> = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(
        values,
        vec!["hello 0", "hello 1", "hello 2", "hello 3", "hello 4"]
    );
    let g: Value = http
        .get(format!(
            "{}/v1/groups/remote-demo-readers/offsets",
            nodes[2].url()
        ))
        .send()
        .await
        .expect("offsets")
        .json()
        .await
        .expect("json");
    assert_eq!(g["offsets"][0]["offset"], 5, "{g}");

    // A wrong cookie: no session, no router, a clear error and a non-zero exit.
    let args = vec![
        nodes[0].cluster_addr.clone(),
        "wrong".into(),
        "daftka".into(),
        "3".into(),
    ];
    let out = run_example(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("wrong cookie"), "{stderr}");

    // A connection that outlives the heartbeat timeout keeps working: a native client sends no
    // heartbeats, and the node must not take it for a silent node and close its session.
    let opts = RemoteOptions::new(nodes[0].cluster_addr.clone(), "remote-cookie");
    let client_name = opts.name.clone();
    let remote = remote::connect(opts).await.expect("connect");
    remote
        .client
        .list_topics()
        .await
        .expect("list right after connecting");
    support::eventually(
        "the node to see the client's session without heartbeats",
        std::time::Duration::from_secs(30),
        async || {
            let v = support::get_json(&http, &format!("{}/v1/cluster", nodes[0].url())).await?;
            v["nodes"]
                .as_array()?
                .iter()
                .any(|n| n["name"] == client_name.as_str() && n["status"] == "down")
                .then_some(())
        },
    )
    .await;
    remote
        .client
        .list_topics()
        .await
        .expect("list after the heartbeat timeout");
    remote.close().await;

    // One process connecting again and again, as `bench suite` does row after row: every
    // connection reaches a live Router, and closing one leaves no stand-in of the cluster's
    // Router behind for the next to pick.
    let group = daftka_protocol::names::routers_group("daftka");
    for round in 0..3 {
        let opts = RemoteOptions::new(nodes[0].cluster_addr.clone(), "remote-cookie");
        let remote = remote::connect(opts)
            .await
            .unwrap_or_else(|e| panic!("round {round}: connect: {e:?}"));
        let topics = remote
            .client
            .list_topics()
            .await
            .unwrap_or_else(|e| panic!("round {round}: list: {e:?}"));
        assert!(topics.iter().any(|t| t.name == "remote-demo"), "{topics:?}");
        remote.close().await;
        assert!(
            ractor::pg::get_members(&group)
                .iter()
                .all(|c| c.get_id().is_local()),
            "round {round}: a remote Router is still in {group}"
        );
    }
}
