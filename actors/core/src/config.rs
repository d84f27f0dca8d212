//! The node's configuration.
//!
//! Precedence: built-in defaults < the TOML file (`--config`) < `DAFTKA_*` environment < command-line
//! flags. This module holds the defaults, the file format and [`Config::validate`]; the binary layers
//! the environment and flags on top. Every key is listed, with its default and a comment, in
//! `config/daftka.toml`. Durations are human-readable (`"150ms"`, `"5s"`, `"2m"`, or a number of
//! milliseconds); sizes too (`"16MiB"`, `"64KiB"`, or a number of bytes).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::supervision::RestartPolicy;

/// Prefix of the environment variables that override config keys: `DAFTKA_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "DAFTKA_";

/// The cluster port of a seed given without one (`--seeds b,c`).
pub const CLUSTER_PORT_DEFAULT: u16 = 7000;

/// A configuration error that names the bad key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The whole configuration of one node.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub cluster: ClusterConfig,
    pub topics: TopicsConfig,
    pub raft: RaftConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub router: RouterConfig,
    pub groups: GroupsConfig,
    pub rebalance: RebalanceConfig,
    pub supervision: SupervisionConfig,
    pub log: LogConfig,
    pub debug: DebugConfig,
}

/// Identity and addresses of the node.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// Where this node keeps its data; empty means `./data/<name>`.
    pub data_dir: PathBuf,
    /// HTTP API listen address.
    pub http_addr: String,
    /// Prometheus metrics listen address (`GET /metrics`).
    pub metrics_addr: String,
    /// Address for other nodes (ractor_cluster); never all interfaces by default.
    pub cluster_addr: String,
    /// Seed nodes `host[:port]` to join; none means a one-node cluster.
    pub seeds: Vec<String>,
    /// Shared secret of the cluster; required when seeds are given.
    pub cookie: String,
    /// Worker threads of the node's async runtime (actors, HTTP, cluster connections); 0: one
    /// fewer than the machine's cores, at least 1. The storage writer and fjall's worker are
    /// threads of their own outside it, and an idle extra worker costs every request wake-ups
    /// (see [`NodeConfig::runtime_threads_resolved`]).
    pub runtime_threads: usize,
}

/// Membership: how this node joins and watches the others.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// First delay before dialling a seed or a registered node again after a failed or lost
    /// session; doubles.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub seed_retry_min: Duration,
    /// Largest delay between two dials of one seed or registered node: how soon after a network
    /// partition heals the nodes meet again.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub seed_retry_max: Duration,
    /// Longest wait for one dial's TCP connection (a peer behind a partition does not answer).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub dial_timeout: Duration,
    /// Largest cluster frame accepted from a peer (ractor_cluster's inbound limit).
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub frame_bytes_max: u64,
    /// How often this node sends a heartbeat to every peer.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub heartbeat_interval: Duration,
    /// A peer with an open session but no heartbeat for this long is `down` (a paused or hung
    /// process, or one behind a network partition, closes no session): calls to it stop, its
    /// session is closed, and it is dialled again. Must exceed `heartbeat_interval`.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub heartbeat_timeout: Duration,
    /// The cluster's name: nodes only meet nodes of the same cluster (also in one process).
    pub name: String,
    /// Node names that hold the metadata Raft group as voters; empty means the first
    /// [`METADATA_VOTERS_DEFAULT`] nodes to join. Other nodes follow it as learners.
    /// (Called `control_plane_nodes` before; that name is still read.)
    #[serde(alias = "control_plane_nodes")]
    pub metadata_voters: Vec<String>,
    /// Most bytes of Raft messages sent to one peer in one cluster message.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub raft_batch_bytes_max: u64,
    /// Most bytes of Raft messages queued for one peer; beyond it messages are dropped (Raft
    /// sends them again), so a slow or gone peer never grows this node's memory.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub raft_queue_bytes_max: u64,
    /// How long one batch of Raft messages may wait for the peer's acknowledgement; one batch per
    /// peer is in flight at a time (the flow control).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub raft_send_timeout: Duration,
}

