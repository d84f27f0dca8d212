//! Draining a node on a four-node in-process cluster (real fjall, real sessions) while a producer
//! writes: over HTTP (`POST /v1/cluster/nodes/{n}/drain`) the node goes `draining`, its replicas
//! move to the other nodes through Raft membership changes (leadership leaves it first), and it
//! ends `drained` with no replica and no leadership; every acknowledged record is still there. A
//! drain that would leave partitions below their factor is refused with the partitions named; an
//! unknown node is 404; undrain takes the node back.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daftka_protocol::{ErrorCode, FetchOffset, FetchRequest, NodeInfo, ProduceRecord, Record};
use serde_json::Value;
use support::cluster::{create_topic, TestCluster};
use support::{eventually, metric};

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_ends_with_no_replica_and_nothing_is_lost() {
    let c = TestCluster::start_with(4, |cfg| {
        cfg.rebalance.check_interval = Duration::from_millis(200);
    })
    .await;
    let names = c.names();
    let client = c.client(0);
    create_topic(&client, "orders", PARTITIONS, 3).await;

    // A producer through node 0 the whole time; it keeps the values that were acknowledged.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("v{i}");
                let record = ProduceRecord {
                    partition: None,
                    record: Record::from_value(value.clone()).with_key(format!("k{}", i % 13)),
                };
                if client.produce("orders", vec![record]).await.is_ok() {
                    acked.lock().expect("lock").push(value);
                }
                i += 1;
            }
        })
    };
    eventually("some records acknowledged", WAIT, async || {
        (acked.lock().expect("lock").len() >= 50).then_some(())
    })
    .await;

    // Drain node 3 over HTTP.
    let http = reqwest::Client::new();
    let node0 = c.members[0].node.as_ref().expect("running");
    let url = format!(
        "http://{}/v1/cluster/nodes/{}/drain",
        node0.http_addr, names[3]
    );
    let r = http.post(&url).send().await.expect("drain");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["name"], names[3].as_str());
    assert!(
        body["state"] == "draining" || body["state"] == "drained",
        "{body}"
    );
    let drained: NodeInfo = eventually("node 3 to be drained", WAIT, async || {
        let info = client.cluster_info().await.ok()?;
        info.nodes
            .into_iter()
            .find(|n| n.name == names[3] && n.state == "drained")
    })
    .await;
    assert_eq!((drained.replicas, drained.leaders), (0, 0));
    let described = client.describe_topic("orders").await.expect("describe");
    for p in &described.partitions {
        assert_eq!(p.replicas.len(), 3, "{p:?}");
        assert!(!p.replicas.contains(&names[3]), "{p:?}");
        assert_ne!(p.leader.as_deref(), Some(names[3].as_str()), "{p:?}");
    }
    let more = acked.lock().expect("lock").len() + 50;
    eventually("the producer to go on", WAIT, async || {
        (acked.lock().expect("lock").len() >= more).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    producer.await.expect("producer");

    // Every acknowledged value is there.
    let mut stored = BTreeSet::new();
    for p in 0..PARTITIONS {
        let r = eventually("a fetch", WAIT, async || {
            client
                .fetch(FetchRequest {
                    topic: "orders".into(),
                    partition: p,
                    offset: FetchOffset::Earliest,
                    max_records: 1_000_000,
                    max_bytes: 256 << 20,
                    max_wait_ms: 0,
                })
                .await
                .ok()
        })
        .await;
        stored.extend(
            r.records
                .iter()
                .map(|x| String::from_utf8_lossy(&x.record.value).into_owned()),
        );
    }
    let acked = acked.lock().expect("lock").clone();
    let lost: Vec<&String> = acked.iter().filter(|v| !stored.contains(*v)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged values lost: {lost:?}",
        lost.len()
    );

    // With node 3 drained, every partition is on nodes 0-2: draining one more would leave them
    // below their factor for good.
    let refused = client
        .drain_node(&names[2], true)
        .await
        .expect_err("no node left to take the replicas");
    assert_eq!(refused.code, ErrorCode::NotEnoughNodes);
    assert!(refused.message.contains("orders/0"), "{}", refused.message);
    let unknown = client
        .drain_node("nobody", true)
        .await
        .expect_err("unknown node");
    assert_eq!(unknown.code, ErrorCode::UnknownNode);

    // Undrain: the node is active again (and may receive replicas).
    let back = client.drain_node(&names[3], false).await.expect("undrain");
    assert_eq!(back.state, "active");
    assert!(client.drain_node(&names[2], true).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_reassigned_by_hand_moves_and_keeps_its_records() {
    // The catch-up is throttled to 128 KiB/s (in appends of at most 16 KiB): copying the
    // partition's ~400 KB (100 entries) takes seconds, long enough to see the move's phase and
    // bytes, and the new replica as a learner.
    let c = TestCluster::start_with(4, |cfg| {
        cfg.rebalance.move_bytes_per_sec = 128 << 10;
        cfg.raft.max_size_per_msg = 16 << 10;
    })
    .await;
    let names = c.names();
    let client = c.client(1);
    // One partition of three replicas on four nodes: balanced before and after the move (the
    // Rebalancer has no reason to move it again).
    create_topic(&client, "orders", 1, 3).await;
    let pad = "p".repeat(4000);
    let records: Vec<ProduceRecord> = (0..100)
        .map(|i| ProduceRecord {
            partition: Some(0),
            record: Record::from_value(format!("v{i}")).with_key(pad.clone()),
        })
        .collect();
    // One request per record: a log of 100 entries, more than a learner may lag behind
    // (`rebalance.catch_up_entries`, 64) and still count as caught up.
    for r in &records {
        eventually("a produce", WAIT, async || {
            client.produce("orders", vec![r.clone()]).await.ok()
        })
        .await;
    }
    // Each replica's state as the leader sees it: one leader, two followers.
    let before = eventually(
        "every replica to be in the leader's view",
        WAIT,
        async || {
            let d = client.describe_topic("orders").await.ok()?;
            let mut states: Vec<&str> = d.partitions[0]
                .replica_states
                .iter()
                .map(|r| r.state.as_str())
                .collect();
            states.sort_unstable();
            (states == ["follower", "follower", "leader"]).then_some(d.clone())
        },
    )
    .await;
    let now = before.partitions[0].replicas.clone();
    // The node without a replica leads the new list; the old first replica leaves.
    let outsider = names
        .iter()
        .find(|n| !now.contains(n))
        .expect("4 nodes, 3 replicas")
        .clone();
    let to = vec![outsider.clone(), now[1].clone(), now[2].clone()];

    // Bad input first: nothing starts.
    for (bad, why) in [
        (vec![now[1].clone(), now[1].clone()], "a node twice"),
        (vec!["nobody".to_string()], "an unknown node"),
        (vec![], "no replica"),
        (names.clone(), "more than the factor"),
        (now.clone(), "the same replicas"),
    ] {
        let e = client.reassign("orders", 0, bad).await.expect_err(why);
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{why}: {e}");
    }
    let missing = client
        .reassign("nothing", 0, to.clone())
        .await
        .expect_err("unknown topic");
    assert_eq!(missing.code, ErrorCode::UnknownTopic);

    let started = client
        .reassign("orders", 0, to.clone())
        .await
        .expect("reassign");
    assert_eq!(
        (started.from.clone(), started.to.clone()),
        (now.clone(), to.clone())
    );
    // While it copies: the leader reports the phase and the bytes, the new replica is a learner.
    let seen = eventually("the move's catch-up to show", WAIT, async || {
        let moves = client.reassignments().await.ok()?;
        let m = moves.first()?;
        let d = client.describe_topic("orders").await.ok()?;
        let learner = d.partitions[0]
            .replica_states
            .iter()
            .any(|r| r.node == outsider && r.state == "learner");
        (m.phase.as_deref() == Some("catching_up") && m.bytes_copied > 0 && learner)
            .then(|| m.clone())
    })
    .await;
    assert!(
        seen.bytes_total >= 100 * 4000 && seen.bytes_copied <= seen.bytes_total + (64 << 10),
        "{seen:?}"
    );
    eventually("the move to finish", WAIT, async || {
        let d = client.describe_topic("orders").await.ok()?;
        let p = &d.partitions[0];
        let moves = client.reassignments().await.ok()?;
        (p.replicas == to && p.moving_to.is_empty() && moves.is_empty()).then_some(())
    })
    .await;
    let r = eventually("a fetch", WAIT, async || {
        client
            .fetch(FetchRequest {
                topic: "orders".into(),
                partition: 0,
                offset: FetchOffset::Earliest,
                max_records: 1_000,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            })
            .await
            .ok()
    })
    .await;
    let values: Vec<String> = r
        .records
        .iter()
        .map(|x| String::from_utf8_lossy(&x.record.value).into_owned())
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_eq!(values, want);
    // The leaders counted what they sent to the new replica while it was a learner (at least
    // what the move showed; the last `catch_up_entries` follow once it is a voter).
    let mut sent = 0.0;
    for m in &c.members {
        let node = m.node.as_ref().expect("running");
        sent += metric(node, "daftka_move_bytes_total ")
            .await
            .unwrap_or(0.0);
    }
    assert!(
        sent >= seen.bytes_copied as f64,
        "daftka_move_bytes_total: {sent}, {seen:?}"
    );
}
