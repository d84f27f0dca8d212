//! Drain under load on four real processes on loopback: while producers write through every node
//! over HTTP and a two-member consumer group reads the topic over HTTP, node d is drained
//! (`POST /v1/cluster/nodes/d/drain`). It ends `drained` with no replica and no leadership, the
//! producers never stop being served, the history checker finds 0 lost, 0
//! duplicated-without-cause and 0 reordered records, the group consumed every acknowledged
//! record, every replica on a, b and c holds the same committed log (read from each stopped
//! node's fjall store), and d's store holds no partition any more.

mod support;

use std::path::Path;
use std::time::Duration;

use std::sync::atomic::Ordering;

use daftka_http::client::Api;
use serde_json::{json, Value};
use support::group::{member, GroupReads};
use support::procs::{create_topic, http_client, slots_n, start_all, stop_all, Slot};
use support::produce::Producers;
use support::readback::{assert_replicas_agree, check_history, metric_hwms, store_log};
use support::{eventually, metric_at};

const TOPIC: &str = "drained";
const PARTITIONS: u32 = 4;
const BATCH: u64 = 10;
const WAIT: Duration = Duration::from_secs(90);

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drains_under_load_and_nothing_is_lost() {
    let root = tempfile::tempdir().expect("temp dir");
    let http = http_client();
    let mut nodes = slots_n(root.path(), "drain-cookie", 4);
    start_all(&http, &mut nodes).await;
    let urls: Vec<String> = nodes.iter().map(Slot::url).collect();
    create_topic(&http, &urls[1], TOPIC, PARTITIONS).await;

    let producers = Producers::start(4, &urls, (TOPIC, PARTITIONS, BATCH));
    let reads = GroupReads::default();
    let members: Vec<_> = urls[..2]
        .iter()
        .map(|u| {
            let api = Api::new(u).expect("api");
            member(api, "drain-readers", TOPIC, reads.clone())
        })
        .collect();
    let acked = || producers.acked();
    eventually("records acknowledged before the drain", WAIT, async || {
        (acked() >= 400).then_some(())
    })
    .await;

    let drain = http
        .post(format!("{}/v1/cluster/nodes/d/drain", urls[0]))
        .send()
        .await
        .expect("drain");
    assert_eq!(drain.status().as_u16(), 202);
    let d = eventually("d to be drained", WAIT, async || {
        let v = get(&http, &format!("{}/v1/cluster", urls[2])).await?;
        v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "d" && n["state"] == "drained")
            .cloned()
    })
    .await;
    assert_eq!(
        (&d["replicas"], &d["leaders"]),
        (&json!(0), &json!(0)),
        "{d}"
    );
    // The producers are still served after the drain.
    let before = acked();
    eventually("acknowledgements after the drain", WAIT, async || {
        (acked() >= before + 200).then_some(())
    })
    .await;
    let shared = producers.finish().await;
    let report = check_history(&http, &urls[0], TOPIC, PARTITIONS, &shared.history).await;
    eventually(
        "the group to consume every acknowledged record",
        WAIT,
        async || reads.has_all(shared.history.acked.keys()).then_some(()),
    )
    .await;
    reads.stop.store(true, Ordering::Relaxed);
    let mut owned = std::collections::BTreeSet::new();
    for m in members {
        owned.extend(m.await.expect("member"));
    }
    assert_eq!(
        owned.len(),
        PARTITIONS as usize,
        "every partition had an owner"
    );
    println!(
        "drain under load: {} acknowledged of {} sent, {} stored, {} stored with unknown outcome",
        report.acked,
        shared.history.sent.len(),
        report.stored,
        report.unknown_stored
    );

    // a, b and c hold the same log; d holds nothing of the topic.
    let metrics: Vec<String> = nodes[..3]
        .iter()
        .map(|n| format!("http://127.0.0.1:{}", n.metrics))
        .collect();
    eventually("replicas to catch up", WAIT, async || {
        let mut all = Vec::new();
        for m in &metrics {
            all.push(metric_hwms(&http, m, TOPIC).await?);
        }
        (all.iter()
            .all(|h| h.len() == PARTITIONS as usize && *h == all[0]))
        .then_some(())
    })
    .await;
    // d's own Placement has deleted the replicas it no longer holds once its gauge says 0
    // (published after that reconcile's deletions).
    let d_metrics = format!("http://127.0.0.1:{}", nodes[3].metrics);
    eventually("d to see it holds no replica", WAIT, async || {
        let v = metric_at(&http, &d_metrics, "daftka_node_replicas{node=\"d\"} ").await?;
        (v == 0.0).then_some(())
    })
    .await;
    stop_all(&mut nodes);
    let stores: Vec<(&str, &Path)> = nodes[..3]
        .iter()
        .map(|n| (n.name.as_str(), n.dir.as_path()))
        .collect();
    assert_replicas_agree(&stores, PARTITIONS, report.stored);
    assert!(
        store_log(&nodes[3].dir).is_empty(),
        "the drained node's store holds no partition"
    );
}
