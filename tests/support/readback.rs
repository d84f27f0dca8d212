//! What the fault tests read back once a cluster is healed: a topic's leaders as a node
//! describes them, each partition's high watermark in a node's metrics, every record of a topic
//! through a node's HTTP API, and the committed log straight from a stopped node's fjall store.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use daftka_storage::{Store, StoreOptions};
use serde_json::Value;

use super::eventually;
use super::history::{History, Report, StoredLog};

/// Partition -> leader node name, as the node at `url` describes `topic`.
pub async fn leaders(http: &reqwest::Client, url: &str, topic: &str) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    if let Ok(r) = http.get(format!("{url}/v1/topics/{topic}")).send().await {
        if let Ok(v) = r.json::<Value>().await {
            for p in v["partitions"].as_array().into_iter().flatten() {
                if let (Some(i), Some(l)) = (p["partition"].as_u64(), p["leader"].as_str()) {
                    out.insert(i as u32, l.to_string());
                }
            }
        }
    }
    out
}

/// The high watermark of each partition of `topic` in the metrics served at `metrics_url`.
pub async fn metric_hwms(
    http: &reqwest::Client,
    metrics_url: &str,
    topic: &str,
) -> Option<BTreeMap<u32, u64>> {
    let text = super::metrics_text(http, metrics_url).await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("daftka_high_watermark{") else {
            continue;
        };
        if !rest.contains(&format!("topic=\"{topic}\"")) {
            continue;
        }
        let p = rest
            .split("partition=\"")
            .nth(1)?
            .split('"')
            .next()?
            .parse()
            .ok()?;
        let v = rest.rsplit(' ').next()?.parse().ok()?;
        out.insert(p, v);
    }
    Some(out)
}

/// Reads every partition of `topic` through `url` from offset 0 to its high watermark.
pub async fn read_back(
    http: &reqwest::Client,
    url: &str,
    topic: &str,
    partitions: u32,
) -> StoredLog {
    let mut stored = StoredLog::new();
    for p in 0..partitions {
        let mut offset = 0u64;
        let mut recs = Vec::new();
        loop {
            let u = format!(
                "{url}/v1/topics/{topic}/partitions/{p}/records?offset={offset}&max_records=5000"
            );
            let v: Value = eventually("a read-back fetch", Duration::from_secs(30), async || {
                let r = http.get(&u).send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                r.json().await.ok()
            })
            .await;
            let batch = v["records"].as_array().expect("records").clone();
            for r in &batch {
                recs.push((
                    r["offset"].as_u64().expect("offset"),
                    r["value"].as_str().expect("value").to_string(),
                ));
            }
            offset = v["next_offset"].as_u64().expect("next_offset");
            if batch.is_empty() || offset >= v["high_watermark"].as_u64().expect("hwm") {
                break;
            }
        }
        stored.insert(p, recs);
    }
    stored
}

/// Every partition's committed records (offset, value) as the store in node data dir `dir` holds
/// them, by partition group. The node must be stopped.
pub fn store_log(dir: &Path) -> BTreeMap<u64, Vec<(u64, Vec<u8>)>> {
    let store = Store::open(&dir.join("fjall"), StoreOptions::default()).expect("open the store");
    let mut out = BTreeMap::new();
    for g in store.groups().expect("groups") {
        if g.0 == 0 {
            continue;
        }
        let next = store
            .raft_storage(g)
            .expect("raft storage")
            .apply_state()
            .next_offset;
        let records = store
            .partition_reader(g)
            .read(0, next, u32::MAX, u32::MAX)
            .expect("read the partition");
        out.insert(
            g.0,
            records
                .into_iter()
                .map(|r| (r.offset, r.record.value.to_vec()))
                .collect(),
        );
    }
    out
}

/// Reads `topic` back through `url` and checks it against what the producers saw; panics with
/// every violation.
pub async fn check_history(
    http: &reqwest::Client,
    url: &str,
    topic: &str,
    partitions: u32,
    history: &History,
) -> Report {
    let stored = read_back(http, url, topic, partitions).await;
    let report = history.check(&stored);
    assert!(
        report.violations.is_empty(),
        "history violations:\n{}",
        report.violations.join("\n")
    );
    report
}

