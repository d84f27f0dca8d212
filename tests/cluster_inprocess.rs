//! A three-node cluster in one process (real fjall, real ractor_cluster sessions on loopback,
//! Raft messages between the nodes' Peer actors): nodes join through seeds; a topic's partitions
//! are replicated on all three; produce and fetch work through every node; a killed leader's node
//! is replaced by an election and no acknowledged record is lost; a restarted node catches up.

mod support;

use std::time::Duration;

use daftka_protocol::{
    Client, FetchOffset, FetchRequest, ProduceRecord, Record, RecordPosition, TopicSpec,
};
use support::cluster::TestCluster;
use support::{eventually, metric};

fn records(from: usize, n: usize, partition: u32) -> Vec<ProduceRecord> {
    (from..from + n)
        .map(|i| ProduceRecord {
            partition: Some(partition),
            record: Record::from_value(format!("v{i}")),
        })
        .collect()
}

fn fetch(topic: &str, partition: u32) -> FetchRequest {
    FetchRequest {
        topic: topic.into(),
        partition,
        offset: FetchOffset::Earliest,
        max_records: 10_000,
        max_bytes: 16 << 20,
        max_wait_ms: 0,
    }
}

/// The values of partition `p` as node `via` serves them, retried while leaders are elected.
async fn values(client: &Client, topic: &str, p: u32) -> Vec<String> {
    let r = eventually("a fetch to succeed", Duration::from_secs(20), async || {
        client.fetch(fetch(topic, p)).await.ok()
    })
    .await;
    r.records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_route_and_fail_over() {
    let mut c = TestCluster::start(3).await;

    // Every node knows all three.
    for i in 0..3 {
        let info = c.client(i).cluster_info().await.expect("cluster info");
        assert_eq!(info.nodes.len(), 3, "node {i} sees {:?}", info.nodes);
    }

    // A topic created through the last node: replication factor 3 by default, leaders spread.
    let t = c
        .client(2)
        .create_topic(TopicSpec {
            name: "orders".into(),
            partitions: Some(3),
            replication_factor: None,
        })
        .await
        .expect("create");
    assert_eq!(t.replication_factor, 3);
    for p in &t.partitions {
        let mut r = p.replicas.clone();
        r.sort();
        r.dedup();
        assert_eq!(r.len(), 3, "replicas on distinct nodes: {:?}", p.replicas);
    }
    let too_many = c
        .client(0)
        .create_topic(TopicSpec {
            name: "wide".into(),
            partitions: Some(1),
            replication_factor: Some(4),
        })
        .await;
    assert_eq!(
        too_many.map_err(|e| e.code),
        Err(daftka_protocol::ErrorCode::InvalidRequest)
    );

    // Produce through each node into partition 0; all acknowledged, contiguous.
    let mut acked: Vec<RecordPosition> = Vec::new();
    for i in 0..3 {
        let pos = c
            .client(i)
            .produce("orders", records(i * 10, 10, 0))
            .await
            .unwrap_or_else(|e| panic!("produce through node {i}: {e}"));
        acked.extend(pos);
    }
    let offsets: Vec<u64> = acked.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (0..30).collect::<Vec<u64>>());
    // Fetch through each node: the same 30 records in order.
    let expected: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    for i in 0..3 {
        assert_eq!(
            values(&c.client(i), "orders", 0).await,
            expected,
            "via node {i}"
        );
    }

    // Stop the node leading partition 0: the others elect a leader and keep serving.
    let leader = c
        .client(0)
        .describe_topic("orders")
        .await
        .expect("describe")
        .partitions[0]
        .leader
        .clone()
        .expect("partition 0 has a leader");
    let dead = c
        .members
        .iter()
        .position(|m| m.name == leader)
        .expect("leader is a member");
    c.stop(dead).await;
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let via = c.client(alive[0]);
    let more = eventually(
        "produce after the leader died",
        Duration::from_secs(30),
        async || via.produce("orders", records(30, 10, 0)).await.ok(),
    )
    .await;
    assert_eq!(
        more[0].offset, 30,
        "no acknowledged record was lost or overwritten"
    );
    let expected: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&c.client(alive[1]), "orders", 0).await, expected);

    // Restart it: it catches up and serves the whole log again.
    c.start_member(dead).await;
    c.wait_ready(dead).await;
    c.client(dead)
        .produce("orders", records(40, 10, 0))
        .await
        .expect("produce through the restarted node");
    let expected: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&c.client(dead), "orders", 0).await, expected);

    // Once it caught up, leadership goes back to each partition's preferred (first) replica.
    let client = c.client(dead);
    eventually(
        "leaders back on their preferred replicas",
        Duration::from_secs(20),
        async || {
            let d = client.describe_topic("orders").await.ok()?;
            d.partitions
                .iter()
                .all(|p| p.leader.as_ref() == p.replicas.first())
                .then_some(())
        },
    )
    .await;

    for i in 0..3 {
        c.stop(i).await;
    }
}

