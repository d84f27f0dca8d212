//! The node's long-lived tasks are supervised services: killed, each is started again by the
//! Root, the restart is counted like any child's, and the work goes on (the replicas'
//! clock counts new replicas again; the metrics endpoint answers again).

mod support;

use std::time::Duration;

use daftka_protocol::{names, TopicSpec};
use support::{eventually, metric, TestNode};

const WAIT: Duration = Duration::from_secs(20);

/// Kills the actor registered as `name` and waits until a new one is registered in its place.
async fn kill_and_wait_restart(name: &str) {
    let old = ractor::registry::where_is(name).expect("the service runs");
    let old_id = old.get_id();
    old.kill();
    eventually("the service to start again", WAIT, async || {
        ractor::registry::where_is(name)
            .filter(|c| c.get_id() != old_id)
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_services_are_restarted_counted_and_work_again() {
    let t = TestNode::start("svc").await;
    let node = &t.node;
    let topic = |name: &str, partitions| TopicSpec {
        name: name.into(),
        partitions: Some(partitions),
        replication_factor: None,
    };
    node.client
        .create_topic(topic("one", 2))
        .await
        .expect("create");
    eventually("the ticker to count 2 quiet replicas", WAIT, async || {
        (metric(node, "daftka_raft_replicas{state=\"quiet\"} ").await? == 2.0).then_some(())
    })
    .await;

    kill_and_wait_restart(&names::service(&node.name, "ticker")).await;
    node.client
        .create_topic(topic("two", 3))
        .await
        .expect("create");
    eventually(
        "the new ticker to count 5 quiet replicas",
        WAIT,
        async || {
            (metric(node, "daftka_raft_replicas{state=\"quiet\"} ").await? == 5.0).then_some(())
        },
    )
    .await;

    kill_and_wait_restart(&names::service(&node.name, "metrics")).await;
    for child in ["ticker", "metrics"] {
        let line = format!("daftka_supervisor_restarts_total{{child=\"{child}\"}} ");
        eventually("the restart to be counted", WAIT, async || {
            (metric(node, &line).await? == 1.0).then_some(())
        })
        .await;
    }
}