/// The end of a test of moves on processes: waits until every node is ready and nothing moves,
/// stops the producers and checks their history (0 lost, reordered, unexpected), waits until
/// every node holding a partition reports the same high watermark (three holders at least),
/// stops the nodes and checks that every holder's store holds the same log.
pub async fn settle_moves(
    http: &reqwest::Client,
    nodes: &mut [super::procs::Slot],
    producers: super::produce::Producers,
    (topic, partitions): (&str, u32),
) -> Report {
    let wait = std::time::Duration::from_secs(120);
    for n in nodes.iter() {
        super::procs::wait_ready(http, &n.url()).await;
    }
    let first = nodes[0].url();
    super::eventually("no move in flight", wait, async || {
        let v = super::get_json(http, &format!("{first}/v1/reassignments")).await?;
        v["reassignments"].as_array()?.is_empty().then_some(())
    })
    .await;
    let shared = producers.finish().await;
    let report = check_history(http, &first, topic, partitions, &shared.history).await;
    assert!(report.acked > 0);
    let metrics: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://127.0.0.1:{}", n.metrics))
        .collect();
    super::eventually("the holders of each partition to agree", wait, async || {
        let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for m in &metrics {
            for (p, h) in metric_hwms(http, m, topic).await? {
                per_partition.entry(p).or_default().push(h);
            }
        }
        (per_partition.len() == partitions as usize
            && per_partition
                .values()
                .all(|h| h.len() >= 3 && h.iter().all(|x| *x == h[0])))
        .then_some(())
    })
    .await;
    super::procs::stop_all(nodes);
    let stores: Vec<(&str, &Path)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.dir.as_path()))
        .collect();
    assert_holders_agree(&stores, partitions, 3, report.stored);
    report
}

/// Every stopped node's store (`(name, data dir)`) holds the same committed log of `partitions`
/// partitions, `stored` records in all.
pub fn assert_replicas_agree(nodes: &[(&str, &Path)], partitions: u32, stored: usize) {
    let logs: Vec<_> = nodes.iter().map(|(_, dir)| store_log(dir)).collect();
    assert_eq!(logs[0].len(), partitions as usize);
    for (i, l) in logs.iter().enumerate().skip(1) {
        assert!(
            *l == logs[0],
            "replicas of node {} and node {} differ",
            nodes[0].0,
            nodes[i].0
        );
    }
    let total: usize = logs[0].values().map(Vec::len).sum();
    assert_eq!(total, stored, "the stores hold what the fetches returned");
}

/// Every stopped node's store (`(name, data dir)`) agrees on every partition it holds: all the
/// nodes holding a partition's group hold the same log, each group of `topic`'s `partitions` is
/// held by at least `min_copies` nodes, and the logs hold `stored` records in all.
pub fn assert_holders_agree(
    nodes: &[(&str, &Path)],
    partitions: u32,
    min_copies: usize,
    stored: usize,
) {
    type Log = Vec<(u64, Vec<u8>)>;
    let mut by_group: BTreeMap<u64, Vec<(&str, Log)>> = BTreeMap::new();
    for (name, dir) in nodes {
        for (g, log) in store_log(dir) {
            by_group.entry(g).or_default().push((name, log));
        }
    }
    assert_eq!(
        by_group.len(),
        partitions as usize,
        "groups held: {:?}",
        by_group.keys()
    );
    let mut total = 0;
    for (g, holders) in &by_group {
        assert!(
            holders.len() >= min_copies,
            "group {g} is held by {} node(s)",
            holders.len()
        );
        for (name, log) in &holders[1..] {
            assert!(
                *log == holders[0].1,
                "group {g}: the replicas of {} and {name} differ",
                holders[0].0
            );
        }
        total += holders[0].1.len();
    }
    assert_eq!(total, stored, "the stores hold what the fetches returned");
}
