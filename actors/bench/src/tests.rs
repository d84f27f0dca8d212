//! The bench against the mock node: exact record counts, retries counted, fatal errors reported,
//! partitions spread as asked, consumers stopping at the high watermarks or the record budget.

use std::sync::{Arc, Mutex};

use clap::Parser;
use serde_json::{json, Value};

use super::*;
use daftka_http::mock::{MockNode, Reply, Request};

/// `daftka bench ...` as the binary parses it.
#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// Runs `bench ARGS... -q --json FILE` against `url` and answers its stdout and JSON summary.
async fn bench(url: &str, args: &[&str]) -> Result<(String, Value), ClientError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("summary.json");
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["-q", "--json", json_path.to_str().expect("utf8 path")]);
    let cli = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    let api = Api::new(url)?;
    run(&api, &cli.args, &mut out, std::future::pending()).await?;
    let summary = serde_json::from_slice(&std::fs::read(&json_path).expect("summary written"))
        .expect("summary is JSON");
    Ok((String::from_utf8(out).expect("utf8"), summary))
}

/// A topic description with `partitions` (log start, high watermark), all led by node `a`.
fn description(name: &str, partitions: &[(u64, u64)]) -> Value {
    let parts: Vec<Value> = partitions
        .iter()
        .enumerate()
        .map(|(i, (start, hw))| {
            json!({"partition": i, "leader": "a", "replicas": ["a"],
                   "log_start_offset": start, "high_watermark": hw})
        })
        .collect();
    json!({"name": name, "replication_factor": 1, "partitions": parts})
}

/// Produced records per partition, as a mock node that acknowledges them counts them.
#[derive(Default)]
struct Produced {
    requests: u64,
    per_partition: Vec<u64>,
}

/// A node with topic `bench` of `partitions` partitions (created by the bench) that answers every
/// `fail_every`-th produce with 503 `unavailable`, and counts what it acknowledges.
fn producing_node(
    partitions: usize,
    fail_every: u64,
) -> (impl Fn(&Request) -> Reply, Arc<Mutex<Produced>>) {
    let state = Arc::new(Mutex::new(Produced {
        requests: 0,
        per_partition: vec![0; partitions],
    }));
    let s = state.clone();
    let handler = move |r: &Request| {
        let desc = description("bench", &vec![(0, 0); partitions]);
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/v1/topics") => Reply::json(201, desc),
            ("GET", "/v1/topics/bench") => Reply::json(200, desc),
            ("POST", "/v1/topics/bench/records") => {
                let mut st = s.lock().expect("lock");
                st.requests += 1;
                if st.requests.is_multiple_of(fail_every) {
                    return Reply::error(503, "unavailable", "electing");
                }
                let body = r.json();
                assert_eq!(body["encoding"], "utf8");
                let records = body["records"].as_array().expect("records");
                let mut offsets = Vec::new();
                for rec in records {
                    assert_eq!(rec["value"].as_str().map(str::len), Some(10));
                    let p = rec["partition"].as_u64().expect("explicit partition") as usize;
                    offsets.push(json!({"partition": p, "offset": st.per_partition[p]}));
                    st.per_partition[p] += 1;
                }
                Reply::json(200, json!({"offsets": offsets}))
            }
            _ => Reply::error(404, "not_found", "no route"),
        }
    };
    (handler, state)
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test]
async fn produce_acknowledges_exactly_the_records_asked_and_counts_retries() {
    // 1,000 records in requests of 100 over 4 partitions, one request in 3 refused with 503:
    // every record is acknowledged once, requests rotate over partitions, refusals are errors.
    let (handler, state) = producing_node(4, 3);
    let node = MockNode::start(handler).await;
    let (text, v) = bench(
        &node.url(),
        &[
            "produce",
            "--records",
            "1000",
            "--batch",
            "100",
            "--producers",
            "2",
            "--record-size",
            "10",
        ],
    )
    .await
    .expect("bench runs");
    let st = state.lock().expect("lock");
    assert_eq!(st.per_partition, vec![300, 300, 200, 200]);
    assert_eq!(v["records"], 1000);
    assert_eq!(v["requests"], 10);
    assert_eq!(v["bytes"], 10_000);
    assert!(f(&v, "errors") >= 4.0, "{v}");
    assert_eq!(f(&v, "errors") as u64 + 10, st.requests);
    assert_eq!(
        (&v["workload"], &v["transport"], &v["partitions"]),
        (&json!("produce"), &json!("http"), &json!(4))
    );
    assert_eq!((&v["batch"], &v["producers"]), (&json!(100), &json!(2)));
    assert_eq!(v["replication_factor"], 1);
    assert!(f(&v, "records_per_sec") > 0.0);
    assert!(f(&v, "p50_ms") <= f(&v, "p99_ms") && f(&v, "p99_ms") <= f(&v, "max_ms"));
    assert!(text.starts_with("bench produce over http"), "{text}");
    assert!(text.contains("\nrecords      1000\n"), "{text}");
    // The topic was created with the asked partitions.
    let create = node
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/topics")
        .expect("create");
    assert_eq!(create.json(), json!({"name": "bench", "partitions": 4}));
}

