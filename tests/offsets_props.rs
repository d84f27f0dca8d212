//! Property test of offset assignment on one real node: random plans of concurrent produce
//! requests (explicit partition, key, or neither per record), then a full read-back of every
//! partition. One node serves the whole file; each proptest case uses a fresh topic.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};

use daftka_core::partition::choose_partition;
use daftka_protocol::{
    Client, FetchOffset, FetchRequest, Header, ProduceRecord, Record, RecordPosition, TopicSpec,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

const PARTITIONS: u32 = 3;

/// How one record picks its partition.
#[derive(Debug, Clone)]
enum Target {
    Partition(u32),
    Key(Vec<u8>),
    Neither,
}

/// One record of the plan: its target, and whether it carries a header and a timestamp.
#[derive(Debug, Clone)]
struct PlanRecord {
    target: Target,
    header: bool,
    timestamp_ms: Option<i64>,
}

/// Producers, each a list of requests sent one after another, each a list of records.
type Plan = Vec<Vec<Vec<PlanRecord>>>;

fn plan() -> impl Strategy<Value = Plan> {
    let target = prop_oneof![
        (0..PARTITIONS).prop_map(Target::Partition),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Target::Key),
        Just(Target::Neither),
    ];
    let record = (target, any::<bool>(), prop::option::of(0i64..1 << 40)).prop_map(
        |(target, header, timestamp_ms)| PlanRecord {
            target,
            header,
            timestamp_ms,
        },
    );
    let request = prop::collection::vec(record, 1..20);
    // Up to 4 producers of up to 10 requests: at most 40 requests per case.
    prop::collection::vec(prop::collection::vec(request, 0..=10), 1..=4)
}

/// The record actually sent for plan record `i` of request `r` of producer `p`: its value is a
/// unique id, so a stored record is traced back to exactly one send.
fn build(p: usize, r: usize, i: usize, pr: &PlanRecord) -> ProduceRecord {
    let value = format!("p{p}-r{r:02}-i{i:02}");
    let key = match &pr.target {
        Target::Key(k) => Some(k.clone().into()),
        _ => None,
    };
    let headers = if pr.header {
        vec![Header {
            key: "id".into(),
            value: value.clone().into_bytes().into(),
        }]
    } else {
        Vec::new()
    };
    ProduceRecord {
        partition: match pr.target {
            Target::Partition(n) => Some(n),
            _ => None,
        },
        record: Record {
            key,
            value: value.into_bytes().into(),
            headers,
            timestamp_ms: pr.timestamp_ms,
        },
    }
}

/// Reads a partition from offset 0 to its high watermark: (offset, record) in log order.
async fn read_all(
    client: &Client,
    topic: &str,
    partition: u32,
) -> Result<Vec<(u64, Record)>, TestCaseError> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = client
            .fetch(FetchRequest {
                topic: topic.into(),
                partition,
                offset: FetchOffset::At(offset),
                max_records: 1000,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            })
            .await
            .map_err(|e| TestCaseError::fail(format!("fetch {topic}/{partition}@{offset}: {e}")))?;
        out.extend(r.records.into_iter().map(|s| (s.offset, s.record)));
        prop_assert!(r.next_offset >= offset, "fetch went backwards");
        if r.next_offset >= r.high_watermark {
            break;
        }
        prop_assert!(
            r.next_offset > offset,
            "fetch below the high watermark made no progress"
        );
        offset = r.next_offset;
    }
    Ok(out)
}

