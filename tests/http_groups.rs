//! Consumer groups over the HTTP API on a real in-process node: joining, polling records from the
//! group's positions, two-step rebalances, fenced commits, leaving, session expiry, the group list
//! and description, resets, and every error the group endpoints answer.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::api::Api;
use support::{eventually, metric, start_node, test_config, unique_name};

const WAIT: Duration = Duration::from_secs(20);

/// (topic, partition) pairs of an `assignment` or `revoking` list.
fn pairs(list: &Value) -> BTreeSet<(String, u64)> {
    list.as_array()
        .expect("a list of topics")
        .iter()
        .flat_map(|t| {
            let topic = t["topic"].as_str().expect("topic").to_string();
            t["partitions"]
                .as_array()
                .expect("partitions")
                .iter()
                .map(move |p| (topic.clone(), p.as_u64().expect("partition")))
        })
        .collect()
}

/// (partition, offset, value) of each polled record, checking the topic.
fn polled(body: &Value, topic: &str) -> Vec<(u64, u64, String)> {
    body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            assert_eq!(r["topic"], topic, "{r}");
            (
                r["partition"].as_u64().expect("partition"),
                r["offset"].as_u64().expect("offset"),
                r["value"].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

async fn produce(api: &Api, partition: u64, values: &[&str]) {
    let records: Vec<Value> = values
        .iter()
        .map(|v| json!({"value": v, "partition": partition}))
        .collect();
    api.produce("orders", json!({ "records": records }))
        .await
        .assert_ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_poll_rebalance_commit_leave_and_expire() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&unique_name("groups"), dir.path());
    config.groups.session_timeout_min = Duration::from_millis(200);
    config.groups.expiry_check_interval = Duration::from_millis(50);
    config.groups.lag_metrics_interval = Duration::from_millis(50);
    let node = start_node(config).await;
    let api = Api::new(format!("http://{}", node.http_addr));
    api.create(json!({"name": "orders", "partitions": 4}))
        .await
        .assert_ok(201);
    for p in 0..4 {
        produce(&api, p, &["a", "b", "c"]).await;
    }
    let members = "/v1/groups/g/members";

    // One member owns everything and reads every record once.
    let a = api
        .post(
            members,
            json!({"topics": ["orders"], "session_timeout_ms": 60000}),
        )
        .await;
    let a = a.assert_ok(201).clone();
    let a_id = a["member_id"].as_str().expect("member_id").to_string();
    assert_eq!(a["generation"], 1);
    assert_eq!(a["rebalancing"], false);
    assert_eq!(pairs(&a["assignment"]).len(), 4);
    let poll = |id: &str, q: &str| format!("/v1/groups/g/members/{id}/records?{q}");
    let first = api.get(&poll(&a_id, "max_records=100")).await;
    let got = polled(first.assert_ok(200), "orders");
    assert_eq!(got.len(), 12, "{got:?}");
    let again = api.get(&poll(&a_id, "max_wait_ms=0")).await;
    assert!(
        polled(again.assert_ok(200), "orders").is_empty(),
        "positions moved"
    );
    // A budget cuts a poll; the rest comes next time.
    produce(&api, 0, &["d", "e"]).await;
    let one = api.get(&poll(&a_id, "max_records=1")).await;
    assert_eq!(
        polled(one.assert_ok(200), "orders"),
        vec![(0, 3, "d".into())]
    );
    let rest = api.get(&poll(&a_id, "max_records=10")).await;
    assert_eq!(
        polled(rest.assert_ok(200), "orders"),
        vec![(0, 4, "e".into())]
    );
    let commit = |id: &str, generation: u64, p: u64, offset: u64| {
        json!({"member_id": id, "generation": generation,
               "offsets": [{"topic": "orders", "partition": p, "offset": offset}]})
    };
    for (p, next) in [(0, 5), (1, 3), (2, 3), (3, 3)] {
        api.post("/v1/groups/g/offsets", commit(&a_id, 1, p, next))
            .await
            .assert_ok(200);
    }

    // A second member: a is asked to give two partitions back and keeps them until it polls.
    let b = api
        .post(
            members,
            json!({"topics": ["orders"], "session_timeout_ms": 60000}),
        )
        .await;
    let b = b.assert_ok(201).clone();
    let b_id = b["member_id"].as_str().expect("member_id").to_string();
    assert_eq!(b["generation"], 2);
    assert!(pairs(&b["assignment"]).is_empty(), "a still owns them: {b}");
    assert_eq!(b["rebalancing"], true);
    let hb = |id: &str| format!("/v1/groups/g/members/{id}/heartbeat");
    let a2 = api.post(&hb(&a_id), json!({})).await.assert_ok(200).clone();
    assert_eq!(a2["generation"], 1);
    let revoking = pairs(&a2["revoking"]);
    assert_eq!(revoking.len(), 2, "{a2}");
    let moved = revoking.iter().next().expect("one revoked").1;
    let at = if moved == 0 { 5 } else { 3 };
    // Still a's until released: its commit counts, b's does not.
    api.post("/v1/groups/g/offsets", commit(&a_id, 1, moved, at))
        .await
        .assert_ok(200);
    api.post("/v1/groups/g/offsets", commit(&b_id, 2, moved, at))
        .await
        .assert_error(409, "not_assigned");
    // a's poll releases them; b then owns them.
    let a3 = api
        .get(&poll(&a_id, "max_wait_ms=0"))
        .await
        .assert_ok(200)
        .clone();
    assert_eq!(a3["generation"], 2);
    assert!(pairs(&a3["revoking"]).is_empty());
    let b2 = api.post(&hb(&b_id), json!({})).await.assert_ok(200).clone();
    assert_eq!(pairs(&b2["assignment"]), revoking);
    assert_eq!(b2["rebalancing"], false);

    // Fencing: partitions b owns now, a generation that does not exist, backwards, plain commits.
    api.post("/v1/groups/g/offsets", commit(&a_id, 1, moved, at))
        .await
        .assert_error(409, "not_assigned");
    api.post("/v1/groups/g/offsets", commit(&b_id, 9, moved, at))
        .await
        .assert_error(409, "stale_generation");
    api.post("/v1/groups/g/offsets", commit(&b_id, 2, moved, 1))
        .await
        .assert_error(409, "offset_backwards");
    api.post("/v1/groups/g/offsets", commit(&b_id, 2, moved, 99))
        .await
        .assert_error(416, "offset_out_of_range");
    api.post(
        "/v1/groups/g/offsets",
        json!({"offsets": [{"topic": "orders", "partition": moved, "offset": at}]}),
    )
    .await
    .assert_error(409, "group_active");
    api.post(
        "/v1/groups/g/offsets",
        json!({"member_id": b_id, "offsets": [{"topic": "orders", "partition": moved, "offset": 3}]}),
    )
    .await
    .assert_error(400, "invalid_request");

    // b reads its partitions from the group's commits: only what is new.
    produce(&api, moved, &["new"]).await;
    let b_read = api
        .get(&poll(&b_id, "max_wait_ms=5000"))
        .await
        .assert_ok(200)
        .clone();
    assert_eq!(
        polled(&b_read, "orders"),
        vec![(moved, at, "new".to_string())]
    );

    // The description and the list.
    let d = api.get("/v1/groups/g").await.assert_ok(200).clone();
    assert_eq!(d["state"], "stable", "{d}");
    assert_eq!(d["generation"], 2);
    assert_eq!(d["assignor"], "sticky");
    assert_eq!(d["members"].as_array().expect("members").len(), 2);
    let parts = d["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 4);
    let lag_of_moved = parts
        .iter()
        .find(|p| p["partition"] == moved)
        .expect("the moved partition");
    assert_eq!(lag_of_moved["committed"], at);
    assert_eq!(lag_of_moved["high_watermark"], at + 1);
    assert_eq!(lag_of_moved["lag"], 1);
    assert_eq!(lag_of_moved["member"], b_id.as_str());
    assert_eq!(d["lag"], 1, "{d}");
    // The metrics say the same: two members, two rebalances, the commits, the lag.
    let lag = format!("daftka_consumer_lag{{group=\"g\",partition=\"{moved}\",topic=\"orders\"}} ");
    eventually("the group metrics", WAIT, async || {
        let members = metric(&node, "daftka_group_members{group=\"g\"} ").await?;
        let rebalances = metric(&node, "daftka_group_rebalances_total{group=\"g\"} ").await?;
        let commits = metric(&node, "daftka_group_commits_total{group=\"g\"} ").await?;
        let lag = metric(&node, &lag).await?;
        (members == 2.0 && rebalances == 2.0 && commits == 5.0 && lag == 1.0).then_some(())
    })
    .await;
    let list = api.get("/v1/groups").await.assert_ok(200).clone();
    assert!(
        list["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["group"] == "g" && g["members"] == 2 && g["state"] == "stable"),
        "{list}"
    );

    // a leaves: b takes everything.
    let r = api.delete(&format!("/v1/groups/g/members/{a_id}")).await;
    assert_eq!(r.status, 204, "{r:?}");
    api.post(&hb(&a_id), json!({}))
        .await
        .assert_error(404, "unknown_member");
    let b3 = api.post(&hb(&b_id), json!({})).await.assert_ok(200).clone();
    assert_eq!(pairs(&b3["assignment"]).len(), 4, "{b3}");
    assert_eq!(b3["generation"], 3);

    // A member with a short session that stops heartbeating is removed.
    let c = api
        .post(
            members,
            json!({"topics": ["orders"], "session_timeout_ms": 300}),
        )
        .await
        .assert_ok(201)
        .clone();
    assert_eq!(c["generation"], 4);
    let c_id = c["member_id"].as_str().expect("member_id").to_string();
    api.delete(&format!("/v1/groups/g/members/{b_id}")).await;
    eventually("c's session to expire", WAIT, || async {
        let d = api.get("/v1/groups/g").await;
        (d.body["state"] == "empty").then_some(())
    })
    .await;
    api.get(&poll(&c_id, ""))
        .await
        .assert_error(404, "unknown_member");

    // Resets: only without members; earliest, latest, an offset, one partition.
    let reset = |body: Value| api.post("/v1/groups/g/offsets/reset", body);
    let r = reset(json!({"topic": "orders", "to": "earliest"})).await;
    let offsets = r.assert_ok(200)["offsets"]
        .as_array()
        .expect("offsets")
        .clone();
    assert_eq!(offsets.len(), 4);
    assert!(offsets.iter().all(|o| o["offset"] == 0), "{offsets:?}");
    let r = reset(json!({"topic": "orders", "partition": 0, "to": 2})).await;
    assert_eq!(r.assert_ok(200)["offsets"][0]["offset"], 2);
    // Partition 0 holds 5 records, and the one produced for b if it moved.
    let hwm0 = if moved == 0 { 6 } else { 5 };
    let r = reset(json!({"topic": "orders", "partition": 0, "to": "latest"})).await;
    assert_eq!(r.assert_ok(200)["offsets"][0]["offset"], hwm0);
    reset(json!({"topic": "orders", "partition": 0, "to": hwm0 + 1}))
        .await
        .assert_error(416, "offset_out_of_range");
    reset(json!({"topic": "orders", "to": "middle"}))
        .await
        .assert_error(400, "invalid_request");
    reset(json!({"topic": "nope", "to": "earliest"}))
        .await
        .assert_error(404, "unknown_topic");
    let d = api.post(members, json!({"topics": ["orders"]})).await;
    let d_id = d.assert_ok(201)["member_id"]
        .as_str()
        .expect("id")
        .to_string();
    reset(json!({"topic": "orders", "to": "earliest"}))
        .await
        .assert_error(409, "group_active");
    // The new member starts from the reset commits: partition 0 from its end, the others from 0.
    let all = api
        .get(&poll(&d_id, "max_records=100"))
        .await
        .assert_ok(200)
        .clone();
    let got = polled(&all, "orders");
    assert_eq!(got.len(), 9 + usize::from(moved != 0), "{got:?}");
    assert!(got.iter().all(|(p, _, _)| *p != 0), "{got:?}");

    // Bad joins and polls.
    for (body, status, code) in [
        (json!({"topics": ["missing"]}), 404, "unknown_topic"),
        (json!({"topics": []}), 400, "invalid_request"),
        (
            json!({"topics": ["orders"], "assignor": "best"}),
            400,
            "invalid_request",
        ),
        (
            json!({"topics": ["orders"], "assignor": "range"}),
            409,
            "assignor_mismatch",
        ),
        (
            json!({"topics": ["orders"], "session_timeout_ms": 1}),
            400,
            "invalid_request",
        ),
        (
            json!({"topics": ["orders"], "extra": 1}),
            400,
            "invalid_request",
        ),
    ] {
        api.post(members, body).await.assert_error(status, code);
    }
    api.get(&poll(&d_id, "offset=3"))
        .await
        .assert_error(400, "invalid_request");
    api.get("/v1/groups/nobody")
        .await
        .assert_error(404, "unknown_group");
    api.post("/v1/groups/bad%21g/members", json!({"topics": ["orders"]}))
        .await
        .assert_error(400, "invalid_request");
    node.shutdown().await;
}
