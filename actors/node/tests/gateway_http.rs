//! The HTTP layer of the Gateway over real sockets: every endpoint's success shape, every error
//! code, request ids, limits, readiness and actor restarts. The Router behind it is an in-memory
//! test double (`FakeRouter`); the thing under test is the HTTP contract.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use daftka_node::gateway::{self, Gateway, GatewayArgs, GatewayMsg, GatewayState, HttpLimits};
use daftka_node::metrics::Metrics;
use daftka_node::readiness::Readiness;
use daftka_protocol::*;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

// ---- the Router test double ----

/// Topics whose name is `fail.<code>` answer that error code to describe and produce.
fn injected_failure(topic: &str) -> Option<Error> {
    let code = match topic.strip_prefix("fail.")? {
        "unavailable" => ErrorCode::Unavailable,
        "timeout" => ErrorCode::Timeout,
        "not_leader" => ErrorCode::NotLeader,
        "internal" => ErrorCode::Internal,
        _ => return None,
    };
    Some(Error::new(code, format!("injected {code}")))
}

struct FakeRouter;

#[derive(Default)]
struct FakeRouterState {
    /// topic -> partitions -> records.
    topics: BTreeMap<String, (u32, Vec<Vec<StoredRecord>>)>,
    /// topic -> its own (retention_time_ms, retention_bytes).
    settings: BTreeMap<String, (Option<u64>, Option<u64>)>,
    groups: BTreeMap<String, BTreeMap<(String, u32), u64>>,
    /// The last fetch request seen, so tests can check parsing and capping.
    last_fetch: Arc<Mutex<Option<FetchRequest>>>,
}

/// What the test double answers to group membership messages.
fn no_groups() -> Error {
    Error::unavailable("the test double serves no group membership")
}

impl FakeRouterState {
    fn commit(&mut self, group: String, offsets: Vec<TopicPartitionOffset>) {
        let g = self.groups.entry(group).or_default();
        for o in offsets {
            g.insert((o.topic, o.partition), o.offset);
        }
    }

    fn describe(&self, name: &str) -> Result<TopicDescription, Error> {
        let (rf, parts) = self
            .topics
            .get(name)
            .ok_or_else(|| Error::unknown_topic(name))?;
        Ok(TopicDescription {
            name: name.to_string(),
            replication_factor: *rf,
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, p)| PartitionDescription {
                    partition: i as u32,
                    leader: Some("a".into()),
                    replicas: vec!["a".into()],
                    log_start_offset: 0,
                    high_watermark: p.len() as u64,
                    under_replicated: false,
                    moving_to: Vec::new(),
                    replica_states: Vec::new(),
                })
                .collect(),
            retention_time_ms: self.settings.get(name).and_then(|s| s.0),
            retention_bytes: self.settings.get(name).and_then(|s| s.1),
        })
    }

    fn partition(&mut self, topic: &str, p: u32) -> Result<&mut Vec<StoredRecord>, Error> {
        let (_, parts) = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| Error::unknown_topic(topic))?;
        parts
            .get_mut(p as usize)
            .ok_or_else(|| Error::unknown_partition(topic, p))
    }
}

