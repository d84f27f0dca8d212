//! Overload is refused, not queued, and memory stays bounded: 64 HTTP producers send 1 MiB
//! requests all at once to a real node (the binary) whose in-flight budget
//! (`limits.inflight_bytes_max`) is 8 MiB and whose storage buffers are small. Requests that do
//! not fit are refused with a retryable 503 `unavailable` (the client gets the answer, not a
//! broken connection) and sent again; every acknowledged record is there afterwards, exactly
//! where its acknowledgement said. The node's resident memory, sampled every 5 ms, never grows by
//! more than what its configuration allows (see [`memory_allowed`]) although 180 MiB go through it.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use support::api::Api;
use support::BinaryNode;

const PRODUCERS: usize = 64;
const REQUESTS_EACH: usize = 3;
const RECORDS_PER_REQUEST: usize = 8;
/// About 1 MiB per request.
const VALUE_BYTES: usize = 120 << 10;

const MIB: u64 = 1 << 20;
/// The node's configuration in this test (sizes in MiB where they are memory).
const INFLIGHT_MIB: u64 = 8;
const MEMTABLE_MIB: u64 = 4;
const CACHE_MIB: u64 = 8;
/// Default `limits.http_read_buffer_bytes`.
const READ_BUFFER_BYTES: u64 = 64 << 10;

/// How much the node's resident memory may grow above its idle size under this load, from its
/// configuration (docs/ARCHITECTURE.md, "Memory"): the requests in flight, each in up to 8 copies
/// while it is decoded, encoded, stored and journalled, twice over for what the allocator keeps
/// free between two trims; the storage buffers (per keyspace, the active memtable and up to 4
/// sealed ones, after which fjall stalls writes; and the block cache); one read buffer per
/// connection. Without the budget the same load grew it by ~300 MiB.
fn memory_allowed() -> u64 {
    let requests = 16 * INFLIGHT_MIB * MIB;
    let storage = (3 * 5 * MEMTABLE_MIB + CACHE_MIB) * MIB;
    let connections = PRODUCERS as u64 * READ_BUFFER_BYTES;
    requests + storage + connections
}

/// The node's resident memory in bytes, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One producer: sends its requests, each again while the node answers 503; answers what was
/// acknowledged (partition, offset, value id) and how many 503s it saw.
async fn producer(
    id: usize,
    api: Arc<Api>,
    start: Arc<tokio::sync::Barrier>,
) -> (Vec<(u64, u64, String)>, u64) {
    start.wait().await;
    let mut acked = Vec::new();
    let mut refused = 0;
    for r in 0..REQUESTS_EACH {
        let ids: Vec<String> = (0..RECORDS_PER_REQUEST)
            .map(|i| format!("p{id:02}-r{r}-i{i}"))
            .collect();
        let records: Vec<Value> = ids
            .iter()
            .map(|v| json!({"key": v, "value": format!("{v}:{}", "x".repeat(VALUE_BYTES))}))
            .collect();
        let body = json!({ "records": records });
        loop {
            let reply = api.produce("load", body.clone()).await;
            match reply.status {
                200 => {
                    for (v, o) in ids.iter().zip(support::api::positions(&reply.body)) {
                        acked.push((o.0, o.1, v.clone()));
                    }
                    break;
                }
                503 => {
                    assert_eq!(reply.body["error"]["retryable"], true, "{reply:?}");
                    refused += 1;
                    tokio::task::yield_now().await;
                }
                _ => panic!("unexpected answer {reply:?}"),
            }
        }
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inflight = format!("{INFLIGHT_MIB}MiB");
    let memtable = format!("{MEMTABLE_MIB}MiB");
    let cache = format!("{CACHE_MIB}MiB");
    let env = [
        ("DAFTKA_LIMITS__INFLIGHT_BYTES_MAX", inflight.as_str()),
        ("DAFTKA_STORAGE__MEMTABLE_BYTES_MAX", memtable.as_str()),
        ("DAFTKA_STORAGE__JOURNAL_BYTES_MAX", "64MiB"),
        ("DAFTKA_STORAGE__CACHE_BYTES", cache.as_str()),
        ("DAFTKA_LIMITS__BODY_BYTES_MAX", "2MiB"),
        // Only the node-wide budget refuses here.
        ("DAFTKA_LIMITS__INFLIGHT_BYTES_PER_PARTITION_MAX", "1GiB"),
    ];
    let node = BinaryNode::spawn_env("a", dir.path(), &[], &env);
    let http = reqwest::Client::new();
    node.wait_ready(&http).await;
    let api = Arc::new(Api::new(node.url()));
    api.create(json!({"name": "load", "partitions": 4}))
        .await
        .assert_ok(201);
    let pid = node.child.id();
    let before = rss_bytes(pid).expect("the node's RSS");

    // Sample the node's memory for as long as the producers run.
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(5));
            while !done.load(Ordering::Relaxed) {
                every.tick().await;
                if let Some(rss) = rss_bytes(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
            }
        })
    };
    let start = Arc::new(tokio::sync::Barrier::new(PRODUCERS));
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|id| tokio::spawn(producer(id, api.clone(), start.clone())))
        .collect();
    let mut acked = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (a, r) = t.await.expect("a producer");
        acked.extend(a);
        refused += r;
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("the sampler");
    let peak = peak.load(Ordering::Relaxed);
    let sent_bytes = (PRODUCERS * REQUESTS_EACH * RECORDS_PER_REQUEST * VALUE_BYTES) as u64;
    eprintln!(
        "overload: {refused} refusals, RSS {} -> peak {} MiB (allowed growth {} MiB) while {} MiB were produced",
        before >> 20,
        peak >> 20,
        memory_allowed() >> 20,
        sent_bytes >> 20
    );
    assert!(
        refused > 0,
        "64 requests of 1 MiB at once never exceeded an 8 MiB budget"
    );
    assert!(
        peak - before <= memory_allowed(),
        "resident memory grew by {} MiB, more than the {} MiB the configuration allows",
        (peak - before) >> 20,
        memory_allowed() >> 20
    );

    // Every acknowledged record is where its acknowledgement said.
    assert_eq!(acked.len(), PRODUCERS * REQUESTS_EACH * RECORDS_PER_REQUEST);
    let mut by_partition: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    for (p, o, v) in acked {
        by_partition.entry(p).or_default().insert(o, v);
    }
    for (p, expected) in by_partition {
        let mut next = 0u64;
        let mut found = BTreeMap::new();
        loop {
            let r = api
                .fetch_ok("load", p, &format!("offset={next}&max_records=64"))
                .await;
            let records = r["records"].as_array().expect("records").clone();
            for rec in &records {
                let o = rec["offset"].as_u64().expect("offset");
                let key = rec["key"].as_str().expect("key").to_string();
                found.insert(o, key);
            }
            next = r["next_offset"].as_u64().expect("next_offset");
            if next >= r["high_watermark"].as_u64().expect("hwm") {
                break;
            }
        }
        for (o, v) in &expected {
            assert_eq!(found.get(o), Some(v), "partition {p} offset {o}");
        }
    }
}
