//! Chaos on one node: while producers run, kill the Raft, Storage and Server actors of replicas,
//! whole replica supervisors, the Partitions supervisor, the Router and the Metadata actor, many
//! times at random (the seed is printed first). Supervisors restore service; producers
//! see only retryable errors; and a checker finds every acknowledged record exactly once, at its
//! acknowledged offset, in order, with nothing that was never sent.

mod support;

use support::history::{History, StoredLog};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daftka_node::readiness::Readiness;
use daftka_protocol::{
    names, Client, ErrorCode, FetchOffset, FetchRequest, GroupId, ProduceRecord, Record, TopicSpec,
};
use rand::{Rng, SeedableRng};

const PARTITIONS: u32 = 3;
const PRODUCERS: u64 = 3;
const KILLS: usize = 60;
const BATCH: u64 = 10;

/// Produces batches of unique values until `stop`; only retryable errors are tolerated. After a
/// failure it waits until the node serves again (its Router registered, `/readyz` flags up).
async fn producer(
    client: Client,
    node: (String, Readiness),
    id: u64,
    history: Arc<Mutex<History>>,
    acks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (partition, values) = history
            .lock()
            .expect("history lock")
            .next_batch(id, &mut seq, BATCH, PARTITIONS);
        let records = values
            .iter()
            .map(|v| ProduceRecord {
                partition: Some(partition),
                record: Record::from_value(v.clone().into_bytes()),
            })
            .collect();
        match client.produce("chaos", records).await {
            Ok(positions) => {
                let mut h = history.lock().expect("history lock");
                for (v, p) in values.iter().zip(positions) {
                    assert_eq!(p.partition, partition);
                    h.acked.insert(v.clone(), (p.partition, p.offset));
                }
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                assert!(e.retryable(), "producer saw a non-retryable error: {e}");
                if e.code == ErrorCode::Timeout {
                    history
                        .lock()
                        .expect("history lock")
                        .unknown
                        .extend(values.iter().cloned());
                }
                let (name, readiness) = &node;
                let router = names::router(name);
                support::eventually(
                    "the node to serve again",
                    Duration::from_secs(30),
                    async || {
                        (names::find(&router).is_some() && readiness.check().is_ok()).then_some(())
                    },
                )
                .await;
            }
        }
    }
}

/// The registered names a chaos kill may target.
fn targets(node: &str, groups: &[GroupId]) -> Vec<String> {
    let mut t = vec![
        names::router(node),
        names::metadata(node),
        names::partitions(node),
    ];
    for g in groups {
        t.push(names::replica_sup(node, *g));
        t.push(names::replica_raft(node, *g));
        t.push(names::replica_reader(node, *g));
        t.push(names::replica_server(node, *g));
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_actors_loses_no_acknowledged_record() {
    let seed: u64 = rand::thread_rng().gen();
    eprintln!("chaos seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let t = support::TestNode::start("chaos").await;
    let node = &t.node;
    let client = Client::local(&node.name);
    client
        .create_topic(TopicSpec {
            name: "chaos".into(),
            partitions: Some(PARTITIONS),
            replication_factor: None,
        })
        .await
        .expect("create topic");
    let groups: Vec<GroupId> = (1..=u64::from(PARTITIONS)).map(GroupId).collect();

    let history = Arc::new(Mutex::new(History::default()));
    let acks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            tokio::spawn(producer(
                client.clone(),
                (node.name.clone(), node.readiness().clone()),
                id,
                history.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let targets = targets(&node.name, &groups);
    for kill in 0..KILLS {
        let name = &targets[rng.gen_range(0..targets.len())];
        let cell = support::eventually(
            &format!("{name} to run (kill {kill}, seed {seed})"),
            Duration::from_secs(20),
            async || ractor::registry::where_is(name.clone()),
        )
        .await;
        let before = acks.load(Ordering::Relaxed);
        eprintln!("kill {kill}: {name}");
        cell.kill();
        // Service is restored when some producer is acknowledged again after the kill.
        support::eventually(
            &format!("a produce acknowledged after killing {name} (seed {seed})"),
            Duration::from_secs(30),
            async || (acks.load(Ordering::Relaxed) > before).then_some(()),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.expect("producer task");
    }
    node.wait_ready(Duration::from_secs(20))
        .await
        .expect("ready after chaos");

    // Read back every partition from offset 0.
    let mut stored = StoredLog::new();
    for p in 0..PARTITIONS {
        let mut offset = 0;
        loop {
            let request = FetchRequest {
                topic: "chaos".into(),
                partition: p,
                offset: FetchOffset::At(offset),
                max_records: 1000,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            };
            // A replica restarted by the last kills may still be recovering: retry what is
            // retryable, as a client does; anything else fails the test.
            let r = support::eventually(
                &format!("partition {p} to answer a fetch (seed {seed})"),
                Duration::from_secs(30),
                async || match client.fetch(request.clone()).await {
                    Ok(r) => Some(r),
                    Err(e) if e.retryable() => None,
                    Err(e) => panic!("seed {seed}: fetch after chaos: {e}"),
                },
            )
            .await;
            for rec in &r.records {
                let v = String::from_utf8(rec.record.value.to_vec()).expect("utf8 value");
                stored.entry(p).or_default().push((rec.offset, v));
            }
            offset = r.next_offset;
            if offset >= r.high_watermark {
                break;
            }
        }
    }

    let h = history.lock().expect("history lock");
    assert!(
        h.acked.len() as u64 >= KILLS as u64 * BATCH,
        "too little was acknowledged"
    );
    let report = h.check(&stored);
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {} violations, first: {:?}",
        report.violations.len(),
        &report.violations[..report.violations.len().min(5)]
    );
    eprintln!(
        "chaos: {} kills, {} acknowledged records, {} of unknown outcome",
        KILLS,
        h.acked.len(),
        h.unknown.len()
    );
}