impl Actor for FakeRouter {
    type Msg = RouterMsg;
    type State = FakeRouterState;
    type Arguments = Arc<Mutex<Option<FetchRequest>>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RouterMsg>,
        last_fetch: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(FakeRouterState {
            last_fetch,
            ..Default::default()
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        msg: RouterMsg,
        s: &mut FakeRouterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RouterMsg::CreateTopic { spec, reply } => {
                let spec = spec.0.expect("local payload");
                let r = if s.topics.contains_key(&spec.name) {
                    Err(Error::new(ErrorCode::TopicExists, "exists"))
                } else {
                    let n = spec.partitions.unwrap_or(1);
                    let rf = spec.replication_factor.unwrap_or(1);
                    s.topics
                        .insert(spec.name.clone(), (rf, vec![Vec::new(); n as usize]));
                    s.describe(&spec.name)
                };
                let _ = reply.send(Wire(r));
            }
            RouterMsg::ListTopics { reply } => {
                let r = s.topics.keys().map(|t| s.describe(t)).collect();
                let _ = reply.send(Wire(r));
            }
            RouterMsg::AlterTopic {
                topic,
                alter,
                reply,
            } => {
                let (topic, alter) = (topic.0.expect("local"), alter.0.expect("local"));
                let r = match (s.topics.get_mut(&topic), alter.partitions) {
                    (None, _) => Err(Error::unknown_topic(&topic)),
                    (Some((_, parts)), Some(n)) if (n as usize) < parts.len() => {
                        Err(Error::invalid("partitions only grow"))
                    }
                    (Some((_, parts)), n) => {
                        parts.resize(n.map_or(parts.len(), |n| n as usize), Vec::new());
                        let e = s.settings.entry(topic.clone()).or_default();
                        e.0 = alter.retention_time_ms.unwrap_or(e.0);
                        e.1 = alter.retention_bytes.unwrap_or(e.1);
                        s.describe(&topic)
                    }
                };
                let _ = reply.send(Wire(r));
            }
            RouterMsg::DescribeTopic { topic, reply } => {
                let topic = topic.0.expect("local payload");
                let r = match injected_failure(&topic) {
                    Some(e) => Err(e),
                    None => s.describe(&topic),
                };
                let _ = reply.send(Wire(r));
            }
            RouterMsg::DeleteTopic { topic, reply } => {
                let topic = topic.0.expect("local payload");
                let r = s
                    .topics
                    .remove(&topic)
                    .map(|_| ())
                    .ok_or_else(|| Error::unknown_topic(&topic));
                let _ = reply.send(Wire(r));
            }
            RouterMsg::Produce {
                topic,
                records,
                reply,
            } => {
                let topic = topic.0.expect("local payload");
                let records = records.0.expect("local payload");
                let r = (|| {
                    if let Some(e) = injected_failure(&topic) {
                        return Err(e);
                    }
                    let mut out = Vec::new();
                    for pr in records {
                        let p = pr.partition.unwrap_or(0);
                        let log = s.partition(&topic, p)?;
                        let mut record = pr.record;
                        record.timestamp_ms.get_or_insert(1_700_000_000_000);
                        let offset = log.len() as u64;
                        log.push(StoredRecord { offset, record });
                        out.push(RecordPosition {
                            partition: p,
                            offset,
                        });
                    }
                    Ok(out)
                })();
                let _ = reply.send(Wire(r));
            }
            RouterMsg::Fetch { request, reply } => {
                let request = request.0.expect("local payload");
                *s.last_fetch.lock().unwrap() = Some(request.clone());
                let r = s
                    .partition(&request.topic, request.partition)
                    .and_then(|log| {
                        let hw = log.len() as u64;
                        let start = match request.offset {
                            FetchOffset::Earliest => 0,
                            FetchOffset::Latest => hw,
                            FetchOffset::At(o) if o > hw => {
                                return Err(Error::offset_out_of_range(o, 0, hw))
                            }
                            FetchOffset::At(o) => o,
                        };
                        let records: Vec<StoredRecord> = log[start as usize..]
                            .iter()
                            .take(request.max_records as usize)
                            .cloned()
                            .collect();
                        Ok(FetchResponse {
                            next_offset: start + records.len() as u64,
                            records,
                            high_watermark: hw,
                            log_start_offset: 0,
                        })
                    });
                let _ = reply.send(Wire(r));
            }
            RouterMsg::CommitOffsets {
                group,
                offsets,
                reply,
            } => {
                let group = group.0.expect("local payload");
                let offsets = offsets.0.expect("local payload");
                s.commit(group, offsets);
                let _ = reply.send(Wire(Ok(())));
            }
            RouterMsg::CommitGroupOffsets { request, reply } => {
                let request = request.0.expect("local payload");
                s.commit(request.group, request.offsets);
                let _ = reply.send(Wire(Ok(())));
            }
            // Group membership is tested against real nodes (tests/http_groups.rs); here only
            // the gateway's own validation, which answers before any of these is sent.
            RouterMsg::JoinGroup { reply, .. } | RouterMsg::GroupHeartbeat { reply, .. } => {
                let _ = reply.send(Wire(Err(no_groups())));
            }
            RouterMsg::LeaveGroup { reply, .. } => {
                let _ = reply.send(Wire(Err(no_groups())));
            }
            RouterMsg::PollGroup { reply, .. } => {
                let _ = reply.send(Wire(Err(no_groups())));
            }
            RouterMsg::ListGroups { reply } => {
                let _ = reply.send(Wire(Err(no_groups())));
            }
            RouterMsg::DescribeGroup { reply, .. } => {
                let _ = reply.send(Wire(Err(no_groups())));
            }
            RouterMsg::ResetGroupOffsets { reply, .. } => {
                let _ = reply.send(Wire(Err(no_groups())));
            }
            RouterMsg::FetchOffsets { group, reply } => {
                let group = group.0.expect("local payload");
                let offsets = s
                    .groups
                    .get(&group)
                    .into_iter()
                    .flatten()
                    .map(|((topic, partition), offset)| {
                        let hw = s
                            .topics
                            .get(topic)
                            .and_then(|(_, p)| p.get(*partition as usize))
                            .map_or(0, |l| l.len() as u64);
                        CommittedOffset {
                            topic: topic.clone(),
                            partition: *partition,
                            offset: *offset,
                            high_watermark: hw,
                            lag: hw.saturating_sub(*offset),
                        }
                    })
                    .collect();
                let _ = reply.send(Wire(Ok(GroupOffsets { group, offsets })));
            }
            RouterMsg::ClusterInfo { reply } => {
                let _ = reply.send(Wire(Ok(ClusterInfo {
                    nodes: vec![NodeInfo {
                        name: "a".into(),
                        cluster_addr: "127.0.0.1:7000".into(),
                        http_addr: "127.0.0.1:8080".into(),
                        status: "up".into(),
                        state: "active".into(),
                        replicas: 2,
                        leaders: 1,
                        metadata_role: "voter".into(),
                    }],
                    metadata_leader: Some("a".into()),
                    seeds: vec![],
                })));
            }
            RouterMsg::Reassign {
                topic,
                partition,
                replicas,
                reply,
            } => {
                let answer = match (topic.0, partition.0, replicas.0) {
                    (Ok(topic), Ok(partition), Ok(to)) if topic == "t" => Ok(Reassignment {
                        topic,
                        partition,
                        from: vec!["a".into()],
                        to,
                        started_ms: 7,
                        phase: None,
                        bytes_copied: 0,
                        bytes_total: 0,
                    }),
                    (Ok(topic), _, _) => Err(Error::unknown_topic(&topic)),
                    (Err(e), _, _) => Err(e),
                };
                let _ = reply.send(Wire(answer));
            }
            RouterMsg::ListReassignments { reply } => {
                let _ = reply.send(Wire(Ok(vec![Reassignment {
                    topic: "t".into(),
                    partition: 0,
                    from: vec!["a".into()],
                    to: vec!["b".into()],
                    started_ms: 7,
                    phase: Some("catching_up".into()),
                    bytes_copied: 300,
                    bytes_total: 1000,
                }])));
            }
            RouterMsg::DrainNode {
                node,
                draining,
                reply,
            } => {
                let answer = match (node.0, draining.0) {
                    (Ok(n), Ok(d)) if n == "a" => Ok(NodeInfo {
                        name: n,
                        cluster_addr: "127.0.0.1:7000".into(),
                        http_addr: "127.0.0.1:8080".into(),
                        status: "up".into(),
                        state: if d { "draining" } else { "active" }.into(),
                        replicas: 2,
                        leaders: 1,
                        metadata_role: "voter".into(),
                    }),
                    (Ok(n), _) => Err(Error::new(
                        ErrorCode::UnknownNode,
                        format!("no node {n:?} is registered"),
                    )),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(Wire(answer));
            }
            RouterMsg::RemoveNode { node, reply } => {
                let answer = match node.0 {
                    Ok(n) if n == "a" => Err(Error::new(
                        ErrorCode::NodeActive,
                        "node \"a\" is up and holds 2 replicas: drain it first",
                    )),
                    Ok(n) if n == "b" => Ok(NodeInfo {
                        name: n,
                        cluster_addr: "127.0.0.1:7001".into(),
                        http_addr: "127.0.0.1:8081".into(),
                        status: "down".into(),
                        state: "removed".into(),
                        replicas: 1,
                        leaders: 0,
                        metadata_role: "voter".into(),
                    }),
                    Ok(n) => Err(Error::new(
                        ErrorCode::UnknownNode,
                        format!("no node {n:?} is registered"),
                    )),
                    Err(e) => Err(e),
                };
                let _ = reply.send(Wire(answer));
            }
        }
        Ok(())
    }
}

// ---- harness ----

static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

fn unique_node() -> String {
    format!(
        "gw-{}-{}",
        std::process::id(),
        NEXT_NODE.fetch_add(1, Ordering::Relaxed)
    )
}

struct Harness {
    addr: SocketAddr,
    http: reqwest::Client,
    state: GatewayState,
    router: ActorRef<RouterMsg>,
    last_fetch: Arc<Mutex<Option<FetchRequest>>>,
    _shutdown: oneshot::Sender<()>,
}

/// A fake router and a gateway in front of it, with readiness already set.
async fn start_with(limits: HttpLimits) -> Harness {
    let last_fetch = Arc::new(Mutex::new(None));
    let (router, _) = Actor::spawn(
        Some(names::router(&unique_node())),
        FakeRouter,
        last_fetch.clone(),
    )
    .await
    .expect("spawn fake router");
    let readiness = Readiness::new();
    readiness.set_metadata_loaded(true);
    readiness.set_replicas_placed();
    let metrics = Metrics::new();
    let budget = daftka_node::budget::ByteBudget::new(
        limits.inflight_bytes_max,
        metrics.overload_rejections.clone(),
    );
    let state = GatewayState {
        client: Client::new(router.clone()),
        limits,
        readiness,
        metrics,
        chaos_node: None,
        budget,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Harness {
        addr,
        http: reqwest::Client::new(),
        state,
        router,
        last_fetch,
        _shutdown: shutdown,
    }
}

async fn start() -> Harness {
    start_with(HttpLimits::default()).await
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    /// Checks the JSON error shape, the status and the retry hint.
    fn assert_error(&self, status: u16, code: &str, retryable: bool) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let e = &self.body["error"];
        assert_eq!(e["code"], code, "{}", self.body);
        assert_eq!(e["retryable"], retryable, "{}", self.body);
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.headers.contains_key("x-request-id"));
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn post_raw(&self, path: &str, body: &str) -> Answer {
        self.send(
            self.http
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn create(&self, name: &str, partitions: u32) {
        let a = self
            .post(
                "/v1/topics",
                json!({"name": name, "partitions": partitions}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }

    fn requests_counted(&self, route: &str, status: &str) -> u64 {
        self.state
            .metrics
            .http_requests
            .with_label_values(&[route, status])
            .get()
    }
}

// ---- tests ----

/// Topics can be created, listed, described and deleted with the documented shapes and statuses.
#[tokio::test]
async fn topic_lifecycle() {
    let h = start().await;
    let a = h
        .post(
            "/v1/topics",
            json!({"name": "orders", "partitions": 2, "replication_factor": 1}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        a.body,
        json!({"name": "orders", "replication_factor": 1, "partitions": [
            {"partition": 0, "leader": "a", "replicas": ["a"], "log_start_offset": 0, "high_watermark": 0,
             "desired_replication_factor": 1, "under_replicated": false},
            {"partition": 1, "leader": "a", "replicas": ["a"], "log_start_offset": 0, "high_watermark": 0,
             "desired_replication_factor": 1, "under_replicated": false},
        ]})
    );
    // Only the name is required.
    let a = h.post("/v1/topics", json!({"name": "events"})).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["partitions"].as_array().map(Vec::len), Some(1));

    h.post("/v1/topics", json!({"name": "orders"}))
        .await
        .assert_error(409, "topic_exists", false);

    let a = h.get("/v1/topics").await;
    assert_eq!(a.status, 200);
    let names: Vec<&str> = a.body["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["events", "orders"]);

    let a = h.get("/v1/topics/orders").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["name"], "orders");

    // Alter: 200 with the topic; absent fields stay, null returns a setting to the default;
    // shrinking, unknown fields and unknown topics are refused.
    let patch = |body| h.call(Method::PATCH, "/v1/topics/orders", Some(body));
    let a = patch(json!({"partitions": 4, "retention_bytes": 1048576})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["partitions"].as_array().map(Vec::len), Some(4));
    assert_eq!(a.body["retention_bytes"], 1048576);
    let a = patch(json!({"retention_time_ms": 60000})).await;
    assert_eq!(
        (&a.body["retention_time_ms"], &a.body["retention_bytes"]),
        (&json!(60000), &json!(1048576))
    );
    let a = patch(json!({"retention_bytes": null})).await;
    assert_eq!(a.body.get("retention_bytes"), None, "{}", a.body);
    patch(json!({"partitions": 2}))
        .await
        .assert_error(400, "invalid_request", false);
    patch(json!({"partitionz": 9}))
        .await
        .assert_error(400, "invalid_request", false);
    h.call(
        Method::PATCH,
        "/v1/topics/nope",
        Some(json!({"partitions": 9})),
    )
    .await
    .assert_error(404, "unknown_topic", false);

    let a = h.call(Method::DELETE, "/v1/topics/orders", None).await;
    assert_eq!(a.status, 204);
    assert_eq!(a.body, Value::Null);
    h.get("/v1/topics/orders")
        .await
        .assert_error(404, "unknown_topic", false);
    h.call(Method::DELETE, "/v1/topics/orders", None)
        .await
        .assert_error(404, "unknown_topic", false);
}

/// Produced records come back in request order with their keys, headers and timestamps.
#[tokio::test]
async fn produce_then_fetch_utf8() {
    let h = start().await;
    h.create("orders", 2).await;
    // Raw text: `json!` would sort the header names.
    let a = h
        .post_raw(
            "/v1/topics/orders/records",
            r#"{"records": [
                {"key": "k1", "value": "v1", "headers": {"z": "1", "a": "2"}, "partition": 1, "timestamp": 1700000000123},
                {"value": "v2"},
                {"value": "v3", "partition": 1}
            ]}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"offsets": [
            {"partition": 1, "offset": 0},
            {"partition": 0, "offset": 0},
            {"partition": 1, "offset": 1},
        ]})
    );

    let a = h.get("/v1/topics/orders/partitions/1/records").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({
            "records": [
                {"offset": 0, "key": "k1", "value": "v1", "headers": {"z": "1", "a": "2"}, "timestamp": 1700000000123i64},
                {"offset": 1, "key": null, "value": "v3", "headers": {}, "timestamp": 1700000000000i64},
            ],
            "next_offset": 2,
            "high_watermark": 2,
            "log_start_offset": 0,
        })
    );
    // Header order in the raw body is the produced order.
    let text = h
        .http
        .get(h.url("/v1/topics/orders/partitions/1/records?max_records=1"))
        .send()
        .await
        .expect("fetch")
        .text()
        .await
        .expect("text");
    assert!(text.contains(r#""headers":{"z":"1","a":"2"}"#), "{text}");

    let a = h
        .get("/v1/topics/orders/partitions/1/records?offset=1&max_records=10")
        .await;
    assert_eq!(a.body["records"][0]["value"], "v3");
    assert_eq!(a.body["next_offset"], 2);
    let a = h
        .get("/v1/topics/orders/partitions/1/records?offset=latest")
        .await;
    assert_eq!(a.body["records"], json!([]));
    assert_eq!(a.body["next_offset"], 2);
    let a = h
        .get("/v1/topics/orders/partitions/1/records?offset=earliest")
        .await;
    assert_eq!(a.body["records"].as_array().map(Vec::len), Some(2));
}

/// base64 carries any bytes both ways; utf8 refuses to fetch bytes that are not UTF-8; bad
/// base64 is a 400.
#[tokio::test]
async fn base64_and_non_utf8() {
    let h = start().await;
    h.create("bin", 1).await;
    // 0xff 0x00 is not UTF-8.
    let a = h
        .post(
            "/v1/topics/bin/records",
            json!({"encoding": "base64", "records": [
                {"key": "a2V5", "value": "/wA=", "headers": {"h": "/w=="}}
            ]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = h
        .get("/v1/topics/bin/partitions/0/records?encoding=base64")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &a.body["records"][0];
    assert_eq!((&r["key"], &r["value"]), (&json!("a2V5"), &json!("/wA=")));
    assert_eq!(r["headers"], json!({"h": "/w=="}));

    let a = h.get("/v1/topics/bin/partitions/0/records").await;
    a.assert_error(400, "invalid_request", false);
    let msg = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("encoding=base64"), "{msg}");

    for bad in [
        json!({"encoding": "base64", "records": [{"value": "not base64!"}]}),
        json!({"encoding": "base64", "records": [{"value": "AA==", "key": "%%%"}]}),
        json!({"encoding": "base64", "records": [{"value": "AA==", "headers": {"h": "*"}}]}),
        json!({"encoding": "hex", "records": [{"value": "00"}]}),
    ] {
        h.post("/v1/topics/bin/records", bad)
            .await
            .assert_error(400, "invalid_request", false);
    }
}

/// Fetch parameters: documented defaults, values above the limits capped, malformed or negative
/// values 400, unknown partition 404, offset beyond the log 416 with the valid range.
#[tokio::test]
async fn fetch_parameters_and_errors() {
    let limits = HttpLimits {
        fetch_records_max: 100,
        fetch_bytes_max: 4096,
        fetch_wait_max: std::time::Duration::from_millis(50),
        ..HttpLimits::default()
    };
    let h = start_with(limits).await;
    h.create("t", 1).await;
    let a = h.get("/v1/topics/t/partitions/0/records").await;
    assert_eq!(a.status, 200);
    let seen = h.last_fetch.lock().unwrap().clone().expect("fetched");
    assert_eq!(seen.offset, FetchOffset::Earliest);
    // Defaults are capped by the limits too.
    assert_eq!(
        (seen.max_records, seen.max_bytes, seen.max_wait_ms),
        (100, 4096, 0)
    );

    let a = h
        .get("/v1/topics/t/partitions/0/records?offset=0&max_records=100000&max_bytes=99999999999&max_wait_ms=40")
        .await;
    assert_eq!(a.status, 200);
    let seen = h.last_fetch.lock().unwrap().clone().expect("fetched");
    assert_eq!(seen.offset, FetchOffset::At(0));
    assert_eq!(
        (seen.max_records, seen.max_bytes, seen.max_wait_ms),
        (100, 4096, 40)
    );

    for q in [
        "offset=-1",
        "offset=abc",
        "offset=",
        "max_records=-5",
        "max_records=0",
        "max_records=1.5",
        "max_bytes=x",
        "max_wait_ms=-1",
        "encoding=latin1",
        "offset=1&offset=2",
        "colour=blue",
        "offset=%zz",
    ] {
        h.get(&format!("/v1/topics/t/partitions/0/records?{q}"))
            .await
            .assert_error(400, "invalid_request", false);
    }
    for p in ["-1", "x", "4294967296"] {
        h.get(&format!("/v1/topics/t/partitions/{p}/records"))
            .await
            .assert_error(400, "invalid_request", false);
    }
    h.get("/v1/topics/t/partitions/7/records")
        .await
        .assert_error(404, "unknown_partition", false);
    h.get("/v1/topics/nope/partitions/0/records")
        .await
        .assert_error(404, "unknown_topic", false);
    let a = h.get("/v1/topics/t/partitions/0/records?offset=5").await;
    a.assert_error(416, "offset_out_of_range", false);
    assert_eq!(a.body["error"]["log_start_offset"], 0);
    assert_eq!(a.body["error"]["high_watermark"], 0);
}

/// Group offsets are committed and read back with high watermark and lag.
#[tokio::test]
async fn group_offsets() {
    let h = start().await;
    h.create("t", 1).await;
    let a = h
        .post(
            "/v1/topics/t/records",
            json!({"records": [{"value": "a"}, {"value": "b"}, {"value": "c"}]}),
        )
        .await;
    assert_eq!(a.status, 200);
    let a = h
        .post(
            "/v1/groups/g1/offsets",
            json!({"offsets": [{"topic": "t", "partition": 0, "offset": 1}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"committed": 1}));
    let a = h.get("/v1/groups/g1/offsets").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        json!({"group": "g1", "offsets": [
            {"topic": "t", "partition": 0, "offset": 1, "high_watermark": 3, "lag": 2}
        ]})
    );
    h.post("/v1/groups/g1/offsets", json!({"offsets": []}))
        .await
        .assert_error(400, "invalid_request", false);
    h.post(
        "/v1/groups/g1/offsets",
        json!({"offsets": [{"topic": "bad name", "partition": 0, "offset": 1}]}),
    )
    .await
    .assert_error(400, "invalid_request", false);
    h.post(
        "/v1/groups/g1/offsets",
        json!({"offsets": [{"topic": "t", "partition": 0, "offset": -1}]}),
    )
    .await
    .assert_error(400, "invalid_request", false);
    h.get("/v1/groups/bad$group/offsets")
        .await
        .assert_error(400, "invalid_request", false);
}

/// Cluster view and health.
#[tokio::test]
async fn cluster_and_health() {
    let h = start().await;
    let a = h.get("/v1/cluster").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        json!({"nodes": [{"name": "a", "cluster_addr": "127.0.0.1:7000", "http_addr": "127.0.0.1:8080", "status": "up",
                          "state": "active", "replicas": 2, "leaders": 1,
                          "metadata_role": "voter"}],
               "metadata_leader": "a", "seeds": []})
    );
    let a = h.get("/healthz").await;
    assert_eq!(
        (a.status.as_u16(), a.body.clone()),
        (200, json!({"status": "ok"}))
    );
    // Drain and undrain: 202 with the node; an unknown node is 404; another method is no route.
    let a = h.post("/v1/cluster/nodes/a/drain", json!({})).await;
    assert_eq!(a.status, 202);
    assert_eq!(
        (&a.body["name"], &a.body["state"]),
        (&json!("a"), &json!("draining"))
    );
    let a = h.post("/v1/cluster/nodes/a/undrain", json!({})).await;
    assert_eq!(
        (a.status.as_u16(), &a.body["state"]),
        (202, &json!("active"))
    );
    h.post("/v1/cluster/nodes/zz/drain", json!({}))
        .await
        .assert_error(404, "unknown_node", false);
    h.get("/v1/cluster/nodes/a/drain")
        .await
        .assert_error(404, "not_found", false);
    // Remove: 200 with the node as it was; 409 while it is up with replicas; 404 unknown.
    let a = h.call(Method::DELETE, "/v1/cluster/nodes/b", None).await;
    assert_eq!(
        (a.status.as_u16(), &a.body["name"], &a.body["state"]),
        (200, &json!("b"), &json!("removed"))
    );
    h.call(Method::DELETE, "/v1/cluster/nodes/a", None)
        .await
        .assert_error(409, "node_active", false);
    h.call(Method::DELETE, "/v1/cluster/nodes/zz", None)
        .await
        .assert_error(404, "unknown_node", false);
    h.post("/v1/cluster/nodes/b", json!({}))
        .await
        .assert_error(404, "not_found", false);
    // Reassign: 202 with the move; a bad body or partition is 400; the list of moves.
    let a = h
        .post(
            "/v1/topics/t/partitions/0/reassign",
            json!({"replicas": ["b", "c"]}),
        )
        .await;
    assert_eq!(a.status, 202);
    assert_eq!(
        a.body,
        json!({"topic": "t", "partition": 0, "from": ["a"], "to": ["b", "c"], "started_ms": 7,
               "bytes_copied": 0, "bytes_total": 0})
    );
    h.post(
        "/v1/topics/t/partitions/x/reassign",
        json!({"replicas": ["b"]}),
    )
    .await
    .assert_error(400, "invalid_request", false);
    h.post(
        "/v1/topics/t/partitions/0/reassign",
        json!({"nodes": ["b"]}),
    )
    .await
    .assert_error(400, "invalid_request", false);
    h.post(
        "/v1/topics/zz/partitions/0/reassign",
        json!({"replicas": ["b"]}),
    )
    .await
    .assert_error(404, "unknown_topic", false);
    let a = h.get("/v1/reassignments").await;
    assert_eq!(
        (a.status.as_u16(), a.body),
        (
            200,
            json!({"reassignments": [{"topic": "t", "partition": 0, "from": ["a"], "to": ["b"],
                                      "started_ms": 7, "phase": "catching_up",
                                      "bytes_copied": 300, "bytes_total": 1000}]})
        )
    );
}

/// /readyz is 503 unavailable until readiness is reached, then 200.
#[tokio::test]
async fn readyz_follows_readiness() {
    let h = start().await;
    h.state.readiness.set_metadata_loaded(false);
    h.get("/readyz")
        .await
        .assert_error(503, "unavailable", true);
    h.state.readiness.set_metadata_loaded(true);
    h.state.readiness.replica_recovering(GroupId(3));
    h.get("/readyz")
        .await
        .assert_error(503, "unavailable", true);
    h.state.readiness.replica_ready(GroupId(3));
    let a = h.get("/readyz").await;
    assert_eq!(
        (a.status.as_u16(), a.body.clone()),
        (200, json!({"status": "ok"}))
    );
}

/// Router failures keep their code, get their status and retry hint; a dead router is 503.
#[tokio::test]
async fn router_errors_map_to_statuses() {
    let h = start().await;
    for (topic, status, code, retryable) in [
        ("fail.unavailable", 503, "unavailable", true),
        ("fail.timeout", 504, "timeout", true),
        ("fail.not_leader", 503, "not_leader", true),
        ("fail.internal", 500, "internal", false),
    ] {
        h.get(&format!("/v1/topics/{topic}"))
            .await
            .assert_error(status, code, retryable);
        h.post(
            &format!("/v1/topics/{topic}/records"),
            json!({"records": [{"value": "x"}]}),
        )
        .await
        .assert_error(status, code, retryable);
    }
    h.router
        .stop_and_wait(None, None)
        .await
        .expect("stop router");
    h.get("/v1/topics")
        .await
        .assert_error(503, "unavailable", true);
}

/// A sane x-request-id is echoed; an absent or insane one is replaced by 16 hex digits.
#[tokio::test]
async fn request_ids() {
    let h = start().await;
    let a = h
        .send(
            h.http
                .get(h.url("/healthz"))
                .header("x-request-id", "req-42.abc"),
        )
        .await;
    assert_eq!(a.headers["x-request-id"], "req-42.abc");
    // Errors carry it too.
    let a = h
        .send(h.http.get(h.url("/nope")).header("x-request-id", "req-43"))
        .await;
    assert_eq!(a.headers["x-request-id"], "req-43");

    let generated = |a: &Answer| {
        let id = a.headers["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        id
    };
    let first = generated(&h.get("/healthz").await);
    let second = generated(&h.get("/healthz").await);
    assert_ne!(first, second);
    for insane in ["has space".to_string(), "x".repeat(129)] {
        let a = h
            .send(
                h.http
                    .get(h.url("/healthz"))
                    .header("x-request-id", insane.as_str()),
            )
            .await;
        generated(&a);
    }
}

/// Unknown routes and wrong methods answer 404 not_found in the JSON shape.
#[tokio::test]
async fn unknown_routes_and_methods() {
    let h = start().await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/v2/topics"),
        (Method::GET, "/v1/topics/a/b/c/d/e/f"),
        (Method::PUT, "/v1/topics"),
        (Method::POST, "/v1/cluster"),
        (Method::GET, "/v1/topics/t/records"),
        (Method::PATCH, "/v1/groups/g/offsets"),
    ] {
        h.call(method, path, None)
            .await
            .assert_error(404, "not_found", false);
    }
    assert!(h.requests_counted("unmatched", "404") >= 3);
}

/// Malformed bodies, empty batches and bad names are 400 invalid_request.
#[tokio::test]
async fn bad_requests() {
    let h = start().await;
    h.create("t", 1).await;
    for (path, body) in [
        ("/v1/topics", "{not json"),
        ("/v1/topics", ""),
        ("/v1/topics", r#"{"partitions": 1}"#),
        ("/v1/topics", r#"{"name": "t2", "colour": "blue"}"#),
        ("/v1/topics", r#"{"name": "t2", "partitions": -1}"#),
        ("/v1/topics", r#"{"name": "bad/name"}"#),
        ("/v1/topics", r#"{"name": ""}"#),
        ("/v1/topics/t/records", r#"{"records": []}"#),
        ("/v1/topics/t/records", r#"{"records": [{"key": "k"}]}"#),
        ("/v1/topics/t/records", r#"{"records": [{"value": 5}]}"#),
        (
            "/v1/topics/t/records",
            r#"{"records": [{"value": "v", "partition": -1}]}"#,
        ),
        ("/v1/topics/t/records", r#"[1, 2]"#),
        (
            "/v1/topics/bad$name/records",
            r#"{"records": [{"value": "v"}]}"#,
        ),
        ("/v1/groups/g/offsets", r#"{"offsets": "x"}"#),
    ] {
        h.post_raw(path, body)
            .await
            .assert_error(400, "invalid_request", false);
    }
    for path in ["/v1/topics/bad%20name", "/v1/topics/bad$name"] {
        h.get(path)
            .await
            .assert_error(400, "invalid_request", false);
    }
}

/// Every produce-side limit answers 413 payload_too_large.
#[tokio::test]
async fn limits_answer_413() {
    let limits = HttpLimits {
        body_bytes_max: 1024,
        records_per_request_max: 3,
        key_bytes_max: 4,
        value_bytes_max: 8,
        header_bytes_max: 6,
        headers_per_record_max: 2,
        offsets_per_commit_max: 2,
        ..HttpLimits::default()
    };
    let h = start_with(limits).await;
    h.create("t", 1).await;
    let p = "/v1/topics/t/records";
    // At the limits: accepted. Base64 sizes count decoded bytes ("AAAAAAAAAAA=" is 8 bytes).
    let a = h
        .post(
            p,
            json!({"records": [
                {"key": "kkkk", "value": "vvvvvvvv", "headers": {"ab": "cdef", "x": "y"}},
                {"value": "v"}, {"value": "v"}
            ]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = h
        .post(
            p,
            json!({"encoding": "base64", "records": [{"value": "AAAAAAAAAAA="}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    for body in [
        json!({"records": [{"value": "a"}, {"value": "b"}, {"value": "c"}, {"value": "d"}]}),
        json!({"records": [{"key": "kkkkk", "value": "v"}]}),
        json!({"records": [{"value": "vvvvvvvvv"}]}),
        json!({"records": [{"value": "v", "headers": {"abc": "defg"}}]}),
        json!({"records": [{"value": "v", "headers": {"a": "1", "b": "2", "c": "3"}}]}),
        json!({"records": [{"value": "x".repeat(2000)}]}),
    ] {
        h.post(p, body)
            .await
            .assert_error(413, "payload_too_large", false);
    }
    h.post(
        "/v1/groups/g/offsets",
        json!({"offsets": [
            {"topic": "t", "partition": 0, "offset": 1},
            {"topic": "t", "partition": 0, "offset": 2},
            {"topic": "t", "partition": 0, "offset": 3},
        ]}),
    )
    .await
    .assert_error(413, "payload_too_large", false);
    // The body limit also holds for bodies without content-length.
    let (status, body) = chunked_post(h.addr, p, &[&"y".repeat(600), &"y".repeat(600)]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    let small = r#"{"records": [{"value": "chunked"}]}"#;
    let (status, body) = chunked_post(h.addr, p, &[&small[..10], &small[10..]]).await;
    assert_eq!(status, 200, "{body}");
}

/// POSTs a body with `transfer-encoding: chunked` over a raw socket; answers status and body.
async fn chunked_post(addr: SocketAddr, path: &str, chunks: &[&str]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Requests are counted under their route template, never the raw path.
#[tokio::test]
async fn metrics_use_route_templates() {
    let h = start().await;
    h.create("orders", 1).await;
    h.get("/v1/topics/orders/partitions/0/records").await;
    h.get("/v1/topics/orders/partitions/9/records").await;
    assert_eq!(h.requests_counted("/v1/topics", "201"), 1);
    assert_eq!(
        h.requests_counted("/v1/topics/{topic}/partitions/{partition}/records", "200"),
        1
    );
    assert_eq!(
        h.requests_counted("/v1/topics/{topic}/partitions/{partition}/records", "404"),
        1
    );
    let text = h.state.metrics.render();
    assert!(!text.contains("/v1/topics/orders"), "{text}");
}

/// A Gateway actor stopped and spawned again on a clone of the same listener serves the same port.
#[tokio::test]
async fn gateway_actor_restart_keeps_port() {
    let h = start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // No pooled connections: each request must reach whichever server is running now.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let health = || async {
        let r = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("healthz");
        r.status().as_u16()
    };
    for _ in 0..2 {
        let (gw, _) = Actor::spawn(
            None,
            Gateway,
            GatewayArgs {
                listener: listener.try_clone().expect("clone"),
                state: h.state.clone(),
            },
        )
        .await
        .expect("spawn gateway");
        let served = ractor::call!(gw, |reply| GatewayMsg::LocalAddr { reply }).expect("addr");
        assert_eq!(served, addr);
        assert_eq!(health().await, 200);
        gw.stop_and_wait(None, None).await.expect("stop gateway");
    }
    // Stopped: the port is still bound (our listener) but nobody serves; a restart serves again.
    let (gw, _) = Actor::spawn(
        None,
        Gateway,
        GatewayArgs {
            listener: listener.try_clone().expect("clone"),
            state: h.state.clone(),
        },
    )
    .await
    .expect("respawn");
    assert_eq!(health().await, 200);
    gw.stop_and_wait(None, None).await.expect("stop gateway");
}

/// A body that does not fit in the node's in-flight byte budget is refused before it is read:
/// 503 `unavailable` (retryable), counted in `daftka_overload_rejections_total`.
#[tokio::test]
async fn bodies_beyond_the_inflight_budget_are_refused() {
    let h = start_with(HttpLimits {
        inflight_bytes_max: 4 << 10,
        ..HttpLimits::default()
    })
    .await;
    h.create("t", 1).await;
    let big = "x".repeat(8 << 10);
    let a = h
        .post("/v1/topics/t/records", json!({"records": [{"value": big}]}))
        .await;
    a.assert_error(503, "unavailable", true);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("inflight_bytes_max")),
        "{}",
        a.body
    );
    assert_eq!(h.state.metrics.overload_rejections.get(), 1);
    let small = h
        .post(
            "/v1/topics/t/records",
            json!({"records": [{"value": "ok"}]}),
        )
        .await;
    assert_eq!(small.status, 200, "{}", small.body);
}
