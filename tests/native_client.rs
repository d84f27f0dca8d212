//! The native client against a real in-process node: every operation, typed errors, the request
//! limits on the native path, and a client that keeps working across a Router restart.

mod support;

use std::time::Duration;

use daftka_protocol::{
    names, Client, ErrorCode, FetchOffset, FetchRequest, ProduceRecord, Record,
    TopicPartitionOffset, TopicSpec,
};

fn fetch_all(partition: u32) -> FetchRequest {
    FetchRequest {
        topic: "orders".into(),
        partition,
        offset: FetchOffset::Earliest,
        max_records: 1000,
        max_bytes: 1 << 20,
        max_wait_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_does_everything_and_survives_a_router_restart() {
    let t = support::TestNode::start("native").await;
    let client = Client::local(&t.node.name);
    let spec = TopicSpec {
        name: "orders".into(),
        partitions: Some(2),
        replication_factor: None,
    };
    let created = client.create_topic(spec.clone()).await.expect("create");
    assert_eq!(created.partitions.len(), 2);
    assert_eq!(
        client.create_topic(spec).await.map_err(|e| e.code),
        Err(ErrorCode::TopicExists)
    );
    let records: Vec<ProduceRecord> = (0..10)
        .map(|i| ProduceRecord {
            partition: Some(i % 2),
            record: Record::from_value(format!("v{i}")).with_key(format!("k{i}")),
        })
        .collect();
    let positions = client.produce("orders", records).await.expect("produce");
    let expected: Vec<(u32, u64)> = (0..10u32).map(|i| (i % 2, u64::from(i / 2))).collect();
    let got: Vec<(u32, u64)> = positions.iter().map(|p| (p.partition, p.offset)).collect();
    assert_eq!(
        got, expected,
        "positions in request order, contiguous per partition"
    );
    let fetched = client.fetch(fetch_all(1)).await.expect("fetch");
    let values: Vec<&[u8]> = fetched
        .records
        .iter()
        .map(|r| &r.record.value[..])
        .collect();
    assert_eq!(values, vec![&b"v1"[..], b"v3", b"v5", b"v7", b"v9"]);
    assert_eq!(fetched.high_watermark, 5);
    assert!(fetched
        .records
        .iter()
        .all(|r| r.record.timestamp_ms.is_some()));

    // Typed errors, and the limits hold on the native path too.
    let unknown = client.produce(
        "nope",
        vec![ProduceRecord {
            partition: None,
            record: Record::from_value("x"),
        }],
    );
    assert_eq!(
        unknown.await.map_err(|e| e.code),
        Err(ErrorCode::UnknownTopic)
    );
    let too_big = ProduceRecord {
        partition: None,
        record: Record::from_value(vec![0u8; (1 << 20) + 1]),
    };
    assert_eq!(
        client
            .produce("orders", vec![too_big])
            .await
            .map_err(|e| e.code),
        Err(ErrorCode::PayloadTooLarge)
    );
    let out_of_range = FetchRequest {
        offset: FetchOffset::At(99),
        ..fetch_all(0)
    };
    let e = client.fetch(out_of_range).await.expect_err("out of range");
    assert_eq!(
        (e.code, e.high_watermark),
        (ErrorCode::OffsetOutOfRange, Some(5))
    );

    client
        .commit_offsets(
            "g",
            vec![TopicPartitionOffset {
                topic: "orders".into(),
                partition: 0,
                offset: 3,
            }],
        )
        .await
        .expect("commit");
    let committed = client.committed_offsets("g").await.expect("committed");
    assert_eq!(committed.offsets.len(), 1);
    assert_eq!(
        (committed.offsets[0].offset, committed.offsets[0].lag),
        (3, 2)
    );

    // Kill the Router: the same client finds its successor by name.
    let router = ractor::registry::where_is(names::router(&t.node.name)).expect("router runs");
    let old_id = router.get_id();
    router.kill();
    support::eventually("a new router", Duration::from_secs(10), async || {
        ractor::registry::where_is(names::router(&t.node.name)).filter(|c| c.get_id() != old_id)
    })
    .await;
    let listed = client
        .list_topics()
        .await
        .expect("list after router restart");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].partitions[1].high_watermark, 5);

    client.delete_topic("orders").await.expect("delete");
    assert_eq!(
        client.describe_topic("orders").await.map_err(|e| e.code),
        Err(ErrorCode::UnknownTopic)
    );
    let info = client.cluster_info().await.expect("cluster info");
    assert_eq!(info.metadata_leader.as_deref(), Some(t.node.name.as_str()));
}
