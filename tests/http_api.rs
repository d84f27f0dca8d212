//! The HTTP API v1 end to end on a real in-process node: every endpoint and every error code a
//! healthy single node can produce, over real HTTP on loopback.
//!
//! Not covered here: `unavailable` (503) and `timeout` (504). A healthy node has no clean way to
//! answer them on purpose (they need a dead leader or a stalled replica); the chaos test kills
//! actors and covers `unavailable`. Their status mapping is unit-tested in `gateway/error.rs`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use support::api::{positions, Api};
use support::{eventually, start_node, test_config, unique_name, TestNode};

/// Checks the topic description shape and returns its partitions' (partition, hwm) pairs.
#[track_caller]
fn assert_topic_shape(t: &Value, name: &str, partitions: u64, rf: u64) -> Vec<(u64, u64)> {
    assert_eq!(t["name"], name, "{t}");
    assert_eq!(t["replication_factor"], rf, "{t}");
    let ps = t["partitions"].as_array().expect("partitions");
    assert_eq!(ps.len() as u64, partitions, "{t}");
    let mut ids: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    for p in ps {
        let id = p["partition"].as_u64().expect("partition id");
        ids.push(id);
        assert!(p["leader"].is_null() || p["leader"].is_string(), "{p}");
        let replicas = p["replicas"].as_array().expect("replicas");
        assert_eq!(replicas.len() as u64, rf, "{p}");
        assert!(replicas.iter().all(Value::is_string), "{p}");
        let start = p["log_start_offset"].as_u64().expect("log_start_offset");
        let hwm = p["high_watermark"].as_u64().expect("high_watermark");
        assert!(start <= hwm, "{p}");
        out.push((id, hwm));
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..partitions).collect::<Vec<_>>(), "{t}");
    out.sort_unstable();
    out
}

