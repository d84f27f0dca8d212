//! Partition tolerance on real processes: three `daftka` processes, each in its own network
//! namespace on a bridge, a topic of 3 partitions RF 3, and one producer through each node sending
//! 20 keyed records per request. One node at a time is cut off from the other two with nftables
//! (its clients still reach it): a follower, the leader of the most partitions, the metadata
//! leader, and then the leader of the most partitions with a one-sided cut (it can send but not
//! receive). For each cut:
//! - the producers through the two other nodes keep getting acknowledgements, with no more than
//!   a failover's worth of failed requests each;
//! - the producer through the cut-off node gets fast answers (never a 5 s timeout), and once the
//!   node knows it is cut off, `503 unavailable`;
//! - after the heal, every node serves produce and fetch again within a few seconds.
//!
//! At the end the history checker must find 0 lost, 0 changed and no offset acknowledged twice,
//! and every replica's store must hold the same log. The figures of each cut are printed
//! (acknowledged records per second through the majority, time from the cut to the first
//! acknowledgement through the majority, time from the heal to full service).
//! `PARTITION_CUT_SECS` sets how long each cut lasts (default 8; docs/BENCHMARKS.md uses 20), and
//! `DAFTKA_BIN` which binary runs the nodes (default: this build's).
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them); without them the test says so
//! and passes only outside CI.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use support::history::History;
use support::netns::{Cut, Net};
use support::procs::create_topic;
use support::readback::{assert_replicas_agree, check_history, leaders, metric_hwms};
use support::{eventually, get_json, metric_at};

const TOPIC: &str = "cut";
const PARTITIONS: u32 = 3;
const BATCH: usize = 20;
const KEYS: u32 = 60;
const HTTP_PORT: u16 = 4001;
const METRICS_PORT: u16 = 9568;
const CLUSTER_PORT: u16 = 7000;

/// After this long into a cut, the cut-off node must answer `503 unavailable` only.
const MINORITY_KNOWS: Duration = Duration::from_millis(2500);
/// Any answer of the cut-off node must come faster than this (the request deadline is 5 s).
const MINORITY_ANSWER_MAX: Duration = Duration::from_secs(3);
/// Most failed requests of one producer through the majority, per cut: a failover's worth.
const MAJORITY_FAILURES_MAX: usize = 3;
/// Longest time without an acknowledgement for a producer through the majority, counted from
/// the cut plus this settling time.
const MAJORITY_SETTLE: Duration = Duration::from_secs(3);
const MAJORITY_GAP_MAX: Duration = Duration::from_secs(3);
/// From the heal until every node serves every request.
const HEAL_MAX: Duration = Duration::from_secs(10);

/// One produce request as the producer saw it.
#[derive(Debug, Clone)]
struct Sent {
    producer: usize,
    start: Instant,
    end: Instant,
    /// HTTP status; `None` for a connection error.
    status: Option<u16>,
    code: Option<String>,
}

#[derive(Default)]
struct Shared {
    history: History,
    log: Vec<Sent>,
}

/// One node process in its namespace, with its log file.
struct Proc {
    name: String,
    dir: PathBuf,
    log: PathBuf,
    ip: String,
    child: Option<Child>,
}