/// How many voters the metadata group gets when `cluster.metadata_voters` is empty.
pub const METADATA_VOTERS_DEFAULT: usize = 3;

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            seed_retry_min: Duration::from_millis(100),
            seed_retry_max: Duration::from_secs(1),
            dial_timeout: Duration::from_secs(2),
            frame_bytes_max: 64 << 20,
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_secs(1),
            name: "daftka".into(),
            metadata_voters: Vec::new(),
            raft_batch_bytes_max: 4 << 20,
            raft_queue_bytes_max: 64 << 20,
            raft_send_timeout: Duration::from_secs(2),
        }
    }
}

/// Defaults and limits of topics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Partitions of a topic created without a count.
    pub default_partitions: u32,
    /// Replication factor of a topic created without one, capped by the registered nodes.
    pub default_replication_factor: u32,
    /// The most partitions one topic may have.
    pub partitions_max: u32,
    /// Records older than this are deleted (whole batches, oldest first), on every replica.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub retention_time: Duration,
    /// How often each replica looks for records past retention.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub retention_check_interval: Duration,
    /// Past this many bytes of stored batches in a partition, its oldest batches are deleted (on
    /// every replica). 0: unlimited (the default).
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub retention_bytes: u64,
}

/// Consumer groups.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// Session timeout of a member that joins without one.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub session_timeout_default: Duration,
    /// The shortest session timeout a member may ask for (each heartbeat is a replicated write).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub session_timeout_min: Duration,
    /// The longest session timeout a member may ask for.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub session_timeout_max: Duration,
    /// The most members of one group.
    pub members_max: u32,
    /// The most topics one member subscribes to.
    pub topics_per_member_max: u32,
    /// How often the metadata leader looks for members whose session expired.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub expiry_check_interval: Duration,
    /// How often each node updates the consumer-lag metrics of the partitions it leads.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub lag_metrics_interval: Duration,
}

/// The Rebalancer: replica moves that keep every partition at its replication factor.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebalanceConfig {
    /// The most replica moves in flight in the whole cluster.
    pub max_parallel_moves: u32,
    /// A move's new replica counts as caught up (and may become a voter) when it is at most this
    /// many log entries behind the leader.
    pub catch_up_entries: u64,
    /// How often the metadata leader looks for partitions below their replication factor.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub check_interval: Duration,
    /// A registered node unreachable for this long is treated as gone: its replicas are created
    /// again on live nodes (if it comes back, it holds none any more and deletes their data).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub node_down_timeout: Duration,
    /// The most bytes per second a node's partition leaders send to the new replicas of moves
    /// (catch-up), all moves together: production traffic keeps its share of disk and network.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub move_bytes_per_sec: u64,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig {
            max_parallel_moves: 2,
            catch_up_entries: 64,
            check_interval: Duration::from_secs(1),
            node_down_timeout: Duration::from_secs(600),
            move_bytes_per_sec: 100 << 20,
        }
    }
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            session_timeout_default: Duration::from_secs(10),
            session_timeout_min: Duration::from_secs(1),
            session_timeout_max: Duration::from_secs(30 * 60),
            members_max: 1000,
            topics_per_member_max: 100,
            expiry_check_interval: Duration::from_millis(500),
            lag_metrics_interval: Duration::from_secs(10),
        }
    }
}

/// Raft timing and flow control, shared by the metadata and partition groups.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// One logical clock tick of every Raft group.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub tick: Duration,
    /// Ticks without a heartbeat before a follower campaigns (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats; must be less than `election_ticks`.
    pub heartbeat_ticks: usize,
    /// Most in-flight append messages per follower.
    pub max_inflight_msgs: usize,
    /// Most bytes of entries in one append message.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub max_size_per_msg: u64,
    /// Most proposals a Raft actor takes into one Ready round.
    pub proposals_per_round_max: usize,
    /// The metadata group snapshots its state and compacts its log once this many entries were
    /// applied since its last snapshot.
    pub snapshot_entries: u64,
    /// How often a partition leader checks whether its preferred leader (the first replica) is
    /// caught up, and hands leadership back to it: leaders spread again after a failover.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub leader_balance_interval: Duration,
}