/// Runs one plan on a fresh topic and checks every property of the read-back.
async fn check_case(client: &Client, topic: String, plan: Plan) -> Result<(), TestCaseError> {
    client
        .create_topic(TopicSpec {
            name: topic.clone(),
            partitions: Some(PARTITIONS),
            replication_factor: None,
        })
        .await
        .map_err(|e| TestCaseError::fail(format!("create {topic}: {e}")))?;

    // Producers run concurrently; each awaits its request's reply before sending the next.
    let tasks: Vec<_> = plan
        .iter()
        .enumerate()
        .map(|(p, requests)| {
            let client = client.clone();
            let topic = topic.clone();
            let requests: Vec<Vec<ProduceRecord>> = requests
                .iter()
                .enumerate()
                .map(|(r, recs)| {
                    recs.iter()
                        .enumerate()
                        .map(|(i, pr)| build(p, r, i, pr))
                        .collect()
                })
                .collect();
            tokio::spawn(async move {
                let mut acks = Vec::new();
                for (r, records) in requests.into_iter().enumerate() {
                    let positions = client
                        .produce(&topic, records)
                        .await
                        .map_err(|e| format!("producer {p} request {r}: {e}"))?;
                    acks.push(positions);
                }
                Ok::<Vec<Vec<RecordPosition>>, String>(acks)
            })
        })
        .collect();
    let mut acks: Vec<Vec<Vec<RecordPosition>>> = Vec::new();
    for t in futures::future::join_all(tasks).await {
        let a = t
            .map_err(|e| TestCaseError::fail(format!("producer task: {e}")))?
            .map_err(|e| TestCaseError::fail(format!("produce failed on a healthy node: {e}")))?;
        acks.push(a);
    }

    // The read-back: every partition contiguous from 0.
    let mut stored: BTreeMap<(u32, u64), Record> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        for (i, (offset, rec)) in read_all(client, &topic, partition)
            .await?
            .into_iter()
            .enumerate()
        {
            prop_assert_eq!(
                offset,
                i as u64,
                "{}/{}: offsets contiguous from 0",
                topic,
                partition
            );
            stored.insert((partition, offset), rec);
        }
    }
    let values: BTreeSet<&[u8]> = stored.values().map(|r| r.value.as_ref()).collect();
    prop_assert_eq!(values.len(), stored.len(), "a value id is stored twice");

    let mut sent = 0usize;
    for (p, requests) in plan.iter().enumerate() {
        // Per partition, the offsets of this producer's requests in send order.
        let mut last_on: BTreeMap<u32, u64> = BTreeMap::new();
        for (r, recs) in requests.iter().enumerate() {
            let positions = &acks[p][r];
            prop_assert_eq!(positions.len(), recs.len(), "one position per record");
            sent += recs.len();
            let mut keyless_shift: Option<u32> = None;
            let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for (i, (pr, pos)) in recs.iter().zip(positions).enumerate() {
                prop_assert!(pos.partition < PARTITIONS);
                match &pr.target {
                    Target::Partition(n) => {
                        prop_assert_eq!(pos.partition, *n, "explicit partition")
                    }
                    Target::Key(k) => prop_assert_eq!(
                        pos.partition,
                        choose_partition(Some(k), PARTITIONS, 0),
                        "key hash"
                    ),
                    Target::Neither => {
                        // Keyless records of one request round-robin from one start.
                        let shift =
                            (pos.partition + PARTITIONS - (i as u32 % PARTITIONS)) % PARTITIONS;
                        prop_assert_eq!(
                            *keyless_shift.get_or_insert(shift),
                            shift,
                            "keyless spread"
                        );
                    }
                }
                let want = build(p, r, i, pr).record;
                let got = stored.get(&(pos.partition, pos.offset));
                prop_assert!(got.is_some(), "acknowledged {:?} is not stored", pos);
                let got = got.cloned().unwrap_or_else(|| want.clone());
                prop_assert_eq!(&got.value, &want.value, "wrong record at {:?}", pos);
                prop_assert_eq!(&got.key, &want.key);
                prop_assert_eq!(&got.headers, &want.headers);
                match want.timestamp_ms {
                    Some(ts) => prop_assert_eq!(got.timestamp_ms, Some(ts), "timestamp kept"),
                    None => prop_assert!(got.timestamp_ms.is_some(), "leader sets the timestamp"),
                }
                per_partition
                    .entry(pos.partition)
                    .or_default()
                    .push(pos.offset);
            }
            for (partition, offsets) in per_partition {
                // One request's records on one partition: contiguous, in request order.
                for w in offsets.windows(2) {
                    prop_assert_eq!(w[1], w[0] + 1, "request {}/{} split on {}", p, r, partition);
                }
                let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
                if let Some(prev) = last_on.insert(partition, last) {
                    prop_assert!(
                        prev < first,
                        "producer {} request {} on {} stored before its earlier request",
                        p,
                        r,
                        partition
                    );
                }
            }
        }
    }
    prop_assert_eq!(stored.len(), sent, "stored count equals records sent");
    client
        .delete_topic(&topic)
        .await
        .map_err(|e| TestCaseError::fail(format!("delete {topic}: {e}")))?;
    Ok(())
}

// Concurrent producers on a healthy node: offsets contiguous from 0 and never reused, each
// acknowledged position holds exactly its record, requests stay contiguous and ordered per producer.
#[test]
fn concurrent_produces_get_contiguous_ordered_offsets() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let t = rt.block_on(support::TestNode::start("offprops"));
    let client = t.node.client.clone();
    let case = AtomicU32::new(0);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        // Each shrink step is a real run on a new topic: keep shrinking short.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    });
    let result = runner.run(&plan(), |plan| {
        let topic = format!("t{}", case.fetch_add(1, Ordering::Relaxed));
        rt.block_on(check_case(&client, topic, plan))
    });
    let support::TestNode { node, dir } = t;
    rt.block_on(node.shutdown());
    drop(dir);
    if let Err(e) = result {
        panic!("{e}");
    }
}
