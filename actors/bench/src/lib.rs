//! # daftka-bench
//!
//! `daftka bench produce|consume|e2e`: a load generator that reports throughput and latency
//! percentiles, over the HTTP API (`--transport http`, at `--url`) or the native client
//! (`--transport native --seed HOST:PORT --cookie C`). `daftka bench suite` runs the standard rows
//! T1-T7 with these workloads on nodes of its own: see [`suite`].
//!
//! | module | role |
//! |---|---|
//! | [`plan`] | the run's schedule (which records each request carries, when it is due), shared counters, progress line |
//! | [`drive`] | transport-independent producer, consumer and e2e reader loops, the retry rule, running them |
//! | [`http`] | producers and readers over the JSON API, one connection each, bodies serialized once |
//! | [`native`] | producers and readers over one ractor_cluster session |
//! | [`stats`] | the latency histogram and its percentiles, the node's CPU and RSS, the summary |
//! | [`suite`] | `bench suite`: the rows T1-T7 on fresh nodes, the table of results and targets |
//! | [`nodes`] | the suite's node processes, free ports, scratch directory |
//! | [`report`] | the suite's steps and sizes, each result against its target, the table, the JSON |
//!
//! **produce** creates `--topic` if missing (`--partitions`, `--replication-factor`; an existing
//! topic is used as it is) and waits for its leaders, then `--producers` producers send requests of
//! `--batch` records of `--record-size` bytes until `--records` are acknowledged (exactly) or
//! `--duration` has passed. Closed loop by default: each producer sends its next request when the
//! last is acknowledged, latency from send to acknowledgement. With `--rate R`, request `i` of the
//! run is due at `i / R` seconds; a producer free before then waits for it and its latency counts
//! from when it was sent, but a request no producer was free to send on time counts from when it was
//! due, so time queued behind a slow node is not hidden (coordinated omission). `--partition-mode`:
//! `request` (default: each request names one partition, requests rotate), `record` (records of a
//! request rotate) or `node` (no partition: the node spreads them).
//!
//! **consume** reads every partition at once (one reader each) from `--from`, `--batch` records
//! per fetch, until `--records` were read or every partition's high watermark seen at the start is
//! reached (or `--duration`); latency is per fetch.
//!
//! **e2e** starts a reader per partition at its high watermark, then produces like `produce`
//! (usually with `--rate`); each value starts with 16 digits: its send time in microseconds since
//! the start (the due time when late, as above). Latency is per record, from that time to the fetch
//! that returns it; the run ends when every acknowledged record was read back (or 10 s after the
//! producers finish).
//!
//! Retryable failures (`unavailable`, `not_leader`, `timeout`, a lost connection) are counted in
//! `errors` and the request is sent again after 20 ms, for up to 30 s; any other error ends the run
//! with that error. A record counts only once acknowledged (though a request retried after a
//! `timeout` or a lost connection may have been stored twice). Ctrl-C ends the run early, with the
//! summary of what was done.
//!
//! Output: a progress line on stderr, rewritten every 500 ms (`--quiet`: none); then the summary
//! on stdout; `--json FILE` writes it as one object: `records`, `bytes`, `seconds`,
//! `records_per_sec`, `mb_per_sec` (10^6 value bytes), `requests`, `errors`, `p50_ms`, `p90_ms`,
//! `p99_ms`, `p999_ms`, `max_ms`, `mean_ms`, `cpu_percent` and `rss_bytes` (with `--node-pid`),
//! `produce_p50_ms` and `produce_p99_ms` (e2e), and the parameters `workload`, `transport`,
//! `record_size`, `batch`, `producers`, `partitions`, `rate` (null: closed loop) and
//! `replication_factor`. Percentiles are nearest-rank over a log-linear histogram, at most 1.6 %
//! above the exact value and never above the max.

pub mod args;
mod drive;
mod http;
mod native;
mod nodes;
mod plan;
mod probe;
mod report;
mod stats;
mod suite;

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::args::{
    BenchArgs, BenchCommon, BenchConsumeArgs, BenchPartitionMode, BenchProduceArgs, BenchTransport,
    BenchWorkload,
};
use daftka_http::client::Api;
use daftka_http::client::{ClientError, StartOffset};
use drive::{Outcome, Workers, STAMP_LEN};
use plan::{Limit, Plan};
use stats::{CpuSample, Summary};

