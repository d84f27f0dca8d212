//! The native Rust client, end to end: starts a one-node Daftka cluster inside this process, then
//! drives it through `daftka_protocol::Client` (typed messages to the node's Router actor, no HTTP).
//!
//! Run it with `cargo run --example native_client`. The node listens on loopback port 0 (HTTP and
//! metrics) and keeps its data in a fresh directory under the system temp dir, removed at the end.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daftka_core::config::Config;
use daftka_protocol::{
    Client, FetchOffset, FetchRequest, Header, ProduceRecord, Record, TopicPartitionOffset,
    TopicSpec,
};

/// How long the node may take to replay its metadata log and recover its replicas.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    // A node name unique to this run: ractor's registry is process-global and names carry it.
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let name = format!("example{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("daftka-native-client-{stamp}-{name}"));

    let mut config = Config::default();
    config.node.name = name.clone();
    config.node.data_dir = dir.clone();
    config.node.http_addr = "127.0.0.1:0".into();
    config.node.metrics_addr = "127.0.0.1:0".into();
    config.node.cluster_addr = "127.0.0.1:0".into();

    // Binding is separate from starting: port 0 is resolved here and reported on `node`.
    let listeners = daftka_node::Listeners::bind(&config)?;
    let node = daftka_node::start(config, listeners).await?;
    node.wait_ready(READY_TIMEOUT).await?;
    println!(
        "node {} ready: HTTP on {}, metrics on {}, data in {}",
        node.name,
        node.http_addr,
        node.metrics_addr,
        dir.display()
    );

    // `node.client` is a typed client of this node's Router; any code in the same process can get
    // one with `Client::connect_local(&name)`.
    let client: Client = Client::connect_local(&node.name)?;
    let result = demo(&client).await;

    node.shutdown().await;
    println!("node stopped");
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn demo(client: &Client) -> Result<(), Box<dyn StdError>> {
    let topic = "orders";

    let created = client
        .create_topic(TopicSpec {
            name: topic.into(),
            partitions: Some(2),
            replication_factor: None,
        })
        .await?;
    println!(
        "created topic {} with {} partitions (replication factor {})",
        created.name,
        created.partitions.len(),
        created.replication_factor
    );

    // Records with a key land on the partition the key hashes to (FNV-1a), so one key keeps its
    // order; `partition: Some(p)` pins a record; keyless records are spread.
    let mut records = Vec::new();
    for (key, value) in [
        ("user-1", "login"),
        ("user-2", "login"),
        ("user-1", "add to cart"),
        ("user-1", "checkout"),
    ] {
        let mut record = Record::from_value(value).with_key(key);
        record.headers.push(Header {
            key: "source".into(),
            value: "native_client".into(),
        });
        records.push(ProduceRecord {
            partition: None,
            record,
        });
    }
    // The reply comes once every record is committed, fsynced and has its offset.
    let positions = client.produce(topic, records).await?;
    for p in &positions {
        println!("produced -> partition {} offset {}", p.partition, p.offset);
    }

    // Read back every partition from the start.
    let description = client.describe_topic(topic).await?;
    for partition in &description.partitions {
        let fetched = client
            .fetch(FetchRequest {
                topic: topic.into(),
                partition: partition.partition,
                offset: FetchOffset::Earliest,
                max_records: 100,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            })
            .await?;
        for r in &fetched.records {
            println!(
                "fetched partition {} offset {}: key={:?} value={:?} headers={}",
                partition.partition,
                r.offset,
                r.record
                    .key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(&r.record.value),
                r.record.headers.len()
            );
        }

        // Commit the consumer group's position: the next offset it will read.
        client
            .commit_offsets(
                "billing",
                vec![TopicPartitionOffset {
                    topic: topic.into(),
                    partition: partition.partition,
                    offset: fetched.next_offset,
                }],
            )
            .await?;
    }

    // A long poll at the high watermark returns empty when nothing arrives within its wait.
    let waited = client
        .fetch(FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset: FetchOffset::Latest,
            max_records: 100,
            max_bytes: 1 << 20,
            max_wait_ms: 200,
        })
        .await?;
    println!(
        "long poll at the high watermark ({}) returned {} records after its 200 ms wait",
        waited.high_watermark,
        waited.records.len()
    );

    let committed = client.committed_offsets("billing").await?;
    for o in &committed.offsets {
        println!(
            "group {} committed {}/{} at {} (high watermark {}, lag {})",
            committed.group, o.topic, o.partition, o.offset, o.high_watermark, o.lag
        );
    }

    for t in client.list_topics().await? {
        let hwms: Vec<u64> = t.partitions.iter().map(|p| p.high_watermark).collect();
        println!("topic {}: high watermarks {:?}", t.name, hwms);
    }
    let described = client.describe_topic(topic).await?;
    for p in &described.partitions {
        println!(
            "partition {}: leader {:?}, replicas {:?}, offsets [{}, {})",
            p.partition, p.leader, p.replicas, p.log_start_offset, p.high_watermark
        );
    }

    // Expected failures are values with a stable code; `retryable()` says whether to try again.
    match client.describe_topic("no-such-topic").await {
        Ok(_) => println!("unexpected: no-such-topic exists"),
        Err(e) => println!(
            "describe no-such-topic -> {} (retryable: {})",
            e.code,
            e.retryable()
        ),
    }

    client.delete_topic(topic).await?;
    println!(
        "deleted {topic}; topics left: {}",
        client.list_topics().await?.len()
    );
    Ok(())
}
