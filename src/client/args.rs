//! The client subcommands' arguments, as clap types.
//!
//! Limits a user can choose are parsed into ranges here, so a bad value is a usage error (exit 2)
//! reported by clap before any request is made.

use std::time::Duration;

pub use daftka_http::client::StartOffset;

// Where the client finds a node's HTTP API. (A plain comment: a doc comment here would become the
// `about` of the parser this struct is flattened into.)
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOpts {
    /// Base URL of any node's HTTP API; requests for partitions it does not lead are routed by it.
    #[arg(
        long,
        env = "DAFTKA_URL",
        default_value = "http://127.0.0.1:4001",
        global = true
    )]
    pub url: String,
}

// The client subcommands: they talk to a running node over its HTTP API. (A plain comment: a doc
// comment here would become the `about` of the parser this enum is flattened into.)
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe or delete topics.
    Topic(TopicArgs),
    /// Produce one record per line of standard input.
    Produce(ProduceArgs),
    /// Print a topic's records, one value per line.
    Consume(ConsumeArgs),
    /// List consumer groups, describe one, or reset its committed offsets.
    Group(GroupArgs),
    /// List the cluster's nodes, drain one (move its replicas away), take it back, or remove it.
    Node(NodeArgs),
    /// Print every replica move in flight: topic, partition, from, to, phase, bytes copied/total
    /// (tab-separated).
    Reassignments,
    /// Kill a node's actors on purpose (the node must run with debug.chaos = true).
    Chaos(ChaosArgs),
    /// Load generator: produce or consume as fast as possible (or at --rate) and report
    /// throughput and latency percentiles.
    Bench(Box<daftka_bench::args::BenchArgs>),
}

/// `daftka chaos ...`
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub command: ChaosCommand,
}

/// The chaos subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ChaosCommand {
    /// Print the node's registered actors, one per line.
    List,
    /// Kill the named actor (as `list` prints it), like a crash: its supervisor restarts it.
    Kill { actor: String },
}

/// `daftka topic ...`
#[derive(clap::Args, Debug)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// The topic subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic; the node's defaults apply to options not given.
    Create {
        name: String,
        /// Number of partitions (the node's default when absent).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: Option<u32>,
        /// Replicas per partition (the node's default when absent).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        replication_factor: Option<u32>,
    },
    /// Print one line per topic: name, partitions, replication factor (tab-separated).
    List,
    /// Print one line per partition: partition, leader, replicas, log start offset, high watermark.
    Describe { name: String },
    /// Delete a topic and all its records.
    Delete { name: String },
    /// Grow a topic's partitions and set its retention; prints the topic like describe.
    Alter {
        name: String,
        /// The new partition count (partitions only grow).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: Option<u32>,
        /// Delete records older than this ("2d", "12h"...); `default`: the node's setting.
        #[arg(long, value_parser = parse_retention_time)]
        retention_time: Option<Setting>,
        /// Keep at most this many bytes per partition ("10GiB"...); `default`: the node's
        /// setting.
        #[arg(long, value_parser = parse_retention_bytes)]
        retention_bytes: Option<Setting>,
    },
    /// Move one partition's replicas by hand (through Raft membership changes); prints the move.
    Reassign {
        name: String,
        partition: u32,
        /// The new replicas, comma-separated; the first is the preferred leader.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<String>,
        /// Follow the move, a progress line per change of phase or bytes, until it ends.
        #[arg(long)]
        wait: bool,
    },
}

/// A topic setting given on the command line: a value, or `default` (`None`: the node's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting(pub Option<u64>);

fn parse_retention_time(s: &str) -> Result<Setting, String> {
    if s == "default" {
        return Ok(Setting(None));
    }
    let d = daftka_core::config::parse_duration(s)?;
    match u64::try_from(d.as_millis()) {
        Ok(0) | Err(_) => Err(format!("{s:?}: a retention time must be positive")),
        Ok(ms) => Ok(Setting(Some(ms))),
    }
}

fn parse_retention_bytes(s: &str) -> Result<Setting, String> {
    if s == "default" {
        return Ok(Setting(None));
    }
    match daftka_core::config::parse_size(s)? {
        0 => Err(format!("{s:?}: a retention size must be positive")),
        n => Ok(Setting(Some(n))),
    }
}

