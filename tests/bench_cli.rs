//! `daftka bench` end to end: the real binary as a load generator against a real node process,
//! over HTTP and over the native client. Only the summaries' shape and counts are checked, never
//! how fast anything was.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::{free_port, BinaryNode};

/// Runs `daftka ARGS...` off the async runtime.
async fn daftka(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_daftka"))
            .args(&args)
            .env_remove("DAFTKA_URL")
            .env_remove("DAFTKA_COOKIE")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the daftka binary")
    })
    .await
    .expect("the blocking task")
}

/// Runs `daftka bench ARGS... --json DIR/NAME.json`, which must succeed; answers its stdout and
/// the JSON summary.
async fn bench(dir: &Path, name: &str, args: &[&str]) -> (String, Value) {
    let json = dir.join(format!("{name}.json"));
    let mut argv: Vec<String> = std::iter::once("bench")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    argv.push("--json".into());
    argv.push(json.display().to_string());
    let out = daftka(argv.clone()).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "daftka {argv:?} failed ({:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("the JSON summary is written");
    let summary: Value = serde_json::from_str(&text).expect("the summary is JSON");
    (stdout, summary)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// The fields every summary has, with sane values: `records` as expected, a positive rate, and
/// ordered percentiles.
fn check_summary(v: &Value, workload: &str, transport: &str, records: u64) {
    assert_eq!(v["workload"], workload, "{v}");
    assert_eq!(v["transport"], transport, "{v}");
    assert_eq!(v["records"], records, "{v}");
    assert!(num(v, "seconds") > 0.0, "{v}");
    assert!(num(v, "records_per_sec") > 0.0, "{v}");
    assert!(num(v, "mb_per_sec") > 0.0, "{v}");
    assert!(num(v, "requests") >= 1.0, "{v}");
    assert!(num(v, "errors") >= 0.0, "{v}");
    let p: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]
        .iter()
        .map(|k| num(v, k))
        .collect();
    assert!(p[0] > 0.0, "{v}");
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {v}"
    );
    for key in [
        "record_size",
        "batch",
        "producers",
        "partitions",
        "replication_factor",
    ] {
        assert!(num(v, key) >= 1.0, "{key}: {v}");
    }
    assert!(v.get("rate").is_some(), "{v}");
}