/// The node's fjall storage.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// fsync before acknowledging. Only tests that do not care about durability turn it off.
    pub fsync: bool,
    /// Most write requests merged into one group-commit fsync round.
    pub commit_requests_max: usize,
    /// fjall's block cache, shared by every keyspace.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub cache_bytes: u64,
    /// Largest memtable of one keyspace before fjall flushes it to disk (applies to keyspaces
    /// created with it: a new data directory).
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub memtable_bytes_max: u64,
    /// Journal size beyond which fjall forces memtable flushes; at least 64 MiB.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub journal_bytes_max: u64,
    /// fjall's background threads (memtable flushes and compactions); at least 1. More than one
    /// makes fjall 3.1 spin a core whenever a compaction runs (see `StoreOptions::worker_threads`).
    pub worker_threads: usize,
}

/// Limits of requests; over a limit is a 413 `payload_too_large` (or 400 for counts).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest HTTP request body.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub body_bytes_max: u64,
    /// Most records in one produce request.
    pub records_per_request_max: u32,
    /// Largest record key.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub key_bytes_max: u64,
    /// Largest record value.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub value_bytes_max: u64,
    /// Largest header (name plus value).
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub header_bytes_max: u64,
    /// Most headers on one record.
    pub headers_per_record_max: u32,
    /// Cap on a fetch's `max_records`.
    pub fetch_records_max: u32,
    /// Cap on a fetch's `max_bytes`.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub fetch_bytes_max: u64,
    /// Cap on a fetch's `max_wait_ms`.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub fetch_wait_max: Duration,
    /// Most bytes of produce requests waiting on one partition replica; beyond it, `unavailable`.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub inflight_bytes_per_partition_max: u64,
    /// Most bytes of requests in flight on the node (bodies being read, produces not yet
    /// answered); beyond it, `unavailable` at once. Bounds the node's memory under overload.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub inflight_bytes_max: u64,
    /// Most offsets in one group commit.
    pub offsets_per_commit_max: u32,
    /// Most HTTP connections open at once; further ones wait in the listen backlog.
    pub http_connections_max: u32,
    /// Largest read buffer of one HTTP connection (bodies stream through it in chunks of at most
    /// this size); at least 8 KiB. With `http_connections_max` it bounds the node's socket buffers.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub http_read_buffer_bytes: u64,
    /// How often the node looks at the heap memory the allocator holds free after a burst, and
    /// hands it back to the OS if it is at least `memory_trim_free_bytes_min` (glibc
    /// `malloc_trim`; elsewhere nothing). Zero: never.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub memory_trim_interval: Duration,
    /// Free heap bytes worth a trim.
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub memory_trim_free_bytes_min: u64,
}

/// The Router: deadlines and retries of forwarded requests.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Deadline of one client request inside the node (a fetch adds its wait).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub request_timeout: Duration,
    /// First retry delay after a retryable error (not leader, replica restarting).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub retry_backoff_min: Duration,
    /// Largest retry delay.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub retry_backoff_max: Duration,
}

/// Restart intensity of every supervisor.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Most restarts inside `window` before a supervisor gives up and escalates.
    pub max_restarts: u32,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub window: Duration,
    /// First restart delay; doubles with each restart inside the window.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub backoff_base: Duration,
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub backoff_max: Duration,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `daftka_node=debug,info`.
    pub level: String,
    /// `human` or `json`.
    pub format: String,
}

/// Debugging aids; all off by default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// Enables the admin endpoint that kills named actors on purpose.
    pub chaos: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "a".into(),
            data_dir: PathBuf::new(),
            http_addr: "127.0.0.1:4001".into(),
            metrics_addr: "127.0.0.1:9568".into(),
            cluster_addr: "127.0.0.1:7000".into(),
            seeds: Vec::new(),
            cookie: String::new(),
            runtime_threads: 0,
        }
    }
}

/// The most worker threads `node.runtime_threads` may ask for.
pub const RUNTIME_THREADS_MAX: usize = 1024;