/// How long the bench waits for a new topic's partitions to elect leaders.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait for a condition on a node (leaders elected, a node ready) checks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` every `interval` until it answers `Some`, or `deadline` passes (`None`); an
/// error from `check` ends the wait.
pub async fn poll_until<T, Fut>(
    deadline: std::time::Instant,
    interval: Duration,
    mut check: impl FnMut() -> Fut,
) -> Result<Option<T>, ClientError>
where
    Fut: Future<Output = Result<Option<T>, ClientError>>,
{
    loop {
        if let Some(found) = check().await? {
            return Ok(Some(found));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits until `describe` (whether every partition has a leader, and the topic) shows every
/// partition led, or [`LEADERS_TIMEOUT`] passes: answers the topic as last described.
async fn wait_for_leaders<Fut>(mut describe: impl FnMut() -> Fut) -> Result<TopicInfo, ClientError>
where
    Fut: Future<Output = Result<(bool, TopicInfo), ClientError>>,
{
    let deadline = std::time::Instant::now() + LEADERS_TIMEOUT;
    let led = poll_until(deadline, POLL_INTERVAL, || {
        let described = describe();
        async move {
            let (all_led, info) = described.await?;
            Ok(all_led.then_some(info))
        }
    })
    .await?;
    match led {
        Some(info) => Ok(info),
        // Not every partition has a leader yet: go on with the topic as it is.
        None => Ok(describe().await?.1),
    }
}

/// A topic as the bench sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub replication_factor: u32,
    /// Each partition: id, log start offset, high watermark.
    pub partitions: Vec<(u32, u64, u64)>,
}

impl TopicInfo {
    /// A topic from its description: its replication factor and each partition's id, log start
    /// offset, high watermark and whether it has a leader; with whether every partition has one.
    pub fn described(
        replication_factor: u32,
        partitions: impl Iterator<Item = (u32, u64, u64, bool)>,
    ) -> (bool, TopicInfo) {
        let mut all_led = true;
        let partitions = partitions
            .map(|(p, start, hw, led)| {
                all_led &= led;
                (p, start, hw)
            })
            .collect();
        let info = TopicInfo {
            replication_factor,
            partitions,
        };
        (all_led, info)
    }
}

/// Which partition each record of a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    mode: BenchPartitionMode,
    partitions: u32,
}

impl Spread {
    /// How many different full requests there are: request `i` is variant `i % variants()`.
    pub fn variants(&self) -> u32 {
        match self.mode {
            BenchPartitionMode::Node => 1,
            _ => self.partitions.max(1),
        }
    }

    /// The partition record `j` of a request of `variant` names.
    pub fn partition(&self, variant: u32, j: u32) -> Option<u32> {
        match self.mode {
            BenchPartitionMode::Request => Some(variant),
            BenchPartitionMode::Record => Some(
                ((u64::from(variant) + u64::from(j)) % u64::from(self.partitions.max(1))) as u32,
            ),
            BenchPartitionMode::Node => None,
        }
    }
}

fn default_batch(t: BenchTransport) -> u32 {
    match t {
        BenchTransport::Http => 100,
        BenchTransport::Native => 1000,
    }
}

fn default_producers(t: BenchTransport) -> u32 {
    match t {
        BenchTransport::Http => 16,
        BenchTransport::Native => 4,
    }
}

fn transport_name(t: BenchTransport) -> &'static str {
    match t {
        BenchTransport::Http => "http",
        BenchTransport::Native => "native",
    }
}

fn limit(c: &BenchCommon) -> Limit {
    match c.duration {
        Some(d) => Limit::Time(d),
        None => Limit::Records(c.records),
    }
}

