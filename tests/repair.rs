//! Replica repair on a three-node in-process cluster (real fjall, real ractor_cluster sessions):
//! a topic created while one node is down starts under-replicated (the factor comes from the
//! registered nodes, the replicas go to the live ones); once the node is back, the Rebalancer's
//! moves add its replicas through Raft membership changes (learner, joint configuration), every
//! partition ends with three replicas, and the new replicas hold every record, read from their
//! own fjall store after the node stopped.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use daftka_protocol::{
    Client, ErrorCode, FetchOffset, FetchRequest, GroupId, ProduceRecord, Record, TopicSpec,
};
use daftka_storage::{Store, StoreOptions};
use support::cluster::{create_topic, TestCluster};
use support::{eventually, metric};

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: u32 = 4;

/// Waits until `client`'s node sees `node` down.
async fn seen_down(client: &Client, node: &str) {
    eventually("the node to be seen down", WAIT, async || {
        let info = client.cluster_info().await.ok()?;
        info.nodes
            .iter()
            .any(|n| n.name == node && n.status != "up")
            .then_some(())
    })
    .await;
}

/// Nodes down for 2 s count as gone; the Rebalancer looks every 200 ms.
fn quick_repairs(cfg: &mut daftka_core::config::Config) {
    cfg.rebalance.node_down_timeout = Duration::from_secs(2);
    cfg.rebalance.check_interval = Duration::from_millis(200);
}

fn keyed(from: usize, n: usize) -> Vec<ProduceRecord> {
    (from..from + n)
        .map(|i| ProduceRecord {
            partition: None,
            record: Record::from_value(format!("v{i}")).with_key(format!("k{}", i % 17)),
        })
        .collect()
}

/// Produces `records`, retried while leaders change (a retry may duplicate: values are compared
/// as sets below).
async fn produce(client: &Client, records: Vec<ProduceRecord>) {
    eventually("a produce to succeed", WAIT, async || {
        client.produce("orders", records.clone()).await.ok()
    })
    .await;
}

/// Every value of each of the first `partitions` partitions, through `client` (served by the
/// leaders).
async fn read_all(client: &Client, partitions: u32) -> BTreeMap<u32, Vec<String>> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let values = eventually("a fetch to succeed", WAIT, async || {
            let r = client
                .fetch(FetchRequest {
                    topic: "orders".into(),
                    partition: p,
                    offset: FetchOffset::Earliest,
                    max_records: 100_000,
                    max_bytes: 64 << 20,
                    max_wait_ms: 0,
                })
                .await
                .ok()?;
            Some(
                r.records
                    .iter()
                    .map(|x| String::from_utf8_lossy(&x.record.value).into_owned())
                    .collect::<Vec<_>>(),
            )
        })
        .await;
        out.insert(p, values);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_under_replicated_topic_is_topped_up_when_the_node_returns() {
    let mut c = TestCluster::start(3).await;
    let names = c.names();
    c.stop(2).await;
    let client = c.client(0);
    seen_down(&client, &names[2]).await;

    // Three nodes are registered: the default factor is 3; two are alive: two replicas each.
    let created = client
        .create_topic(TopicSpec {
            name: "orders".into(),
            partitions: Some(PARTITIONS),
            replication_factor: None,
        })
        .await
        .expect("create");
    assert_eq!(created.replication_factor, 3);
    for p in &created.partitions {
        assert_eq!(p.replicas.len(), 2, "{p:?}");
        assert!(p.under_replicated, "{p:?}");
        assert!(!p.replicas.contains(&names[2]), "{p:?}");
    }
    // Explicitly more than the registered nodes: refused.
    let too_many = client
        .create_topic(TopicSpec {
            name: "wide".into(),
            partitions: Some(1),
            replication_factor: Some(4),
        })
        .await
        .expect_err("4 > 3 registered nodes");
    assert_eq!(too_many.code, daftka_protocol::ErrorCode::InvalidRequest);
    produce(&client, keyed(0, 300)).await;

    // Node 2 comes back: every partition gets its third replica.
    c.start_member(2).await;
    c.wait_ready(2).await;
    let topped_up = eventually("every partition back at 3 replicas", WAIT, async || {
        let d = client.describe_topic("orders").await.ok()?;
        d.partitions
            .iter()
            .all(|p| p.replicas.len() == 3 && !p.under_replicated && p.moving_to.is_empty())
            .then_some(d)
    })
    .await;
    for p in &topped_up.partitions {
        assert!(p.replicas.contains(&names[2]), "{p:?}");
    }
    produce(&client, keyed(300, 100)).await;
    let expected = read_all(&client, PARTITIONS).await;
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total >= 400, "every acknowledged record is there: {total}");

    // Node 2's own store holds every record of every partition: read from its fjall after it
    // stopped, once it applied what the leaders have (it may trail the last produce).
    let node2 = c.members[2].node.as_ref().expect("running");
    for (p, values) in &expected {
        let gauge = format!("daftka_high_watermark{{partition=\"{p}\",topic=\"orders\"}} ");
        eventually("node 2 to apply every record", WAIT, async || {
            let hwm = metric(node2, &gauge).await?;
            (hwm as usize == values.len()).then_some(())
        })
        .await;
    }
    let dir = c.members[2].dir.clone();
    c.stop(2).await;
    let store = Store::open(&dir.join("fjall"), StoreOptions::default()).expect("node 2's store");
    let mut stored: Vec<Vec<String>> = Vec::new();
    for g in store.groups().expect("groups") {
        if g == GroupId::METADATA {
            continue;
        }
        let st = store.raft_storage(g).expect("group stored").apply_state();
        assert_eq!(st.log_start_offset, 0, "{g}: nothing was cut");
        let records = store
            .partition_reader(g)
            .read(0, st.next_offset, 100_000, 64 << 20)
            .expect("read");
        stored.push(
            records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
                .collect(),
        );
    }
    stored.sort();
    let mut want: Vec<Vec<String>> = expected.into_values().collect();
    want.sort();
    assert_eq!(
        stored, want,
        "node 2 holds every partition's log, record for record"
    );
}