impl NodeConfig {
    /// The async runtime's worker threads: `runtime_threads`, or for 0 one fewer than `cores`
    /// (the machine's), at least 1.
    pub fn runtime_threads_resolved(&self, cores: usize) -> usize {
        match self.runtime_threads {
            0 => cores.saturating_sub(1).max(1),
            n => n,
        }
    }
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            default_partitions: 3,
            default_replication_factor: 3,
            partitions_max: 1024,
            retention_time: Duration::from_secs(7 * 24 * 3600),
            retention_check_interval: Duration::from_secs(30),
            retention_bytes: 0,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_inflight_msgs: 256,
            max_size_per_msg: 1 << 20,
            proposals_per_round_max: 4096,
            snapshot_entries: 10_000,
            leader_balance_interval: Duration::from_secs(10),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            fsync: true,
            commit_requests_max: 1024,
            cache_bytes: 64 << 20,
            memtable_bytes_max: 64 << 20,
            journal_bytes_max: 512 << 20,
            worker_threads: 1,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            body_bytes_max: 16 << 20,
            records_per_request_max: 10_000,
            key_bytes_max: 64 << 10,
            value_bytes_max: 1 << 20,
            header_bytes_max: 64 << 10,
            headers_per_record_max: 64,
            fetch_records_max: 10_000,
            fetch_bytes_max: 16 << 20,
            fetch_wait_max: Duration::from_secs(30),
            inflight_bytes_per_partition_max: 64 << 20,
            inflight_bytes_max: 256 << 20,
            offsets_per_commit_max: 10_000,
            http_connections_max: 4096,
            http_read_buffer_bytes: 64 << 10,
            memory_trim_interval: Duration::from_secs(1),
            memory_trim_free_bytes_min: 32 << 20,
        }
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            request_timeout: Duration::from_secs(5),
            retry_backoff_min: Duration::from_millis(10),
            retry_backoff_max: Duration::from_millis(500),
        }
    }
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        let p = RestartPolicy::default();
        SupervisionConfig {
            max_restarts: p.max_restarts,
            window: p.window,
            backoff_base: p.backoff_base,
            backoff_max: p.backoff_max,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "human".into(),
        }
    }
}

