//! A consumer group on a three-node in-process cluster, with native [`Consumer`]s (one per node):
//! three members share six partitions and together receive every produced record, no partition
//! is ever held by two members at once, a killed member's partitions move after its session
//! timeout and its successors resume from its last commit, and the group with its commits
//! survives the loss of a broker node.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daftka_protocol::{
    Client, Consumer, ConsumerConfig, Error, GroupDescription, ProduceRecord, Record, TopicSpec,
};
use support::cluster::TestCluster;
use support::eventually;

const PARTITIONS: u32 = 6;
const WAIT: Duration = Duration::from_secs(60);
/// Commit after this many acknowledged records (and whenever the member is idle).
const COMMIT_EVERY: usize = 5;

/// One record handed to a member.
#[derive(Debug, Clone)]
struct Delivery {
    member: usize,
    partition: u32,
    offset: u64,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// A member's loop: take a record, log it, acknowledge it, commit every few records or when idle.
async fn consume(member: usize, consumer: Arc<Consumer>, log: Log) -> Result<(), Error> {
    let mut since_commit = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), consumer.next_record()).await {
            Ok(r) => {
                let r = r?;
                log.lock().expect("log").push(Delivery {
                    member,
                    partition: r.partition,
                    offset: r.offset,
                });
                consumer.ack(&r);
                since_commit += 1;
                if since_commit < COMMIT_EVERY {
                    continue;
                }
            }
            Err(_idle) if since_commit == 0 => continue,
            Err(_idle) => {}
        }
        // A refusal (the partition moved on in a rebalance) leaves its records to the next owner.
        if consumer.commit().await.is_ok() {
            since_commit = 0;
        }
    }
}

/// `orders`: six partitions, a replica on every node.
async fn create_orders(client: &Client) {
    client
        .create_topic(TopicSpec {
            name: "orders".into(),
            partitions: Some(PARTITIONS),
            replication_factor: Some(3),
        })
        .await
        .expect("create");
}

async fn produce(client: &Client, from: usize, n: usize) {
    let records: Vec<ProduceRecord> = (from..from + n)
        .map(|i| ProduceRecord {
            partition: Some(i as u32 % PARTITIONS),
            record: Record::from_value(format!("r{i}")),
        })
        .collect();
    let positions = client.produce("orders", records).await.expect("produce");
    assert_eq!(positions.len(), n);
}

/// Every (partition, offset) some member received.
fn received(log: &Log) -> BTreeSet<(u32, u64)> {
    log.lock()
        .expect("log")
        .iter()
        .map(|d| (d.partition, d.offset))
        .collect()
}

/// Waits until the members together received every offset below each partition's high watermark.
async fn wait_all_received(client: &Client, log: &Log) {
    let t = client.describe_topic("orders").await.expect("describe");
    let expected: BTreeSet<(u32, u64)> = t
        .partitions
        .iter()
        .flat_map(|p| (0..p.high_watermark).map(move |o| (p.partition, o)))
        .collect();
    eventually("every record to reach a member", WAIT, async || {
        expected.is_subset(&received(log)).then_some(())
    })
    .await;
}

/// No partition is owned by two members in the group's description.
fn assert_exclusive(d: &GroupDescription) {
    let mut seen = BTreeSet::new();
    for m in &d.members {
        for tp in m.assignment.iter().chain(&m.revoking) {
            for p in &tp.partitions {
                assert!(seen.insert(*p), "partition {p} owned twice: {d:?}");
            }
        }
    }
}

async fn wait_stable(client: &Client, members: usize) -> GroupDescription {
    eventually("the group to settle", WAIT, async || {
        let d = client.describe_group("billing").await.ok()?;
        assert_exclusive(&d);
        (d.state == "stable" && d.members.len() == members).then_some(d)
    })
    .await
}

