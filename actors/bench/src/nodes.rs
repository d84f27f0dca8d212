//! The suite's own nodes: this binary started as node processes on free loopback ports, with their
//! data in a scratch directory; killed (SIGKILL) when dropped, the directory removed when dropped.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daftka_http::client::Api;
use daftka_http::client::ClientError;

/// How long a fresh node may take to answer `/readyz` with 200.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the nodes of a new cluster may take to see each other `up`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is asked: the resolution of a restart time.
const POLL: Duration = Duration::from_millis(10);
/// The cookie of the suite's nodes.
pub const COOKIE: &str = "daftka-bench-suite";
/// The bytes of a node's log shown when it fails to start.
const LOG_TAIL_BYTES: u64 = 2_000;

fn io_error(what: String, e: std::io::Error) -> ClientError {
    ClientError::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// A fresh directory under the system's temp dir, removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn create() -> Result<Scratch, ClientError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "daftka-bench-suite-{}-{nanos:x}",
            std::process::id()
        ));
        // `create_dir`, not `create_dir_all`: never adopt a directory that already exists.
        std::fs::create_dir(&path)
            .map_err(|e| io_error(format!("creating {}", path.display()), e))?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `n` distinct free loopback ports: each bound to port 0 and released (all held until the last
/// one is picked, so none repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>, ClientError> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_error("picking a free port".into(), e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_error("picking a free port".into(), e))
}

/// The bytes of the files under `path`, recursively (0 for what cannot be read).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// A node process of the suite.
pub struct NodeProc {
    pub name: String,
    pub data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    http: u16,
    cluster: u16,
    child: Option<Child>,
    pub api: Api,
    probe: reqwest::Client,
}