impl Config {
    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        Self::load(Some((text, path)), std::iter::empty())
    }

    /// The defaults, overlaid by an optional TOML file (`(text, path)`), overlaid by environment
    /// variables `DAFTKA_<SECTION>__<KEY>` (e.g. `DAFTKA_LIMITS__BODY_BYTES_MAX=1MiB`,
    /// `DAFTKA_RAFT__ELECTION_TICKS=20`). A value is read as a TOML literal when it is one
    /// (`20`, `true`, `["a"]`), else as a string. Other variables are ignored.
    pub fn load(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (mut table, path) = match file {
            Some((text, path)) => (
                toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::File {
                    path: path.to_string(),
                    message: e.to_string(),
                })?,
                path.to_string(),
            ),
            None => (toml::Table::new(), "(defaults)".to_string()),
        };
        let mut from_env = false;
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            let section = table
                .entry(section.to_ascii_lowercase())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match section {
                toml::Value::Table(t) => {
                    t.insert(key.to_ascii_lowercase(), parsed);
                }
                _ => {
                    return Err(ConfigError::File {
                        path: name,
                        message: "names a key, not a section".into(),
                    })
                }
            }
            from_env = true;
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: if from_env {
                    format!("{path} + {ENV_PREFIX}*__* environment")
                } else {
                    path
                },
                message: e.to_string(),
            })
    }

    /// The node's data directory: `node.data_dir`, or `./data/<name>` when empty.
    pub fn data_dir(&self) -> PathBuf {
        if self.node.data_dir.as_os_str().is_empty() {
            PathBuf::from("data").join(&self.node.name)
        } else {
            self.node.data_dir.clone()
        }
    }

    /// The supervisors' restart policy.
    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy {
            max_restarts: self.supervision.max_restarts,
            window: self.supervision.window,
            backoff_base: self.supervision.backoff_base,
            backoff_max: self.supervision.backoff_max,
        }
    }

    /// Checks every key and the rules across keys; the error names the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, message: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        }
        if let Err(e) = daftka_types::ids::validate_name("node", &self.node.name) {
            return bad("node.name", e.message);
        }
        for (key, addr) in [
            ("node.http_addr", &self.node.http_addr),
            ("node.metrics_addr", &self.node.metrics_addr),
            ("node.cluster_addr", &self.node.cluster_addr),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return bad(key, format!("{addr:?} is not an ip:port address"));
            }
        }
        if !self.node.seeds.is_empty() && self.node.cookie.is_empty() {
            return bad(
                "node.cookie",
                "a node that joins seeds needs a cookie (--cookie or DAFTKA_COOKIE)",
            );
        }
        let t = &self.topics;
        if t.partitions_max == 0 {
            return bad("topics.partitions_max", "must be at least 1");
        }
        if t.default_partitions == 0 || t.default_partitions > t.partitions_max {
            return bad(
                "topics.default_partitions",
                format!("must be 1 to topics.partitions_max ({})", t.partitions_max),
            );
        }
        if t.retention_time.is_zero() {
            return bad("topics.retention_time", "must be positive");
        }
        if t.retention_check_interval.is_zero() {
            return bad("topics.retention_check_interval", "must be positive");
        }
        if t.default_replication_factor == 0 {
            return bad("topics.default_replication_factor", "must be at least 1");
        }
        let r = &self.raft;
        if r.tick.is_zero() {
            return bad("raft.tick", "must be positive");
        }
        if r.heartbeat_ticks == 0 {
            return bad("raft.heartbeat_ticks", "must be at least 1");
        }
        if r.election_ticks <= r.heartbeat_ticks {
            return bad(
                "raft.election_ticks",
                "must be greater than raft.heartbeat_ticks",
            );
        }
        if self.cluster.seed_retry_min.is_zero()
            || self.cluster.seed_retry_min > self.cluster.seed_retry_max
        {
            return bad(
                "cluster.seed_retry_min",
                "must be positive and not exceed cluster.seed_retry_max",
            );
        }
        if self.cluster.dial_timeout.is_zero() {
            return bad("cluster.dial_timeout", "must be positive");
        }
        if self.cluster.heartbeat_interval.is_zero()
            || self.cluster.heartbeat_timeout <= self.cluster.heartbeat_interval
        {
            return bad(
                "cluster.heartbeat_timeout",
                "must exceed cluster.heartbeat_interval, which must be positive",
            );
        }
        if let Err(e) = daftka_types::ids::validate_name("cluster", &self.cluster.name) {
            return bad("cluster.name", e.message);
        }
        if self.cluster.raft_batch_bytes_max == 0
            || self.cluster.raft_batch_bytes_max > self.cluster.frame_bytes_max / 2
        {
            return bad(
                "cluster.raft_batch_bytes_max",
                "must be positive and at most half of cluster.frame_bytes_max",
            );
        }
        if self.cluster.frame_bytes_max < 2 * self.limits.body_bytes_max {
            return bad(
                "cluster.frame_bytes_max",
                "must be at least twice limits.body_bytes_max: one request crosses in one frame",
            );
        }
        if self.cluster.raft_queue_bytes_max < self.cluster.raft_batch_bytes_max {
            return bad(
                "cluster.raft_queue_bytes_max",
                "must be at least cluster.raft_batch_bytes_max",
            );
        }
        if self.cluster.raft_send_timeout.is_zero() {
            return bad("cluster.raft_send_timeout", "must be positive");
        }
        if r.leader_balance_interval.is_zero() {
            return bad("raft.leader_balance_interval", "must be positive");
        }
        if r.snapshot_entries == 0 {
            return bad("raft.snapshot_entries", "must be at least 1");
        }
        if r.max_inflight_msgs == 0 {
            return bad("raft.max_inflight_msgs", "must be at least 1");
        }
        if r.proposals_per_round_max == 0 {
            return bad("raft.proposals_per_round_max", "must be at least 1");
        }
        if self.storage.commit_requests_max == 0 {
            return bad("storage.commit_requests_max", "must be at least 1");
        }
        if self.storage.journal_bytes_max < 64 << 20 {
            return bad(
                "storage.journal_bytes_max",
                "must be at least 64MiB (fjall's minimum)",
            );
        }
        if self.storage.memtable_bytes_max < 1 << 20 {
            return bad("storage.memtable_bytes_max", "must be at least 1MiB");
        }
        let l = &self.limits;
        if l.records_per_request_max == 0 {
            return bad("limits.records_per_request_max", "must be at least 1");
        }
        if l.value_bytes_max > l.body_bytes_max {
            return bad(
                "limits.value_bytes_max",
                "must not exceed limits.body_bytes_max",
            );
        }
        if l.fetch_records_max == 0 {
            return bad("limits.fetch_records_max", "must be at least 1");
        }
        if l.inflight_bytes_per_partition_max < l.body_bytes_max {
            return bad(
                "limits.inflight_bytes_per_partition_max",
                "must be at least limits.body_bytes_max, or one request could never fit",
            );
        }
        if l.inflight_bytes_max < l.body_bytes_max {
            return bad(
                "limits.inflight_bytes_max",
                "must be at least limits.body_bytes_max, or one request could never fit",
            );
        }
        if l.http_connections_max == 0 {
            return bad("limits.http_connections_max", "must be at least 1");
        }
        if l.http_read_buffer_bytes < 8 << 10 {
            return bad("limits.http_read_buffer_bytes", "must be at least 8KiB");
        }
        if self.storage.worker_threads == 0 {
            return bad("storage.worker_threads", "must be at least 1");
        }
        if self.node.runtime_threads > RUNTIME_THREADS_MAX {
            return bad(
                "node.runtime_threads",
                format!("must not exceed {RUNTIME_THREADS_MAX}"),
            );
        }
        if self.router.retry_backoff_min > self.router.retry_backoff_max {
            return bad(
                "router.retry_backoff_min",
                "must not exceed router.retry_backoff_max",
            );
        }
        let g = &self.groups;
        if g.session_timeout_min.is_zero() || g.session_timeout_min > g.session_timeout_max {
            return bad(
                "groups.session_timeout_min",
                "must be positive and not exceed groups.session_timeout_max",
            );
        }
        if g.session_timeout_default < g.session_timeout_min
            || g.session_timeout_default > g.session_timeout_max
        {
            return bad(
                "groups.session_timeout_default",
                "must lie between groups.session_timeout_min and groups.session_timeout_max",
            );
        }
        if g.members_max == 0 || g.topics_per_member_max == 0 {
            return bad(
                "groups.members_max",
                "groups.members_max and groups.topics_per_member_max must be at least 1",
            );
        }
        if g.expiry_check_interval.is_zero() || g.lag_metrics_interval.is_zero() {
            return bad(
                "groups.expiry_check_interval",
                "groups.expiry_check_interval and groups.lag_metrics_interval must be positive",
            );
        }
        let r = &self.rebalance;
        if r.max_parallel_moves == 0 {
            return bad("rebalance.max_parallel_moves", "must be at least 1");
        }
        if r.check_interval.is_zero() {
            return bad("rebalance.check_interval", "must be positive");
        }
        if r.move_bytes_per_sec == 0 {
            return bad("rebalance.move_bytes_per_sec", "must be positive");
        }
        if r.node_down_timeout <= self.cluster.heartbeat_timeout {
            return bad(
                "rebalance.node_down_timeout",
                "must exceed cluster.heartbeat_timeout",
            );
        }
        if self.supervision.backoff_base > self.supervision.backoff_max {
            return bad(
                "supervision.backoff_base",
                "must not exceed supervision.backoff_max",
            );
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return bad("log.format", "must be `human` or `json`");
        }
        Ok(())
    }
}

