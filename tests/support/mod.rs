//! Shared helpers of the integration tests: real nodes on loopback port 0 with their data in a
//! temp dir, and the real binary as a child process that is killed when dropped.
#![allow(dead_code)]

pub mod history;

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
    c.supervision.backoff_base = Duration::from_millis(1);
    c.supervision.backoff_max = Duration::from_millis(50);
    // Chaos tests kill actors many times in a row; the budget is the supervisor's, not the test's.
    c.supervision.max_restarts = 1000;
    c
}

/// Logs of in-process nodes go to the test output, filtered by `RUST_LOG` (default: warnings).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
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
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two free loopback ports (bound, then released for the child process to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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
        let http_port = free_port();
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_daftka"))
            .args(extra)
            .args(["--node-name", name])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .env("RUST_LOG", "warn")
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
        let url = format!("{}/readyz", self.url());
        eventually(
            "the binary node to be ready",
            Duration::from_secs(30),
            async || match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => Some(()),
                _ => None,
            },
        )
        .await
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