/// A value of `size` JSON-safe ASCII bytes; e2e stamps overwrite its first [`STAMP_LEN`].
fn filler(size: u32) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs one bench and prints its summary to `out` (and to `--json`).
pub async fn run(
    api: &Api,
    args: &BenchArgs,
    out: &mut (impl AsyncWrite + Unpin),
    stop: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    let (summary, common) = match &args.workload {
        BenchWorkload::Produce(a) => (produce(api, a, false, stop).await?, &a.common),
        BenchWorkload::E2e(a) => (produce(api, a, true, stop).await?, &a.common),
        BenchWorkload::Consume(a) => (consume(api, a, stop).await?, &a.common),
        BenchWorkload::Suite(a) => return suite::run(a, out, stop).await,
    };
    out.write_all(summary.text().as_bytes()).await?;
    if let Some(path) = &common.json {
        write_json(path, &summary.json())?;
    }
    Ok(())
}

/// Writes `value` to `path` as pretty JSON (`--json FILE`).
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<(), ClientError> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| ClientError::Decode(e.to_string()))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| {
        ClientError::Io(std::io::Error::new(
            e.kind(),
            format!("writing {}: {e}", path.display()),
        ))
    })
}

/// `bench produce` and `bench e2e`.
async fn produce(
    api: &Api,
    a: &BenchProduceArgs,
    e2e: bool,
    stop: impl Future<Output = ()>,
) -> Result<Summary, ClientError> {
    let c = &a.common;
    if e2e && (a.record_size as usize) < STAMP_LEN {
        return Err(ClientError::Usage(format!(
            "bench e2e carries the send time in the value: --record-size must be at least {STAMP_LEN}"
        )));
    }
    if let Some(pid) = c.node_pid {
        CpuSample::take(pid)?;
    }
    let batch = c.batch.unwrap_or(default_batch(c.transport));
    let producers = a.producers.unwrap_or(default_producers(c.transport));
    let plan = Plan {
        limit: limit(c),
        batch,
        rate: a.rate,
    };
    let value = filler(a.record_size);
    let create = Some((a.partitions, a.replication_factor));
    let record_size = u64::from(a.record_size);
    let (topic, outcome, node) = match c.transport {
        BenchTransport::Http => {
            let topic = http::prepare_topic(api, &c.topic, create).await?;
            let spread = spread(a.partition_mode, &topic);
            let ps = http::producers(api, &c.topic, producers, &value, batch, spread)?;
            let readers = if e2e {
                topic
                    .partitions
                    .iter()
                    .map(|&(p, _, hw)| Ok((http::HttpReader::new(api, &c.topic, p)?, hw)))
                    .collect::<Result<Vec<_>, ClientError>>()?
            } else {
                Vec::new()
            };
            let workers = Workers::produce(ps, record_size, readers);
            let (outcome, sample) = measure(c, plan, workers, stop).await?;
            (topic, outcome, sample)
        }
        BenchTransport::Native => {
            let remote = native::connect(c).await?;
            let client = remote.client.clone();
            let result = async {
                let topic = native::prepare_topic(&client, &c.topic, create).await?;
                let spread = spread(a.partition_mode, &topic);
                let ps: Vec<_> = (0..producers)
                    .map(|_| native::NativeProducer::new(&client, &c.topic, &value, spread))
                    .collect();
                let readers = if e2e {
                    topic
                        .partitions
                        .iter()
                        .map(|&(p, _, hw)| (native::NativeReader::new(&client, &c.topic, p), hw))
                        .collect()
                } else {
                    Vec::new()
                };
                let workers = Workers::produce(ps, record_size, readers);
                let (outcome, sample) = measure(c, plan, workers, stop).await?;
                Ok::<_, ClientError>((topic, outcome, sample))
            }
            .await;
            remote.close().await;
            result?
        }
    };
    let usage = node.and_then(|s| s.usage_since());
    Ok(summary(
        if e2e { "e2e" } else { "produce" },
        c,
        &topic,
        record_size,
        batch,
        producers,
        a.rate,
        outcome,
        usage,
    ))
}