#[tokio::test]
async fn record_mode_spreads_each_request_and_the_last_request_is_short() {
    // 250 records, batch 100, 3 partitions, records rotating within each request.
    let (handler, state) = producing_node(3, u64::MAX);
    let node = MockNode::start(handler).await;
    let (_, v) = bench(
        &node.url(),
        &[
            "produce",
            "--records",
            "250",
            "--batch",
            "100",
            "--partitions",
            "3",
            "--partition-mode",
            "record",
            "--record-size",
            "10",
            "--rate",
            "1000",
        ],
    )
    .await
    .expect("bench runs");
    assert_eq!(state.lock().expect("lock").per_partition, vec![84, 83, 83]);
    assert_eq!((&v["records"], &v["requests"]), (&json!(250), &json!(3)));
    assert_eq!(v["rate"], 1000.0);
    assert_eq!(v["errors"], 0);
}

#[tokio::test]
async fn a_refused_request_ends_the_run_with_its_error() {
    let node = MockNode::start(|r: &Request| match r.path.as_str() {
        "/v1/topics" => Reply::error(409, "topic_exists", "exists"),
        "/v1/topics/bench" => Reply::json(200, description("bench", &[(0, 0)])),
        _ => Reply::error(413, "payload_too_large", "at most 10 records"),
    })
    .await;
    let err = bench(&node.url(), &["produce", "--records", "100"])
        .await
        .expect_err("refused");
    assert_eq!(err.to_string(), "payload_too_large: at most 10 records");
    assert_eq!(err.exit_code(), 1);
}

#[tokio::test]
async fn e2e_needs_room_for_the_stamp() {
    let err = bench("http://127.0.0.1:1", &["e2e", "--record-size", "15"])
        .await
        .expect_err("too small");
    assert_eq!(err.exit_code(), 2, "{err}");
}

/// A node with topic `t`: partition 0 holds offsets 0..250, partition 1 10..40; values are 10
/// bytes, and UTF-8 only if `utf8`, else fetches must ask for base64.
fn consuming_node(utf8: bool) -> impl Fn(&Request) -> Reply {
    let ranges = [(0u64, 250u64), (10, 40)];
    move |r: &Request| {
        if r.path == "/v1/topics/t" {
            return Reply::json(200, description("t", &ranges));
        }
        let Some(p) = r
            .path
            .strip_prefix("/v1/topics/t/partitions/")
            .and_then(|rest| rest.strip_suffix("/records"))
            .and_then(|p| p.parse::<usize>().ok())
        else {
            return Reply::error(404, "not_found", "no route");
        };
        let param = |name: &str| r.param(name).unwrap_or_else(|| panic!("{name} missing"));
        let value = match param("encoding").as_str() {
            "utf8" if utf8 => "0123456789",
            "utf8" => {
                return Reply::error(400, "invalid_request", "not valid UTF-8: use base64");
            }
            // 10 bytes in base64.
            _ => "AAECAwQFBgcICQ==",
        };
        let offset: u64 = param("offset").parse().expect("numeric offset");
        let max: u64 = param("max_records").parse().expect("max_records");
        let (start, hw) = ranges[p];
        assert!(
            offset >= start && offset < hw,
            "{offset} outside {start}..{hw}"
        );
        let records: Vec<Value> = (offset..hw.min(offset + max))
            .map(|o| json!({"offset": o, "value": value, "timestamp": 1}))
            .collect();
        let next = offset + records.len() as u64;
        Reply::json(
            200,
            json!({"records": records, "next_offset": next, "high_watermark": hw,
                   "log_start_offset": start}),
        )
    }
}