/// `daftka produce TOPIC`: one record per stdin line, without its newline.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key of every record (it selects the partition when --partition is absent).
    #[arg(long)]
    pub key: Option<String>,
    /// Partition of every record (the node chooses by key, or spreads records, when absent).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Most lines sent in one request.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Most value bytes in one request; a longer single line is still sent, alone.
    #[arg(long, default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_bytes_max: u64,
    /// How long a batch waits for more lines after its first one before it is sent (interactive input).
    #[arg(long, default_value_t = 10)]
    pub linger_ms: u64,
    /// Print `% produced N records to TOPIC in M requests` to stdout on success (silent otherwise).
    #[arg(short, long)]
    pub verbose: bool,
}

/// `daftka consume TOPIC`
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: every partition, in turn). Not with --group: a member
    /// reads the partitions the group assigns it.
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<u32>,
    /// Where to start: `earliest`, `latest` or an offset. Not with --group: a member starts at the
    /// group's committed offsets (see `daftka group reset`).
    #[arg(long, default_value = "earliest", conflicts_with = "group")]
    pub from: StartOffset,
    /// Consume as a member of this consumer group: read the partitions the group assigns, from its
    /// committed offsets, and commit after each printed batch.
    #[arg(long)]
    pub group: Option<String>,
    /// With --group: how long the node keeps the member without hearing from it, e.g. 10s, 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_session_timeout, requires = "group")]
    pub session_timeout: Duration,
    /// With --group: how the group spreads partitions over members [node's default: sticky]; the
    /// members of a group must all ask for the same one.
    #[arg(long, value_parser = ["range", "round_robin", "sticky"], requires = "group")]
    pub assignor: Option<String>,
    /// Keep waiting for new records instead of stopping at the high watermark.
    #[arg(long)]
    pub follow: bool,
    /// Stop after printing this many records.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_records: Option<u64>,
    /// Print `partition<TAB>offset<TAB>key<TAB>value` instead of the value alone.
    #[arg(long)]
    pub print_offsets: bool,
}

/// `daftka group ...`
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// `daftka node ...`
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// The node subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum NodeCommand {
    /// Print one line per node: name, status, state, replicas, leaders (tab-separated).
    List,
    /// Move every replica off a node and place nothing new on it; prints the node.
    Drain {
        node: String,
        /// Follow the drain, a progress line per change, until the node is drained.
        #[arg(long)]
        wait: bool,
    },
    /// Take a drained (or draining) node back into placement; prints the node.
    Undrain { node: String },
    /// Forget a node that is down or drained (its replicas are created again elsewhere, its data
    /// directory may never join again); prints the node as it was, state `removed`.
    Remove { node: String },
}

/// The group subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// Print one line per group: name, state, generation, members (tab-separated).
    List,
    /// Print a group's state, members and per-partition committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets (only while it has no members) and print the new ones.
    Reset {
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<u32>,
        /// Where to: `earliest`, `latest` or an offset.
        #[arg(long)]
        to: StartOffset,
    },
}

/// The shortest `--session-timeout` the client accepts; the node may require a longer one.
const SESSION_TIMEOUT_MIN: Duration = Duration::from_millis(1);

