//! Restart: the real binary is killed with SIGKILL (no clean shutdown) while it holds acknowledged
//! records; started again on the same data dir, every acknowledged record is back at its offset,
//! committed offsets survive, and new offsets continue where the old ones stopped.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::BinaryNode;

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    assert!(r.status().is_success(), "status {}", r.status());
    r.json().await.expect("json answer")
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let r = http.get(url).send().await.expect("request sent");
    assert!(r.status().is_success(), "status {}", r.status());
    r.json().await.expect("json answer")
}

/// Reads a whole partition: offset -> value.
async fn read_all(http: &reqwest::Client, base: &str, p: u32) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let mut offset = 0u64;
    loop {
        let r = get(
            http,
            format!("{base}/v1/topics/t/partitions/{p}/records?offset={offset}&max_records=1000"),
        )
        .await;
        for rec in r["records"].as_array().expect("records") {
            let o = rec["offset"].as_u64().expect("offset");
            out.insert(o, rec["value"].as_str().expect("value").to_string());
        }
        offset = r["next_offset"].as_u64().expect("next_offset");
        if offset >= r["high_watermark"].as_u64().expect("hwm") {
            return out;
        }
    }
}

/// Sends `rounds` concurrent waves of batches; returns every acknowledged value's position.
async fn produce(
    http: &reqwest::Client,
    base: &str,
    tag: &str,
    rounds: usize,
) -> BTreeMap<String, (u32, u64)> {
    let mut acked = BTreeMap::new();
    for round in 0..rounds {
        let sends = (0..4).map(|w| {
            let values: Vec<String> = (0..25).map(|i| format!("{tag}-{round}-{w}-{i}")).collect();
            let records: Vec<Value> = values
                .iter()
                .map(|v| json!({"value": v, "key": format!("k{w}{}", v.len() % 3)}))
                .collect();
            let url = format!("{base}/v1/topics/t/records");
            async move {
                let r = post(http, url, json!({ "records": records })).await;
                (values, r)
            }
        });
        for (values, r) in futures::future::join_all(sends).await {
            for (v, pos) in values
                .into_iter()
                .zip(r["offsets"].as_array().expect("offsets"))
            {
                let p = pos["partition"].as_u64().expect("partition") as u32;
                acked.insert(v, (p, pos["offset"].as_u64().expect("offset")));
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_then_restart_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::new();
    let mut node = BinaryNode::spawn("r", dir.path());
    node.wait_ready(&http).await;
    let base = node.url();
    post(
        &http,
        format!("{base}/v1/topics"),
        json!({"name": "t", "partitions": 3}),
    )
    .await;
    let before = produce(&http, &base, "before", 5).await;
    post(
        &http,
        format!("{base}/v1/groups/g/offsets"),
        json!({"offsets": [{"topic": "t", "partition": 1, "offset": 7}]}),
    )
    .await;

    node.kill9();
    let node = BinaryNode::spawn("r", dir.path());
    node.wait_ready(&http).await;
    let base = node.url();

    let mut stored: BTreeMap<u32, BTreeMap<u64, String>> = BTreeMap::new();
    for p in 0..3 {
        stored.insert(p, read_all(&http, &base, p).await);
    }
    for (v, (p, o)) in &before {
        assert_eq!(
            stored[p].get(o),
            Some(v),
            "acknowledged {v} is not at {p}/{o} after kill -9"
        );
    }
    let total: usize = stored.values().map(|m| m.len()).sum();
    assert_eq!(
        total,
        before.len(),
        "nothing but acknowledged records is stored"
    );
    let groups = get(&http, format!("{base}/v1/groups/g/offsets")).await;
    assert_eq!(
        groups["offsets"][0]["offset"], 7,
        "committed offset survives"
    );

    // New records continue each partition's offsets: no gap, no reuse.
    let after = produce(&http, &base, "after", 1).await;
    let mut next: BTreeMap<u32, u64> = stored.iter().map(|(p, m)| (*p, m.len() as u64)).collect();
    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (p, o) in after.values() {
        by_partition.entry(*p).or_default().push(*o);
    }
    for (p, mut offsets) in by_partition {
        offsets.sort();
        for o in offsets {
            let expected = next.get_mut(&p).expect("known partition");
            assert_eq!(
                o, *expected,
                "partition {p}: offsets continue after restart"
            );
            *expected += 1;
        }
    }
}