#[tokio::test]
async fn consume_reads_every_partition_up_to_the_high_watermarks() {
    // 250 + 30 records in fetches of at most 100: 3 + 1 fetches.
    let node = MockNode::start(consuming_node(true)).await;
    let (text, v) = bench(&node.url(), &["consume", "--topic", "t", "--batch", "100"])
        .await
        .expect("consume");
    assert_eq!((&v["records"], &v["bytes"]), (&json!(280), &json!(2800)));
    assert_eq!((&v["requests"], &v["errors"]), (&json!(4), &json!(0)));
    assert_eq!(
        (&v["workload"], &v["producers"]),
        (&json!("consume"), &json!(2))
    );
    assert_eq!(v["record_size"], 10);
    assert!(text.contains("2 readers"), "{text}");
    // Nothing is created by a consumer.
    assert!(node.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn consume_stops_at_the_record_budget_and_starts_at_from() {
    let node = MockNode::start(consuming_node(true)).await;
    let (_, v) = bench(
        &node.url(),
        &[
            "consume",
            "--topic",
            "t",
            "--batch",
            "64",
            "--records",
            "100",
        ],
    )
    .await
    .expect("consume");
    assert_eq!(v["records"], 100);
    // From 245: five records of partition 0, none of partition 1 (it ends at 40).
    let (_, v) = bench(&node.url(), &["consume", "--topic", "t", "--from", "245"])
        .await
        .expect("consume");
    assert_eq!((&v["records"], &v["requests"]), (&json!(5), &json!(1)));
}

#[tokio::test]
async fn consume_falls_back_to_base64_for_binary_values() {
    let node = MockNode::start(consuming_node(false)).await;
    let (_, v) = bench(&node.url(), &["consume", "--topic", "t", "--batch", "1000"])
        .await
        .expect("consume");
    assert_eq!((&v["records"], &v["bytes"]), (&json!(280), &json!(2800)));
    assert_eq!(v["errors"], 0);
}

#[tokio::test]
async fn a_missing_topic_is_reported() {
    let node = MockNode::start(|_: &Request| {
        Reply::error(404, "unknown_topic", r#"topic "t" does not exist"#)
    })
    .await;
    let err = bench(&node.url(), &["consume", "--topic", "t"])
        .await
        .expect_err("no topic");
    assert!(err.to_string().starts_with("unknown_topic"), "{err}");
}

#[test]
fn spreads_name_partitions_as_documented() {
    let spread = |mode, partitions| Spread { mode, partitions };
    let s = spread(BenchPartitionMode::Request, 4);
    assert_eq!(s.variants(), 4);
    assert_eq!((s.partition(2, 0), s.partition(2, 99)), (Some(2), Some(2)));
    let s = spread(BenchPartitionMode::Record, 3);
    assert_eq!(s.variants(), 3);
    let got: Vec<_> = (0..4).map(|j| s.partition(1, j)).collect();
    assert_eq!(got, vec![Some(1), Some(2), Some(0), Some(1)]);
    let s = spread(BenchPartitionMode::Node, 3);
    assert_eq!((s.variants(), s.partition(0, 5)), (1, None));
}

#[test]
fn filler_is_json_safe_ascii_of_the_size_asked() {
    let v = filler(100);
    assert_eq!(v.len(), 100);
    assert!(v.iter().all(u8::is_ascii_lowercase));
    assert_eq!(&v[..3], b"abc");
    assert!(filler(0).is_empty());
}