/// The sum of the topic's high watermarks, over HTTP.
async fn records_in(url: &str, topic: &str) -> u64 {
    let v: Value = reqwest::get(format!("{url}/v1/topics/{topic}"))
        .await
        .expect("describe")
        .json()
        .await
        .expect("json");
    v["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["high_watermark"].as_u64().expect("high watermark"))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bench_produces_consumes_and_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = BinaryNode::spawn("a", &dir.path().join("node"));
    node.wait_ready(&reqwest::Client::new()).await;
    let url = node.url();
    let pid = node.child.id().to_string();

    // produce: exactly the records asked are acknowledged, and the node holds them.
    let (text, v) = bench(
        dir.path(),
        "produce",
        &[
            "produce",
            "--url",
            &url,
            "--topic",
            "b",
            "--partitions",
            "2",
            "--records",
            "2000",
            "--batch",
            "100",
            "--producers",
            "4",
            "--node-pid",
            &pid,
        ],
    )
    .await;
    check_summary(&v, "produce", "http", 2000);
    assert_eq!((&v["partitions"], &v["batch"]), (&2.into(), &100.into()));
    assert_eq!(
        (&v["producers"], &v["record_size"]),
        (&4.into(), &100.into())
    );
    assert_eq!(v["bytes"], 200_000);
    assert_eq!(v["rate"], Value::Null);
    assert!(num(&v, "cpu_percent") >= 0.0, "{v}");
    assert!(num(&v, "rss_bytes") > 0.0, "{v}");
    assert!(text.starts_with("bench produce over http"), "{text}");
    assert!(text.contains("\nrecords      2000\n"), "{text}");
    assert!(text.contains("\nlatency ms   p50 "), "{text}");
    if v["errors"] == 0 {
        assert_eq!(records_in(&url, "b").await, 2000);
    }

    // consume: reads back what is there, in fetches of at most --batch.
    let (_, v) = bench(
        dir.path(),
        "consume",
        &[
            "consume", "--url", &url, "--topic", "b", "--batch", "300", "-q",
        ],
    )
    .await;
    let stored = records_in(&url, "b").await;
    check_summary(&v, "consume", "http", stored);
    assert_eq!(v["bytes"], stored * 100);
    assert!(num(&v, "requests") >= (stored / 300) as f64, "{v}");

    // e2e at a fixed rate: every acknowledged record is read back, latency per record.
    let (text, v) = bench(
        dir.path(),
        "e2e",
        &[
            "e2e",
            "--url",
            &url,
            "--topic",
            "b",
            "--records",
            "300",
            "--batch",
            "10",
            "--producers",
            "2",
            "--rate",
            "200",
            "-q",
        ],
    )
    .await;
    check_summary(&v, "e2e", "http", 300);
    assert_eq!(v["rate"], 200.0);
    assert!(
        num(&v, "produce_p50_ms") <= num(&v, "produce_p99_ms"),
        "{v}"
    );
    assert!(text.contains("(per record, produce to consume)"), "{text}");
    assert!(records_in(&url, "b").await >= 2300);

    // A bench that cannot work fails with the node's error and exit code 1.
    let out = daftka(
        ["bench", "consume", "--url", &url, "--topic", "nope", "-q"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: unknown_topic"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_bench_produces_consumes_and_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster_addr = format!("127.0.0.1:{}", free_port());
    let extra = [
        "--cluster-addr".to_string(),
        cluster_addr.clone(),
        "--cookie".into(),
        "bench-cookie".into(),
    ];
    let node = BinaryNode::spawn_with("a", &dir.path().join("node"), &extra);
    node.wait_ready(&reqwest::Client::new()).await;
    let native = [
        "--transport",
        "native",
        "--seed",
        cluster_addr.as_str(),
        "--cookie",
        "bench-cookie",
    ];
    let args = |rest: &[&str]| -> Vec<String> {
        rest.iter()
            .copied()
            .chain(native.iter().copied())
            .map(str::to_owned)
            .collect()
    };
    let run = async |name: &str, a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        bench(dir.path(), name, &a).await
    };

    let (text, v) = run(
        "produce",
        args(&[
            "produce",
            "--topic",
            "n",
            "--partitions",
            "3",
            "--records",
            "5000",
            "--batch",
            "500",
        ]),
    )
    .await;
    check_summary(&v, "produce", "native", 5000);
    assert_eq!((&v["partitions"], &v["producers"]), (&3.into(), &4.into()));
    assert_eq!(v["replication_factor"], 1);
    assert!(text.starts_with("bench produce over native"), "{text}");
    if v["errors"] == 0 {
        assert_eq!(records_in(&node.url(), "n").await, 5000);
    }

    let (_, v) = run(
        "consume",
        args(&["consume", "--topic", "n", "--records", "4000", "-q"]),
    )
    .await;
    check_summary(&v, "consume", "native", 4000);
    assert_eq!(v["bytes"], 400_000);

    let (_, v) = run(
        "e2e",
        args(&[
            "e2e",
            "--topic",
            "n",
            "--records",
            "400",
            "--batch",
            "20",
            "--rate",
            "100",
            "--partition-mode",
            "record",
            "-q",
        ]),
    )
    .await;
    check_summary(&v, "e2e", "native", 400);

    // A wrong cookie: no session, a clear error, exit 1.
    let out = daftka(
        [
            "bench",
            "produce",
            "--transport",
            "native",
            "--seed",
            &cluster_addr,
            "--cookie",
            "wrong",
            "--records",
            "10",
            "-q",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wrong cookie"), "{stderr}");
}

/// The table line of `key` in the suite's stdout.
fn table_line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {key} ")))
        .unwrap_or_else(|| panic!("no table line for {key}:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_runs_on_its_own_nodes_and_reports_each_row() {
    // `bench suite` starts its own nodes (this binary), runs the rows asked (with the RF 3 half of
    // T5 on a 3-node cluster) and reports them; the figures are only checked to be sane.
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("suite.json");
    let argv: Vec<String> = [
        "bench",
        "suite",
        "--quick",
        "--rows",
        "T1,T4,T5,T6,T7",
        "--json",
        json.to_str().expect("utf8 path"),
    ]
    .map(String::from)
    .to_vec();
    let out = daftka(argv).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "bench suite failed ({:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON is written"))
            .expect("the JSON parses");
    let keys: Vec<&String> = v.as_object().expect("one object").keys().collect();
    assert_eq!(
        keys,
        ["T1", "T4", "T4_http", "T5", "T5_rf3", "T6", "T7", "machine"],
        "{v}"
    );
    // The machine was probed before and after the rows (disk and CPU), shown under the table.
    for when in ["before", "after"] {
        let m = &v["machine"][when];
        assert!(num(m, "fsync_p50_ms") > 0.0, "{when}: {m}");
        assert!(
            num(m, "fsync_p50_ms") <= num(m, "fsync_max_ms"),
            "{when}: {m}"
        );
        assert!(num(m, "cpu_probe_ms") > 0.0, "{when}: {m}");
        assert!(
            stdout.contains(&format!("machine {when} the rows: fdatasync of 100 B p50 ")),
            "{stdout}"
        );
    }
    for key in ["T1", "T4", "T4_http", "T5", "T5_rf3"] {
        let r = &v[key];
        assert!(num(r, "records_per_sec") > 0.0, "{key}: {r}");
        assert!(num(r, "mb_per_sec") > 0.0, "{key}: {r}");
        let p: Vec<f64> = ["p50_ms", "p99_ms", "p999_ms", "max_ms"]
            .iter()
            .map(|k| num(r, k))
            .collect();
        assert!(p[0] > 0.0, "{key}: {r}");
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{key}: {r}");
        assert!(num(r, "cpu_percent") >= 0.0, "{key}: {r}");
        assert!(num(r, "rss_bytes") > 0.0, "{key}: {r}");
        assert_eq!(r["record_size"], 100, "{key}: {r}");
        assert!(
            r["met"].is_boolean() && r["target"].is_string(),
            "{key}: {r}"
        );
        assert!(table_line(&stdout, key).ends_with(" |"), "{stdout}");
    }
    // Quick sizes: T1 writes 200,000 records in batches of 1000; T4 reads them all back.
    assert_eq!(v["T1"]["records"], 200_000, "{v}");
    assert_eq!(
        (&v["T1"]["transport"], &v["T1"]["batch"]),
        (&"native".into(), &1000.into())
    );
    assert_eq!(v["T1"]["replication_factor"], 1);
    for key in ["T4", "T4_http"] {
        assert!(num(&v[key], "records") >= 200_000.0, "{key}: {v}");
        assert_eq!(v[key]["workload"], "consume");
    }
    assert_eq!(v["T4_http"]["transport"], "http");
    // T5: a fixed rate of 1,000 one-record requests per second, RF 1 on one node, RF 3 on three.
    for (key, rf, nodes) in [("T5", 1, 1), ("T5_rf3", 3, 3)] {
        assert_eq!(v[key]["rate"], 1000.0, "{key}");
        assert_eq!(v[key]["batch"], 1, "{key}");
        assert_eq!(v[key]["replication_factor"], rf, "{key}");
        assert_eq!(v[key]["nodes"], nodes, "{key}");
    }
    assert_eq!(v["T5_rf3"]["node_usage"].as_array().map(Vec::len), Some(3));
    // T6: the idle node's figures.
    assert_eq!(v["T6"]["partitions"], 200, "{v}");
    assert!(num(&v["T6"], "rss_bytes") > 0.0, "{v}");
    assert!(num(&v["T6"], "cpu_percent") >= 0.0, "{v}");
    // T7: the restart took some time, and the node still holds T1's records.
    assert!(num(&v["T7"], "seconds") > 0.0, "{v}");
    assert!(num(&v["T7"], "records") >= 200_000.0, "{v}");
    assert!(table_line(&stdout, "T7").contains(" s "), "{stdout}");
    assert!(stdout.starts_with("| row "), "{stdout}");

    // Every node the suite started is gone, and so is its data directory.
    for line in stderr.lines() {
        if let Some(pids) = line.split("(pids ").nth(1) {
            for pid in pids.trim_end_matches(')').split(", ") {
                assert!(
                    !Path::new(&format!("/proc/{pid}")).exists(),
                    "node {pid} still runs:\n{stderr}"
                );
            }
        }
        if let Some(data) = line.split("nodes' data in ").nth(1) {
            assert!(!Path::new(data).exists(), "{data} is left:\n{stderr}");
        }
    }
    assert!(stderr.contains("(pids "), "{stderr}");
    assert!(stderr.contains("T7 done in "), "{stderr}");
}