/// A replica that was down while the leaders compacted their logs (the metadata group by its
/// snapshot interval, the partition by retention) comes back through snapshots: it installs the
/// leaders' snapshots, then follows the log, and ends at the leader's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_the_compaction_point_installs_snapshots() {
    let mut c = TestCluster::start_with(3, |cfg| {
        cfg.raft.snapshot_entries = 4;
        cfg.topics.retention_time = Duration::from_millis(800);
        cfg.topics.retention_check_interval = Duration::from_millis(40);
    })
    .await;
    let t = c
        .client(0)
        .create_topic(TopicSpec {
            name: "t".into(),
            partitions: Some(1),
            replication_factor: None,
        })
        .await
        .expect("create");
    let leader = t.partitions[0].leader.clone().expect("a leader");
    // Stop a replica that does not lead the partition.
    let down = c
        .members
        .iter()
        .position(|m| m.name != leader)
        .expect("a follower");
    let up: Vec<usize> = (0..3).filter(|i| *i != down).collect();
    c.client(up[0])
        .produce("t", records(0, 10, 0))
        .await
        .expect("produce before the stop");
    c.stop(down).await;

    // While it is down: metadata entries past the snapshot interval, and records it never got
    // that go past retention, so the leader's log no longer has them.
    let via = c.client(up[0]);
    via.produce("t", records(10, 10, 0))
        .await
        .expect("produce while a replica is down");
    for i in 0..3 {
        let name = format!("m{i}");
        via.create_topic(TopicSpec {
            name: name.clone(),
            partitions: Some(1),
            replication_factor: Some(2),
        })
        .await
        .expect("create while a node is down");
        via.delete_topic(&name).await.expect("delete");
    }
    eventually(
        "retention to delete the first records",
        Duration::from_secs(20),
        async || {
            let d = via.describe_topic("t").await.ok()?;
            (d.partitions[0].log_start_offset >= 20).then_some(())
        },
    )
    .await;
    via.produce("t", records(20, 10, 0))
        .await
        .expect("produce after retention");

    c.start_member(down).await;
    c.wait_ready(down).await;
    let node = c.members[down].node.as_ref().expect("running");
    let group = format!("g{}", 1);
    for g in ["g0", group.as_str()] {
        let installed =
            format!("daftka_raft_snapshots_total{{event=\"installed\",group=\"{g}\"}} ");
        eventually(
            "the restarted replica to install a snapshot",
            Duration::from_secs(20),
            async || metric(node, &installed).await.filter(|v| *v >= 1.0),
        )
        .await;
    }
    let hwm = "daftka_high_watermark{partition=\"0\",topic=\"t\"} ";
    eventually(
        "the restarted replica to reach the leader",
        Duration::from_secs(20),
        async || metric(node, hwm).await.filter(|v| *v == 30.0),
    )
    .await;
    for i in 0..3 {
        c.stop(i).await;
    }
}
