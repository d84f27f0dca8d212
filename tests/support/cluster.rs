//! A cluster of in-process nodes for the integration tests: real fjall, real ractor_cluster
//! sessions on loopback; each node joins through the ones started before it.

use std::path::PathBuf;
use std::time::Duration;

use daftka_core::config::Config;
use daftka_node::Node;
use daftka_protocol::Client;

use super::{cluster_config, eventually, free_port, start_node_unready, unique_name};

/// One node of a [`TestCluster`]: `node` is `None` while it is stopped.
pub struct Member {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub seeds: Vec<u16>,
    pub node: Option<Node>,
}

/// `n` nodes of one cluster, with their data in one temp dir.
pub struct TestCluster {
    pub name: String,
    pub members: Vec<Member>,
    tweak: fn(&mut Config),
    _dir: tempfile::TempDir,
}

impl TestCluster {
    pub async fn start(n: usize) -> TestCluster {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes whose config `tweak` adjusts.
    pub async fn start_with(n: usize, tweak: fn(&mut Config)) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = unique_name("c");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut members = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let node_name = format!("{name}n{i}");
            members.push(Member {
                dir: dir.path().join(&node_name),
                name: node_name,
                port: *port,
                seeds: ports[..i].to_vec(),
                node: None,
            });
        }
        let mut c = TestCluster {
            name,
            members,
            tweak,
            _dir: dir,
        };
        for i in 0..n {
            c.start_member(i).await;
        }
        for i in 0..n {
            c.wait_ready(i).await;
        }
        // Ready is per node; the cluster is formed once every node sees every other one up.
        for i in 0..n {
            let client = c.client(i);
            eventually(
                "every node to see the others up",
                Duration::from_secs(30),
                async || {
                    let info = client.cluster_info().await.ok()?;
                    (info.nodes.len() == n && info.nodes.iter().all(|x| x.status == "up"))
                        .then_some(())
                },
            )
            .await;
        }
        c
    }

    pub async fn start_member(&mut self, i: usize) {
        let m = &self.members[i];
        let mut config = cluster_config(&self.name, &m.name, &m.dir, m.port, &m.seeds);
        (self.tweak)(&mut config);
        let node = start_node_unready(config).await;
        self.members[i].node = Some(node);
    }

    pub async fn wait_ready(&self, i: usize) {
        let node = self.members[i].node.as_ref().expect("running");
        node.wait_ready(Duration::from_secs(30))
            .await
            .unwrap_or_else(|why| panic!("{} not ready: {why}", self.members[i].name));
    }

    /// The members' node names, in order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    pub fn client(&self, i: usize) -> Client {
        Client::local(&self.members[i].name)
    }

    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.members[i].node.take() {
            n.shutdown().await;
        }
    }
}

/// Creates `topic` with `partitions` partitions of `replication_factor` replicas through
/// `client`; answers its description.
pub async fn create_topic(
    client: &Client,
    topic: &str,
    partitions: u32,
    replication_factor: u32,
) -> daftka_protocol::TopicDescription {
    client
        .create_topic(daftka_protocol::TopicSpec {
            name: topic.into(),
            partitions: Some(partitions),
            replication_factor: Some(replication_factor),
        })
        .await
        .expect("create")
}
