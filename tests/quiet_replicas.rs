//! Quiet replicas: the node's ticker drives Raft's clock only for replicas that need it. A replica
//! that leads a group it is the only member of gets no ticks (so thousands of idle ones cost
//! nothing), yet takes produces and has its retention enforced; replicas with peers keep ticking,
//! so a failover still happens.

mod support;

use std::time::Duration;

use daftka_protocol::{ProduceRecord, Record, TopicSpec};
use serde_json::json;
use support::api::Api;
use support::cluster::TestCluster;
use support::{eventually, metric, start_node, test_config, unique_name};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sole_replicas_are_quiet_and_still_serve_and_expire_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = test_config(&unique_name("quiet"), dir.path());
    cfg.topics.retention_time = Duration::from_millis(300);
    cfg.topics.retention_check_interval = Duration::from_millis(50);
    let node = start_node(cfg).await;
    let api = Api::new(format!("http://{}", node.http_addr));
    api.create(json!({"name": "q", "partitions": 4}))
        .await
        .assert_ok(201);

    eventually("every replica to be quiet", WAIT, async || {
        let quiet = metric(&node, "daftka_raft_replicas{state=\"quiet\"} ").await?;
        let ticking = metric(&node, "daftka_raft_replicas{state=\"ticking\"} ").await?;
        (quiet == 4.0 && ticking == 0.0).then_some(())
    })
    .await;

    // Quiet replicas take produces: 10 records on each partition.
    for p in 0..4 {
        let records: Vec<_> = (0..10)
            .map(|i| json!({"value": format!("v{i}"), "partition": p}))
            .collect();
        let acked = api.produce_ok("q", json!({ "records": records })).await;
        assert_eq!(
            acked,
            (0..10).map(|o| (p, o)).collect::<Vec<_>>(),
            "partition {p}"
        );
    }

    // Retention (housekeeping, which quiet replicas still get) deletes them once they are older
    // than 300 ms.
    eventually("retention on every partition", WAIT, async || {
        let d = api.get("/v1/topics/q").await;
        let parts = d.body["partitions"].as_array()?.clone();
        parts
            .iter()
            .all(|p| p["log_start_offset"].as_u64() == Some(10))
            .then_some(())
    })
    .await;
    // New records go on at the next offset, and are read back.
    let acked = api
        .produce_ok(
            "q",
            json!({"records": [{"value": "after", "partition": 0}]}),
        )
        .await;
    assert_eq!(acked, [(0, 10)]);
    let f = api.fetch_ok("q", 0, "offset=10").await;
    assert_eq!(f["records"][0]["value"], "after", "{f}");
    assert_eq!(
        metric(&node, "daftka_raft_replicas{state=\"quiet\"} ").await,
        Some(4.0)
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_peers_tick_and_fail_over() {
    let mut c = TestCluster::start(3).await;
    let client = c.client(0);
    let spec = |name: &str, rf| TopicSpec {
        name: name.into(),
        partitions: Some(1),
        replication_factor: Some(rf),
    };
    let shared = client
        .create_topic(spec("shared", 3))
        .await
        .expect("create");
    let alone = client.create_topic(spec("alone", 1)).await.expect("create");
    let alone_node = alone.partitions[0].replicas[0].clone();

    // Every node holds one replica of `shared` (ticking) and one node holds `alone` (quiet).
    for m in &c.members {
        let node = m.node.as_ref().expect("running");
        let quiet_expected = if m.name == alone_node { 1.0 } else { 0.0 };
        eventually("the replica counts", WAIT, async || {
            let quiet = metric(node, "daftka_raft_replicas{state=\"quiet\"} ").await?;
            let ticking = metric(node, "daftka_raft_replicas{state=\"ticking\"} ").await?;
            (quiet == quiet_expected && ticking == 1.0).then_some(())
        })
        .await;
    }

    // The followers of `shared` keep their election clocks: stopping its leader's node leads to
    // a new leader, which acknowledges a produce.
    let leader = shared.partitions[0].leader.clone().expect("a leader");
    let down = c
        .members
        .iter()
        .position(|m| m.name == leader)
        .expect("the leader is a member");
    c.stop(down).await;
    let up = (down + 1) % 3;
    let via = c.client(up);
    let record = ProduceRecord {
        partition: Some(0),
        record: Record::from_value("after the failover"),
    };
    let acked = eventually("a produce after the failover", WAIT, async || {
        via.produce("shared", vec![record.clone()]).await.ok()
    })
    .await;
    assert_eq!(acked.len(), 1, "{acked:?}");
    // The new leader reports itself to the metadata (whose own leader may have been on the
    // stopped node too).
    eventually("the metadata to name the new leader", WAIT, async || {
        let d = via.describe_topic("shared").await.ok()?;
        let now = d.partitions[0].leader.clone()?;
        (now != leader).then_some(())
    })
    .await;
}