/// Samples the members' own assignments while the test runs: they never overlap. A sample counts
/// only if two reads in a row agree (a member changed in between otherwise).
fn check_members_apart(
    consumers: Arc<Mutex<Vec<Option<Arc<Consumer>>>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            let read = || -> Vec<Vec<(String, u32)>> {
                let cs = consumers.lock().expect("consumers");
                cs.iter().flatten().map(|c| c.assignment()).collect()
            };
            let (a, b) = (read(), read());
            if a == b {
                let mut seen = BTreeSet::new();
                for tp in a.iter().flatten() {
                    assert!(seen.insert(tp.clone()), "{tp:?} read by two members: {a:?}");
                }
                samples += 1;
            }
            tokio::task::yield_now().await;
        }
        samples
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_survive_a_member_and_a_broker() {
    let mut cluster = TestCluster::start_with(3, |c| {
        c.groups.session_timeout_min = Duration::from_millis(500);
        c.groups.expiry_check_interval = Duration::from_millis(50);
    })
    .await;
    let admin = cluster.client(0);
    create_orders(&admin).await;

    // Three members, one through each node.
    let log: Log = Arc::default();
    let consumers: Arc<Mutex<Vec<Option<Arc<Consumer>>>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let mut config = ConsumerConfig::new("billing", ["orders"]);
        config.session_timeout = Some(Duration::from_secs(3));
        config.fetch_wait = Duration::from_millis(200);
        let c = Arc::new(
            Consumer::join(cluster.client(i), config)
                .await
                .expect("join"),
        );
        consumers.lock().expect("consumers").push(Some(c.clone()));
        tasks.push(tokio::spawn(consume(i, c, log.clone())));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let checker = check_members_apart(consumers.clone(), stop.clone());
    let d = wait_stable(&admin, 3).await;
    for m in &d.members {
        let n: usize = m.assignment.iter().map(|t| t.partitions.len()).sum();
        assert_eq!(n, 2, "six partitions over three members: {d:?}");
    }

    // Together they receive everything.
    produce(&admin, 0, 300).await;
    wait_all_received(&admin, &log).await;

    // Kill member 2 (no leave): its partitions move after its session timeout, and their new
    // owners start from its last commit.
    tasks[2].abort();
    let _ = (&mut tasks[2]).await;
    let killed = consumers.lock().expect("consumers")[2]
        .take()
        .expect("member 2");
    let killed_id = killed.member_id();
    drop(killed);
    let before = admin.describe_group("billing").await.expect("describe");
    let orphaned: BTreeMap<u32, u64> = before
        .partitions
        .iter()
        .filter(|p| p.member.as_deref() == Some(killed_id.as_str()))
        .map(|p| (p.partition, p.committed.unwrap_or(0)))
        .collect();
    assert_eq!(orphaned.len(), 2, "{before:?}");
    let mark = log.lock().expect("log").len();
    produce(&admin, 300, 120).await;
    let after = wait_stable(&admin, 2).await;
    assert!(after.members.iter().all(|m| m.member_id != killed_id));
    wait_all_received(&admin, &log).await;
    // The new owner starts at member 2's last commit: not before the commit seen after the kill
    // (a commit in flight at the kill may still have landed: then later, but never past what
    // member 2 had received, or records would be lost).
    let all: Vec<Delivery> = log.lock().expect("log").clone();
    let (upto, since) = all.split_at(mark);
    for (p, committed) in &orphaned {
        let first = since
            .iter()
            .find(|d| d.partition == *p && d.member != 2)
            .unwrap_or_else(|| panic!("partition {p} was never read again"));
        let received = upto
            .iter()
            .filter(|d| d.partition == *p && d.member == 2)
            .map(|d| d.offset + 1)
            .max()
            .unwrap_or(0);
        assert!(
            *committed <= first.offset && first.offset <= received,
            "partition {p} resumed at {}, not between the last commit {committed} and what \
             member 2 received ({received})",
            first.offset
        );
    }

    // Kill broker node 2: the group and its commits live on in the other two.
    let committed_before: BTreeMap<u32, Option<u64>> = admin
        .describe_group("billing")
        .await
        .expect("describe")
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed))
        .collect();
    cluster.stop(2).await;
    let survivor = cluster.client(1);
    produce(&survivor, 420, 120).await;
    let d = wait_stable(&survivor, 2).await;
    for p in &d.partitions {
        assert!(
            p.committed >= committed_before[&p.partition],
            "a commit went back: {p:?}"
        );
    }
    wait_all_received(&survivor, &log).await;

    // Close the members: their acknowledged offsets are committed up to the high watermarks.
    stop.store(true, Ordering::Relaxed);
    let samples = checker.await.expect("the checker");
    assert!(samples > 0, "the assignments were never sampled");
    for t in &tasks[..2] {
        t.abort();
    }
    for t in tasks.into_iter().take(2) {
        let _ = t.await;
    }
    let members: Vec<Arc<Consumer>> = consumers
        .lock()
        .expect("consumers")
        .drain(..)
        .flatten()
        .collect();
    for c in members {
        let c = Arc::into_inner(c).expect("the only handle left");
        c.close().await.expect("close");
    }
    // Member 0 left through node 0: node 1's copy of the metadata may trail a moment.
    let d = eventually("both members gone", WAIT, async || {
        let d = survivor.describe_group("billing").await.ok()?;
        (d.state == "empty").then_some(d)
    })
    .await;
    assert_eq!(d.lag, 0, "{d:?}");
    for p in &d.partitions {
        assert_eq!(p.committed, Some(p.high_watermark), "{p:?}");
    }
    cluster.stop(0).await;
    cluster.stop(1).await;
}

/// The CLI's group consumer against the cluster: two `daftka consume --group` processes, each
/// through another node, print every record exactly once between them (a partition moves only
/// after its owner committed what it printed) and leave the group committed at the high watermarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_members_share_a_topic_through_different_nodes() {
    let mut cluster = TestCluster::start(3).await;
    let admin = cluster.client(0);
    create_orders(&admin).await;
    produce(&admin, 0, 600).await;
    let url = |i: usize| {
        let node = cluster.members[i].node.as_ref().expect("running");
        format!("http://{}", node.http_addr)
    };
    let member = |i: usize| {
        let url = url(i);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_daftka"))
                .args([
                    "consume",
                    "orders",
                    "--group",
                    "cli",
                    "--print-offsets",
                    "--url",
                ])
                .arg(url)
                .output()
        })
    };
    let (a, b) = tokio::join!(member(1), member(2));
    let mut printed: Vec<(u32, u64)> = Vec::new();
    for out in [a, b] {
        let out = out.expect("joined").expect("the member runs");
        assert!(out.status.success(), "{out:?}");
        for line in String::from_utf8(out.stdout).expect("utf-8").lines() {
            let mut f = line.split('\t');
            let p = f.next().and_then(|x| x.parse().ok()).expect("partition");
            let o = f.next().and_then(|x| x.parse().ok()).expect("offset");
            printed.push((p, o));
        }
    }
    printed.sort_unstable();
    let expected: Vec<(u32, u64)> = (0..PARTITIONS)
        .flat_map(|p| (0..100).map(move |o| (p, o)))
        .collect();
    assert_eq!(printed, expected, "every record exactly once");
    // Both left (through nodes 1 and 2: node 0's copy of the metadata may trail a moment).
    let d = eventually("node 0 to see both members gone", WAIT, async || {
        let d = admin.describe_group("cli").await.ok()?;
        (d.state == "empty").then_some(d)
    })
    .await;
    assert_eq!(d.lag, 0, "{d:?}");
    for i in 0..3 {
        cluster.stop(i).await;
    }
}