impl Proc {
    fn url(&self) -> String {
        format!("http://{}:{HTTP_PORT}", self.ip)
    }
    fn metrics_url(&self) -> String {
        format!("http://{}:{METRICS_PORT}", self.ip)
    }
    fn kill(&mut self, signal: &str) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

/// Kills every node (by pid) and, if the test failed, prints the end of each node's log.
struct Procs(Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            p.kill("-9");
        }
        if std::thread::panicking() {
            // Keep the whole logs past the temp dir's removal.
            let keep =
                std::env::temp_dir().join(format!("daftka-partition-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&keep);
            for p in &self.0 {
                let _ = std::fs::copy(&p.log, keep.join(format!("{}.log", p.name)));
            }
            eprintln!("node logs kept in {}", keep.display());
            for p in &self.0 {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                eprintln!(
                    "--- last log lines of node {} ---\n{}",
                    p.name,
                    tail.join("\n")
                );
            }
        }
    }
}

fn start(net: &Net, i: usize, root: &Path) -> Proc {
    let names = ["a", "b", "c"];
    let name = names[i].to_string();
    let dir = root.join(&name);
    let log = root.join(format!("{name}.log"));
    let ip = net.hosts[i].ip.clone();
    let seeds: Vec<String> = net.hosts[..i]
        .iter()
        .map(|h| format!("{}:{CLUSTER_PORT}", h.ip))
        .collect();
    // `DAFTKA_BIN` runs the cuts against another build (the figures before a change).
    let bin = std::env::var("DAFTKA_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_daftka").into());
    let mut cmd = net.command(i, &bin);
    cmd.args(["--node-name", &name])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--http-addr", &format!("{ip}:{HTTP_PORT}")])
        .args(["--metrics-addr", &format!("{ip}:{METRICS_PORT}")])
        .args(["--cluster-addr", &format!("{ip}:{CLUSTER_PORT}")])
        .args(["--cookie", "partition-cookie"]);
    if !seeds.is_empty() {
        cmd.args(["--seeds", &seeds.join(",")]);
    }
    let file = std::fs::File::create(&log).expect("log file");
    let child = cmd
        .env("RUST_LOG", "warn,daftka_node=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn daftka in its namespace");
    Proc {
        name,
        dir,
        log,
        ip,
        child: Some(child),
    }
}