/// Parses `--session-timeout` like the configuration's durations (`150ms`, `10s`, `2m`).
fn parse_session_timeout(s: &str) -> Result<Duration, String> {
    let d = daftka_core::config::parse_duration(s)?;
    if d < SESSION_TIMEOUT_MIN {
        return Err("the session timeout must be positive".to_owned());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use daftka_bench::args::{BenchPartitionMode, BenchTransport, BenchWorkload};

    /// A stand-in for the lead's top-level parser, wired the way the report recommends.
    #[derive(clap::Parser, Debug)]
    #[command(name = "daftka")]
    struct Cli {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Command {
        /// Stands for the binary's other subcommands.
        Other,
        #[command(flatten)]
        Client(ClientCommand),
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("daftka").chain(args.iter().copied()))
    }

    fn consume(args: &[&str]) -> ConsumeArgs {
        match parse(args) {
            Ok(Cli {
                command: Command::Client(ClientCommand::Consume(c)),
                ..
            }) => c,
            other => panic!("not a consume command: {other:?}"),
        }
    }

    #[test]
    fn from_accepts_earliest_latest_and_offsets() {
        // `--from` has three forms and defaults to earliest.
        assert_eq!(consume(&["consume", "t"]).from, StartOffset::Earliest);
        assert_eq!(
            consume(&["consume", "t", "--from", "latest"]).from,
            StartOffset::Latest
        );
        assert_eq!(
            consume(&["consume", "t", "--from", "earliest"]).from,
            StartOffset::Earliest
        );
        assert_eq!(
            consume(&["consume", "t", "--from", "42"]).from,
            StartOffset::At(42)
        );
        assert_eq!(StartOffset::At(7).as_query(), "7");
        assert_eq!(StartOffset::Latest.as_query(), "latest");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        // Bad values are rejected by clap with its usage exit code, 2.
        for args in [
            &["consume", "t", "--from", "-1"][..],
            &["consume", "t", "--from", "Earliest"],
            &["consume", "t", "--from", ""],
            &["consume", "t", "--max-records", "0"],
            &["consume", "t", "--partition", "x"],
            &["produce", "t", "--batch", "0"],
            &["produce", "t", "--batch", "abc"],
            &["topic", "create", "t", "--partitions", "0"],
            &["topic", "frobnicate"],
            &["consume"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn subcommands_parse_with_global_url() {
        // `--url` is accepted before or after the subcommand; defaults hold otherwise.
        let cli = match parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--url",
            "http://n2:4001",
        ]) {
            Ok(cli) => cli,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(cli.client.url, "http://n2:4001");
        match cli.command {
            Command::Client(ClientCommand::Topic(TopicArgs {
                command:
                    TopicCommand::Create {
                        name,
                        partitions,
                        replication_factor,
                    },
            })) => {
                assert_eq!(name, "orders");
                assert_eq!(partitions, Some(3));
                assert_eq!(replication_factor, Some(2));
            }
            other => panic!("{other:?}"),
        }

        let cli = match parse(&["--url", "http://x:1", "produce", "t", "--key", "k"]) {
            Ok(cli) => cli,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(cli.client.url, "http://x:1");
        match cli.command {
            Command::Client(ClientCommand::Produce(p)) => {
                assert_eq!(p.key.as_deref(), Some("k"));
                assert_eq!(p.batch, 500);
                assert_eq!(p.partition, None);
                assert!(!p.verbose);
            }
            other => panic!("{other:?}"),
        }

        let c = consume(&[
            "consume",
            "t",
            "--group",
            "g",
            "--follow",
            "--max-records",
            "10",
            "--print-offsets",
        ]);
        assert_eq!(c.partition, None);
        assert_eq!(c.group.as_deref(), Some("g"));
        assert!(c.follow && c.print_offsets);
        assert_eq!(c.max_records, Some(10));
        assert_eq!(c.session_timeout, Duration::from_secs(10));
        assert_eq!(c.assignor, None);
        let c = consume(&["consume", "t", "--partition", "1", "--from", "3"]);
        assert_eq!(c.partition, Some(1));
        assert_eq!(c.from, StartOffset::At(3));
    }

    #[test]
    fn group_options_parse_and_conflict_with_partition_and_from() {
        // A member reads what the group assigns from the group's positions: --partition and --from
        // are usage errors with --group; the member options need --group.
        let c = consume(&[
            "consume",
            "t",
            "--group",
            "g",
            "--session-timeout",
            "1500ms",
            "--assignor",
            "round_robin",
        ]);
        assert_eq!(c.session_timeout, Duration::from_millis(1500));
        assert_eq!(c.assignor.as_deref(), Some("round_robin"));
        assert_eq!(
            consume(&["consume", "t", "--group", "g", "--session-timeout", "2m"]).session_timeout,
            Duration::from_secs(120)
        );
        for args in [
            &["consume", "t", "--group", "g", "--partition", "0"][..],
            &["consume", "t", "--group", "g", "--from", "latest"],
            &["consume", "t", "--group", "g", "--from", "earliest"],
            &["consume", "t", "--session-timeout", "5s"],
            &["consume", "t", "--assignor", "range"],
            &["consume", "t", "--group", "g", "--assignor", "best"],
            &["consume", "t", "--group", "g", "--session-timeout", "0"],
            &[
                "consume",
                "t",
                "--group",
                "g",
                "--session-timeout",
                "5 parsecs",
            ],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    fn bench(args: &[&str]) -> BenchWorkload {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(args);
        match parse(&argv) {
            Ok(Cli {
                command: Command::Client(ClientCommand::Bench(b)),
                ..
            }) => b.workload,
            other => panic!("not a bench command: {other:?}"),
        }
    }

    #[test]
    fn bench_defaults() {
        // Defaults that depend on the transport stay unset here; the bench resolves them.
        let BenchWorkload::Produce(p) = bench(&["produce"]) else {
            panic!("produce")
        };
        assert_eq!(p.common.transport, BenchTransport::Http);
        assert_eq!(p.common.topic, "bench");
        assert_eq!(p.common.records, 1_000_000);
        assert_eq!(p.common.duration, None);
        assert_eq!(p.common.batch, None);
        assert_eq!(p.common.cluster, "daftka");
        assert_eq!(p.common.json, None);
        assert!(!p.common.quiet);
        assert_eq!(p.partitions, 4);
        assert_eq!(p.replication_factor, None);
        assert_eq!(p.record_size, 100);
        assert_eq!(p.producers, None);
        assert_eq!(p.rate, None);
        assert_eq!(p.partition_mode, BenchPartitionMode::Request);
        let BenchWorkload::Consume(c) = bench(&["consume"]) else {
            panic!("consume")
        };
        assert_eq!(c.from, StartOffset::Earliest);
    }

    #[test]
    fn bench_options_parse() {
        let w = bench(&[
            "e2e",
            "--transport",
            "native",
            "--seed",
            "127.0.0.1:7001",
            "--cookie",
            "c",
            "--cluster",
            "prod",
            "--topic",
            "t",
            "--partitions",
            "8",
            "--replication-factor",
            "3",
            "--record-size",
            "16",
            "--batch",
            "1",
            "--producers",
            "32",
            "--duration",
            "1500ms",
            "--rate",
            "1000.5",
            "--partition-mode",
            "record",
            "--json",
            "/tmp/x.json",
            "--node-pid",
            "42",
            "-q",
        ]);
        let BenchWorkload::E2e(p) = w else {
            panic!("e2e: {w:?}")
        };
        let c = &p.common;
        assert_eq!(c.transport, BenchTransport::Native);
        assert_eq!(c.seed.as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(c.cookie.as_deref(), Some("c"));
        assert_eq!((c.cluster.as_str(), c.topic.as_str()), ("prod", "t"));
        assert_eq!(c.batch, Some(1));
        assert_eq!(c.duration, Some(Duration::from_millis(1500)));
        assert_eq!(c.json.as_deref(), Some(std::path::Path::new("/tmp/x.json")));
        assert_eq!(c.node_pid, Some(42));
        assert!(c.quiet);
        assert_eq!((p.partitions, p.replication_factor), (8, Some(3)));
        assert_eq!((p.record_size, p.producers), (16, Some(32)));
        assert_eq!(p.rate, Some(1000.5));
        assert_eq!(p.partition_mode, BenchPartitionMode::Record);
        let BenchWorkload::Consume(c) = bench(&["consume", "--from", "17", "--records", "5"])
        else {
            panic!("consume")
        };
        assert_eq!(c.from, StartOffset::At(17));
        assert_eq!(c.common.records, 5);
    }

    #[test]
    fn bad_bench_values_are_usage_errors() {
        for args in [
            &["bench"][..],
            &["bench", "frobnicate"],
            &["bench", "produce", "--transport", "udp"],
            &["bench", "produce", "--transport", "native"],
            &["bench", "produce", "--transport", "native", "--seed", "h:1"],
            &["bench", "produce", "--records", "0"],
            &["bench", "produce", "--records", "10", "--duration", "1s"],
            &["bench", "produce", "--duration", "0s"],
            &["bench", "produce", "--duration", "5 parsecs"],
            &["bench", "produce", "--batch", "0"],
            &["bench", "produce", "--batch", "100001"],
            &["bench", "produce", "--producers", "0"],
            &["bench", "produce", "--partitions", "0"],
            &["bench", "produce", "--record-size", "0"],
            &["bench", "produce", "--rate", "0"],
            &["bench", "produce", "--rate", "-5"],
            &["bench", "produce", "--rate", "inf"],
            &["bench", "produce", "--rate", "fast"],
            &["bench", "produce", "--partition-mode", "key"],
            &["bench", "produce", "--node-pid", "-1"],
            &["bench", "consume", "--from", "latest"],
            &["bench", "consume", "--from", "-3"],
            &["bench", "consume", "--rate", "10"],
            &["bench", "consume", "--partitions", "2"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn alter_parses_sizes_durations_and_default() {
        let alter = |args: &[&str]| match parse(args) {
            Ok(Cli {
                command:
                    Command::Client(ClientCommand::Topic(TopicArgs {
                        command:
                            TopicCommand::Alter {
                                partitions,
                                retention_time,
                                retention_bytes,
                                ..
                            },
                    })),
                ..
            }) => Ok((partitions, retention_time, retention_bytes)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(
            alter(&[
                "topic",
                "alter",
                "orders",
                "--partitions",
                "12",
                "--retention-time",
                "2d",
                "--retention-bytes",
                "10GiB",
            ])
            .expect("parses"),
            (
                Some(12),
                Some(Setting(Some(172_800_000))),
                Some(Setting(Some(10 << 30)))
            )
        );
        assert_eq!(
            alter(&["topic", "alter", "orders", "--retention-bytes", "default"]).expect("parses"),
            (None, None, Some(Setting(None)))
        );
        assert!(alter(&["topic", "alter", "orders", "--retention-bytes", "0"]).is_err());
        assert!(alter(&["topic", "alter", "orders", "--retention-time", "2w"]).is_err());
        assert!(alter(&["topic", "alter", "orders", "--partitions", "0"]).is_err());
    }

    #[test]
    fn reassign_parses_a_replica_list() {
        // topic reassign T P --replicas a,c,d; the list is required; `reassignments` stands alone.
        match parse(&["topic", "reassign", "orders", "3", "--replicas", "a,c,d"]) {
            Ok(Cli {
                command:
                    Command::Client(ClientCommand::Topic(TopicArgs {
                        command:
                            TopicCommand::Reassign {
                                name,
                                partition,
                                replicas,
                                wait: false,
                            },
                    })),
                ..
            }) => assert_eq!(
                (name.as_str(), partition, replicas),
                ("orders", 3, vec!["a".to_string(), "c".into(), "d".into()])
            ),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["topic", "reassign", "orders", "3"]).is_err());
        assert!(matches!(
            parse(&["reassignments"]),
            Ok(Cli {
                command: Command::Client(ClientCommand::Reassignments),
                ..
            })
        ));
    }

    #[test]
    fn node_subcommands_parse() {
        // list, drain N [--wait], undrain N; a drain needs its node.
        let node = |args: &[&str]| match parse(args) {
            Ok(Cli {
                command: Command::Client(ClientCommand::Node(n)),
                ..
            }) => n.command,
            other => panic!("not a node command: {other:?}"),
        };
        assert!(matches!(node(&["node", "list"]), NodeCommand::List));
        assert!(matches!(
            node(&["node", "drain", "c", "--wait"]),
            NodeCommand::Drain { node, wait: true } if node == "c"
        ));
        assert!(matches!(
            node(&["node", "drain", "c"]),
            NodeCommand::Drain { wait: false, .. }
        ));
        assert!(matches!(
            node(&["node", "undrain", "c"]),
            NodeCommand::Undrain { node } if node == "c"
        ));
        assert!(matches!(
            node(&["node", "remove", "c"]),
            NodeCommand::Remove { node } if node == "c"
        ));
        assert!(parse(&["node", "drain"]).is_err());
    }

    #[test]
    fn group_subcommands_parse() {
        // list, describe G and reset G --topic T [--partition P] --to earliest|latest|N.
        let group = |args: &[&str]| match parse(args) {
            Ok(Cli {
                command: Command::Client(ClientCommand::Group(g)),
                ..
            }) => g.command,
            other => panic!("not a group command: {other:?}"),
        };
        assert!(matches!(group(&["group", "list"]), GroupCommand::List));
        assert!(matches!(
            group(&["group", "describe", "g"]),
            GroupCommand::Describe { group } if group == "g"
        ));
        match group(&[
            "group",
            "reset",
            "g",
            "--topic",
            "t",
            "--partition",
            "2",
            "--to",
            "17",
        ]) {
            GroupCommand::Reset {
                group,
                topic,
                partition,
                to,
            } => {
                assert_eq!((group.as_str(), topic.as_str()), ("g", "t"));
                assert_eq!(partition, Some(2));
                assert_eq!(to, StartOffset::At(17));
                assert_eq!(to.as_json(), daftka_http::json::ResetToJson::Offset(17));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            StartOffset::Latest.as_json(),
            daftka_http::json::ResetToJson::Named("latest".into())
        );
        for args in [
            &["group", "reset", "g", "--topic", "t"][..],
            &["group", "reset", "g", "--to", "earliest"],
            &["group", "reset", "g", "--topic", "t", "--to", "middle"],
            &["group", "describe"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
