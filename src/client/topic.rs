//! `daftka topic create|list|describe|alter|delete|reassign`.
//!
//! Output is tab-separated without a header: `list` prints `name partitions replication_factor`,
//! `describe` prints `partition leader replicas log_start_offset high_watermark` with replicas joined
//! by commas and `-` for a missing leader. `create` and `delete` print nothing on success; `alter`
//! prints the topic as `describe` does.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::args::TopicCommand;
use super::ClientError;
use daftka_http::client::Api;
use daftka_http::json::{AlterTopicBody, ReassignmentJson, TopicJson};

pub async fn run(
    api: &Api,
    command: TopicCommand,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
        } => {
            api.create_topic(&name, partitions, replication_factor)
                .await?;
        }
        TopicCommand::List => {
            let mut topics = api.list_topics().await?;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            out.write_all(format_list(&topics).as_bytes()).await?;
        }
        TopicCommand::Describe { name } => {
            let topic = api.describe_topic(&name).await?;
            out.write_all(format_describe(&topic).as_bytes()).await?;
        }
        TopicCommand::Delete { name } => api.delete_topic(&name).await?,
        TopicCommand::Alter {
            name,
            partitions,
            retention_time,
            retention_bytes,
        } => {
            let body = AlterTopicBody {
                partitions,
                retention_time_ms: retention_time.map(|s| s.0),
                retention_bytes: retention_bytes.map(|s| s.0),
            };
            let topic = api.alter_topic(&name, &body).await?;
            out.write_all(format_describe(&topic).as_bytes()).await?;
        }
        TopicCommand::Reassign {
            name,
            partition,
            replicas,
            wait,
        } => {
            let r = api.reassign(&name, partition, &replicas).await?;
            out.write_all(format_reassignment(&r).as_bytes()).await?;
            if wait {
                out.flush().await?;
                follow_move(api, &name, partition, out).await?;
            }
        }
    }
    Ok(())
}

/// One line per topic: name, partition count, replication factor.
pub fn format_list(topics: &[TopicJson]) -> String {
    topics
        .iter()
        .map(|t| {
            format!(
                "{}\t{}\t{}\n",
                t.name,
                t.partitions.len(),
                t.replication_factor
            )
        })
        .collect()
}

/// One line per partition: partition, leader, replicas, log start offset, high watermark.
pub fn format_describe(topic: &TopicJson) -> String {
    let mut partitions: Vec<_> = topic.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition);
    partitions
        .into_iter()
        .map(|p| {
            let replicas = if p.replicas.is_empty() {
                "-".to_owned()
            } else {
                p.replicas.join(",")
            };
            format!(
                "{}\t{}\t{}\t{}\t{}\n",
                p.partition,
                p.leader.as_deref().unwrap_or("-"),
                replicas,
                p.log_start_offset,
                p.high_watermark
            )
        })
        .collect()
}

