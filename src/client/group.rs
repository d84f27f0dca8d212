//! `daftka group list|describe|reset`: consumer groups, their members, positions and lag.
//!
//! - `list` prints one tab-separated line per group, sorted by name, without a header:
//!   `group state generation members` (state is `empty`, `stable` or `rebalancing`).
//! - `describe G` is for people: a summary of `key<TAB>value` lines (group, state, generation,
//!   assignor, members, lag), then a table of the members and a table of the partitions, each after
//!   a blank line and with a header line, fields tab-separated. A missing value prints as `-`;
//!   an assignment prints as `topic:p,p` per topic, space-separated. An empty table is left out.
//! - `reset G --topic T [--partition P] --to earliest|latest|N` moves the group's committed
//!   offsets (the node refuses while the group has members) and prints the new ones as
//!   `topic partition offset` lines.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::args::GroupCommand;
use super::ClientError;
use daftka_http::client::{
    Api, GroupDescription, GroupSummary, TopicPartitionOffset, TopicPartitions,
};

/// What a missing value prints as.
const NONE: &str = "-";
/// The header line of `describe`'s member table.
const MEMBERS_HEADER: &str = "MEMBER\tGENERATION\tSESSION_TIMEOUT_MS\tTOPICS\tASSIGNMENT\tREVOKING";
/// The header line of `describe`'s partition table.
const PARTITIONS_HEADER: &str =
    "TOPIC\tPARTITION\tCOMMITTED\tLOG_START\tHIGH_WATERMARK\tLAG\tMEMBER";

pub async fn run(
    api: &Api,
    command: GroupCommand,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    let text = match command {
        GroupCommand::List => {
            let mut groups = api.list_groups().await?;
            groups.sort_by(|a, b| a.group.cmp(&b.group));
            format_list(&groups)
        }
        GroupCommand::Describe { group } => format_describe(&api.describe_group(&group).await?),
        GroupCommand::Reset {
            group,
            topic,
            partition,
            to,
        } => {
            let offsets = api
                .reset_group_offsets(&group, &topic, partition, to.as_json())
                .await?;
            format_offsets(&offsets)
        }
    };
    out.write_all(text.as_bytes()).await?;
    Ok(())
}

/// One line per group: name, state, generation, number of members.
pub fn format_list(groups: &[GroupSummary]) -> String {
    groups
        .iter()
        .map(|g| {
            format!(
                "{}\t{}\t{}\t{}\n",
                g.group, g.state, g.generation, g.members
            )
        })
        .collect()
}

/// The summary, the member table and the partition table of one group (see the module docs).
pub fn format_describe(d: &GroupDescription) -> String {
    let mut text = format!(
        "group\t{}\nstate\t{}\ngeneration\t{}\nassignor\t{}\nmembers\t{}\nlag\t{}\n",
        d.group,
        d.state,
        d.generation,
        d.assignor,
        d.members.len(),
        d.lag
    );
    let mut members: Vec<_> = d.members.iter().collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    if !members.is_empty() {
        text.push('\n');
        text.push_str(MEMBERS_HEADER);
        text.push('\n');
    }
    for m in members {
        let topics = if m.topics.is_empty() {
            NONE.to_owned()
        } else {
            m.topics.join(",")
        };
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            m.member_id,
            m.generation,
            m.session_timeout_ms,
            topics,
            format_assignment(&m.assignment),
            format_assignment(&m.revoking)
        ));
    }
    let mut partitions: Vec<_> = d.partitions.iter().collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    if !partitions.is_empty() {
        text.push('\n');
        text.push_str(PARTITIONS_HEADER);
        text.push('\n');
    }
    for p in partitions {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            p.topic,
            p.partition,
            p.committed
                .map_or_else(|| NONE.to_owned(), |o| o.to_string()),
            p.log_start_offset,
            p.high_watermark,
            p.lag,
            p.member.as_deref().unwrap_or(NONE)
        ));
    }
    text
}

