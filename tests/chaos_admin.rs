//! Chaos tooling on the real binary: with `debug.chaos = true` the CLI lists a node's actors and
//! kills one, and the node's supervisor restarts it and serves again; with chaos off the admin
//! endpoints do not exist.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, BinaryNode};

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_daftka"))
        .args(["--url", url])
        .args(args)
        .output()
        .expect("run the CLI")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kills_on_request_and_supervision_restores() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("chaos.toml");
    std::fs::write(&config, "[debug]\nchaos = true\n").expect("write config");
    let http = reqwest::Client::new();
    let node = BinaryNode::spawn_with(
        "k",
        &dir.path().join("k"),
        &["--config".into(), config.display().to_string()],
    );
    node.wait_ready(&http).await;
    let url = node.url();

    let listed = tokio::task::spawn_blocking({
        let url = url.clone();
        move || cli(&url, &["chaos", "list"])
    })
    .await
    .expect("cli task");
    assert!(listed.status.success());
    let actors = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(actors.lines().any(|l| l == "daftka.k.router"), "{actors}");
    assert!(actors.lines().any(|l| l == "daftka.k.metadata"), "{actors}");

    let killed = tokio::task::spawn_blocking({
        let url = url.clone();
        move || cli(&url, &["chaos", "kill", "daftka.k.router"])
    })
    .await
    .expect("cli task");
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );

    // The supervisor counted the restart, and the node serves through the new Router.
    let metrics = format!("http://127.0.0.1:{}/metrics", node.metrics_port);
    eventually(
        "the router restart to be counted",
        Duration::from_secs(20),
        async || {
            let text = http.get(&metrics).send().await.ok()?.text().await.ok()?;
            text.lines()
                .any(|l| l.starts_with("daftka_supervisor_restarts_total{child=\"router\"}"))
                .then_some(())
        },
    )
    .await;
    eventually(
        "a topic created after the kill",
        Duration::from_secs(20),
        async || {
            let r = http
                .post(format!("{url}/v1/topics"))
                .json(&json!({"name": "after", "partitions": 1}))
                .send()
                .await
                .ok()?;
            (r.status() == 201).then_some(())
        },
    )
    .await;

    let unknown = http
        .delete(format!("{url}/v1/admin/actors/daftka.other.router"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        unknown.status(),
        404,
        "another node's actor cannot be named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_off_by_default() {
    let t = support::TestNode::start("nochaos").await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/v1/admin/actors", t.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    let router = daftka_protocol::names::router(&t.node.name);
    let r = http
        .delete(format!("{}/v1/admin/actors/{router}", t.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    assert!(
        ractor::registry::where_is(router).is_some(),
        "nothing was killed"
    );
}
