//! A produce whose caller's deadline has passed is never proposed: the replica refuses it with
//! `unavailable` and stores nothing, whether it comes from this node's Router (`ServerMsg`) or
//! from another node's through the Peer actor (`PeerMsg`, the deadline travelling as wall-clock
//! time). Behind a network partition a request can arrive long after its caller answered
//! `timeout` and the producer sent its records again: carried out then, it would be stored after
//! records the producer sent later.

mod support;

use std::time::{Duration, Instant};

use daftka_node::cluster::peer::{wall_ms, PeerMsg};
use daftka_node::partitions::server::ServerMsg;
use daftka_protocol::wire::Framed;
use daftka_protocol::{
    names, rpc, ErrorCode, FetchOffset, FetchRequest, GroupId, Record, TopicSpec, Wire,
};
use support::TestNode;

const WAIT: Duration = Duration::from_secs(5);

fn records(tag: &str) -> Vec<Record> {
    (0..3)
        .map(|i| Record::from_value(format!("{tag}{i}")))
        .collect()
}

async fn stored_values(node: &TestNode) -> Vec<String> {
    let fetched = node
        .node
        .client
        .fetch(FetchRequest {
            topic: "late".into(),
            partition: 0,
            offset: FetchOffset::At(0),
            max_records: 100,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        })
        .await
        .expect("fetch");
    fetched
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.value).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_past_its_deadline_is_refused_and_not_stored() {
    let node = TestNode::start("late").await;
    node.node
        .client
        .create_topic(TopicSpec {
            name: "late".into(),
            partitions: Some(1),
            replication_factor: None,
        })
        .await
        .expect("create");
    // The first topic of a fresh node gets the first partition group.
    let server = names::replica_server(&node.node.name, GroupId(1));
    assert!(ractor::registry::where_is(server.clone()).is_some());
    let peer = ractor::registry::where_is(names::peer(&node.node.name))
        .expect("the Peer actor")
        .into();

    // Through the Server, as this node's Router calls it.
    let late = Instant::now() - Duration::from_millis(1);
    let refused = rpc::call_named(
        &server,
        |reply| ServerMsg::Produce {
            records: records("late-local-"),
            deadline: late,
            reply,
        },
        WAIT,
        "the replica",
    )
    .await
    .expect_err("a produce past its deadline is refused");
    assert_eq!(refused.code, ErrorCode::Unavailable, "{refused}");

    // Through the Peer actor, as another node's Router calls it.
    let late_ms = wall_ms(Instant::now()) - 1;
    let refused = rpc::call(
        &peer,
        |reply| PeerMsg::Produce {
            target: Wire::ok((GroupId(1), late_ms)),
            records: Framed::ok(records("late-remote-")),
            reply,
        },
        WAIT,
        "the peer",
    )
    .await
    .expect_err("a forwarded produce past its deadline is refused");
    assert_eq!(refused.code, ErrorCode::Unavailable, "{refused}");

    // The same calls within their deadlines are stored, in order, and nothing else is.
    let base = rpc::call_named(
        &server,
        |reply| ServerMsg::Produce {
            records: records("local-"),
            deadline: Instant::now() + WAIT,
            reply,
        },
        WAIT,
        "the replica",
    )
    .await
    .expect("a produce within its deadline");
    assert_eq!(base, 0);
    let base = rpc::call(
        &peer,
        |reply| PeerMsg::Produce {
            target: Wire::ok((GroupId(1), wall_ms(Instant::now() + WAIT))),
            records: Framed::ok(records("remote-")),
            reply,
        },
        WAIT,
        "the peer",
    )
    .await
    .expect("a forwarded produce within its deadline");
    assert_eq!(base, 3);
    assert_eq!(
        stored_values(&node).await,
        ["local-0", "local-1", "local-2", "remote-0", "remote-1", "remote-2"]
    );
}
