//! Another Rust actor system talking to a running Daftka cluster with typed messages.
//!
//! This program depends only on `daftka-protocol` (and tokio): it joins the cluster's
//! ractor_cluster network with the cookie, finds a Router through the pg group Daftka exposes,
//! then creates a topic, produces, fetches, commits a consumer group's offset and reads it back.
//!
//! ```text
//! just cluster            # or start the three nodes of the README by hand
//! cargo run --example remote_client -- 127.0.0.1:7001 s3cret
//! ```
//! Arguments: `SEED COOKIE [CLUSTER] [TIMEOUT_SECS]` (the cluster name defaults to `daftka`, the
//! time to wait for the session and a Router to 20 s). It exits non-zero with the error if any
//! step fails.

use std::error::Error as StdError;
use std::time::Duration;

use daftka_protocol::remote::{connect, RemoteOptions};
use daftka_protocol::{
    ErrorCode, FetchOffset, FetchRequest, ProduceRecord, Record, TopicPartitionOffset, TopicSpec,
};

const TOPIC: &str = "remote-demo";
const GROUP: &str = "remote-demo-readers";

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(seed), Some(cookie)) = (args.first(), args.get(1)) else {
        return Err("usage: remote_client SEED COOKIE [CLUSTER] [TIMEOUT_SECS]".into());
    };
    let mut opts = RemoteOptions::new(seed.clone(), cookie.clone());
    if let Some(cluster) = args.get(2) {
        opts.cluster = cluster.clone();
    }
    opts.timeout = Duration::from_secs(match args.get(3) {
        Some(s) => s.parse()?,
        None => 20,
    });
    let remote = connect(opts).await?;
    let client = remote.client.clone();
    let info = client.cluster_info().await?;
    let names: Vec<&str> = info.nodes.iter().map(|n| n.name.as_str()).collect();
    println!("connected through {seed}: cluster of {names:?}");

    let spec = TopicSpec {
        name: TOPIC.into(),
        partitions: Some(2),
        replication_factor: None,
    };
    match client.create_topic(spec).await {
        Ok(t) => println!(
            "created {} with {} partitions, replication factor {}",
            t.name,
            t.partitions.len(),
            t.replication_factor
        ),
        Err(e) if e.code == ErrorCode::TopicExists => println!("{TOPIC} exists already"),
        Err(e) => return Err(e.into()),
    }

    let records = (0..5)
        .map(|i| ProduceRecord {
            partition: Some(0),
            record: Record::from_value(format!("hello {i}")).with_key(format!("k{i}")),
        })
        .collect();
    let positions = client.produce(TOPIC, records).await?;
    let first = positions.first().ok_or("no positions")?.offset;
    println!(
        "produced 5 records at offsets {first}..{}",
        first + positions.len() as u64
    );

    let fetched = client
        .fetch(FetchRequest {
            topic: TOPIC.into(),
            partition: 0,
            offset: FetchOffset::At(first),
            max_records: 5,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        })
        .await?;
    for r in &fetched.records {
        println!(
            "fetched offset {}: {}",
            r.offset,
            String::from_utf8_lossy(&r.record.value)
        );
    }
    if fetched.records.len() != 5 {
        return Err(format!("expected 5 records, got {}", fetched.records.len()).into());
    }

    client
        .commit_offsets(
            GROUP,
            vec![TopicPartitionOffset {
                topic: TOPIC.into(),
                partition: 0,
                offset: fetched.next_offset,
            }],
        )
        .await?;
    let committed = client.committed_offsets(GROUP).await?;
    for o in &committed.offsets {
        println!(
            "group {GROUP}: {}/{} at {} (lag {})",
            o.topic, o.partition, o.offset, o.lag
        );
    }
    remote.close().await;
    println!("done");
    Ok(())
}