/// Prints `moving T/P: PHASE COPIED/TOTAL bytes` each time the move's phase or bytes change, then
/// `moved T/P to R` once it is no longer in flight.
async fn follow_move(
    api: &Api,
    topic: &str,
    partition: u32,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    let mut last = None;
    loop {
        let moves = api.reassignments().await?;
        let Some(m) = moves
            .into_iter()
            .find(|m| m.topic == topic && m.partition == partition)
        else {
            let t = api.describe_topic(topic).await?;
            let replicas = t
                .partitions
                .iter()
                .find(|p| p.partition == partition)
                .map(|p| p.replicas.join(","))
                .unwrap_or_default();
            out.write_all(format!("moved {topic}/{partition} to {replicas}\n").as_bytes())
                .await?;
            return Ok(());
        };
        let now = (m.phase.clone(), m.bytes_copied, m.bytes_total);
        if last.as_ref() != Some(&now) {
            let line = format!(
                "moving {topic}/{partition}: {} {}/{} bytes\n",
                m.phase.as_deref().unwrap_or("-"),
                m.bytes_copied,
                m.bytes_total
            );
            out.write_all(line.as_bytes()).await?;
            out.flush().await?;
            last = Some(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(super::WAIT_POLL_MS)).await;
    }
}

/// One move's line: `topic partition from to phase copied/total` (node lists comma-separated,
/// `-` for a phase the leader did not report).
pub fn format_reassignment(r: &ReassignmentJson) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}/{}\n",
        r.topic,
        r.partition,
        r.from.join(","),
        r.to.join(","),
        r.phase.as_deref().unwrap_or("-"),
        r.bytes_copied,
        r.bytes_total
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::args::TopicArgs;
    use crate::client::{ClientCommand, ClientOpts};
    use daftka_http::mock::{MockNode, Reply};
    use serde_json::json;

    fn description() -> TopicJson {
        serde_json::from_value(json!({
            "name": "orders",
            "replication_factor": 3,
            "partitions": [
                {"partition": 1, "leader": null, "replicas": ["n2", "n3", "n1"],
                 "log_start_offset": 0, "high_watermark": 0},
                {"partition": 0, "leader": "n1", "replicas": ["n1", "n2", "n3"],
                 "log_start_offset": 5, "high_watermark": 12}
            ]
        }))
        .expect("valid description")
    }

    #[test]
    fn describe_prints_a_sorted_line_per_partition() {
        // Partitions come out in order; node names print bare; no leader is `-`.
        assert_eq!(
            format_describe(&description()),
            "0\tn1\tn1,n2,n3\t5\t12\n1\t-\tn2,n3,n1\t0\t0\n"
        );
    }

    #[test]
    fn list_prints_name_partitions_replication_factor() {
        // One tab-separated line per topic, no header.
        let mut other = description();
        other.name = "a".into();
        other.partitions.truncate(1);
        other.replication_factor = 1;
        assert_eq!(
            format_list(&[description(), other]),
            "orders\t2\t3\na\t1\t1\n"
        );
        assert_eq!(format_list(&[]), "");
    }

    async fn topic(node: &MockNode, command: TopicCommand) -> Result<String, ClientError> {
        let mut out = Vec::new();
        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Topic(TopicArgs { command }),
            &b""[..],
            &mut out,
        )
        .await?;
        Ok(String::from_utf8(out).expect("utf8 output"))
    }

    #[tokio::test]
    async fn reassign_wait_follows_the_move() {
        // The move shows twice the same (one line), then another phase, then it is gone.
        let looks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let node = {
            let looks = looks.clone();
            MockNode::start(move |req| match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/v1/topics/orders/partitions/3/reassign") => Reply::json(
                    202,
                    json!({"topic": "orders", "partition": 3, "from": ["a", "b", "c"],
                           "to": ["a", "c", "d"], "started_ms": 5}),
                ),
                ("GET", "/v1/reassignments") => {
                    let n = looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let m = |phase: &str, copied: u64| {
                        json!({"topic": "orders", "partition": 3, "from": ["a", "b", "c"],
                               "to": ["a", "c", "d"], "started_ms": 5, "phase": phase,
                               "bytes_copied": copied, "bytes_total": 1000})
                    };
                    let list = match n {
                        0 | 1 => vec![m("catching_up", 300)],
                        2 => vec![m("leaving_joint", 1000)],
                        _ => vec![],
                    };
                    Reply::json(200, json!({ "reassignments": list }))
                }
                ("GET", "/v1/topics/orders") => Reply::json(
                    200,
                    json!({"name": "orders", "replication_factor": 3, "partitions": [
                        {"partition": 3, "leader": "a", "replicas": ["a", "c", "d"],
                         "log_start_offset": 0, "high_watermark": 9}]}),
                ),
                _ => Reply::error(404, "not_found", "no route"),
            })
            .await
        };
        let out = topic(
            &node,
            TopicCommand::Reassign {
                name: "orders".into(),
                partition: 3,
                replicas: vec!["a".into(), "c".into(), "d".into()],
                wait: true,
            },
        )
        .await
        .expect("reassign --wait");
        assert_eq!(
            out,
            "orders\t3\ta,b,c\ta,c,d\t-\t0/0\n\
             moving orders/3: catching_up 300/1000 bytes\n\
             moving orders/3: leaving_joint 1000/1000 bytes\n\
             moved orders/3 to a,c,d\n"
        );
    }

    #[tokio::test]
    async fn topic_commands_use_the_documented_routes() {
        // create/list/describe/delete send the documented requests and print the documented lines.
        let node = MockNode::start(|req| match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v1/topics") => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json body");
                assert_eq!(
                    body,
                    json!({"name": "orders", "partitions": 2, "replication_factor": 3})
                );
                Reply::json(
                    201,
                    json!({"name": "orders", "replication_factor": 3, "partitions": []}),
                )
            }
            ("GET", "/v1/topics") => Reply::json(
                200,
                json!({"topics": [
                    {"name": "z", "replication_factor": 1, "partitions": []},
                    {"name": "orders", "replication_factor": 3, "partitions": [
                        {"partition": 0, "leader": "n1", "replicas": ["n1"], "log_start_offset": 0,
                         "high_watermark": 4}]}
                ]}),
            ),
            ("GET", "/v1/topics/orders") => Reply::json(
                200,
                json!({"name": "orders", "replication_factor": 1, "partitions": [
                    {"partition": 0, "leader": "n1", "replicas": ["n1"], "log_start_offset": 0,
                     "high_watermark": 4}]}),
            ),
            ("DELETE", "/v1/topics/orders") => Reply::empty(204),
            ("PATCH", "/v1/topics/orders") => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json body");
                assert_eq!(
                    body,
                    json!({"partitions": 2, "retention_time_ms": 172_800_000u64,
                           "retention_bytes": null})
                );
                Reply::json(
                    200,
                    json!({"name": "orders", "replication_factor": 1, "retention_time_ms": 172_800_000u64,
                           "partitions": [
                        {"partition": 0, "leader": "n1", "replicas": ["n1"], "log_start_offset": 0, "high_watermark": 4},
                        {"partition": 1, "leader": null, "replicas": ["n1"], "log_start_offset": 0, "high_watermark": 0}]}),
                )
            }
            ("POST", "/v1/topics/orders/partitions/3/reassign") => {
                let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json body");
                assert_eq!(body, json!({"replicas": ["a", "c", "d"]}));
                Reply::json(
                    202,
                    json!({"topic": "orders", "partition": 3, "from": ["a", "b", "c"],
                           "to": ["a", "c", "d"], "started_ms": 5}),
                )
            }
            ("GET", "/v1/reassignments") => Reply::json(
                200,
                json!({"reassignments": [{"topic": "orders", "partition": 3, "from": ["a", "b", "c"],
                                          "to": ["a", "c", "d"], "started_ms": 5,
                                          "phase": "catching_up", "bytes_copied": 300,
                                          "bytes_total": 1000}]}),
            ),
            _ => Reply::error(
                404,
                "unknown_topic",
                &format!("topic {:?} does not exist", req.path),
            ),
        })
        .await;

        let created = topic(
            &node,
            TopicCommand::Create {
                name: "orders".into(),
                partitions: Some(2),
                replication_factor: Some(3),
            },
        )
        .await
        .expect("create");
        assert_eq!(created, "");
        let moved = topic(
            &node,
            TopicCommand::Reassign {
                name: "orders".into(),
                partition: 3,
                replicas: vec!["a".into(), "c".into(), "d".into()],
                wait: false,
            },
        )
        .await
        .expect("reassign");
        assert_eq!(moved, "orders\t3\ta,b,c\ta,c,d\t-\t0/0\n");
        let altered = topic(
            &node,
            TopicCommand::Alter {
                name: "orders".into(),
                partitions: Some(2),
                retention_time: Some(crate::client::args::Setting(Some(172_800_000))),
                retention_bytes: Some(crate::client::args::Setting(None)),
            },
        )
        .await
        .expect("alter");
        assert_eq!(altered, "0\tn1\tn1\t0\t4\n1\t-\tn1\t0\t0\n");
        let mut out = Vec::new();
        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Reassignments,
            &b""[..],
            &mut out,
        )
        .await
        .expect("reassignments");
        assert_eq!(out, b"orders\t3\ta,b,c\ta,c,d\tcatching_up\t300/1000\n");
        assert_eq!(
            topic(&node, TopicCommand::List).await.expect("list"),
            "orders\t1\t3\nz\t0\t1\n"
        );
        assert_eq!(
            topic(
                &node,
                TopicCommand::Describe {
                    name: "orders".into()
                }
            )
            .await
            .expect("describe"),
            "0\tn1\tn1\t0\t4\n"
        );
        assert_eq!(
            topic(
                &node,
                TopicCommand::Delete {
                    name: "orders".into()
                }
            )
            .await
            .expect("delete"),
            ""
        );
        let err = topic(&node, TopicCommand::Describe { name: "x".into() })
            .await
            .expect_err("unknown topic");
        assert_eq!(
            err.to_string(),
            r#"unknown_topic: topic "/v1/topics/x" does not exist"#
        );
        assert_eq!(err.exit_code(), 1);
    }
}
