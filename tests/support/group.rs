//! A consumer-group member for the tests: the real [`Consumer`] over either transport (the native
//! client, or HTTP through `daftka_http::client::Api`), in a task that records what it reads.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daftka_protocol::consumer::GroupTransport;
use daftka_protocol::{Consumer, ConsumerConfig, ErrorCode};

/// What the members of a test's group read, and when they stop.
#[derive(Clone, Default)]
pub struct GroupReads {
    pub seen: Arc<Mutex<BTreeSet<String>>>,
    pub stop: Arc<AtomicBool>,
}

impl GroupReads {
    /// Whether every value of `want` was read by some member.
    pub fn has_all<'a>(&self, mut want: impl Iterator<Item = &'a String>) -> bool {
        let seen = self.seen.lock().expect("seen");
        want.all(|v| seen.contains(v))
    }
}

/// One member of `group` reading `topic` through `transport` until `reads.stop`: every value it
/// gets goes to `reads.seen`, is acknowledged, and committed after each batch. Returns the
/// partitions it ever owned.
pub fn member<T: GroupTransport + Clone>(
    transport: T,
    group: &str,
    topic: &str,
    reads: GroupReads,
) -> tokio::task::JoinHandle<BTreeSet<u32>> {
    let mut config = ConsumerConfig::new(group, [topic]);
    config.session_timeout = Some(Duration::from_secs(3));
    config.fetch_wait = Duration::from_millis(100);
    tokio::spawn(async move {
        let c = super::eventually("a member to join", Duration::from_secs(60), async || {
            Consumer::join(transport.clone(), config.clone()).await.ok()
        })
        .await;
        let mut owned = BTreeSet::new();
        while !reads.stop.load(Ordering::Relaxed) {
            owned.extend(c.assignment().into_iter().map(|(_, p)| p));
            let record = |r: &daftka_protocol::ConsumerRecord| {
                let v = String::from_utf8_lossy(&r.record.value).into_owned();
                reads.seen.lock().expect("seen").insert(v);
                c.ack(r);
            };
            match c.poll(200, Duration::from_millis(100)).await {
                Ok(batch) => {
                    batch.iter().for_each(record);
                    if !batch.is_empty() {
                        // A commit may be refused mid-rebalance: the next one carries it.
                        let _ = c.commit().await;
                    }
                }
                Err(e)
                    if e.retryable()
                        || matches!(
                            e.code,
                            ErrorCode::NotAssigned | ErrorCode::StaleGeneration
                        ) =>
                {
                    // The consumer's own retry (it pauses after an error), for a record or
                    // until the next look at the stop flag.
                    let next = c.next_record();
                    if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(100), next).await
                    {
                        record(&r);
                    }
                }
                Err(e) => panic!("group member failed: {e}"),
            }
        }
        let _ = c.close().await;
        owned
    })
}