/// Every produced value of `from..to` is among `got` (retries may have stored some twice).
fn all_present(got: &BTreeMap<u32, Vec<String>>, from: usize, to: usize) {
    let have: std::collections::BTreeSet<&str> =
        got.values().flatten().map(String::as_str).collect();
    let missing: Vec<usize> = (from..to)
        .filter(|i| !have.contains(format!("v{i}").as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged values missing: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_node_down_for_good_are_created_again_elsewhere() {
    let mut c = TestCluster::start_with(4, quick_repairs).await;
    let names = c.names();
    let client = c.client(0);
    create_topic(&client, "orders", PARTITIONS, 3).await;
    produce(&client, keyed(0, 200)).await;

    // Node 3 (a metadata learner: the voters are the first three) goes away for good: past the
    // timeout, each of its replicas is created again on the node that has none of the partition.
    c.stop(3).await;
    let lost = &names[3];
    eventually(
        "every partition at 3 replicas on live nodes",
        WAIT,
        async || {
            let d = client.describe_topic("orders").await.ok()?;
            d.partitions
                .iter()
                .all(|p| {
                    p.replicas.len() == 3
                        && !p.replicas.contains(lost)
                        && p.moving_to.is_empty()
                        && !p.under_replicated
                })
                .then_some(())
        },
    )
    .await;
    let node0 = c.members[0].node.as_ref().expect("running");
    let gauge = format!("daftka_node_replicas{{node=\"{lost}\"}} ");
    eventually("the gauges to show the repair", WAIT, async || {
        let under = metric(node0, "daftka_under_replicated_partitions ").await?;
        let on_lost = metric(node0, &gauge).await?;
        let moving = metric(node0, "daftka_moves_in_flight ").await?;
        (under == 0.0 && on_lost == 0.0 && moving == 0.0).then_some(())
    })
    .await;
    produce(&client, keyed(200, 100)).await;
    all_present(&read_all(&client, PARTITIONS).await, 0, 300);

    // The first node comes back with its old data: it holds no replica any more, and deletes them.
    // It may be ready on its own stale metadata first (it replays its log before it hears from
    // the leader); its own gauge says when its Placement has caught up (published after the
    // deletions of that reconcile).
    c.start_member(3).await;
    c.wait_ready(3).await;
    let node3 = c.members[3].node.as_ref().expect("running");
    eventually("node 3 to see it holds no replica", WAIT, async || {
        (metric(node3, &gauge).await? == 0.0).then_some(())
    })
    .await;
    let dir = c.members[3].dir.clone();
    c.stop(3).await;
    let store = Store::open(&dir.join("fjall"), StoreOptions::default()).expect("node 3's store");
    assert_eq!(
        store.groups().expect("groups"),
        vec![GroupId::METADATA],
        "only the metadata group is left on the node that was replaced"
    );
    drop(store);

    // Removed (it is down), the node is refused with its old data directory, and says why.
    let removed = client.remove_node(lost).await.expect("remove the node");
    assert_eq!(removed.state, "removed");
    let active = client
        .remove_node(&names[0])
        .await
        .expect_err("a live node");
    assert_eq!(active.code, ErrorCode::NodeActive, "{active}");
    c.start_member(3).await;
    let refused = c.members[3].node.as_ref().expect("running").refused();
    let why = tokio::time::timeout(WAIT, refused)
        .await
        .expect("the old data directory is refused");
    assert!(
        why.contains("removed") && why.contains("empty data directory"),
        "{why}"
    );
    c.stop(3).await;

    // A second node goes (three nodes registered now, two up): every partition still has two of its three replicas and takes writes.
    c.stop(2).await;
    produce(&client, keyed(300, 50)).await;
    all_present(&read_all(&client, PARTITIONS).await, 0, 350);

    // With an empty data directory it joins as a new member (a new Raft id): node 2, down past
    // the timeout, has its replicas created again there.
    c.members[3].dir = dir.with_file_name(format!("{lost}-fresh"));
    c.start_member(3).await;
    c.wait_ready(3).await;
    let down = names[2].clone();
    eventually(
        "every partition at 3 replicas on the live nodes, the new one among them",
        WAIT,
        async || {
            let d = client.describe_topic("orders").await.ok()?;
            d.partitions
                .iter()
                .all(|p| {
                    p.replicas.len() == 3
                        && p.replicas.contains(lost)
                        && !p.replicas.contains(&down)
                        && p.moving_to.is_empty()
                })
                .then_some(())
        },
    )
    .await;
    // The metadata group healed: node 2, a voter down past the timeout, was replaced by the new
    // node (a learner promoted), then demoted.
    eventually(
        "the new node to replace the dead metadata voter",
        WAIT,
        async || {
            let info = client.cluster_info().await.ok()?;
            let role = |n: &str| {
                info.nodes
                    .iter()
                    .find(|x| x.name == n)
                    .map(|x| x.metadata_role.clone())
            };
            (role(lost)? == "voter" && role(&down)? == "learner").then_some(())
        },
    )
    .await;
    produce(&client, keyed(350, 50)).await;
    all_present(&read_all(&client, PARTITIONS).await, 0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_receives_its_share_of_replicas() {
    // Node 3 is registered but down when the topic is created (12 replicas on 3 nodes: 4 each);
    // once it runs, the Rebalancer moves replicas onto it, one at a time, until every node holds
    // 3, and it is the preferred leader of some partitions.
    let mut c = TestCluster::start_with(4, |cfg| {
        cfg.rebalance.check_interval = Duration::from_millis(200);
    })
    .await;
    let names = c.names();
    c.stop(3).await;
    let client = c.client(0);
    seen_down(&client, &names[3]).await;
    let created = create_topic(&client, "orders", 6, 2).await;
    assert!(created
        .partitions
        .iter()
        .all(|p| !p.replicas.contains(&names[3])));
    produce(&client, keyed(0, 120)).await;

    c.start_member(3).await;
    c.wait_ready(3).await;
    let balanced = eventually("every node to hold 3 replicas", WAIT, async || {
        let d = client.describe_topic("orders").await.ok()?;
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &d.partitions {
            if !p.moving_to.is_empty() {
                return None;
            }
            for r in &p.replicas {
                *count.entry(r.as_str()).or_default() += 1;
            }
        }
        (count.len() == 4 && count.values().all(|c| *c == 3)).then_some(d.clone())
    })
    .await;
    assert!(
        balanced
            .partitions
            .iter()
            .any(|p| p.replicas[0] == names[3]),
        "node 3 is some partition's preferred leader: {balanced:?}"
    );
    all_present(&read_all(&client, 6).await, 0, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_towards_a_node_that_died_is_redirected_and_ends() {
    // The move's destination is down (for good, past the 2 s timeout): the Rebalancer redirects
    // the move back to the node it came from, the leader drops the learner it had added, and the
    // move ends with the old replicas; the partition serves throughout.
    let mut c = TestCluster::start_with(4, quick_repairs).await;
    let names = c.names();
    let client = c.client(0);
    create_topic(&client, "orders", 1, 3).await;
    produce(&client, keyed(0, 50)).await;
    let before = client.describe_topic("orders").await.expect("describe");
    let replicas = before.partitions[0].replicas.clone();
    let outsider = names
        .iter()
        .position(|n| !replicas.contains(n))
        .expect("4 nodes, 3 replicas");
    assert_ne!(outsider, 0, "node 0 holds every partition it created first");
    c.stop(outsider).await;
    let to = vec![
        names[outsider].clone(),
        replicas[1].clone(),
        replicas[2].clone(),
    ];
    let started = client
        .reassign("orders", 0, to.clone())
        .await
        .expect("a registered node, even down, may be a destination");
    assert_eq!(started.to, to);
    produce(&client, keyed(50, 50)).await;
    eventually("the move to be redirected and end", WAIT, async || {
        let d = client.describe_topic("orders").await.ok()?;
        let p = &d.partitions[0];
        let moving = client.reassignments().await.ok()?;
        (moving.is_empty() && p.moving_to.is_empty()).then(|| p.replicas.clone())
    })
    .await;
    let after = client.describe_topic("orders").await.expect("describe");
    assert_eq!(
        after.partitions[0].replicas, replicas,
        "back where it came from"
    );
    produce(&client, keyed(100, 50)).await;
    let got = read_all(&client, 1).await;
    all_present(&got, 0, 150);
}
