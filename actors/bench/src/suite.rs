//! `daftka bench suite`: the standard rows T1-T7 on fresh nodes of the suite's own.
//!
//! The nodes are this binary (`std::env::current_exe()`) started as node processes, each on free
//! loopback ports with `--cookie` and `--cluster-addr` (so the native transport reaches it), its
//! data and log in one scratch directory under the system's temp dir; `--log-level warn`, and none
//! of the shell's `DAFTKA_*` settings or `RUST_LOG`: the built-in defaults, fsync on. A node is
//! ready when `GET /readyz` answers 200; a cluster is a, then b seeded with a, then c seeded with a
//! and b, ready when a's `GET /v1/cluster` shows the three `up`. Nodes are killed (SIGKILL) once
//! their rows are done, and the directory is removed at the end, also after an error or Ctrl-C
//! (not if this process is killed itself).
//!
//! The steps, in the order they run (records of 100 bytes):
//!
//! | key | nodes | measures |
//! |---|---|---|
//! | `T5` | single | HTTP produce of one record per request at 1,000 requests/s for `--t5-duration` (open loop, latency from each request's due time), 16 connections, 1 partition, RF 1 |
//! | `T2` | single | HTTP produce, 100 records per request, 16 connections, 4 partitions, RF 1 |
//! | `T1` | single | native produce of `--t1-records` records, batches of 1000, 4 producers, 4 partitions, RF 1 |
//! | `T4` | single | native consume of T1's records from the start, 5000 per fetch, a reader per partition |
//! | `T4_http` | single | the same over HTTP |
//! | `T7` | single | the node killed (SIGKILL) and started again on its data and ports: seconds from spawn to `/readyz` 200 |
//! | `T5_rf3` | cluster | as `T5` with RF 3, sent to the partition's leader |
//! | `T3` | cluster | native produce, batches of 1000, 4 producers, 4 partitions, RF 3, through a |
//! | `T6` | a fresh node | topics of up to 1000 partitions (3,000 in all), RF 1; once every partition has a leader, the node's CPU and RSS over the next 10 s, with no client requests (`setup_seconds`: creating and electing them) |
//!
//! Row T4 has two results, keys `T4` (native) and `T4_http`; row T5 has `T5` (RF 1) and `T5_rf3`.
//! The rows with latency targets (T5, T2, T5_rf3) run first on their fresh nodes: right after a
//! bulk load the disk is still writing it back and fjall compacting it, and fsyncs of 10-50 ms then
//! land in their percentiles (docs/BENCHMARKS.md). T4 and T7 need T1's records: `--rows T4` or
//! `--rows T7` runs T1 right before them. T4 and T7 run right after T1; T7's node holds T5's, T2's
//! and T1's records. On the cluster the suite waits until every partition is led by its preferred
//! (first) replica, so no leadership move (every `raft.leader_balance_interval`) lands in the
//! measurement. `--quick` shrinks the sizes for a smoke run ([`Sizes::QUICK`]). Creating a topic
//! of 1000 partitions may answer `timeout` (outcome unknown) while the node goes on creating it:
//! T6 then asks again until it exists.
//!
//! Each workload runs through the same functions as `bench produce|consume`; its node's CPU (% of
//! one core, from `/proc/PID/stat`) and RSS are measured around it, summed over the nodes of a
//! cluster row (`node_usage` lists each node's).
//!
//! Output: a line on stderr as each node set and step starts and finishes (and, on a terminal, the
//! workload's progress line); then on stdout a Markdown table: row, workload, result, target, met.
//! Targets are information only: a missed one is not an error. `--json FILE` writes one object
//! with a key per step holding the bench summary's fields (`records_per_sec`, `mb_per_sec`,
//! `p50_ms`, `p99_ms`, `p999_ms`, `max_ms`, `seconds`, ... and the parameters, see
//! [`super`]) or T6's and T7's own, `cpu_percent`, `rss_bytes`, `nodes`, and `description`,
//! `target` and `met` (or `error`), and a key `machine` with the probes ([`super::probe`]) taken
//! before and after the rows, with no node running: fdatasync latency of 100-byte appends in the
//! scratch directory and the time of a fixed CPU loop, printed under the table too, so that a run
//! on a busy or slow (virtual) machine shows as such. A step that fails is reported as such and the others go on
//! (those needing T1 are skipped if T1 failed); the command then exits 1.

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::nodes::{self, NodeProc, Scratch, COOKIE};
use super::probe;
use super::report::{self, Nodes, Outcome, Sizes, Step, CONSUME_BATCH};
use super::stats::CpuSample;
use crate::args::{
    BenchCommon, BenchConsumeArgs, BenchPartitionMode, BenchProduceArgs, BenchSuiteArgs,
    BenchTransport,
};
use daftka_http::client::{Api, ClientError, StartOffset};
use daftka_http::json::TopicJson;