/// `topic:p,p` per topic with partitions, space-separated, in order; `-` for none.
pub fn format_assignment(list: &[TopicPartitions]) -> String {
    let mut topics: Vec<(&str, Vec<u32>)> = list
        .iter()
        .filter(|t| !t.partitions.is_empty())
        .map(|t| {
            let mut partitions = t.partitions.clone();
            partitions.sort_unstable();
            (t.topic.as_str(), partitions)
        })
        .collect();
    if topics.is_empty() {
        return NONE.to_owned();
    }
    topics.sort();
    topics
        .iter()
        .map(|(topic, partitions)| {
            let partitions: Vec<String> = partitions.iter().map(u32::to_string).collect();
            format!("{topic}:{}", partitions.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line per offset, sorted: topic, partition, offset.
pub fn format_offsets(offsets: &[TopicPartitionOffset]) -> String {
    let mut offsets: Vec<_> = offsets.iter().collect();
    offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    offsets
        .iter()
        .map(|o| format!("{}\t{}\t{}\n", o.topic, o.partition, o.offset))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::args::{GroupArgs, StartOffset};
    use crate::client::{ClientCommand, ClientOpts};
    use daftka_http::mock::{MockNode, Reply};
    use serde_json::json;

    fn description() -> GroupDescription {
        serde_json::from_value(json!({
            "group": "g", "state": "rebalancing", "generation": 3, "assignor": "sticky",
            "members": [
                {"member_id": "m-b", "topics": ["orders"], "generation": 3,
                 "assignment": [{"topic": "orders", "partitions": [2]}], "revoking": [],
                 "session_timeout_ms": 10000, "last_heartbeat_ms": 5},
                {"member_id": "m-a", "topics": ["orders", "other"], "generation": 2,
                 "assignment": [{"topic": "orders", "partitions": [1, 0]},
                                {"topic": "other", "partitions": []}],
                 "revoking": [{"topic": "orders", "partitions": [2]}],
                 "session_timeout_ms": 30000, "last_heartbeat_ms": 7}
            ],
            "partitions": [
                {"topic": "orders", "partition": 1, "committed": null, "log_start_offset": 0,
                 "high_watermark": 4, "lag": 4, "member": "m-a"},
                {"topic": "orders", "partition": 0, "committed": 5, "log_start_offset": 2,
                 "high_watermark": 6, "lag": 1, "member": null}
            ],
            "lag": 5
        }))
        .expect("a valid description")
    }

    #[test]
    fn describe_prints_a_summary_then_sorted_member_and_partition_tables() {
        // Members and partitions come out sorted; absent values print as `-`; empty topic lists
        // of an assignment are left out.
        assert_eq!(
            format_describe(&description()),
            "group\tg\nstate\trebalancing\ngeneration\t3\nassignor\tsticky\nmembers\t2\nlag\t5\n\
             \n\
             MEMBER\tGENERATION\tSESSION_TIMEOUT_MS\tTOPICS\tASSIGNMENT\tREVOKING\n\
             m-a\t2\t30000\torders,other\torders:0,1\torders:2\n\
             m-b\t3\t10000\torders\torders:2\t-\n\
             \n\
             TOPIC\tPARTITION\tCOMMITTED\tLOG_START\tHIGH_WATERMARK\tLAG\tMEMBER\n\
             orders\t0\t5\t2\t6\t1\t-\n\
             orders\t1\t-\t0\t4\t4\tm-a\n"
        );
    }

    #[test]
    fn describe_of_an_empty_group_has_no_tables() {
        // A group without members or partitions prints only its summary.
        let mut d = description();
        d.members.clear();
        d.partitions.clear();
        d.state = "empty".into();
        d.lag = 0;
        assert_eq!(
            format_describe(&d),
            "group\tg\nstate\tempty\ngeneration\t3\nassignor\tsticky\nmembers\t0\nlag\t0\n"
        );
    }

    #[test]
    fn assignments_print_topic_colon_partitions() {
        // Topics are sorted, partitions sorted and comma-joined, topics space-separated.
        let list = [
            TopicPartitions {
                topic: "z".into(),
                partitions: vec![3, 1],
            },
            TopicPartitions {
                topic: "a".into(),
                partitions: vec![0],
            },
        ];
        assert_eq!(format_assignment(&list), "a:0 z:1,3");
        assert_eq!(format_assignment(&[]), "-");
    }

    async fn group(node: &MockNode, command: GroupCommand) -> Result<String, ClientError> {
        let mut out = Vec::new();
        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Group(GroupArgs { command }),
            &b""[..],
            &mut out,
        )
        .await?;
        Ok(String::from_utf8(out).expect("utf8 output"))
    }

    #[tokio::test]
    async fn group_commands_use_the_documented_routes() {
        // list, describe and reset send the documented requests and print the documented lines.
        let node = MockNode::start(|req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/groups") => Reply::json(
                200,
                json!({"groups": [
                    {"group": "z", "state": "empty", "generation": 0, "members": 0},
                    {"group": "g", "state": "stable", "generation": 4, "members": 2}
                ]}),
            ),
            ("GET", "/v1/groups/g") => Reply::json(
                200,
                json!({"group": "g", "state": "empty", "generation": 4, "assignor": "range",
                       "members": [], "partitions": [
                           {"topic": "t", "partition": 0, "committed": 3, "log_start_offset": 0,
                            "high_watermark": 3, "lag": 0, "member": null}],
                       "lag": 0}),
            ),
            ("POST", "/v1/groups/g/offsets/reset") => {
                let body = req.json();
                let offset = match &body["to"] {
                    serde_json::Value::Number(n) => n.as_u64().expect("an offset"),
                    to if to == "earliest" => 0,
                    other => panic!("unexpected to: {other}"),
                };
                let partitions: Vec<u64> = match body["partition"].as_u64() {
                    Some(p) => vec![p],
                    None => vec![1, 0],
                };
                let offsets: Vec<_> = partitions
                    .iter()
                    .map(|p| json!({"topic": body["topic"], "partition": p, "offset": offset}))
                    .collect();
                Reply::json(200, json!({ "offsets": offsets }))
            }
            _ => Reply::error(404, "unknown_group", "no such group"),
        })
        .await;

        assert_eq!(
            group(&node, GroupCommand::List).await.expect("list"),
            "g\tstable\t4\t2\nz\tempty\t0\t0\n"
        );
        assert_eq!(
            group(&node, GroupCommand::Describe { group: "g".into() })
                .await
                .expect("describe"),
            "group\tg\nstate\tempty\ngeneration\t4\nassignor\trange\nmembers\t0\nlag\t0\n\
             \n\
             TOPIC\tPARTITION\tCOMMITTED\tLOG_START\tHIGH_WATERMARK\tLAG\tMEMBER\n\
             t\t0\t3\t0\t3\t0\t-\n"
        );
        let reset = |partition, to| GroupCommand::Reset {
            group: "g".into(),
            topic: "t".into(),
            partition,
            to,
        };
        assert_eq!(
            group(&node, reset(None, StartOffset::Earliest))
                .await
                .expect("reset"),
            "t\t0\t0\nt\t1\t0\n"
        );
        assert_eq!(
            group(&node, reset(Some(1), StartOffset::At(7)))
                .await
                .expect("reset"),
            "t\t1\t7\n"
        );
        let bodies: Vec<serde_json::Value> = node
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/groups/g/offsets/reset")
            .map(|r| r.json())
            .collect();
        assert_eq!(
            bodies,
            vec![
                json!({"topic": "t", "to": "earliest"}),
                json!({"topic": "t", "partition": 1, "to": 7})
            ]
        );
        let err = group(&node, GroupCommand::Describe { group: "x".into() })
            .await
            .expect_err("unknown group");
        assert_eq!(err.to_string(), "unknown_group: no such group");
        assert_eq!(err.exit_code(), 1);
    }
}
