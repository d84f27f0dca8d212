//! Shared helpers of the integration tests: real nodes on loopback port 0 with their data in a
//! temp dir, and the real binary as a child process that is killed when dropped.
#![allow(dead_code)]

pub mod api;
pub mod cluster;
pub mod group;
pub mod history;
pub mod netns;
pub mod procs;
pub mod produce;
pub mod readback;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daftka_core::config::Config;
use daftka_node::{Listeners, Node};

/// A unique node name per test in this process: ractor's registry is process-global.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A config for a test node: loopback port 0 everywhere, data in `dir`, fast restarts.
pub fn test_config(name: &str, dir: &Path) -> Config {
    let mut c = Config::default();
    c.node.name = name.to_string();
    c.node.data_dir = dir.to_path_buf();
    c.node.http_addr = "127.0.0.1:0".into();
    c.node.metrics_addr = "127.0.0.1:0".into();
    c.node.cluster_addr = "127.0.0.1:0".into();
    // Nodes of different tests in this process share ractor's pg groups: keep their clusters apart.
    c.cluster.name = format!("{name}-cluster");
    c.supervision.backoff_base = Duration::from_millis(1);
    c.supervision.backoff_max = Duration::from_millis(50);
    // Chaos tests kill actors many times in a row; the budget is the supervisor's, not the test's.
    c.supervision.max_restarts = 1000;
    c
}

/// Logs of in-process nodes go to the test output, filtered by `RUST_LOG`. The default keeps a
/// failing test's output readable: warnings, the moves' INFO lines (start, steps, finish), and
/// only errors of ractor_cluster (a warning per remote actor exit) and lsm_tree (a warning per
/// table file a deleted temp dir took away).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,ractor_cluster=error,lsm_tree=error,daftka_node::placement=info,daftka_node::partitions::raft=info",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Starts an in-process node on `config` and waits until it is ready.
pub async fn start_node(config: Config) -> Node {
    init_logs();
    let listeners = Listeners::bind(&config).expect("bind port 0");
    let node = daftka_node::start(config, listeners)
        .await
        .expect("node starts");
    node.wait_ready(Duration::from_secs(20))
        .await
        .expect("node becomes ready");
    node
}

/// An in-process node with its own temp data dir.
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub async fn start(prefix: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = start_node(test_config(&unique_name(prefix), dir.path())).await;
        TestNode { node, dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.node.http_addr)
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the metric line that starts with `name_and_labels` (labels in the order the
/// exporter writes them, sorted by name), if the node serves it.
pub async fn metric(node: &Node, name_and_labels: &str) -> Option<f64> {
    let url = format!("http://{}", node.metrics_addr);
    metric_at(&reqwest::Client::new(), &url, name_and_labels).await
}

/// Like [`metric`], from the metrics endpoint at `metrics_url` (`http://host:port`).
pub async fn metric_at(
    http: &reqwest::Client,
    metrics_url: &str,
    name_and_labels: &str,
) -> Option<f64> {
    metrics_text(http, metrics_url)
        .await?
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
}

/// Everything the metrics endpoint at `metrics_url` (`http://host:port`) serves.
pub async fn metrics_text(http: &reqwest::Client, metrics_url: &str) -> Option<String> {
    let r = http
        .get(format!("{metrics_url}/metrics"))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// The JSON body of a GET of `url`, if it answers with one.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// The config of member `name` of an in-process test cluster: a cookie, a cluster listener on
/// `cluster_port`, seeds (none for the founder), the cluster's own name (so clusters of parallel
/// tests in this process never meet), and quick elections.
pub fn cluster_config(
    cluster: &str,
    name: &str,
    dir: &Path,
    cluster_port: u16,
    seeds: &[u16],
) -> Config {
    let mut c = test_config(name, dir);
    c.node.cookie = "test-cookie".into();
    c.node.cluster_addr = format!("127.0.0.1:{cluster_port}");
    c.node.seeds = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    c.cluster.name = cluster.to_string();
    c.raft.tick = Duration::from_millis(20);
    c.raft.leader_balance_interval = Duration::from_millis(200);
    c
}

/// Starts an in-process node on `config` and waits until it serves (it may not be ready yet).
pub async fn start_node_unready(config: Config) -> Node {
    init_logs();
    let listeners = Listeners::bind(&config).expect("bind port 0");
    daftka_node::start(config, listeners)
        .await
        .expect("node starts")
}

/// Waits until a GET of `url` answers 2xx, or panics after `timeout`.
pub async fn wait_ok(http: &reqwest::Client, url: &str, timeout: Duration) {
    eventually(
        &format!("GET {url} to answer 2xx"),
        timeout,
        async || match http.get(url).send().await {
            Ok(r) if r.status().is_success() => Some(()),
            _ => None,
        },
    )
    .await
}

/// A free loopback port for a listener started later (bound, then released). Taken below Linux's
/// ephemeral range (32768-60999), so no outgoing connection of this or another test takes it in
/// the meantime, and never handed out twice by this process.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    // Spread processes (test binaries run in parallel) over the range by their pid.
    let start = 20_000 + (std::process::id() % 1000) as u16 * 12;
    for i in 0..12_000u16 {
        let port = 20_000 + (start - 20_000 + i) % 12_000;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 20000-31999")
}

/// The real `daftka` binary running as a node; killed (SIGKILL) on drop.
pub struct BinaryNode {
    pub child: Child,
    pub http_port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub name: String,
}

impl BinaryNode {
    /// Starts `daftka --node-name NAME` on fresh ports with its data in `data_dir`.
    pub fn spawn(name: &str, data_dir: &Path) -> BinaryNode {
        Self::spawn_with(name, data_dir, &[])
    }

    /// Like [`BinaryNode::spawn`], with extra command-line arguments.
    pub fn spawn_with(name: &str, data_dir: &Path, extra: &[String]) -> BinaryNode {
        Self::spawn_env(name, data_dir, extra, &[])
    }

    /// Like [`BinaryNode::spawn_with`], with extra environment variables.
    pub fn spawn_env(
        name: &str,
        data_dir: &Path,
        extra: &[String],
        env: &[(&str, &str)],
    ) -> BinaryNode {
        Self::spawn_on(name, data_dir, extra, env, free_port(), free_port())
    }

    /// Like [`BinaryNode::spawn_env`], on the given HTTP and metrics ports (a restart keeps its
    /// ports, so clients and peers find it again).
    pub fn spawn_on(
        name: &str,
        data_dir: &Path,
        extra: &[String],
        env: &[(&str, &str)],
        http_port: u16,
        metrics_port: u16,
    ) -> BinaryNode {
        let child = Command::new(env!("CARGO_BIN_EXE_daftka"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .args(["--node-name", name])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the daftka binary");
        BinaryNode {
            child,
            http_port,
            metrics_port,
            data_dir: data_dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, http: &reqwest::Client) {
        wait_ok(
            http,
            &format!("{}/readyz", self.url()),
            Duration::from_secs(30),
        )
        .await
    }

    /// Waits until `/healthz` answers 200: the process serves HTTP (it may not be ready).
    pub async fn wait_live(&self, http: &reqwest::Client) {
        wait_ok(
            http,
            &format!("{}/healthz", self.url()),
            Duration::from_secs(30),
        )
        .await
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the node's process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// kill -9: no clean shutdown.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BinaryNode {
    fn drop(&mut self) {
        self.kill9();
    }
}