/// Bytes of every record's value.
const RECORD_SIZE: u32 = 100;
/// How long the suite waits for partitions to be led by their preferred replicas.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long T6's partitions may take to get leaders.
const T6_LEADERS_TIMEOUT: Duration = Duration::from_secs(600);
/// The most partitions of one T6 topic (under the default `topics.partitions_max`, 1024).
const T6_TOPIC_PARTITIONS_MAX: u32 = 1_000;
/// How long a restarted node may take to be ready.
const RESTART_TIMEOUT: Duration = Duration::from_secs(600);
/// The cluster's node names.
const CLUSTER: [&str; 3] = ["a", "b", "c"];

/// A progress line on stderr.
fn note(line: impl AsRef<str>) {
    eprintln!("bench suite: {}", line.as_ref());
}

/// Runs the suite, prints its table to `out` and writes `--json`. `stop` (Ctrl-C) ends it early:
/// the nodes are killed, the data removed, and the table of what was done printed.
pub async fn run(
    args: &BenchSuiteArgs,
    out: &mut (impl AsyncWrite + Unpin),
    stop: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    let sizes = Sizes::of(args);
    let (steps, added) = report::steps(args.rows.as_deref());
    let scratch = Scratch::create()?;
    let keys: Vec<&str> = steps.iter().map(|s| s.key()).collect();
    note(format!(
        "{}{}; nodes' data in {}",
        keys.join(", "),
        if args.quick { " (quick sizes)" } else { "" },
        scratch.path().display()
    ));
    if added {
        note("T4 and T7 need T1's records: T1 runs right before them");
    }
    let before = probe_machine(scratch.path(), "before the rows").await;
    let mut outcomes = Vec::new();
    let interrupted = {
        let body = run_steps(&steps, &sizes, scratch.path(), &mut outcomes);
        tokio::select! {
            biased;
            () = stop => true,
            () = body => false,
        }
    };
    // Every node was owned by `body`, now dropped: all are killed before their data goes.
    let after = match interrupted {
        false => probe_machine(scratch.path(), "after the rows").await,
        true => None,
    };
    drop(scratch);
    if interrupted {
        note("interrupted: nodes killed, data removed");
        for &step in &steps {
            if !outcomes.iter().any(|o| o.step == step) {
                outcomes.push(Outcome {
                    step,
                    description: step.description(&sizes),
                    result: Err("not run: interrupted".into()),
                });
            }
        }
    }
    outcomes.sort_by_key(|o| o.step.key());
    out.write_all(report::table(&outcomes).as_bytes()).await?;
    for (when, p) in [("before", &before), ("after", &after)] {
        if let Some(p) = p {
            let line = format!("machine {when} the rows: {}\n", p.line());
            out.write_all(line.as_bytes()).await?;
        }
    }
    if let Some(path) = &args.json {
        let mut all = report::json(&outcomes);
        all["machine"] = json!({
            "before": before.map(|p| p.json()),
            "after": after.map(|p| p.json()),
        });
        super::write_json(path, &all)?;
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.step.key())
        .collect();
    if interrupted || !failed.is_empty() {
        return Err(ClientError::Api {
            code: if interrupted { "interrupted" } else { "failed" }.into(),
            message: format!(
                "{} of {} suite steps have no result: {}",
                failed.len(),
                outcomes.len(),
                failed.join(", ")
            ),
            retryable: false,
            log_start_offset: None,
        });
    }
    Ok(())
}

