//! A cluster of real binary processes on loopback (three nodes, or more), for tests that need
//! separate processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{free_port, BinaryNode};

/// One node of the cluster: how to start it again on the same ports and data.
pub struct Slot {
    pub name: String,
    pub dir: PathBuf,
    /// The cluster listener's address.
    pub cluster_addr: String,
    args: Vec<String>,
    pub http: u16,
    pub metrics: u16,
    pub proc: Option<BinaryNode>,
}

impl Slot {
    /// Starts (or starts again) the node on its ports and data, with chaos endpoints on.
    pub fn start(&mut self) {
        let env = [("DAFTKA_DEBUG__CHAOS", "true")];
        self.proc = Some(BinaryNode::spawn_on(
            &self.name,
            &self.dir,
            &self.args,
            &env,
            self.http,
            self.metrics,
        ));
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// Adds command-line arguments (a `--config` file, say) to every later start.
    pub fn push_args(&mut self, extra: &[String]) {
        self.args.extend_from_slice(extra);
    }

    /// The node's command line, as [`Slot::start`] runs it (without the chaos environment).
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_daftka"));
        c.args(&self.args)
            .env("RUST_LOG", "warn")
            .args(["--node-name", &self.name])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http)])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", self.metrics)]);
        c
    }
}

/// Three nodes a, b, c of one cluster with `cookie`: a founds it, b joins a, c joins a and b.
pub fn slots(root: &Path, cookie: &str) -> Vec<Slot> {
    slots_n(root, cookie, 3)
}

/// `n` (at most 6) nodes a, b, c, ... of one cluster: a founds it, each other joins those before.
pub fn slots_n(root: &Path, cookie: &str, n: usize) -> Vec<Slot> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    ["a", "b", "c", "d", "e", "f"][..n]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut args = vec![
                "--cluster-addr".to_string(),
                format!("127.0.0.1:{}", ports[i]),
                "--cookie".to_string(),
                cookie.to_string(),
            ];
            if i > 0 {
                let seeds: Vec<String> = ports[..i]
                    .iter()
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect();
                args.push("--seeds".into());
                args.push(seeds.join(","));
            }
            Slot {
                name: name.to_string(),
                dir: root.join(name),
                cluster_addr: format!("127.0.0.1:{}", ports[i]),
                args,
                http: free_port(),
                metrics: free_port(),
                proc: None,
            }
        })
        .collect()
}

/// The HTTP client of the process tests: every request bounded by 15 s.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

/// Creates `topic` with `partitions` partitions of three replicas through the node at `url`.
pub async fn create_topic(http: &reqwest::Client, url: &str, topic: &str, partitions: u32) {
    let created = http
        .post(format!("{url}/v1/topics"))
        .json(
            &serde_json::json!({"name": topic, "partitions": partitions, "replication_factor": 3}),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(created.status().as_u16(), 201, "create {topic}");
}

/// Waits until the node at `url` answers `/readyz` with 200.
pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    super::wait_ok(http, &format!("{url}/readyz"), Duration::from_secs(60)).await
}

/// The registered actors of the node at `url` (its chaos endpoint) whose names end with one of
/// `kinds` (`.raft`, `.reader`, `.server`, `.router`, `.metadata`, `.placement`...).
pub async fn actor_targets(http: &reqwest::Client, url: &str, kinds: &[&str]) -> Vec<String> {
    let Ok(r) = http.get(format!("{url}/v1/admin/actors")).send().await else {
        return Vec::new();
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    v["actors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str())
                .filter(|n| kinds.iter().any(|s| n.ends_with(s)))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Starts every node in turn, each once the ones before are ready, and waits until the first one
/// sees them all up.
pub async fn start_all(http: &reqwest::Client, nodes: &mut [Slot]) {
    for n in nodes.iter_mut() {
        n.start();
        wait_ready(http, &n.url()).await;
    }
    let first = nodes[0].url();
    let count = nodes.len();
    super::eventually(
        "the first node to see every node up",
        Duration::from_secs(60),
        async || {
            let v = super::get_json(http, &format!("{first}/v1/cluster")).await?;
            let up = v["nodes"]
                .as_array()?
                .iter()
                .filter(|n| n["status"] == "up");
            (up.count() == count).then_some(())
        },
    )
    .await;
}

/// Stops every running node with SIGTERM, a clean stop: every record it applied is in the store
/// a test reads next.
pub fn stop_all(nodes: &mut [Slot]) {
    for n in nodes.iter_mut() {
        if let Some(p) = n.proc.as_mut() {
            let _ = std::process::Command::new("kill")
                .arg(p.child.id().to_string())
                .status();
            let _ = p.child.wait();
        }
    }
}
