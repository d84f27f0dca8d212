//! A consumer group on three real processes: two HTTP members (through nodes a and c) consume
//! while node b, a replica of every partition and of the metadata, is killed with SIGKILL and
//! started again. The group, its members and its commits survive; every record produced before,
//! during and after reaches a member; the commits end at the high watermarks; and the restarted
//! node serves the same group.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::api::Api;
use support::eventually;
use support::procs::{slots, wait_ready};

const PARTITIONS: u64 = 4;
const WAIT: Duration = Duration::from_secs(90);

type Received = Arc<Mutex<BTreeSet<(u64, u64)>>>;

/// The member id and generation of a member answer.
fn identity(body: &Value) -> (String, u64) {
    (
        body["member_id"].as_str().expect("member_id").to_string(),
        body["generation"].as_u64().expect("generation"),
    )
}

/// An HTTP member: polls, notes what it received, commits each batch as the member; joins again
/// when the group dropped it, and after a poll whose outcome is unknown (the node may have moved
/// its positions past records it never got).
async fn member(url: String, received: Received, stop: Arc<AtomicBool>) {
    let api = Api::new(url);
    let join = || async {
        eventually("a join", WAIT, async || {
            let r = api
                .post(
                    "/v1/groups/g/members",
                    json!({"topics": ["orders"], "session_timeout_ms": 3000}),
                )
                .await;
            (r.status == 201).then(|| identity(&r.body).0)
        })
        .await
    };
    let mut id = join().await;
    while !stop.load(Ordering::Relaxed) {
        let r = api
            .get(&format!(
                "/v1/groups/g/members/{id}/records?max_wait_ms=300"
            ))
            .await;
        match r.status {
            200 => {}
            404 => {
                id = join().await;
                continue;
            }
            504 => {
                api.delete(&format!("/v1/groups/g/members/{id}")).await;
                id = join().await;
                continue;
            }
            // Nothing was done (an election): poll again.
            _ => continue,
        }
        let mut next: BTreeMap<u64, u64> = BTreeMap::new();
        for rec in r.body["records"].as_array().expect("records") {
            let p = rec["partition"].as_u64().expect("partition");
            let o = rec["offset"].as_u64().expect("offset");
            received.lock().expect("received").insert((p, o));
            next.insert(p, o + 1);
        }
        if next.is_empty() {
            continue;
        }
        let (_, generation) = identity(&r.body);
        let offsets: Vec<Value> = next
            .iter()
            .map(|(p, o)| json!({"topic": "orders", "partition": p, "offset": o}))
            .collect();
        // A refused or failed commit is covered by the next batch's commit (or by redelivery).
        api.post(
            "/v1/groups/g/offsets",
            json!({"member_id": id, "generation": generation, "offsets": offsets}),
        )
        .await;
    }
    api.delete(&format!("/v1/groups/g/members/{id}")).await;
}

/// Produces `n` records spread over the partitions through `api`, retrying while the cluster
/// answers 503 (a retried 504 may store a batch twice: fine, the checks count offsets).
async fn produce(api: &Api, from: u64, n: u64) {
    let records: Vec<Value> = (from..from + n)
        .map(|i| json!({"value": format!("r{i}"), "partition": i % PARTITIONS}))
        .collect();
    eventually("a produce to be accepted", WAIT, async || {
        let r = api.produce("orders", json!({ "records": records })).await;
        (r.status == 200).then_some(())
    })
    .await;
}

/// (members, committed offset per partition, lag) of the group as `api`'s node describes it.
async fn describe(api: &Api) -> Option<(BTreeSet<String>, BTreeMap<u64, u64>, u64)> {
    let r = api.get("/v1/groups/g").await;
    if r.status != 200 {
        return None;
    }
    let members = r.body["members"]
        .as_array()?
        .iter()
        .filter_map(|m| m["member_id"].as_str().map(String::from))
        .collect();
    let committed = r.body["partitions"]
        .as_array()?
        .iter()
        .filter_map(|p| Some((p["partition"].as_u64()?, p["committed"].as_u64()?)))
        .collect();
    Some((members, committed, r.body["lag"].as_u64()?))
}

/// Every offset below each partition's high watermark.
async fn all_offsets(api: &Api) -> BTreeSet<(u64, u64)> {
    let t = api.get("/v1/topics/orders").await;
    t.body["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .flat_map(|p| {
            let id = p["partition"].as_u64().expect("partition");
            (0..p["high_watermark"].as_u64().expect("hwm")).map(move |o| (id, o))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_survives_kill_9_of_a_broker() {
    let root = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let mut nodes = slots(root.path(), "group-cookie");
    for n in nodes.iter_mut() {
        n.start();
        wait_ready(&http, &n.url()).await;
    }
    let a = Api::new(nodes[0].url());
    let r = a
        .create(json!({"name": "orders", "partitions": PARTITIONS, "replication_factor": 3}))
        .await;
    r.assert_ok(201);
    produce(&a, 0, 200).await;

    let received: Received = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let members = [nodes[0].url(), nodes[2].url()]
        .map(|url| tokio::spawn(member(url, received.clone(), stop.clone())));
    let all = all_offsets(&a).await;
    eventually("the first records to be consumed", WAIT, async || {
        let got = received.lock().expect("received").clone();
        all.is_subset(&got).then_some(())
    })
    .await;
    let before = eventually("two members with commits", WAIT, async || {
        describe(&a).await.filter(|(m, _, _)| m.len() == 2)
    })
    .await;

    // SIGKILL node b; produce through a meanwhile.
    if let Some(p) = nodes[1].proc.as_mut() {
        p.kill9();
    }
    produce(&a, 200, 200).await;
    let all = all_offsets(&a).await;
    eventually(
        "the records produced after the kill to be consumed",
        WAIT,
        async || {
            let got = received.lock().expect("received").clone();
            all.is_subset(&got).then_some(())
        },
    )
    .await;
    let (members_after, committed_after, _) = eventually("the group on a", WAIT, async || {
        describe(&a).await.filter(|(_, _, lag)| *lag == 0)
    })
    .await;
    // (A member cut off longer than its session by the election may have joined again.)
    assert_eq!(members_after.len(), 2, "two members: {members_after:?}");
    for (p, c) in &before.1 {
        assert!(committed_after[p] >= *c, "partition {p}: commit went back");
    }

    // b comes back and serves the same group.
    nodes[1].start();
    wait_ready(&http, &nodes[1].url()).await;
    let b = Api::new(nodes[1].url());
    produce(&b, 400, 100).await;
    let all = all_offsets(&a).await;
    eventually("the last records to be consumed", WAIT, async || {
        let got = received.lock().expect("received").clone();
        all.is_subset(&got).then_some(())
    })
    .await;
    eventually("b to show the same settled group as a", WAIT, async || {
        let on_a = describe(&a).await.filter(|(_, _, lag)| *lag == 0)?;
        describe(&b).await.filter(|d| *d == on_a)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for m in members {
        m.await.expect("a member");
    }
    eventually("both members to have left", WAIT, async || {
        describe(&a).await.filter(|(m, _, _)| m.is_empty())
    })
    .await;
}