/// Parses `"150ms"`, `"5s"`, `"2m"`, `"1h"`, `"2d"` (or a bare number of milliseconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 150ms, 5s, 2m"))?;
    let mult: u64 = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        u => return Err(format!("unknown duration unit {u:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} overflows"))
}

/// Parses `"16MiB"`, `"64KiB"`, `"1GiB"`, `"100KB"`, `"512B"` (or a bare number of bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 16MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => return Err(format!("unknown size unit {u:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(ms) => Ok(Duration::from_millis(ms)),
        NumOrStr::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

fn ser_size<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are valid, and the shipped config file parses to exactly the defaults.
    /// The metadata voters' old key name is still read.
    #[test]
    fn the_old_name_of_metadata_voters_is_read() {
        let c = Config::from_toml("[cluster]\ncontrol_plane_nodes = [\"a\", \"b\"]\n", "test")
            .expect("parses");
        assert_eq!(c.cluster.metadata_voters, ["a", "b"]);
    }

    #[test]
    fn defaults_are_valid_and_match_the_shipped_file() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        let shipped = include_str!("../../../config/daftka.toml");
        let parsed = Config::from_toml(shipped, "config/daftka.toml");
        assert_eq!(parsed, Ok(c));
    }

    /// Human-readable durations and sizes parse; nonsense is an error naming the value.
    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("70"), Ok(Duration::from_millis(70)));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("100KB"), Ok(100_000));
        assert!(parse_size("lots").is_err());
    }

    /// Environment variables override the file, typed like TOML, and unknown keys are refused.
    #[test]
    fn environment_overrides_the_file() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let file = "[raft]\nelection_ticks = 12\n[node]\nname = \"f\"\n";
        let c = Config::load(
            Some((file, "f.toml")),
            env(&[
                ("DAFTKA_RAFT__ELECTION_TICKS", "20"),
                ("DAFTKA_LIMITS__BODY_BYTES_MAX", "1MiB"),
                ("DAFTKA_STORAGE__FSYNC", "false"),
                ("DAFTKA_NODE__SEEDS", "[\"b:7000\"]"),
                ("DAFTKA_NODE_NAME", "ignored: a flag's variable, not a key"),
                ("HOME", "/root"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.raft.election_ticks, 20);
        assert_eq!(c.limits.body_bytes_max, 1 << 20);
        assert!(!c.storage.fsync);
        assert_eq!(c.node.seeds, vec!["b:7000".to_string()]);
        assert_eq!(c.node.name, "f");
        let bad = Config::load(None, env(&[("DAFTKA_RAFT__ELECTION_TIKS", "3")]));
        assert!(
            matches!(&bad, Err(ConfigError::File { message, .. }) if message.contains("election_tiks")),
            "{bad:?}"
        );
    }

    /// Cross-key rules name the key at fault.
    #[test]
    fn validate_names_the_key() {
        let mut c = Config::default();
        c.raft.election_ticks = 2;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "raft.election_ticks",
                ..
            })
        ));
        let mut c = Config::default();
        c.node.seeds = vec!["b".into()];
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "node.cookie",
                ..
            })
        ));
        let mut c = Config::default();
        c.node.http_addr = "nowhere".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "node.http_addr",
                ..
            })
        ));
        let mut c = Config::default();
        c.limits.http_read_buffer_bytes = 4 << 10;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "limits.http_read_buffer_bytes",
                ..
            })
        ));
        let mut c = Config::default();
        c.limits.http_connections_max = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "limits.http_connections_max",
                ..
            })
        ));
        let mut c = Config::default();
        c.node.runtime_threads = RUNTIME_THREADS_MAX + 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "node.runtime_threads",
                ..
            })
        ));
        assert!(
            Config::from_toml("[node]\nnmae = \"x\"", "f").is_err(),
            "unknown keys are refused"
        );
    }

    /// 0 runtime threads: one fewer than the cores, at least one; any other number as given.
    #[test]
    fn runtime_threads_follow_the_cores() {
        let mut n = NodeConfig::default();
        assert_eq!(n.runtime_threads_resolved(1), 1);
        assert_eq!(n.runtime_threads_resolved(2), 1);
        assert_eq!(n.runtime_threads_resolved(8), 7);
        n.runtime_threads = 3;
        assert_eq!(n.runtime_threads_resolved(2), 3);
    }
}
