//! Altering a topic on a three-node in-process cluster (real fjall, real ractor_cluster sessions):
//! its partitions grow while a three-member consumer group reads it (the new partitions get
//! owners, every produced record is consumed); then retention by size on a one-node cluster:
//! past the topic's `retention_bytes` the log start moves, a fetch below it is 416 with the
//! bounds, and the store stops growing.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use daftka_protocol::{Client, ErrorCode, ProduceRecord, Record, TopicAlter, TopicSpec};
use support::cluster::{create_topic, TestCluster};
use support::group::{member, GroupReads};
use support::{eventually, metric, start_node, test_config, unique_name};

const WAIT: Duration = Duration::from_secs(60);

fn keyed(from: usize, n: usize) -> Vec<ProduceRecord> {
    (from..from + n)
        .map(|i| ProduceRecord {
            partition: None,
            record: Record::from_value(format!("v{i}")).with_key(format!("k{}", i % 61)),
        })
        .collect()
}

async fn produce(client: &Client, records: Vec<ProduceRecord>) {
    eventually("a produce to succeed", WAIT, async || {
        client.produce("orders", records.clone()).await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_grow_while_a_group_consumes() {
    let c = TestCluster::start_with(3, |cfg| {
        cfg.groups.session_timeout_min = Duration::from_millis(500);
    })
    .await;
    let client = c.client(0);
    create_topic(&client, "orders", 3, 3).await;
    let reads = GroupReads::default();
    let members: Vec<_> = (0..3)
        .map(|i| member(c.client(i), "readers", "orders", reads.clone()))
        .collect();
    for chunk in 0..10 {
        produce(&client, keyed(chunk * 30, 30)).await;
    }

    // Grow to 6 partitions (through another node), with a retention of the topic's own.
    let grown = c
        .client(1)
        .alter_topic(
            "orders",
            TopicAlter {
                partitions: Some(6),
                retention_time_ms: Some(Some(7 * 24 * 3_600_000)),
                retention_bytes: None,
            },
        )
        .await
        .expect("alter");
    assert_eq!(grown.partitions.len(), 6);
    assert_eq!(grown.retention_time_ms, Some(7 * 24 * 3_600_000));
    assert!(grown.partitions.iter().all(|p| p.replicas.len() == 3));
    let shrink = client
        .alter_topic(
            "orders",
            TopicAlter {
                partitions: Some(2),
                ..TopicAlter::default()
            },
        )
        .await
        .expect_err("partitions only grow");
    assert_eq!(shrink.code, ErrorCode::InvalidRequest);

    for chunk in 10..20 {
        produce(&client, keyed(chunk * 30, 30)).await;
    }
    let d = client.describe_topic("orders").await.expect("describe");
    assert!(
        d.partitions[3..].iter().all(|p| p.high_watermark > 0),
        "keys reach the new partitions: {d:?}"
    );
    let all: Vec<String> = (0..600).map(|i| format!("v{i}")).collect();
    eventually("the group to consume every record", WAIT, async || {
        reads.has_all(all.iter()).then_some(())
    })
    .await;
    reads.stop.store(true, Ordering::Relaxed);
    let mut owned = BTreeSet::new();
    for m in members {
        owned.extend(m.await.expect("member"));
    }
    assert_eq!(
        owned,
        (0..6).collect::<BTreeSet<u32>>(),
        "every partition, new ones included, had an owner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_bounds_the_log_and_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&unique_name("retain"), dir.path());
    config.topics.retention_check_interval = Duration::from_millis(100);
    let node = start_node(config).await;
    let client = Client::local(&node.name);
    client
        .create_topic(TopicSpec {
            name: "orders".into(),
            partitions: Some(1),
            replication_factor: None,
        })
        .await
        .expect("create");
    const KEEP: u64 = 1 << 20;
    const RECORD: u64 = 16 << 10;
    const PER_ROUND: u64 = 32;
    const ROUNDS: u64 = 512;
    client
        .alter_topic(
            "orders",
            TopicAlter {
                retention_bytes: Some(Some(KEEP)),
                ..TopicAlter::default()
            },
        )
        .await
        .expect("set retention_bytes");
    let value = "x".repeat(RECORD as usize);
    let http = reqwest::Client::new();
    let storage_bytes = async || metric(&node, "daftka_storage_bytes ").await;
    // 256 MiB through a topic that keeps 1 MiB: four times fjall's 64 MiB journal, so what the
    // store holds once deleted data is compacted away is far below what went through.
    for r in 0..ROUNDS {
        let records = (0..PER_ROUND)
            .map(|_| ProduceRecord {
                partition: Some(0),
                record: Record::from_value(value.clone()),
            })
            .collect();
        client.produce("orders", records).await.expect("produce");
        if r % 64 == 63 {
            // The log start follows: what stays is about KEEP (at most a batch more).
            let d = eventually("retention to cut the log", WAIT, async || {
                let d = client.describe_topic("orders").await.ok()?;
                let p = &d.partitions[0];
                let kept = (p.high_watermark - p.log_start_offset) * RECORD;
                (p.log_start_offset > 0 && kept <= KEEP + PER_ROUND * RECORD).then_some(d)
            })
            .await;
            let p = &d.partitions[0];
            let url = format!(
                "http://{}/v1/topics/orders/partitions/0/records?offset=0",
                node.http_addr
            );
            let answer = http.get(&url).send().await.expect("fetch");
            assert_eq!(answer.status().as_u16(), 416);
            let body: serde_json::Value = answer.json().await.expect("json");
            assert_eq!(body["error"]["code"], "offset_out_of_range");
            assert!(
                body["error"]["log_start_offset"].as_u64() >= Some(p.log_start_offset),
                "{body}"
            );
        }
    }
    let written = (ROUNDS * PER_ROUND * RECORD) as f64;
    let bounded = eventually("the store to stay bounded", WAIT, async || {
        let now = storage_bytes().await?;
        (now < written / 2.0).then_some(now)
    })
    .await;
    eprintln!("wrote {written} bytes; the store holds {bounded}");
    node.shutdown().await;
}