/// Sends 20 keyed records per request through `url` until `stop`, recording every request.
async fn producer(id: usize, url: String, shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .expect("http client");
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let values: Vec<String> = (0..BATCH)
            .map(|k| format!("p{id}-{:08}", seq + k as u64))
            .collect();
        seq += BATCH as u64;
        let keys: Vec<String> = {
            let mut rng = rand::thread_rng();
            (0..BATCH)
                .map(|_| format!("k{}", rng.gen_range(0..KEYS)))
                .collect()
        };
        shared
            .lock()
            .expect("lock")
            .history
            .sent
            .extend(values.iter().cloned());
        let body = json!({
            "records": keys.iter().zip(&values).map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()
        });
        let start = Instant::now();
        let outcome = http
            .post(format!("{url}/v1/topics/{TOPIC}/records"))
            .json(&body)
            .send()
            .await;
        let (status, text) = match outcome {
            Ok(r) => (
                Some(r.status().as_u16()),
                r.text().await.unwrap_or_default(),
            ),
            Err(e) => (None, e.to_string()),
        };
        let answer = serde_json::from_str::<Value>(&text).ok();
        let end = Instant::now();
        let code = answer
            .as_ref()
            .and_then(|a| a["error"]["code"].as_str())
            .map(str::to_string);
        let failed = {
            let mut s = shared.lock().expect("lock");
            match status {
                Some(200..=299) => {
                    let offsets = answer
                        .as_ref()
                        .and_then(|a| a["offsets"].as_array())
                        .expect("offsets");
                    for (value, pos) in values.iter().zip(offsets) {
                        let p = pos["partition"].as_u64().expect("partition") as u32;
                        let o = pos["offset"].as_u64().expect("offset");
                        s.history.acked.insert(value.clone(), (p, o));
                    }
                }
                // Nothing was done.
                Some(503) => {}
                Some(c) if c < 500 => panic!("producer {id} got {c} from {url}: {text}"),
                // 504, 500 or a lost connection: the outcome is unknown.
                _ => s.history.unknown.extend(values.iter().cloned()),
            }
            s.log.push(Sent {
                producer: id,
                start,
                end,
                status,
                code,
            });
            !matches!(status, Some(200..=299))
        };
        if failed {
            // A client's pause before it tries again, so a fast refusal does not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the nodes said of themselves and of the cut-off node.
#[derive(Debug, Default)]
struct Observed {
    /// Taken during the cut (else after the heal).
    during: bool,
    /// The cut-off node's `/readyz` status and body.
    victim_ready: (u16, String),
    /// The other nodes' `/readyz` statuses.
    others_ready: Vec<u16>,
    /// `daftka_minority` on the cut-off node.
    victim_minority: Option<f64>,
    /// `daftka_peer_up{peer=<cut-off node>}` on the other nodes.
    others_see_victim_up: Vec<Option<f64>>,
}

async fn observe(http: &reqwest::Client, procs: &[Proc], victim: usize) -> Observed {
    let ready = async |p: &Proc| match http.get(format!("{}/readyz", p.url())).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    };
    let metric = async |p: &Proc, line: &str| metric_at(http, &p.metrics_url(), line).await;
    let mut o = Observed {
        victim_ready: ready(&procs[victim]).await,
        victim_minority: metric(&procs[victim], "daftka_minority ").await,
        ..Observed::default()
    };
    let up = format!("daftka_peer_up{{peer=\"{}\"}} ", procs[victim].name);
    for (i, p) in procs.iter().enumerate() {
        if i != victim {
            o.others_ready.push(ready(p).await.0);
            o.others_see_victim_up.push(metric(p, &up).await);
        }
    }
    o
}

impl Observed {
    fn violations(&self, n: &str) -> Vec<String> {
        let mut v = Vec::new();
        let (minority, up, ready) = if self.during {
            (1.0, 0.0, 503)
        } else {
            (0.0, 1.0, 200)
        };
        let when = if self.during { "during" } else { "after" };
        if self.victim_ready.0 != ready
            || (self.during && !self.victim_ready.1.contains("degraded"))
        {
            v.push(format!(
                "{n}: the cut-off node's /readyz {when} the cut: {:?}",
                self.victim_ready
            ));
        }
        if self.others_ready.iter().any(|s| *s != 200) {
            v.push(format!(
                "{n}: the other nodes' /readyz {when} the cut: {:?}",
                self.others_ready
            ));
        }
        if self.victim_minority != Some(minority) {
            v.push(format!(
                "{n}: daftka_minority of the cut-off node {when} the cut: {:?}",
                self.victim_minority
            ));
        }
        if self.others_see_victim_up.iter().any(|u| *u != Some(up)) {
            v.push(format!(
                "{n}: daftka_peer_up of the cut-off node on the others {when} the cut: {:?}",
                self.others_see_victim_up
            ));
        }
        v
    }
}

/// One cut and what it showed.
struct Figures {
    seen: Observed,
    whole: Observed,
    name: &'static str,
    victim: String,
    how: Cut,
    cut_for: Duration,
    majority_records_per_s: f64,
    /// The same, in the seconds before the cut.
    majority_records_per_s_before: f64,
    first_majority_ack: Option<Duration>,
    heal_to_full: Duration,
    /// From the heal until every node sees every other up and none is degraded.
    heal_to_whole: Duration,
    majority_failures: Vec<usize>,
    majority_gap: Duration,
    minority_codes: BTreeMap<String, usize>,
    minority_slowest: Duration,
    minority_late_non_503: usize,
}

impl Figures {
    fn violations(&self) -> Vec<String> {
        let n = self.name;
        let mut v = self.seen.violations(n);
        v.extend(self.whole.violations(n));
        match self.first_majority_ack {
            None => v.push(format!(
                "{n}: no acknowledgement through the majority during the cut"
            )),
            Some(t) if t > Duration::from_secs(5) => v.push(format!(
                "{n}: first acknowledgement through the majority {t:?} after the cut"
            )),
            Some(_) => {}
        }
        if self
            .majority_failures
            .iter()
            .any(|f| *f > MAJORITY_FAILURES_MAX)
        {
            v.push(format!(
                "{n}: failed requests per majority producer {:?} (at most {MAJORITY_FAILURES_MAX})",
                self.majority_failures
            ));
        }
        if self.majority_gap > MAJORITY_GAP_MAX {
            v.push(format!(
                "{n}: a majority producer went {:?} without an acknowledgement",
                self.majority_gap
            ));
        }
        if self.minority_slowest >= MINORITY_ANSWER_MAX {
            v.push(format!(
                "{n}: the cut-off node took {:?} to answer",
                self.minority_slowest
            ));
        }
        if self.minority_late_non_503 > 0 {
            v.push(format!(
                "{n}: the cut-off node answered {} requests with other than 503 after {MINORITY_KNOWS:?} ({:?})",
                self.minority_late_non_503, self.minority_codes
            ));
        }
        if self.heal_to_full > HEAL_MAX || self.heal_to_whole > HEAL_MAX {
            v.push(format!(
                "{n}: every node served again {:?} and the cluster was whole {:?} after the heal",
                self.heal_to_full, self.heal_to_whole
            ));
        }
        v
    }
}

/// The node leading the most partitions of the topic, as `witness` describes it.
async fn leader_of_most(http: &reqwest::Client, witness: &str, names: &[String]) -> usize {
    let led = leaders(http, witness, TOPIC).await;
    (0..names.len())
        .max_by_key(|i| led.values().filter(|l| **l == names[*i]).count())
        .expect("nodes")
}

async fn metadata_leader(http: &reqwest::Client, witness: &str) -> Option<String> {
    let v = get_json(http, &format!("{witness}/v1/cluster")).await?;
    v["metadata_leader"].as_str().map(str::to_string)
}

/// Every node serves: a fetch of every partition answers 200 through it, and the producer
/// through it got an acknowledgement for a request sent after `since`.
async fn all_serve(
    http: &reqwest::Client,
    urls: &[String],
    shared: &Mutex<Shared>,
    since: Instant,
) -> bool {
    for (i, url) in urls.iter().enumerate() {
        let acked =
            shared.lock().expect("lock").log.iter().any(|s| {
                s.producer == i && s.start >= since && matches!(s.status, Some(200..=299))
            });
        if !acked {
            return false;
        }
        for p in 0..PARTITIONS {
            let u =
                format!("{url}/v1/topics/{TOPIC}/partitions/{p}/records?offset=0&max_records=1");
            match http.get(&u).send().await {
                Ok(r) if r.status().is_success() => {}
                _ => return false,
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_majority_serves_through_a_network_partition() {
    if let Err(why) = Net::tooling() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the partition test: {why}"
        );
        eprintln!("SKIPPED the partition test: {why} (CI installs them)");
        return;
    }
    let cut_for = Duration::from_secs(
        std::env::var("PARTITION_CUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(8),
    );
    let net = Net::create(3);
    let root = tempfile::tempdir().expect("temp dir");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .expect("http client");
    let mut procs = Procs(Vec::new());
    for i in 0..3 {
        procs.0.push(start(&net, i, root.path()));
        let url = procs.0[i].url();
        support::wait_ok(&http, &format!("{url}/readyz"), Duration::from_secs(60)).await;
    }
    let urls: Vec<String> = procs.0.iter().map(Proc::url).collect();
    let names: Vec<String> = procs.0.iter().map(|p| p.name.clone()).collect();
    eventually(
        "every node to see the others up",
        Duration::from_secs(30),
        async || {
            for url in &urls {
                let v = get_json(&http, &format!("{url}/v1/cluster")).await?;
                let nodes = v["nodes"].as_array()?;
                (nodes.len() == 3 && nodes.iter().all(|n| n["status"] == "up")).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    create_topic(&http, &urls[0], TOPIC, PARTITIONS).await;

    let shared = Arc::new(Mutex::new(Shared::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = urls
        .iter()
        .enumerate()
        .map(|(id, url)| tokio::spawn(producer(id, url.clone(), shared.clone(), stop.clone())))
        .collect();

    let mut figures = Vec::new();
    let plan: [(&str, Cut); 4] = [
        ("follower", Cut::Both),
        ("leader of the most partitions", Cut::Both),
        ("metadata leader", Cut::Both),
        ("one-sided, leader of the most partitions", Cut::Inbound),
    ];
    for (name, how) in plan {
        // Steady state first: every producer acknowledged since this point.
        let since = Instant::now();
        eventually(
            "every node to serve before the cut",
            Duration::from_secs(60),
            async || all_serve(&http, &urls, &shared, since).await.then_some(()),
        )
        .await;
        // A node that was cut off learns the metadata leader at its first heartbeat after the heal.
        let meta = eventually("a metadata leader", Duration::from_secs(30), async || {
            metadata_leader(&http, &urls[0]).await
        })
        .await;
        let victim = match name {
            "follower" => {
                let led = leaders(&http, &urls[0], TOPIC).await;
                (0..3)
                    .filter(|i| names[*i] != meta)
                    .min_by_key(|i| led.values().filter(|l| **l == names[*i]).count())
                    .expect("a node that is not the metadata leader")
            }
            "metadata leader" => names.iter().position(|n| *n == meta).expect("known leader"),
            _ => leader_of_most(&http, &urls[0], &names).await,
        };
        let led = leaders(&http, &urls[0], TOPIC).await;
        println!(
            "cut {name}: node {} ({how:?}) for {cut_for:?}; leaders {led:?}, metadata leader {meta}",
            names[victim]
        );
        net.cut(victim, how);
        // From here on the rules are in force.
        let t_cut = Instant::now();
        tokio::time::sleep(cut_for / 2).await;
        // Mid-cut: the cut-off node says it is degraded and in a minority; the others see it down.
        let mut seen = observe(&http, &procs.0, victim).await;
        seen.during = true;
        tokio::time::sleep(cut_for - cut_for / 2).await;
        net.heal(victim);
        let t_heal = Instant::now();
        eventually(
            "every node to serve after the heal",
            Duration::from_secs(60),
            async || all_serve(&http, &urls, &shared, t_heal).await.then_some(()),
        )
        .await;
        let t_full = Instant::now();
        // Whole again: sessions re-established, nobody degraded, every node sees every other up.
        // (Not `eventually`: a cluster that never becomes whole is a violation reported with
        // the figures, so a run against an older build still prints every cut's figures.)
        let whole_by = Instant::now() + HEAL_MAX;
        let whole = loop {
            let o = observe(&http, &procs.0, victim).await;
            if o.violations("").is_empty() || Instant::now() > whole_by {
                break o;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let t_whole = Instant::now();

        let log = shared.lock().expect("lock").log.clone();
        let majority: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
        let acked_in_cut = log
            .iter()
            .filter(|s| s.producer != victim && s.end >= t_cut && s.end <= t_heal)
            .filter(|s| matches!(s.status, Some(200..=299)))
            .count();
        // The same producers' rate in the seconds before the cut, for comparison.
        let before_from = t_cut - Duration::from_secs(5).min(t_cut - since);
        let acked_before = log
            .iter()
            .filter(|s| s.producer != victim && s.end >= before_from && s.end < t_cut)
            .filter(|s| matches!(s.status, Some(200..=299)))
            .count();
        let first_majority_ack = log
            .iter()
            .filter(|s| s.producer != victim && s.start >= t_cut && s.end <= t_heal)
            .filter(|s| matches!(s.status, Some(200..=299)))
            .map(|s| s.end - t_cut)
            .min();
        let majority_failures = majority
            .iter()
            .map(|p| {
                log.iter()
                    .filter(|s| s.producer == *p && s.end >= t_cut && s.start <= t_full)
                    .filter(|s| !matches!(s.status, Some(200..=299)))
                    .count()
            })
            .collect();
        let majority_gap = majority
            .iter()
            .map(|p| {
                let mut last = t_cut + MAJORITY_SETTLE;
                let mut gap = Duration::ZERO;
                for s in log.iter().filter(|s| s.producer == *p) {
                    if matches!(s.status, Some(200..=299)) && s.end > last && s.end <= t_heal {
                        gap = gap.max(s.end - last);
                        last = s.end;
                    }
                }
                gap.max(t_heal.saturating_duration_since(last))
            })
            .max()
            .unwrap_or_default();
        let mut minority_codes = BTreeMap::new();
        let mut minority_slowest = Duration::ZERO;
        let mut minority_late_non_503 = 0;
        for s in log
            .iter()
            .filter(|s| s.producer == victim && s.start >= t_cut && s.start < t_heal)
        {
            let code = match (&s.code, s.status) {
                (Some(c), _) => c.clone(),
                (None, Some(st)) => st.to_string(),
                (None, None) => "connection error".to_string(),
            };
            *minority_codes.entry(code).or_insert(0) += 1;
            // The heal ends the cut: an answer it shortened says nothing of the cut.
            if s.end <= t_heal {
                minority_slowest = minority_slowest.max(s.end - s.start);
            }
            if s.start >= t_cut + MINORITY_KNOWS && s.status != Some(503) {
                minority_late_non_503 += 1;
            }
        }
        let f = Figures {
            seen,
            whole,
            name,
            victim: names[victim].clone(),
            how,
            cut_for: t_heal - t_cut,
            majority_records_per_s: (acked_in_cut * BATCH) as f64 / (t_heal - t_cut).as_secs_f64(),
            majority_records_per_s_before: (acked_before * BATCH) as f64
                / (t_cut - before_from).as_secs_f64().max(0.001),
            first_majority_ack,
            heal_to_full: t_full - t_heal,
            heal_to_whole: t_whole - t_heal,
            majority_failures,
            majority_gap,
            minority_codes,
            minority_slowest,
            minority_late_non_503,
        };
        println!(
            "cut {}: node {} ({:?}) for {:.1}s: {:.0} acknowledged records/s through the majority ({:.0} before the cut), first acknowledgement {:?} after the cut, failed requests per majority producer {:?}, longest wait for an acknowledgement {:?}; the cut-off node answered {:?}, slowest {:?}; every node served again {:?} and the cluster was whole {:?} after the heal",
            f.name,
            f.victim,
            f.how,
            f.cut_for.as_secs_f64(),
            f.majority_records_per_s,
            f.majority_records_per_s_before,
            f.first_majority_ack,
            f.majority_failures,
            f.majority_gap,
            f.minority_codes,
            f.minority_slowest,
            f.heal_to_full,
            f.heal_to_whole
        );
        figures.push(f);
    }

    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.expect("producer task");
    }
    let violations: Vec<String> = figures.iter().flat_map(Figures::violations).collect();

    // Every replica caught up: the same high watermarks on every node.
    eventually(
        "replicas to catch up",
        Duration::from_secs(60),
        async || {
            let mut all = Vec::new();
            for p in &procs.0 {
                all.push(metric_hwms(&http, &p.metrics_url(), TOPIC).await?);
            }
            (all.iter()
                .all(|h| h.len() == PARTITIONS as usize && *h == all[0]))
            .then_some(())
        },
    )
    .await;
    let shared = Arc::try_unwrap(shared)
        .ok()
        .expect("producers are done")
        .into_inner()
        .expect("lock");
    let report = check_history(&http, &urls[0], TOPIC, PARTITIONS, &shared.history).await;
    println!(
        "history: {} acknowledged of {} sent, {} stored, {} stored with unknown outcome, 0 violations",
        report.acked,
        shared.history.sent.len(),
        report.stored,
        report.unknown_stored,
    );
    assert!(
        violations.is_empty(),
        "availability violations:\n{}",
        violations.join("\n")
    );

    // Each cut-off node logged that it was cut off, and that it was whole again.
    for f in &figures {
        let p = procs.0.iter().find(|p| p.name == f.victim).expect("victim");
        let log = std::fs::read_to_string(&p.log).expect("node log");
        assert!(
            log.contains("refusing requests that need the cluster") && log.contains("whole again"),
            "node {} logged no WARN on being cut off or no INFO on being whole again",
            p.name
        );
    }

    // Every replica holds the same committed log (clean stop, then read each store).
    for p in procs.0.iter_mut() {
        p.kill("-TERM");
    }
    let stores: Vec<(&str, &Path)> = procs
        .0
        .iter()
        .map(|p| (p.name.as_str(), p.dir.as_path()))
        .collect();
    assert_replicas_agree(&stores, PARTITIONS, report.stored);
}