impl NodeProc {
    /// Starts node `name` with its data and log under `root`, joining the nodes listening on the
    /// cluster ports `seeds`. It is not ready yet: see [`NodeProc::wait_ready`].
    pub fn spawn(root: &Path, name: &str, seeds: &[u16]) -> Result<NodeProc, ClientError> {
        let ports = free_ports(3)?;
        let (http, metrics, cluster) = (ports[0], ports[1], ports[2]);
        let data_dir = root.join(name);
        let mut args = vec![
            "--node-name".to_owned(),
            name.to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--http-addr".to_owned(),
            format!("127.0.0.1:{http}"),
            "--metrics-addr".to_owned(),
            format!("127.0.0.1:{metrics}"),
            "--cluster-addr".to_owned(),
            format!("127.0.0.1:{cluster}"),
            "--cookie".to_owned(),
            COOKIE.to_owned(),
            "--log-level".to_owned(),
            "warn".to_owned(),
        ];
        if !seeds.is_empty() {
            let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            args.push("--seeds".to_owned());
            args.push(seeds.join(","));
        }
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| ClientError::Transport {
                url: format!("http://127.0.0.1:{http}"),
                message: e.to_string(),
                connect: true,
            })?;
        let mut node = NodeProc {
            name: name.to_owned(),
            log: root.join(format!("{name}.log")),
            data_dir,
            args,
            http,
            cluster,
            child: None,
            api: Api::new(&format!("http://127.0.0.1:{http}"))?,
            probe,
        };
        node.start()?;
        Ok(node)
    }

    /// Starts the process (again, on the same ports and data); answers when it was spawned.
    pub fn start(&mut self) -> Result<Instant, ClientError> {
        let exe = std::env::current_exe()
            .map_err(|e| io_error("finding this program's path".into(), e))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| io_error(format!("opening {}", self.log.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| io_error(format!("opening {}", self.log.display()), e))?;
        let mut cmd = Command::new(exe);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env_remove("RUST_LOG");
        // The suite's nodes run with the built-in defaults: no DAFTKA_* setting of this shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DAFTKA_") {
                cmd.env_remove(key);
            }
        }
        let at = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| io_error(format!("starting node {}", self.name), e))?;
        self.child = Some(child);
        Ok(at)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// The cluster address, for `--seed` of the native transport.
    pub fn seed(&self) -> String {
        format!("127.0.0.1:{}", self.cluster)
    }

    pub fn cluster_port(&self) -> u16 {
        self.cluster
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The end of the node's log, for error messages.
    fn log_tail(&self) -> String {
        let Ok(mut f) = File::open(&self.log) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
        let mut text = String::new();
        let _ = f.read_to_string(&mut text);
        text.trim().to_owned()
    }

    /// An error about this node, with the end of its log.
    fn failed(&self, what: String) -> ClientError {
        let tail = self.log_tail();
        let message = if tail.is_empty() {
            what
        } else {
            format!("{what}; the end of its log:\n{tail}")
        };
        ClientError::Api {
            code: "unavailable".into(),
            message: format!("node {}: {message}", self.name),
            retryable: false,
            log_start_offset: None,
        }
    }

    /// An error if the process has exited.
    fn check_running(&mut self) -> Result<(), ClientError> {
        let status = match self.child.as_mut() {
            None => return Err(self.failed("not running".into())),
            Some(c) => c.try_wait(),
        };
        match status {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(self.failed(format!("exited ({status})")))
            }
            Err(e) => Err(io_error(format!("node {}", self.name), e)),
        }
    }

    /// Waits until `GET /readyz` answers 200 (every [`POLL`]); an error if the process exits or
    /// `timeout` passes first.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let url = format!("{}/readyz", self.url());
        let probe = self.probe.clone();
        let ready = super::poll_until(Instant::now() + timeout, POLL, || {
            let running = self.check_running();
            let (probe, url) = (probe.clone(), url.clone());
            async move {
                running?;
                let r = probe.get(&url).send().await.ok();
                Ok(r.filter(|r| r.status() == reqwest::StatusCode::OK)
                    .map(|_| ()))
            }
        })
        .await?;
        ready.ok_or_else(|| self.failed(format!("not ready after {timeout:?}")))
    }

    /// Waits until this node sees `n` nodes `up` in `GET /v1/cluster`.
    pub async fn wait_nodes_up(&mut self, n: usize) -> Result<(), ClientError> {
        let url = format!("{}/v1/cluster", self.url());
        let probe = self.probe.clone();
        let seen = super::poll_until(Instant::now() + CLUSTER_TIMEOUT, POLL, || {
            let running = self.check_running();
            let (probe, url) = (probe.clone(), url.clone());
            async move {
                running?;
                Ok(nodes_up(&probe, &url).await.filter(|up| *up >= n))
            }
        })
        .await?;
        match seen {
            Some(_) => Ok(()),
            None => Err(self.failed(format!(
                "does not see {n} nodes up after {CLUSTER_TIMEOUT:?}"
            ))),
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts one node and waits until it is ready.
pub async fn start_node(root: &Path, name: &str) -> Result<NodeProc, ClientError> {
    let mut node = NodeProc::spawn(root, name, &[])?;
    node.wait_ready(START_TIMEOUT).await?;
    Ok(node)
}

/// Starts a cluster of nodes `names`: the first founds it, each next one joins through the ones
/// started before it (as `just cluster` does); waits until each is ready and the first sees all
/// of them `up`.
pub async fn start_cluster(root: &Path, names: &[&str]) -> Result<Vec<NodeProc>, ClientError> {
    let mut nodes: Vec<NodeProc> = Vec::new();
    for name in names {
        let seeds: Vec<u16> = nodes.iter().map(NodeProc::cluster_port).collect();
        let mut node = NodeProc::spawn(root, name, &seeds)?;
        node.wait_ready(START_TIMEOUT).await?;
        nodes.push(node);
    }
    if let Some(first) = nodes.first_mut() {
        first.wait_nodes_up(names.len()).await?;
    }
    Ok(nodes)
}

/// How many nodes `GET url` (a node's `/v1/cluster`) shows `up`.
async fn nodes_up(probe: &reqwest::Client, url: &str) -> Option<usize> {
    let v: serde_json::Value = probe.get(url).send().await.ok()?.json().await.ok()?;
    Some(
        v["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["status"] == "up")
            .count(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_fresh_and_removed() {
        let a = Scratch::create().expect("a scratch dir");
        let b = Scratch::create().expect("another");
        assert_ne!(a.path(), b.path());
        std::fs::create_dir_all(a.path().join("x/y")).expect("mkdir");
        std::fs::write(a.path().join("x/y/f"), [0u8; 1000]).expect("write");
        std::fs::write(a.path().join("g"), [0u8; 24]).expect("write");
        assert_eq!(dir_bytes(a.path()), 1024);
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().exists());
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(6).expect("ports");
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 6);
        assert!(ports.iter().all(|&p| p > 0));
    }
}