/// The values of a fetch answer's records.
fn values(fetched: &Value) -> Vec<String> {
    fetched["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["value"].as_str().expect("value").to_string())
        .collect()
}

fn offsets(fetched: &Value) -> Vec<u64> {
    fetched["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_groups_cluster_and_the_request_frame() {
    // Topic create/list/describe/delete, group offsets, cluster and health endpoints, unknown
    // routes and request ids answer the documented statuses, codes and shapes.
    let node = TestNode::start("api-topics-").await;
    let name = node.node.name.clone();
    let api = Api::new(node.url());

    // Health and readiness.
    assert_eq!(api.get("/healthz").await.assert_ok(200)["status"], "ok");
    assert_eq!(api.get("/readyz").await.assert_ok(200)["status"], "ok");

    // Create with explicit partitions and replication factor: 201 with the description.
    let r = api
        .create(json!({"name": "orders", "partitions": 2, "replication_factor": 1}))
        .await;
    let hwms = assert_topic_shape(r.assert_ok(201), "orders", 2, 1);
    assert_eq!(hwms, vec![(0, 0), (1, 0)]);
    for p in r.body["partitions"].as_array().expect("partitions") {
        assert_eq!(p["replicas"], json!([name.clone()]), "{p}");
        assert_eq!(p["log_start_offset"], 0, "{p}");
    }
    // The one node becomes every partition's leader.
    eventually(
        "orders to have leaders",
        Duration::from_secs(10),
        async || {
            let d = api.get("/v1/topics/orders").await;
            let ps = d.assert_ok(200)["partitions"].as_array()?.clone();
            ps.iter()
                .all(|p| p["leader"] == name.as_str())
                .then_some(())
        },
    )
    .await;

    // Defaults: 3 partitions, replication factor 1.
    let r = api.create(json!({"name": "defaults"})).await;
    assert_topic_shape(r.assert_ok(201), "defaults", 3, 1);

    // 409 for an existing name, whatever the other fields say.
    api.create(json!({"name": "orders"}))
        .await
        .assert_error(409, "topic_exists");
    api.create(json!({"name": "orders", "partitions": 5}))
        .await
        .assert_error(409, "topic_exists");

    // 400 for bad names, zero partitions, an unplaceable replication factor, bad bodies.
    let long = "a".repeat(250);
    for bad in [
        json!({"name": "a/b"}),
        json!({"name": ""}),
        json!({"name": long}),
        json!({"name": "sp ace"}),
        json!({"name": "zero", "partitions": 0}),
        json!({"name": "zero-rf", "replication_factor": 0}),
        json!({"name": "rf2", "replication_factor": 2}),
        json!({"name": "neg", "partitions": -1}),
        json!({"name": "typo", "partitions": 1, "partitons": 2}),
        json!({"partitions": 1}),
    ] {
        let r = api.create(bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        r.assert_error(400, "invalid_request");
    }
    api.post_raw("/v1/topics", b"{not json")
        .await
        .assert_error(400, "invalid_request");
    api.post_raw("/v1/topics", b"")
        .await
        .assert_error(400, "invalid_request");
    // The longest legal name (249) is accepted.
    let longest = "b".repeat(249);
    let r = api.create(json!({"name": longest, "partitions": 1})).await;
    assert_topic_shape(r.assert_ok(201), &longest, 1, 1);
    // None of the refused topics exists.
    for n in ["zero", "zero-rf", "rf2", "neg", "typo"] {
        api.get(&format!("/v1/topics/{n}"))
            .await
            .assert_error(404, "unknown_topic");
    }

    // List: every created topic, with the description shape.
    let r = api.get("/v1/topics").await;
    let listed = r.assert_ok(200)["topics"]
        .as_array()
        .expect("topics")
        .clone();
    let mut names: Vec<&str> = listed
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec![longest.as_str(), "defaults", "orders"]);
    for t in &listed {
        let n = t["partitions"].as_array().expect("partitions").len() as u64;
        assert_topic_shape(t, t["name"].as_str().expect("name"), n, 1);
    }

    // Describe: 404 unknown_topic for a missing topic, 400 for a bad name in the path.
    api.get("/v1/topics/missing")
        .await
        .assert_error(404, "unknown_topic");
    api.get("/v1/topics/bad%21name")
        .await
        .assert_error(400, "invalid_request");

    // Groups: commit then read back offset, high watermark and lag.
    let produced = api
        .produce_ok(
            "orders",
            json!({"records": [
                {"value": "a", "partition": 0},
                {"value": "b", "partition": 0},
                {"value": "c", "partition": 0},
                {"value": "d", "partition": 1}
            ]}),
        )
        .await;
    assert_eq!(produced, vec![(0, 0), (0, 1), (0, 2), (1, 0)]);
    let r = api
        .post(
            "/v1/groups/g1/offsets",
            json!({"offsets": [
                {"topic": "orders", "partition": 0, "offset": 2},
                {"topic": "orders", "partition": 1, "offset": 1}
            ]}),
        )
        .await;
    assert_eq!(r.assert_ok(200)["committed"], 2);
    let r = api.get("/v1/groups/g1/offsets").await;
    let body = r.assert_ok(200);
    assert_eq!(body["group"], "g1");
    let mut got: Vec<Value> = body["offsets"].as_array().expect("offsets").clone();
    got.sort_by_key(|o| o["partition"].as_u64());
    assert_eq!(
        got,
        vec![
            json!({"topic": "orders", "partition": 0, "offset": 2, "high_watermark": 3, "lag": 1}),
            json!({"topic": "orders", "partition": 1, "offset": 1, "high_watermark": 1, "lag": 0}),
        ]
    );
    // A later commit moves the offset.
    api.post(
        "/v1/groups/g1/offsets",
        json!({"offsets": [{"topic": "orders", "partition": 0, "offset": 3}]}),
    )
    .await
    .assert_ok(200);
    let r = api.get("/v1/groups/g1/offsets").await;
    let p0 = r.assert_ok(200)["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .find(|o| o["partition"] == 0)
        .expect("partition 0")
        .clone();
    assert_eq!(
        (p0["offset"].clone(), p0["lag"].clone()),
        (json!(3), json!(0))
    );
    // A group that never committed has no offsets.
    let r = api.get("/v1/groups/never/offsets").await;
    assert_eq!(r.assert_ok(200)["offsets"], json!([]));
    // Commit errors: unknown topic, unknown partition, bad group name, bad bodies.
    api.post(
        "/v1/groups/g1/offsets",
        json!({"offsets": [{"topic": "missing", "partition": 0, "offset": 0}]}),
    )
    .await
    .assert_error(404, "unknown_topic");
    api.post(
        "/v1/groups/g1/offsets",
        json!({"offsets": [{"topic": "orders", "partition": 2, "offset": 0}]}),
    )
    .await
    .assert_error(404, "unknown_partition");
    api.post(
        "/v1/groups/bad%21group/offsets",
        json!({"offsets": [{"topic": "orders", "partition": 0, "offset": 0}]}),
    )
    .await
    .assert_error(400, "invalid_request");
    api.get("/v1/groups/bad%21group/offsets")
        .await
        .assert_error(400, "invalid_request");
    for bad in [
        json!({"offsets": []}),
        json!({"offsets": [{"topic": "orders", "partition": 0, "offset": -1}]}),
        json!({"offsets": [{"topic": "orders", "partition": 0}]}),
        json!({"offsets": [{"topic": "a/b", "partition": 0, "offset": 0}]}),
    ] {
        let r = api.post("/v1/groups/g1/offsets", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        r.assert_error(400, "invalid_request");
    }
    // A refused commit changed nothing.
    let r = api.get("/v1/groups/g1/offsets").await;
    assert_eq!(
        r.assert_ok(200)["offsets"]
            .as_array()
            .expect("offsets")
            .len(),
        2
    );

    // Delete: 204, then 404 for describe, produce, fetch and a second delete.
    let r = api.delete("/v1/topics/orders").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.body, Value::Null);
    api.get("/v1/topics/orders")
        .await
        .assert_error(404, "unknown_topic");
    api.produce("orders", json!({"records": [{"value": "x"}]}))
        .await
        .assert_error(404, "unknown_topic");
    api.fetch("orders", "0", "")
        .await
        .assert_error(404, "unknown_topic");
    api.delete("/v1/topics/orders")
        .await
        .assert_error(404, "unknown_topic");
    api.delete("/v1/topics/bad%21name")
        .await
        .assert_error(400, "invalid_request");
    let r = api.get("/v1/topics").await;
    let names: BTreeSet<String> = r.assert_ok(200)["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect();
    assert!(!names.contains("orders"), "{names:?}");

    // Re-created under the same name, the topic starts empty at offset 0: the old data is gone.
    let r = api.create(json!({"name": "orders", "partitions": 2})).await;
    assert_eq!(
        assert_topic_shape(r.assert_ok(201), "orders", 2, 1),
        vec![(0, 0), (1, 0)]
    );
    let f = api.fetch_ok("orders", 0, "offset=earliest").await;
    assert_eq!(f["records"], json!([]), "{f}");
    assert_eq!(
        (f["next_offset"].clone(), f["high_watermark"].clone()),
        (json!(0), json!(0))
    );
    let produced = api
        .produce_ok(
            "orders",
            json!({"records": [{"value": "new", "partition": 0}]}),
        )
        .await;
    assert_eq!(produced, vec![(0, 0)]);
    let f = api.fetch_ok("orders", 0, "offset=earliest").await;
    assert_eq!(values(&f), vec!["new"]);
    assert_eq!(f["high_watermark"], 1);

    // Cluster: this one node, up, and the metadata leader.
    let r = api.get("/v1/cluster").await;
    let c = r.assert_ok(200);
    let nodes = c["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{c}");
    assert_eq!(nodes[0]["name"], name.as_str(), "{c}");
    assert_eq!(nodes[0]["status"], "up", "{c}");
    assert!(
        nodes[0]["cluster_addr"]
            .as_str()
            .is_some_and(|a| !a.is_empty()),
        "{c}"
    );
    assert_eq!(
        nodes[0]["http_addr"],
        node.node.http_addr.to_string(),
        "the advertised http_addr is the one the node serves on: {c}"
    );
    assert_eq!(c["metadata_leader"], name.as_str(), "{c}");

    // Unknown routes and wrong methods: 404 not_found with the JSON error shape.
    api.get("/v1/nope").await.assert_error(404, "not_found");
    api.get("/").await.assert_error(404, "not_found");
    api.raw(Method::PUT, "/v1/topics", None, None)
        .await
        .assert_error(404, "not_found");
    api.raw(
        Method::POST,
        "/v1/topics/orders",
        Some(b"{}".to_vec()),
        None,
    )
    .await
    .assert_error(404, "not_found");

    // Request ids: a sane client id is echoed on successes and errors alike; others are replaced.
    let r = api
        .raw(Method::GET, "/v1/topics", None, Some("req-42"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-request-id"], "req-42");
    let r = api
        .raw(Method::GET, "/v1/topics/missing", None, Some("req-43"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-request-id"], "req-43");
    let r = api.raw(Method::GET, "/v1/nope", None, Some("req-44")).await;
    assert_eq!(r.headers["x-request-id"], "req-44");
    let long_id = "x".repeat(129);
    let r = api.raw(Method::GET, "/healthz", None, Some(&long_id)).await;
    let id = r.headers["x-request-id"].to_str().expect("ascii");
    assert_ne!(id, long_id);
    // Two requests without an id get different ones.
    let a = api.get("/healthz").await.headers["x-request-id"].clone();
    let b = api.get("/healthz").await.headers["x-request-id"].clone();
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_long_poll_and_metrics() {
    // Produce places records as documented and fetch returns them byte for byte, with every
    // parameter and error of both, long polls, and the metrics a produce moves.
    let node = TestNode::start("api-records-").await;
    let api = Api::new(node.url());
    api.create(json!({"name": "t", "partitions": 3}))
        .await
        .assert_ok(201);

    // Everything produced, by (partition, offset) -> value, checked against fetches at the end.
    let mut log: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut record = |pos: (u64, u64), value: &[u8]| {
        assert!(
            log.insert(pos, value.to_vec()).is_none(),
            "offset {pos:?} reused"
        );
    };

    // Explicit partitions: positions come back in request order; each partition counts from 0.
    let vals = ["a", "b", "c", "d", "e"];
    let got = api
        .produce_ok(
            "t",
            json!({"records": [
                {"value": "a", "partition": 0},
                {"value": "b", "partition": 1},
                {"value": "c", "partition": 0},
                {"value": "d", "partition": 2},
                {"value": "e", "partition": 1}
            ]}),
        )
        .await;
    assert_eq!(got, vec![(0, 0), (1, 0), (0, 1), (2, 0), (1, 1)]);
    for (pos, v) in got.iter().zip(vals) {
        record(*pos, v.as_bytes());
    }

    // Keyed records land on a stable partition; keyless ones spread over every partition. The
    // records of one request on one partition are contiguous, in request order.
    // Records 0..6 alternate two keys; records 6..12 have no key.
    let req: Vec<Value> = (0..12)
        .map(|i| match i {
            0..6 if i % 2 == 0 => json!({"key": "user-1", "value": format!("k1-{i}")}),
            0..6 => json!({"key": "user-2", "value": format!("k2-{i}")}),
            _ => json!({"value": format!("nokey-{i}")}),
        })
        .collect();
    let got = api.produce_ok("t", json!({ "records": req })).await;
    assert_eq!(got.len(), 12);
    let mut per_partition: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (i, pos) in got.iter().enumerate() {
        per_partition.entry(pos.0).or_default().push(pos.1);
        record(*pos, req[i]["value"].as_str().expect("value").as_bytes());
    }
    for (p, offs) in &per_partition {
        let first = offs[0];
        let want: Vec<u64> = (first..first + offs.len() as u64).collect();
        assert_eq!(
            offs, &want,
            "partition {p}: not contiguous in request order"
        );
    }
    let key1: BTreeSet<u64> = (0..6).step_by(2).map(|i| got[i].0).collect();
    let key2: BTreeSet<u64> = (1..6).step_by(2).map(|i| got[i].0).collect();
    assert_eq!(key1.len(), 1, "one key, one partition: {got:?}");
    assert_eq!(key2.len(), 1, "one key, one partition: {got:?}");
    let keyless: BTreeSet<u64> = (6..12).map(|i| got[i].0).collect();
    assert_eq!(
        keyless.len(),
        3,
        "keyless records spread over every partition: {got:?}"
    );
    // The same key in a later request goes to the same partition.
    let again = api
        .produce_ok(
            "t",
            json!({"records": [{"key": "user-1", "value": "k1-again"}]}),
        )
        .await;
    assert_eq!(again[0].0, *key1.first().expect("a partition"));
    record(again[0], b"k1-again");

    // Headers and timestamps round trip; the leader stamps records sent without one.
    // Raw JSON text: a `json!` object would merge the repeated header name.
    let r = api
        .post_raw(
            "/v1/topics/t/records",
            br#"{"records": [
                {"value": "with-meta", "partition": 2, "key": "k",
                 "headers": {"h1": "v1", "h2": "v2", "h1": "v3"}, "timestamp": 1700000000123},
                {"value": "no-meta", "partition": 2}
            ]}"#,
        )
        .await;
    let got = positions(r.assert_ok(200));
    record(got[0], b"with-meta");
    record(got[1], b"no-meta");
    let f = api
        .fetch_ok("t", 2, &format!("offset={}&max_records=2", got[0].1))
        .await;
    let recs = f["records"].as_array().expect("records");
    assert_eq!(recs[0]["offset"], got[0].1);
    assert_eq!(recs[0]["key"], "k");
    assert_eq!(recs[0]["value"], "with-meta");
    assert_eq!(recs[0]["timestamp"], 1700000000123i64);
    // Repeated header names are kept, in order: compare the raw JSON text.
    let raw = reqwest::get(format!(
        "{}/v1/topics/t/partitions/2/records?offset={}&max_records=1",
        node.url(),
        got[0].1
    ))
    .await
    .expect("fetch")
    .text()
    .await
    .expect("text");
    assert!(
        raw.contains(r#""headers":{"h1":"v1","h2":"v2","h1":"v3"}"#),
        "{raw}"
    );
    assert_eq!(recs[1]["key"], Value::Null);
    assert_eq!(recs[1]["headers"], json!({}));
    assert!(
        recs[1]["timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{f}"
    );

    // base64 carries arbitrary bytes in keys, values and header values.
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let key = vec![0xffu8, 0x00, 0x80, 0x7f];
    let header = vec![0xc3u8, 0x28, 0x00];
    let got = api
        .produce_ok(
            "t",
            json!({"encoding": "base64", "records": [{
                "partition": 1,
                "key": BASE64.encode(&key),
                "value": BASE64.encode(&all_bytes),
                "headers": {"bin": BASE64.encode(&header)}
            }]}),
        )
        .await;
    let (bp, bo) = got[0];
    record(got[0], &all_bytes);
    let f = api
        .fetch_ok(
            "t",
            bp,
            &format!("offset={bo}&max_records=1&encoding=base64"),
        )
        .await;
    let r0 = &f["records"][0];
    let decode = |v: &Value| BASE64.decode(v.as_str().expect("string")).expect("base64");
    assert_eq!(decode(&r0["key"]), key);
    assert_eq!(decode(&r0["value"]), all_bytes);
    assert_eq!(decode(&r0["headers"]["bin"]), header);
    // Those bytes cannot be answered as utf8: 400, never lossy.
    api.fetch("t", &bp.to_string(), &format!("offset={bo}"))
        .await
        .assert_error(400, "invalid_request");
    // A base64 fetch of utf8-produced records answers their bytes.
    let f = api
        .fetch_ok("t", 0, "offset=0&max_records=1&encoding=base64")
        .await;
    assert_eq!(decode(&f["records"][0]["value"]), b"a");
    // utf8 (the default, and explicit) carries any Unicode text.
    let got = api
        .produce_ok(
            "t",
            json!({"encoding": "utf8", "records": [{"value": "héllo ✓ \u{1F600}", "partition": 0}]}),
        )
        .await;
    record(got[0], "héllo ✓ \u{1F600}".as_bytes());

    // Produce errors.
    for (bad, status, code) in [
        (json!({"records": []}), 400, "invalid_request"),
        (json!({}), 400, "invalid_request"),
        (json!({"records": [{"key": "k"}]}), 400, "invalid_request"),
        (json!({"records": [{"value": 5}]}), 400, "invalid_request"),
        (
            json!({"records": [{"value": "x", "colour": "red"}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"records": [{"value": "x", "partition": -1}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"encoding": "hex", "records": [{"value": "x"}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"encoding": "base64", "records": [{"value": "not base64!"}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"encoding": "base64", "records": [{"value": "eA==", "key": "%%%"}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"encoding": "base64", "records": [{"value": "eA==", "headers": {"h": "@@"}}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"records": [{"value": "x", "partition": 3}]}),
            404,
            "unknown_partition",
        ),
        (
            json!({"records": [{"value": "x", "partition": 0}, {"value": "y", "partition": 99}]}),
            404,
            "unknown_partition",
        ),
        (
            json!({"records": [{"value": "x".repeat((1 << 20) + 1)}]}),
            413,
            "payload_too_large",
        ),
    ] {
        let r = api.produce("t", bad.clone()).await;
        let shown: String = bad.to_string().chars().take(120).collect();
        assert_eq!(r.status, status, "{shown}: {r:?}");
        r.assert_error(status, code);
    }
    api.post_raw("/v1/topics/t/records", b"{\"records\": [")
        .await
        .assert_error(400, "invalid_request");
    api.produce("missing", json!({"records": [{"value": "x"}]}))
        .await
        .assert_error(404, "unknown_topic");
    api.produce("bad%21name", json!({"records": [{"value": "x"}]}))
        .await
        .assert_error(400, "invalid_request");
    // A value of exactly the limit is accepted.
    let big = "v".repeat(1 << 20);
    let got = api
        .produce_ok("t", json!({"records": [{"value": big, "partition": 2}]}))
        .await;
    record(got[0], big.as_bytes());

    // Every produced record is where its position said, and nothing else is there (the refused
    // requests wrote nothing).
    for p in 0..3u64 {
        // Page through with next_offset: max_bytes (1 MiB by default) splits the big record off.
        let mut stored: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut next = 0u64;
        loop {
            let f = api
                .fetch_ok("t", p, &format!("offset={next}&encoding=base64"))
                .await;
            let bytes = values(&f)
                .into_iter()
                .map(|v| BASE64.decode(v).expect("base64"));
            stored.extend(offsets(&f).into_iter().zip(bytes));
            assert_eq!(f["log_start_offset"], 0);
            let hwm = f["high_watermark"].as_u64().expect("high_watermark");
            next = f["next_offset"].as_u64().expect("next_offset");
            assert!(
                next <= hwm,
                "{p}: next_offset {next} past the high watermark {hwm}"
            );
            if next == hwm {
                break;
            }
            assert!(
                !f["records"].as_array().expect("records").is_empty(),
                "{p}: stuck at {next}"
            );
        }
        let want: Vec<(u64, Vec<u8>)> = log
            .range((p, 0)..(p + 1, 0))
            .map(|((_, o), v)| (*o, v.clone()))
            .collect();
        // Compare compactly: a 1 MiB value would flood the failure message.
        let brief = |v: &[(u64, Vec<u8>)]| -> Vec<(u64, usize, String)> {
            v.iter()
                .map(|(o, b)| {
                    (
                        *o,
                        b.len(),
                        String::from_utf8_lossy(&b[..b.len().min(12)]).into(),
                    )
                })
                .collect()
        };
        assert!(
            stored == want,
            "partition {p}: stored {:?}, produced {:?}",
            brief(&stored),
            brief(&want)
        );
        assert_eq!(next, want.len() as u64);
    }

    // Fetch parameters on partition 0.
    let hwm0 = log.range((0, 0)..(1, 0)).count() as u64;
    assert!(hwm0 >= 4, "partition 0 has {hwm0} records");
    let all0 = api.fetch_ok("t", 0, "").await; // defaults: earliest
    assert_eq!(offsets(&all0), (0..hwm0).collect::<Vec<_>>());
    let f = api.fetch_ok("t", 0, "offset=latest").await;
    assert_eq!(f["records"], json!([]));
    assert_eq!(
        (f["next_offset"].clone(), f["high_watermark"].clone()),
        (json!(hwm0), json!(hwm0))
    );
    let f = api.fetch_ok("t", 0, "offset=1&max_records=2").await;
    assert_eq!(offsets(&f), vec![1, 2]);
    assert_eq!(f["next_offset"], 3);
    assert_eq!(f["high_watermark"], hwm0);
    let f = api.fetch_ok("t", 0, &format!("offset={}", hwm0 - 1)).await;
    assert_eq!(offsets(&f), vec![hwm0 - 1]);
    assert_eq!(f["next_offset"], hwm0);
    // max_bytes below one record still answers one record.
    let f = api.fetch_ok("t", 0, "offset=0&max_bytes=1").await;
    assert_eq!(offsets(&f), vec![0]);
    assert_eq!(f["next_offset"], 1);
    // The 1 MiB record with max_bytes=1 comes alone too.
    let big_at = log
        .iter()
        .find(|(_, v)| v.len() == 1 << 20)
        .map(|(pos, _)| *pos)
        .expect("the big record");
    let f = api
        .fetch_ok("t", big_at.0, &format!("offset={}&max_bytes=1", big_at.1))
        .await;
    assert_eq!(offsets(&f), vec![big_at.1]);
    // At the high watermark: empty, 200. Past it: 416 with the bounds in the error body.
    let f = api.fetch_ok("t", 0, &format!("offset={hwm0}")).await;
    assert_eq!(f["records"], json!([]));
    assert_eq!(f["next_offset"], hwm0);
    let r = api.fetch("t", "0", &format!("offset={}", hwm0 + 1)).await;
    r.assert_error(416, "offset_out_of_range");
    assert_eq!(r.body["error"]["log_start_offset"], 0, "{r:?}");
    assert_eq!(r.body["error"]["high_watermark"], hwm0, "{r:?}");
    // Malformed or negative parameters are 400; so are unknown and repeated ones.
    for q in [
        "offset=-1",
        "offset=abc",
        "offset=",
        "offset=%2B1",
        "offset=99999999999999999999999",
        "max_records=0",
        "max_records=-1",
        "max_records=x",
        "max_bytes=0",
        "max_bytes=-5",
        "max_wait_ms=-5",
        "max_wait_ms=soon",
        "encoding=hex",
        "offest=1",
        "offset=1&offset=2",
        "offset=%zz",
    ] {
        let r = api.fetch("t", "0", q).await;
        assert_eq!(r.status, 400, "{q}: {r:?}");
        r.assert_error(400, "invalid_request");
    }
    api.fetch("t", "x", "")
        .await
        .assert_error(400, "invalid_request");
    api.fetch("t", "-1", "")
        .await
        .assert_error(400, "invalid_request");
    api.fetch("t", "3", "")
        .await
        .assert_error(404, "unknown_partition");
    api.fetch("missing", "0", "")
        .await
        .assert_error(404, "unknown_topic");

    // Long poll: a fetch parked at the high watermark answers the record produced after it.
    let hwm1 = log.range((1, 0)..(2, 0)).count() as u64;
    let poller = {
        let api = Api::new(node.url());
        tokio::spawn(async move {
            api.fetch_ok("t", 1, &format!("offset={hwm1}&max_wait_ms=5000"))
                .await
        })
    };
    let produced = api
        .produce_ok("t", json!({"records": [{"value": "late", "partition": 1}]}))
        .await;
    assert_eq!(produced, vec![(1, hwm1)]);
    let f = poller.await.expect("the long poll task");
    assert_eq!(values(&f), vec!["late"], "{f}");
    assert_eq!(offsets(&f), vec![hwm1]);
    assert_eq!(f["next_offset"], hwm1 + 1);
    // A long poll that sees nothing answers empty at the high watermark once its wait is over.
    let f = api
        .fetch_ok("t", 0, &format!("offset={hwm0}&max_wait_ms=50"))
        .await;
    assert_eq!(f["records"], json!([]));
    assert_eq!(f["next_offset"], hwm0);
    assert_eq!(f["high_watermark"], hwm0);

    // Metrics: the produce and request counters and the high watermark gauge are exported.
    let text = reqwest::get(format!("http://{}/metrics", node.node.metrics_addr))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    for name in [
        "daftka_append_records_total",
        "daftka_http_requests_total",
        "daftka_high_watermark",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("daftka_http_requests_total")
                && l.contains("/v1/topics/{topic}/records")),
        "requests are labelled by route template:\n{text}"
    );
    // Every produce waited for an fsync round and was timed: the writer's rounds and the request
    // durations are counted.
    let count = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("daftka_storage_round_seconds_count{step=\"persist\"}") >= 1.0,
        "persist rounds are timed:\n{text}"
    );
    assert!(
        count("daftka_http_request_duration_seconds_count{route=\"/v1/topics/{topic}/records\"}")
            >= 1.0,
        "produce requests are timed:\n{text}"
    );
    // The appended-records counters add up to at least what was produced.
    let appended: f64 = text
        .lines()
        .filter(|l| l.starts_with("daftka_append_records_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        appended >= (log.len() + 1) as f64,
        "appended {appended}, produced {}",
        log.len() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_answer_413_or_cap() {
    // Each configured request limit refuses with 413 payload_too_large, fetch limits cap the
    // answer instead of refusing, and a request just within the limits succeeds.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&unique_name("api-limits-"), dir.path());
    config.limits.body_bytes_max = 4096;
    config.limits.value_bytes_max = 1024;
    config.limits.key_bytes_max = 16;
    config.limits.header_bytes_max = 16;
    config.limits.headers_per_record_max = 2;
    config.limits.records_per_request_max = 5;
    config.limits.offsets_per_commit_max = 2;
    config.limits.fetch_records_max = 3;
    config.limits.fetch_wait_max = Duration::from_millis(100);
    let node = start_node(config).await;
    let api = Api::new(format!("http://{}", node.http_addr));
    api.create(json!({"name": "t", "partitions": 1}))
        .await
        .assert_ok(201);

    let rec = |value: &str| json!({"value": value});
    for (what, body) in [
        (
            "body",
            json!({"records": [rec(&"x".repeat(1000)), rec(&"x".repeat(1000)), rec(&"x".repeat(1000)), rec(&"x".repeat(1000)), rec(&"x".repeat(200))]}),
        ),
        ("value", json!({"records": [rec(&"x".repeat(1025))]})),
        (
            "key",
            json!({"records": [{"value": "v", "key": "k".repeat(17)}]}),
        ),
        (
            "header",
            json!({"records": [{"value": "v", "headers": {"name": "v".repeat(13)}}]}),
        ),
        (
            "headers",
            json!({"records": [{"value": "v", "headers": {"a": "1", "b": "2", "c": "3"}}]}),
        ),
        (
            "records",
            json!({"records": [rec("1"), rec("2"), rec("3"), rec("4"), rec("5"), rec("6")]}),
        ),
    ] {
        let r = api.produce("t", body).await;
        assert_eq!(r.status, 413, "{what}: {r:?}");
        r.assert_error(413, "payload_too_large");
    }
    // A body over the limit is refused on every route that reads one.
    let padded = format!("{{\"name\": \"padded\"{}}}", " ".repeat(5000));
    api.post_raw("/v1/topics", padded.as_bytes())
        .await
        .assert_error(413, "payload_too_large");
    // A chunked body (no content-length) is cut off once it grows past the limit.
    let status_line = chunked_post(node.http_addr, "/v1/topics/t/records", 5, 1024).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    // Too many offsets in one commit.
    let o = json!({"topic": "t", "partition": 0, "offset": 0});
    api.post("/v1/groups/g/offsets", json!({"offsets": [o, o, o]}))
        .await
        .assert_error(413, "payload_too_large");
    // Nothing refused was written.
    let f = api.fetch_ok("t", 0, "").await;
    assert_eq!(f["high_watermark"], 0, "{f}");

    // Exactly at each limit: accepted.
    let got = api
        .produce_ok(
            "t",
            json!({"records": [
                {"value": "x".repeat(1024), "key": "k".repeat(16),
                 "headers": {"name": "v".repeat(12), "b": "2"}},
                rec("2"), rec("3"), rec("4"), rec("5")
            ]}),
        )
        .await;
    assert_eq!(got, vec![(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)]);
    api.post("/v1/groups/g/offsets", json!({"offsets": [o, o]}))
        .await
        .assert_ok(200);
    // max_records above the cap is capped, not refused.
    let f = api.fetch_ok("t", 0, "offset=0&max_records=100").await;
    assert_eq!(offsets(&f), vec![0, 1, 2]);
    assert_eq!(f["next_offset"], 3);
    assert_eq!(f["high_watermark"], 5);
    // max_wait_ms above the cap is capped: a ten-minute long poll answers empty after the cap.
    let f = tokio::time::timeout(
        Duration::from_secs(10),
        api.fetch_ok("t", 0, "offset=5&max_wait_ms=600000"),
    )
    .await
    .expect("the long poll is capped at limits.fetch_wait_max");
    assert_eq!(f["records"], json!([]));
    assert_eq!(f["next_offset"], 5);
}

/// Sends a POST with a chunked body of `chunks` chunks of `chunk_len` bytes over a raw socket
/// and returns the response's status line.
async fn chunked_post(
    addr: std::net::SocketAddr,
    path: &str,
    chunks: usize,
    chunk_len: usize,
) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer and close before the whole body is sent: write errors are fine.
    for _ in 0..chunks {
        let chunk = format!("{chunk_len:x}\r\n{}\r\n", " ".repeat(chunk_len));
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .await
        .expect("a status line");
    line
}
