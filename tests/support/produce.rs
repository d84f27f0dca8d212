//! A producer for the fault tests on real processes: batches of unique values over HTTP through
//! every node, recorded in a [`History`] for the checker (acknowledged, or outcome unknown).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::eventually;
use super::history::History;

/// What the producers share: the history, and when each partition last got an acknowledgement.
#[derive(Default)]
pub struct Shared {
    pub history: History,
    pub acks: BTreeMap<u32, Vec<Instant>>,
}

/// Produces batches of `batch` unique values to `topic` (over its `partitions`, one batch each in
/// turn) through `urls` (moving to the next ready node after a failure) until `stop`. 503 means not taken; a lost connection, a 504 or a 500 leave the outcome
/// unknown; a 4xx is a bug.
pub async fn producer(
    id: u64,
    urls: Vec<String>,
    (topic, partitions, batch): (&'static str, u32, u64),
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
) {
    let http = super::procs::http_client();
    let mut seq = 0u64;
    let mut node = id as usize;
    while !stop.load(Ordering::Relaxed) {
        let (partition, values) = shared
            .lock()
            .expect("lock")
            .history
            .next_batch(id, &mut seq, batch, partitions);
        let body = json!({
            "records": values.iter().map(|v| json!({"value": v, "partition": partition})).collect::<Vec<_>>()
        });
        let url = format!("{}/v1/topics/{topic}/records", urls[node % urls.len()]);
        let outcome = http.post(&url).json(&body).send().await;
        let status = outcome.as_ref().map(|r| r.status().as_u16()).ok();
        match outcome {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.expect("produce answer");
                let offsets = v["offsets"].as_array().expect("offsets").clone();
                let mut s = shared.lock().expect("lock");
                for (value, pos) in values.iter().zip(offsets) {
                    let p = pos["partition"].as_u64().expect("partition") as u32;
                    let o = pos["offset"].as_u64().expect("offset");
                    assert_eq!(p, partition);
                    s.history.acked.insert(value.clone(), (p, o));
                }
                s.acks.entry(partition).or_default().push(Instant::now());
            }
            _ => {
                if let Some(code) = status {
                    assert!(code >= 500, "producer {id} got {code} from {url}");
                }
                if status != Some(503) {
                    shared
                        .lock()
                        .expect("lock")
                        .history
                        .unknown
                        .extend(values.iter().cloned());
                }
                // Go on through the next node that is ready.
                node = eventually("a node to serve", Duration::from_secs(60), async || {
                    for k in 1..=urls.len() {
                        let next = (node + k) % urls.len();
                        let ready = http.get(format!("{}/readyz", urls[next])).send().await;
                        if ready.is_ok_and(|r| r.status().is_success()) {
                            return Some(next);
                        }
                    }
                    None
                })
                .await;
            }
        }
    }
}

/// `n` [`producer`]s running together, and what they share.
pub struct Producers {
    pub shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Producers {
    /// Starts producers `0..n` through `urls` to `target` = (topic, partitions, batch).
    pub fn start(n: u64, urls: &[String], target: (&'static str, u32, u64)) -> Producers {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..n)
            .map(|id| {
                tokio::spawn(producer(
                    id,
                    urls.to_vec(),
                    target,
                    shared.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Producers {
            shared,
            stop,
            tasks,
        }
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> usize {
        self.shared.lock().expect("lock").history.acked.len()
    }

    /// Stops the producers, waits for them, and hands back what they recorded.
    pub async fn finish(self) -> Shared {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("producer task");
        }
        Arc::try_unwrap(self.shared)
            .ok()
            .expect("producers are done")
            .into_inner()
            .expect("lock")
    }
}