/// Runs `workers` through `plan`, sampling the node's CPU (with `--node-pid`) over the same span.
async fn measure<P: drive::Producer, R: drive::Reader>(
    c: &BenchCommon,
    plan: Plan,
    workers: Workers<P, R>,
    stop: impl Future<Output = ()>,
) -> Result<(Outcome, Option<CpuSample>), ClientError> {
    let sample = c.node_pid.map(CpuSample::take).transpose()?;
    let outcome = drive::run(plan, workers, c.quiet, stop).await?;
    Ok((outcome, sample))
}

fn spread(mode: BenchPartitionMode, topic: &TopicInfo) -> Spread {
    Spread {
        mode,
        partitions: topic.partitions.len() as u32,
    }
}

/// `bench consume`.
async fn consume(
    api: &Api,
    a: &BenchConsumeArgs,
    stop: impl Future<Output = ()>,
) -> Result<Summary, ClientError> {
    let c = &a.common;
    if let Some(pid) = c.node_pid {
        CpuSample::take(pid)?;
    }
    let batch = c.batch.unwrap_or(default_batch(c.transport));
    let plan = Plan {
        limit: limit(c),
        batch,
        rate: None,
    };
    // Each partition from --from (within what it holds) to its high watermark now.
    let ranges = |topic: &TopicInfo| -> Vec<(u32, u64, u64)> {
        topic
            .partitions
            .iter()
            .map(|&(p, start, hw)| {
                let from = match a.from {
                    StartOffset::At(o) => o.clamp(start, hw),
                    StartOffset::Earliest | StartOffset::Latest => start,
                };
                (p, from, hw)
            })
            .collect()
    };
    let (topic, outcome, node) = match c.transport {
        BenchTransport::Http => {
            let topic = http::prepare_topic(api, &c.topic, None).await?;
            let readers = ranges(&topic)
                .into_iter()
                .map(|(p, from, end)| Ok((http::HttpReader::new(api, &c.topic, p)?, from, end)))
                .collect::<Result<Vec<_>, ClientError>>()?;
            let (outcome, sample) = measure(c, plan, Workers::consume(readers), stop).await?;
            (topic, outcome, sample)
        }
        BenchTransport::Native => {
            let remote = native::connect(c).await?;
            let client = remote.client.clone();
            let result = async {
                let topic = native::prepare_topic(&client, &c.topic, None).await?;
                let readers = ranges(&topic)
                    .into_iter()
                    .map(|(p, from, end)| {
                        (native::NativeReader::new(&client, &c.topic, p), from, end)
                    })
                    .collect();
                let (outcome, sample) = measure(c, plan, Workers::consume(readers), stop).await?;
                Ok::<_, ClientError>((topic, outcome, sample))
            }
            .await;
            remote.close().await;
            result?
        }
    };
    let usage = node.and_then(|s| s.usage_since());
    let readers = topic.partitions.len() as u32;
    Ok(summary(
        "consume", c, &topic, 0, batch, readers, None, outcome, usage,
    ))
}

/// The summary of a run. `record_size` 0: the mean size of what was read.
#[allow(clippy::too_many_arguments)]
fn summary(
    workload: &'static str,
    c: &BenchCommon,
    topic: &TopicInfo,
    record_size: u64,
    batch: u32,
    producers: u32,
    rate: Option<f64>,
    outcome: Outcome,
    node: Option<stats::NodeUsage>,
) -> Summary {
    let Outcome {
        latency,
        e2e,
        seconds,
        records,
        bytes,
        requests,
        errors,
    } = outcome;
    // e2e: the records read back, and their latency; the produce requests' latency besides.
    let (latency, produce_latency, records, bytes) = match e2e {
        Some((e2e, read)) => (e2e, Some(latency), read, read * record_size),
        None => (latency, None, records, bytes),
    };
    Summary {
        workload,
        transport: transport_name(c.transport),
        record_size: if record_size == 0 && records > 0 {
            bytes / records
        } else {
            record_size
        },
        batch,
        producers,
        partitions: topic.partitions.len() as u32,
        rate,
        replication_factor: topic.replication_factor,
        records,
        bytes,
        seconds,
        requests,
        errors,
        latency,
        produce_latency,
        node,
    }
}

#[cfg(test)]
mod tests;
