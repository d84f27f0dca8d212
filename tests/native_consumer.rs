//! The native [`Consumer`] against a real in-process node: the record stream, acknowledgements and
//! commits, position and seek, a second member taking half the partitions (the first stops
//! delivering them before it gives them up), and close.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use daftka_protocol::{
    Client, Consumer, ConsumerConfig, ErrorCode, ProduceRecord, Record, TopicSpec,
};
use futures::StreamExt;
use support::{eventually, start_node, test_config, unique_name};

const WAIT: Duration = Duration::from_secs(20);

fn config() -> ConsumerConfig {
    let mut c = ConsumerConfig::new("native", ["orders"]);
    c.session_timeout = Some(Duration::from_secs(2));
    c.fetch_wait = Duration::from_millis(100);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_streams_acks_commits_seeks_and_shares() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node_config = test_config(&unique_name("consumer"), dir.path());
    node_config.groups.session_timeout_min = Duration::from_millis(500);
    let node = start_node(node_config).await;
    let client = Client::local(&node.name);
    client
        .create_topic(TopicSpec {
            name: "orders".into(),
            partitions: Some(2),
            replication_factor: None,
        })
        .await
        .expect("create");
    let records: Vec<ProduceRecord> = (0..10)
        .map(|i| ProduceRecord {
            partition: Some(i % 2),
            record: Record::from_value(format!("v{i}")),
        })
        .collect();
    client.produce("orders", records).await.expect("produce");

    let a = Consumer::join(client.clone(), config())
        .await
        .expect("join");
    assert_eq!(a.assignment().len(), 2);
    assert_eq!(a.generation(), 1);
    let mut got = Vec::new();
    {
        let mut stream = Box::pin(a.stream());
        while got.len() < 10 {
            let r = stream.next().await.expect("a record").expect("no error");
            got.push((r.partition, r.offset, r.record.value.to_vec()));
            if r.partition == 0 && r.offset < 3 {
                a.ack(&r);
            }
        }
    }
    got.sort();
    let expected: Vec<(u32, u64, Vec<u8>)> = (0..10u32)
        .map(|i| (i % 2, u64::from(i / 2), format!("v{i}").into_bytes()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(got, expected);
    assert_eq!(a.position("orders", 0), Some(5));
    a.commit().await.expect("commit");
    let d = client.describe_group("native").await.expect("describe");
    let p0 = d.partitions.iter().find(|p| p.partition == 0).expect("p0");
    assert_eq!((p0.committed, p0.lag), (Some(3), 2));
    // Seek back: the same records come again, from the node.
    a.seek("orders", 0, 1).expect("seek");
    let again = a.next_record().await.expect("a record");
    assert_eq!((again.partition, again.offset), (0, 1));
    assert_eq!(a.position("orders", 0), Some(2));
    assert_eq!(
        a.seek("orders", 7, 0).map_err(|e| e.code),
        Err(ErrorCode::NotAssigned)
    );

    // A second member: each ends up with one partition, never both with the same one.
    let b = Consumer::join(client.clone(), config())
        .await
        .expect("join b");
    eventually("the partitions to be shared", WAIT, async || {
        // The first member only hands out on its heartbeat, then the second picks up.
        let (x, y) = (a.assignment(), b.assignment());
        let overlap = x.iter().any(|tp| y.contains(tp));
        assert!(!overlap, "{x:?} and {y:?} overlap");
        (x.len() == 1 && y.len() == 1).then_some(())
    })
    .await;
    // b starts at the group's commit of its partition.
    let (topic, p) = b.assignment()[0].clone();
    let first = b.next_record().await.expect("b reads");
    assert_eq!((first.topic.as_str(), first.partition), (topic.as_str(), p));
    let committed = if p == 0 { 3 } else { 0 };
    assert_eq!(first.offset, committed);

    b.close().await.expect("close b");
    a.close().await.expect("close a");
    let d = client.describe_group("native").await.expect("describe");
    assert_eq!(d.state, "empty", "{d:?}");
    node.shutdown().await;
}
