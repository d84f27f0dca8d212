//! The bench's arguments, as clap types (the `daftka` binary takes them under `daftka bench`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use daftka_http::client::StartOffset;

/// `daftka bench ...`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub workload: BenchWorkload,
}

/// What `daftka bench` measures.
#[derive(clap::Subcommand, Debug)]
pub enum BenchWorkload {
    /// Produce generated records; latency is per request, from send (or, with --rate, from the
    /// scheduled send time) to acknowledgement.
    Produce(BenchProduceArgs),
    /// Read a topic from every partition at once, up to --records or the high watermarks seen at
    /// the start; latency is per fetch.
    Consume(BenchConsumeArgs),
    /// Produce (usually at --rate) while reading the new records back; latency is per record,
    /// from the produce send time it carries in its value to its arrival at the reader.
    E2e(BenchProduceArgs),
    /// The standard suite, rows T1-T7, on fresh nodes of its own (this binary, temp data, free
    /// loopback ports); prints a table of results and targets (information only, never a failure).
    Suite(BenchSuiteArgs),
}

/// One row of `daftka bench suite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SuiteRow {
    /// Native produce, 1 node, RF 1 (its records are T4's and T7's data).
    T1,
    /// HTTP produce, 1 node.
    T2,
    /// Native produce, 3 nodes, RF 3.
    T3,
    /// Consume T1's records: native, then HTTP.
    T4,
    /// One record per request at 1,000 requests/s over HTTP: RF 1, then RF 3.
    T5,
    /// CPU and memory of one node idling with thousands of partition replicas.
    T6,
    /// Restart time of the node holding T1's records.
    T7,
}

impl SuiteRow {
    pub const ALL: [SuiteRow; 7] = [
        SuiteRow::T1,
        SuiteRow::T2,
        SuiteRow::T3,
        SuiteRow::T4,
        SuiteRow::T5,
        SuiteRow::T6,
        SuiteRow::T7,
    ];
}

impl fmt::Display for SuiteRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl FromStr for SuiteRow {
    type Err = String;

    /// `T1` to `T7`, any case, spaces around ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        SuiteRow::ALL
            .into_iter()
            .find(|r| r.to_string().eq_ignore_ascii_case(t))
            .ok_or_else(|| format!("{s:?} is not a suite row (T1 to T7)"))
    }
}

/// `daftka bench suite`
#[derive(clap::Args, Debug, Clone)]
pub struct BenchSuiteArgs {
    /// Rows to run, comma-separated, e.g. T1,T4 [default: all]; T4 and T7 need T1's records, so
    /// they run T1 too.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(SuiteRow))]
    pub rows: Option<Vec<SuiteRow>>,
    /// Records T1 writes (and T4 reads, and T7's node holds) [default: 10000000; --quick: 200000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub t1_records: Option<u64>,
    /// How long each T5 run sends [default: 10s; --quick: 2s].
    #[arg(long, value_parser = parse_bench_duration)]
    pub t5_duration: Option<Duration>,
    /// Small sizes for a smoke run: fewer records, 2 s windows, fewer partitions for T6.
    #[arg(long)]
    pub quick: bool,
    /// Also write the results to this file, as one JSON object with a key per row.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// How `daftka bench` reaches the cluster.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchTransport {
    /// The JSON HTTP API at --url.
    Http,
    /// Typed messages over the cluster's ractor_cluster network (--seed, --cookie).
    Native,
}

/// How `daftka bench` spreads produced records over partitions.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchPartitionMode {
    /// Every record of a request names the same partition; requests rotate over partitions.
    Request,
    /// Records of a request name partitions round-robin.
    Record,
    /// Records name no partition: the node spreads them.
    Node,
}

/// The options every bench workload takes.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchCommon {
    /// http: the node's JSON API at --url; native: the cluster's actor messages via --seed.
    #[arg(long, value_enum, default_value_t = BenchTransport::Http)]
    pub transport: BenchTransport,
    /// With --transport native: a node's cluster address, host:port.
    #[arg(long, required_if_eq("transport", "native"))]
    pub seed: Option<String>,
    /// With --transport native: the cluster's cookie.
    #[arg(
        long,
        env = "DAFTKA_COOKIE",
        hide_env_values = true,
        required_if_eq("transport", "native")
    )]
    pub cookie: Option<String>,
    /// With --transport native: the cluster's name (cluster.name).
    #[arg(long, default_value = "daftka")]
    pub cluster: String,
    /// The topic.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Records per request: per produce, or max_records per fetch [default: 1000 native, 100 http].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: Option<u32>,
    /// Stop after this many records (not with --duration).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Run this long instead of up to --records, e.g. 10s, 500ms, 2m.
    #[arg(long, conflicts_with = "records", value_parser = parse_bench_duration)]
    pub duration: Option<Duration>,
    /// Also write the summary to this file, as one JSON object.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The node's process id, to report its CPU use and resident memory (Linux /proc).
    #[arg(long)]
    pub node_pid: Option<u32>,
    /// No progress line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `daftka bench produce|e2e`
#[derive(clap::Args, Debug, Clone)]
pub struct BenchProduceArgs {
    #[command(flatten)]
    pub common: BenchCommon,
    /// Partitions of the topic if it has to be created (an existing topic is used as it is).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replicas per partition if the topic has to be created [default: the node's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: Option<u32>,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1024 * 1024))]
    pub record_size: u32,
    /// Concurrent producers: requests in flight at once (http: one connection each)
    /// [default: 4 native, 16 http].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub producers: Option<u32>,
    /// Requests per second in total, on a fixed schedule (open loop: latency counts from the
    /// scheduled send time); without it, each producer sends as fast as it is answered.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// How records are spread over partitions.
    #[arg(long, value_enum, default_value_t = BenchPartitionMode::Request)]
    pub partition_mode: BenchPartitionMode,
}

/// `daftka bench consume`
#[derive(clap::Args, Debug, Clone)]
pub struct BenchConsumeArgs {
    #[command(flatten)]
    pub common: BenchCommon,
    /// Where every partition is read from: `earliest` or an offset.
    #[arg(long, default_value = "earliest", value_parser = parse_bench_from)]
    pub from: StartOffset,
}

/// Parses `--duration`: a positive duration like `10s`.
fn parse_bench_duration(s: &str) -> Result<Duration, String> {
    let d = daftka_core::config::parse_duration(s)?;
    if d.is_zero() {
        return Err("the duration must be positive".to_owned());
    }
    Ok(d)
}

/// Parses `--rate`: a positive, finite number of requests per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of requests per second"
        )),
    }
}

/// Parses a bench consumer's `--from`: `earliest` or an offset (`latest` would read nothing).
fn parse_bench_from(s: &str) -> Result<StartOffset, String> {
    match s.parse::<StartOffset>()? {
        StartOffset::Latest => {
            Err("a bench reads existing records: use earliest or an offset".into())
        }
        from => Ok(from),
    }
}