/// The machine's probes ([`probe`]) on the disk of `dir`, with no node running; `None` (and a
/// note) if the disk probe fails: the rows go on without it.
async fn probe_machine(dir: &Path, when: &str) -> Option<probe::Probe> {
    let dir = dir.to_path_buf();
    let measured = tokio::task::spawn_blocking(move || {
        probe::measure(&dir, probe::FSYNC_SAMPLES, probe::CPU_ROUNDS)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    match measured {
        Ok(p) => {
            note(format!("machine {when}: {}", p.line()));
            Some(p)
        }
        Err(e) => {
            note(format!("machine probe {when} failed: {e}"));
            None
        }
    }
}

/// Runs `steps` node set by node set, pushing each step's outcome as it ends.
async fn run_steps(steps: &[Step], sizes: &Sizes, root: &Path, outcomes: &mut Vec<Outcome>) {
    let mut t1_done = false;
    for set in [Nodes::Single, Nodes::Cluster, Nodes::Idle] {
        let mine: Vec<Step> = steps.iter().copied().filter(|s| s.nodes() == set).collect();
        if mine.is_empty() {
            continue;
        }
        let started = Instant::now();
        let what = match set {
            Nodes::Single => "the single node",
            Nodes::Cluster => "the 3-node cluster",
            Nodes::Idle => "T6's node",
        };
        note(format!("starting {what}"));
        let started_nodes = match set {
            Nodes::Cluster => nodes::start_cluster(root, &CLUSTER).await,
            Nodes::Single => nodes::start_node(root, "solo").await.map(|n| vec![n]),
            Nodes::Idle => nodes::start_node(root, "idle").await.map(|n| vec![n]),
        };
        let mut group = match started_nodes {
            Ok(group) => group,
            Err(e) => {
                note(format!("{what} did not start: {e}"));
                for step in mine {
                    outcomes.push(Outcome {
                        step,
                        description: step.description(sizes),
                        result: Err(format!("starting {what}: {e}")),
                    });
                }
                continue;
            }
        };
        note(format!(
            "{what} is ready after {:.1} s (pids {})",
            started.elapsed().as_secs_f64(),
            group
                .iter()
                .filter_map(|n| n.pid().map(|p| p.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for step in mine {
            let description = step.description(sizes);
            if step.needs_t1() && !t1_done {
                note(format!("{} skipped: T1 did not complete", step.key()));
                outcomes.push(Outcome {
                    step,
                    description,
                    result: Err("not run: T1 did not complete".into()),
                });
                continue;
            }
            note(format!("{} starts: {description}", step.key()));
            let began = Instant::now();
            let result = run_step(step, sizes, &mut group).await;
            let took = began.elapsed().as_secs_f64();
            match &result {
                Ok(v) => {
                    let verdict = report::verdict(step, v);
                    note(format!(
                        "{} done in {took:.1} s: {} (target {}: {})",
                        step.key(),
                        verdict.result,
                        verdict.target,
                        if verdict.missed.is_empty() {
                            "met"
                        } else {
                            "not met"
                        }
                    ));
                }
                Err(e) => note(format!("{} failed after {took:.1} s: {e}", step.key())),
            }
            if step == Step::T1 {
                t1_done = result.is_ok();
            }
            outcomes.push(Outcome {
                step,
                description,
                result: result.map_err(|e| e.to_string()),
            });
        }
        drop(group);
        note(format!("{what} stopped"));
    }
}

/// One step on its nodes (the single node or T6's: one; the cluster: a, b, c).
async fn run_step(step: Step, s: &Sizes, group: &mut [NodeProc]) -> Result<Value, ClientError> {
    let native = BenchTransport::Native;
    let http = BenchTransport::Http;
    match step {
        Step::T1 => {
            let w = Produce::new(native, "t1", 1_000, 4, 4, 1).records(s.t1_records);
            w.run(group, 0).await
        }
        Step::T2 => {
            let w = Produce::new(http, "t2", 100, 16, 4, 1).records(s.t2_records);
            w.run(group, 0).await
        }
        Step::T5Rf1 => {
            let w = Produce::new(http, "t5", 1, 16, 1, 1).at_rate(1_000.0, s.t5_duration);
            w.run(group, 0).await
        }
        Step::T3 => {
            let w = Produce::new(native, "t3", 1_000, 4, 4, 3).records(s.t3_records);
            w.prepare(&group[0].api).await?;
            w.run(group, 0).await
        }
        Step::T5Rf3 => {
            let w = Produce::new(http, "t5_rf3", 1, 16, 1, 3).at_rate(1_000.0, s.t5_duration);
            let topic = w.prepare(&group[0].api).await?;
            // Sent where the partition's leader is, as a client that knows it would.
            let leader = topic.partitions.first().and_then(|p| p.leader.as_deref());
            let via = group
                .iter()
                .position(|n| Some(n.name.as_str()) == leader)
                .unwrap_or(0);
            let mut v = w.run(group, via).await?;
            v["sent_to"] = group[via].name.clone().into();
            Ok(v)
        }
        Step::T4Native => consume(native, "t1", group).await,
        Step::T4Http => consume(http, "t1", group).await,
        Step::T6 => idle(&group[0], s).await,
        Step::T7 => restart(&mut group[0]).await,
    }
}

/// The options of a bench run against `node`.
fn common(
    transport: BenchTransport,
    node: &NodeProc,
    topic: &str,
    batch: u32,
    records: u64,
    duration: Option<Duration>,
) -> BenchCommon {
    BenchCommon {
        transport,
        seed: Some(node.seed()),
        cookie: Some(COOKIE.to_owned()),
        cluster: "daftka".to_owned(),
        topic: topic.to_owned(),
        batch: Some(batch),
        records,
        duration,
        json: None,
        node_pid: None,
        // The workload's progress line only where someone watches it.
        quiet: !std::io::stderr().is_terminal(),
    }
}

/// A produce workload of the suite.
struct Produce {
    transport: BenchTransport,
    topic: &'static str,
    batch: u32,
    producers: u32,
    partitions: u32,
    replication_factor: u32,
    records: u64,
    duration: Option<Duration>,
    rate: Option<f64>,
}

impl Produce {
    fn new(
        transport: BenchTransport,
        topic: &'static str,
        batch: u32,
        producers: u32,
        partitions: u32,
        replication_factor: u32,
    ) -> Produce {
        Produce {
            transport,
            topic,
            batch,
            producers,
            partitions,
            replication_factor,
            records: 1,
            duration: None,
            rate: None,
        }
    }

    fn records(self, records: u64) -> Produce {
        Produce { records, ..self }
    }

    fn at_rate(self, rate: f64, duration: Duration) -> Produce {
        Produce {
            rate: Some(rate),
            duration: Some(duration),
            ..self
        }
    }

    /// Creates the topic and waits until its partitions are led by their preferred replicas.
    async fn prepare(&self, api: &Api) -> Result<TopicJson, ClientError> {
        super::http::prepare_topic(
            api,
            self.topic,
            Some((self.partitions, Some(self.replication_factor))),
        )
        .await?;
        settle_leaders(api, self.topic).await
    }

    /// Runs it against `group[via]`, measuring every node of `group`.
    async fn run(&self, group: &[NodeProc], via: usize) -> Result<Value, ClientError> {
        let node = &group[via];
        let args = BenchProduceArgs {
            common: common(
                self.transport,
                node,
                self.topic,
                self.batch,
                self.records,
                self.duration,
            ),
            partitions: self.partitions,
            replication_factor: Some(self.replication_factor),
            record_size: RECORD_SIZE,
            producers: Some(self.producers),
            rate: self.rate,
            partition_mode: BenchPartitionMode::Request,
        };
        let usage = Usage::start(group);
        let summary = super::produce(&node.api, &args, false, std::future::pending()).await?;
        let mut v = summary.json();
        usage.finish(&mut v);
        Ok(v)
    }
}

/// Waits (up to [`SETTLE_TIMEOUT`]) until every partition of `topic` is led by its first
/// replica, where the node's leader balancing would move it anyway; answers the topic as it is.
async fn settle_leaders(api: &Api, topic: &str) -> Result<TopicJson, ClientError> {
    let began = Instant::now();
    let settled = |t: &TopicJson| {
        t.partitions
            .iter()
            .all(|p| p.leader.is_some() && p.replicas.first() == p.leader.as_ref())
    };
    let found = super::poll_until(began + SETTLE_TIMEOUT, super::POLL_INTERVAL, || async {
        let t = api.describe_topic(topic).await?;
        Ok(settled(&t).then_some(t))
    })
    .await?;
    let waited = began.elapsed().as_secs_f64();
    match found {
        Some(t) => {
            note(format!(
                "{topic}: every partition led by its first replica after {waited:.1} s"
            ));
            Ok(t)
        }
        None => {
            note(format!(
                "{topic}: not every partition is led by its first replica after {waited:.1} s; going on"
            ));
            api.describe_topic(topic).await
        }
    }
}

/// T4: every record of `topic` from the start, over `transport`.
async fn consume(
    transport: BenchTransport,
    topic: &str,
    group: &[NodeProc],
) -> Result<Value, ClientError> {
    let node = &group[0];
    let args = BenchConsumeArgs {
        common: common(transport, node, topic, CONSUME_BATCH, u64::MAX, None),
        from: StartOffset::Earliest,
    };
    let usage = Usage::start(group);
    let summary = super::consume(&node.api, &args, std::future::pending()).await?;
    let mut v = summary.json();
    usage.finish(&mut v);
    Ok(v)
}

/// The CPU time of each node of a row, from its start, for [`Usage::finish`].
struct Usage(Vec<(String, CpuSample)>);

impl Usage {
    fn start(group: &[NodeProc]) -> Usage {
        Usage(
            group
                .iter()
                .filter_map(|n| Some((n.name.clone(), CpuSample::take(n.pid()?).ok()?)))
                .collect(),
        )
    }

    /// Adds `nodes`, `cpu_percent` and `rss_bytes` (summed over the nodes) and, for more than one
    /// node, `node_usage`: each one's.
    fn finish(self, v: &mut Value) {
        let nodes = self.0.len();
        let each: Vec<(String, super::stats::NodeUsage)> = self
            .0
            .into_iter()
            .filter_map(|(name, sample)| Some((name, sample.usage_since()?)))
            .collect();
        v["nodes"] = nodes.into();
        if each.is_empty() {
            return;
        }
        v["cpu_percent"] = each.iter().map(|(_, u)| u.cpu_percent).sum::<f64>().into();
        v["rss_bytes"] = each
            .iter()
            .filter_map(|(_, u)| u.rss_bytes)
            .sum::<u64>()
            .into();
        if nodes > 1 {
            v["node_usage"] = each
                .iter()
                .map(|(name, u)| {
                    json!({"name": name, "cpu_percent": u.cpu_percent, "rss_bytes": u.rss_bytes})
                })
                .collect::<Vec<_>>()
                .into();
        }
    }
}

/// How `total` partitions are cut into topics of at most [`T6_TOPIC_PARTITIONS_MAX`], as evenly
/// as possible.
fn topic_sizes(total: u32) -> Vec<u32> {
    let topics = total.div_ceil(T6_TOPIC_PARTITIONS_MAX).max(1);
    (0..topics)
        .map(|i| total / topics + u32::from(i < total % topics))
        .collect()
}

/// Creates `name` with `partitions` partitions, RF 1. Creating a large topic may answer `timeout`
/// (outcome unknown) while it goes on: then the topic is asked for again until it exists or
/// `deadline` passes.
async fn create_topic(
    api: &Api,
    name: &str,
    partitions: u32,
    deadline: Instant,
) -> Result<(), ClientError> {
    loop {
        match api.create_topic(name, Some(partitions), Some(1)).await {
            Ok(_) => return Ok(()),
            Err(ClientError::Api { code, .. }) if code == "topic_exists" => return Ok(()),
            Err(e) if e.retryable() && Instant::now() < deadline => {
                note(format!("creating {name}: {e}; asking again"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                if api.describe_topic(name).await.is_ok() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// T6: topics of `s.t6_partitions` partitions in all (RF 1) on the node; once every partition
/// has a leader, its CPU and RSS over `s.t6_idle` of doing nothing.
async fn idle(node: &NodeProc, s: &Sizes) -> Result<Value, ClientError> {
    let began = Instant::now();
    let sizes = topic_sizes(s.t6_partitions);
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("t6_{i}")).collect();
    let deadline = began + T6_LEADERS_TIMEOUT;
    for (name, &n) in names.iter().zip(&sizes) {
        create_topic(&node.api, name, n, deadline).await?;
    }
    let led_count = || async {
        let mut led = 0;
        for name in &names {
            let t = node.api.describe_topic(name).await?;
            led += t.partitions.iter().filter(|p| p.leader.is_some()).count();
        }
        Ok::<_, ClientError>(led)
    };
    let all_led = super::poll_until(deadline, super::POLL_INTERVAL, || async {
        Ok((led_count().await? >= s.t6_partitions as usize).then_some(()))
    })
    .await?;
    if all_led.is_none() {
        return Err(ClientError::Api {
            code: "timeout".into(),
            message: format!(
                "{} of {} partitions have a leader after {T6_LEADERS_TIMEOUT:?}",
                led_count().await?,
                s.t6_partitions
            ),
            retryable: false,
            log_start_offset: None,
        });
    }
    let setup = began.elapsed().as_secs_f64();
    let pid = node.pid().ok_or_else(|| ClientError::Api {
        code: "unavailable".into(),
        message: format!("node {} is not running", node.name),
        retryable: false,
        log_start_offset: None,
    })?;
    let sample = CpuSample::take(pid)?;
    tokio::time::sleep(s.t6_idle).await;
    let usage = sample.usage_since().ok_or_else(|| ClientError::Api {
        code: "unavailable".into(),
        message: format!("node {} exited while idle", node.name),
        retryable: false,
        log_start_offset: None,
    })?;
    Ok(json!({
        "partitions": s.t6_partitions,
        "topics": sizes.len(),
        "replication_factor": 1,
        "nodes": 1,
        "setup_seconds": setup,
        "seconds": s.t6_idle.as_secs_f64(),
        "cpu_percent": usage.cpu_percent,
        "rss_bytes": usage.rss_bytes,
    }))
}

/// T7: kill -9 the node, start it again on its data and ports, and time it until `/readyz` is
/// 200; then check it still holds T1's records.
async fn restart(node: &mut NodeProc) -> Result<Value, ClientError> {
    let data_bytes = nodes::dir_bytes(&node.data_dir);
    node.kill9();
    let spawned = node.start()?;
    node.wait_ready(RESTART_TIMEOUT).await?;
    let seconds = spawned.elapsed().as_secs_f64();
    let t1 = node.api.describe_topic("t1").await?;
    let records: u64 = t1.partitions.iter().map(|p| p.high_watermark).sum();
    Ok(json!({
        "seconds": seconds,
        "records": records,
        "data_bytes": data_bytes,
        "nodes": 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t6_topics_are_even_and_within_the_limit() {
        assert_eq!(topic_sizes(3_000), vec![1_000, 1_000, 1_000]);
        assert_eq!(topic_sizes(200), vec![200]);
        assert_eq!(topic_sizes(1_000), vec![1_000]);
        assert_eq!(topic_sizes(1_001), vec![501, 500]);
        assert_eq!(topic_sizes(2_500), vec![834, 833, 833]);
        for n in [1, 999, 1_024, 4_321, 10_000] {
            let sizes = topic_sizes(n);
            assert_eq!(sizes.iter().sum::<u32>(), n);
            assert!(sizes
                .iter()
                .all(|s| (1..=T6_TOPIC_PARTITIONS_MAX).contains(s)));
        }
    }

    #[test]
    fn usage_sums_over_nodes() {
        // This test process stands in for the nodes.
        let mut v = json!({});
        let sample = CpuSample::take(std::process::id()).expect("own /proc");
        Usage(vec![("a".into(), sample), ("b".into(), sample)]).finish(&mut v);
        assert_eq!(v["nodes"], 2);
        let each = v["node_usage"].as_array().expect("each node");
        assert_eq!(each.len(), 2);
        let rss: u64 = each
            .iter()
            .map(|n| n["rss_bytes"].as_u64().expect("rss"))
            .sum();
        assert_eq!(v["rss_bytes"], rss);
        assert!(v["cpu_percent"].as_f64().is_some_and(|c| c >= 0.0));
        let mut one = json!({});
        Usage(vec![("a".into(), sample)]).finish(&mut one);
        assert_eq!(one["nodes"], 1);
        assert!(one.get("node_usage").is_none());
        assert!(one["rss_bytes"].as_u64().is_some_and(|b| b > 0));
    }
}
