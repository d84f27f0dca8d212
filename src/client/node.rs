//! `daftka node list|drain|undrain|remove`: the cluster's nodes, draining and removing one.
//!
//! - `list` prints one tab-separated line per node, sorted by name, without a header:
//!   `name status state replicas leaders` (status `up`/`down`; state `active`, `draining`,
//!   `drained` or `down`).
//! - `drain NODE` asks the cluster to move every replica off the node and place nothing new on
//!   it, and prints the node's line. With `--wait` it then follows the drain: a line each time the
//!   node's replica count changes, until it is `drained` (the node may then be stopped).
//! - `undrain NODE` takes the node back into placement and prints its line.
//! - `remove NODE` forgets a node that is down or drained and prints its line as it was, state
//!   `removed` (refused with `node_active` while it is up and holds replicas).

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::args::NodeCommand;
use super::ClientError;
use daftka_http::client::Api;
use daftka_http::json::NodeJson;

pub async fn run(
    api: &Api,
    command: NodeCommand,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    match command {
        NodeCommand::List => {
            let mut nodes = api.cluster().await?.nodes;
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let text: String = nodes.iter().map(format_node).collect();
            out.write_all(text.as_bytes()).await?;
        }
        NodeCommand::Undrain { node } => {
            let n = api.drain_node(&node, false).await?;
            out.write_all(format_node(&n).as_bytes()).await?;
        }
        NodeCommand::Remove { node } => {
            let n = api.remove_node(&node).await?;
            out.write_all(format_node(&n).as_bytes()).await?;
        }
        NodeCommand::Drain { node, wait } => {
            let n = api.drain_node(&node, true).await?;
            out.write_all(format_node(&n).as_bytes()).await?;
            out.flush().await?;
            if wait {
                follow(api, &node, n.replicas, out).await?;
            }
        }
    }
    Ok(())
}

/// One node's line.
pub fn format_node(n: &NodeJson) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\n",
        n.name, n.status, n.state, n.replicas, n.leaders
    )
}

/// Prints `draining NODE: N replicas left` each time the count changes, until the node is drained.
async fn follow(
    api: &Api,
    node: &str,
    mut last: u32,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    loop {
        let cluster = api.cluster().await?;
        let Some(n) = cluster.nodes.into_iter().find(|n| n.name == node) else {
            return Err(ClientError::Api {
                code: "unknown_node".into(),
                message: format!("node {node:?} left the cluster while draining"),
                retryable: false,
                log_start_offset: None,
            });
        };
        if n.state == "drained" {
            out.write_all(format!("drained {node}\n").as_bytes())
                .await?;
            return Ok(());
        }
        if n.state != "draining" {
            return Err(ClientError::Api {
                code: "not_draining".into(),
                message: format!("node {node:?} is {} now, not draining", n.state),
                retryable: false,
                log_start_offset: None,
            });
        }
        if n.replicas != last {
            last = n.replicas;
            out.write_all(format!("draining {node}: {last} replicas left\n").as_bytes())
                .await?;
            out.flush().await?;
        }
        tokio::time::sleep(Duration::from_millis(super::WAIT_POLL_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::args::NodeArgs;
    use crate::client::{ClientCommand, ClientOpts};
    use daftka_http::mock::{MockNode, Reply};
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn node(name: &str, state: &str, replicas: u32) -> serde_json::Value {
        json!({"name": name, "cluster_addr": "", "http_addr": "", "status": "up",
               "state": state, "replicas": replicas, "leaders": 0})
    }

    async fn run_node(node: &MockNode, command: NodeCommand) -> Result<String, ClientError> {
        let mut out = Vec::new();
        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Node(NodeArgs { command }),
            &b""[..],
            &mut out,
        )
        .await?;
        Ok(String::from_utf8(out).expect("utf8"))
    }

    #[tokio::test]
    async fn list_drain_wait_and_undrain() {
        // The node answers the cluster with c's replicas going 3, 1, 0 over three looks.
        let looks = Arc::new(AtomicU32::new(0));
        let mock = {
            let looks = looks.clone();
            MockNode::start(move |req| match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/v1/cluster") => {
                    let n = looks.fetch_add(1, Ordering::SeqCst);
                    let c = match n {
                        0 => node("c", "draining", 3),
                        1 => node("c", "draining", 1),
                        _ => node("c", "drained", 0),
                    };
                    Reply::json(
                        200,
                        json!({"nodes": [c, node("a", "active", 4)], "metadata_leader": "a",
                               "seeds": []}),
                    )
                }
                ("POST", "/v1/cluster/nodes/c/drain") => Reply::json(202, node("c", "draining", 3)),
                ("POST", "/v1/cluster/nodes/c/undrain") => Reply::json(202, node("c", "active", 0)),
                ("POST", "/v1/cluster/nodes/x/drain") => {
                    Reply::error(404, "unknown_node", "no node \"x\" is registered")
                }
                ("DELETE", "/v1/cluster/nodes/c") => Reply::json(200, node("c", "removed", 0)),
                ("DELETE", "/v1/cluster/nodes/a") => {
                    Reply::error(409, "node_active", "node \"a\" is up and holds 4 replicas")
                }
                _ => Reply::error(404, "not_found", "no route"),
            })
            .await
        };
        assert_eq!(
            run_node(&mock, NodeCommand::List).await.expect("list"),
            "a\tup\tactive\t4\t0\nc\tup\tdraining\t3\t0\n"
        );
        let drained = run_node(
            &mock,
            NodeCommand::Drain {
                node: "c".into(),
                wait: true,
            },
        )
        .await
        .expect("drain");
        assert_eq!(
            drained,
            "c\tup\tdraining\t3\t0\ndraining c: 1 replicas left\ndrained c\n"
        );
        assert_eq!(
            run_node(&mock, NodeCommand::Undrain { node: "c".into() })
                .await
                .expect("undrain"),
            "c\tup\tactive\t0\t0\n"
        );
        let err = run_node(
            &mock,
            NodeCommand::Drain {
                node: "x".into(),
                wait: false,
            },
        )
        .await
        .expect_err("unknown");
        assert_eq!(err.to_string(), "unknown_node: no node \"x\" is registered");
        assert_eq!(
            run_node(&mock, NodeCommand::Remove { node: "c".into() })
                .await
                .expect("remove"),
            "c\tup\tremoved\t0\t0\n"
        );
        let err = run_node(&mock, NodeCommand::Remove { node: "a".into() })
            .await
            .expect_err("active");
        assert_eq!(
            err.to_string(),
            "node_active: node \"a\" is up and holds 4 replicas"
        );
    }
}
