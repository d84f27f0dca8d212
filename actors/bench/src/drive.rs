//! The transport-independent loops: producers that take requests off the run's schedule, readers
//! that fetch one partition each, the retry rule, and running them all to the end.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::plan::{latency_origin, progress, Plan, Shared, Ticket};
use super::stats::Histogram;
use daftka_http::client::ClientError;

/// How long one request is retried through retryable failures before the run gives up.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The pause between attempts of a request.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long an e2e reader waits for new records in one fetch.
const E2E_WAIT_MS: u32 = 100;
/// How long e2e readers keep reading after the producers are done, for records not read yet.
const E2E_DRAIN: Duration = Duration::from_secs(10);

/// Digits of the send time (microseconds since the start of the run) an e2e record's value starts
/// with.
pub const STAMP_LEN: usize = 16;

/// Why an attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was done, or may be done again (`unavailable`, `not_leader`, `timeout`, a broken
    /// connection): counted as an error and tried again after a pause.
    Retry(String),
    /// The run cannot go on: it stops and reports this.
    Fatal(ClientError),
}

/// One producer: one connection (http), or one request in flight at a time (native).
pub trait Producer: Send + 'static {
    /// Sends `ticket`'s records (their values starting with `stamp`, for e2e) and waits until the
    /// node acknowledges every one of them.
    fn send(
        &mut self,
        ticket: &Ticket,
        stamp: Option<u64>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// What one fetch read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    pub records: u64,
    /// Value bytes.
    pub bytes: u64,
    pub next_offset: u64,
}

/// One partition's reader.
pub trait Reader: Send + 'static {
    /// Reads up to `max_records` from `offset`, waiting up to `wait_ms` for the first one; with
    /// `stamps`, pushes the stamp of every record whose value starts with one.
    fn fetch(
        &mut self,
        offset: u64,
        max_records: u32,
        wait_ms: u32,
        stamps: Option<&mut Vec<u64>>,
    ) -> impl Future<Output = Result<Fetched, Failure>> + Send;
}

/// `value` with its first [`STAMP_LEN`] bytes replaced by `stamp` in decimal, zero-padded.
pub fn write_stamp(value: &mut [u8], stamp: u64) {
    let mut n = stamp;
    for b in value[..STAMP_LEN].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The stamp a value starts with, if it does.
pub fn read_stamp(value: &[u8]) -> Option<u64> {
    let digits = value.get(..STAMP_LEN)?;
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Microseconds from the start of the run to `at`.
fn micros_since(shared: &Shared, at: Instant) -> u64 {
    u64::try_from(at.duration_since(shared.start).as_micros()).unwrap_or(u64::MAX)
}

/// Decides what follows a failed attempt of a request first tried at `first`: `Ok(true)` to try
/// again (after the pause), `Ok(false)` if the run was stopped meanwhile, or the error to end with.
async fn after_failure(
    failure: Failure,
    first: Instant,
    shared: &Shared,
) -> Result<bool, ClientError> {
    match failure {
        Failure::Fatal(e) => Err(e),
        Failure::Retry(message) => {
            Shared::add(&shared.errors, 1);
            if shared.stopped() {
                return Ok(false);
            }
            if first.elapsed() >= RETRY_FOR {
                return Err(ClientError::Api {
                    code: "unavailable".into(),
                    message: format!("still failing after {RETRY_FOR:?} of retries: {message}"),
                    retryable: true,
                    log_start_offset: None,
                });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
            Ok(true)
        }
    }
}

/// One producer's loop: takes the run's next request, waits until it is due (open loop), sends it
/// until acknowledged, records its latency. Returns the latencies in microseconds.
async fn produce<P: Producer>(
    mut producer: P,
    shared: Arc<Shared>,
    record_size: u64,
    stamped: bool,
) -> Result<Histogram, ClientError> {
    let mut latency = Histogram::default();
    let result = async {
        'requests: while let Some(ticket) = shared.next_ticket() {
            let free_at = Instant::now();
            let origin = match ticket.due {
                Some(due) => {
                    let due = shared.start + due;
                    if !shared.wait_until(due).await {
                        break;
                    }
                    latency_origin(due, free_at, Instant::now())
                }
                None => free_at,
            };
            let stamp = stamped.then(|| micros_since(&shared, origin));
            let first = Instant::now();
            loop {
                match producer.send(&ticket, stamp).await {
                    Ok(()) => break,
                    Err(f) => {
                        if !after_failure(f, first, &shared).await? {
                            break 'requests;
                        }
                    }
                }
            }
            latency.record_duration(origin.elapsed());
            Shared::add(&shared.requests, 1);
            Shared::add(&shared.records, u64::from(ticket.records));
            Shared::add(&shared.bytes, u64::from(ticket.records) * record_size);
        }
        Ok(())
    }
    .await;
    shared
        .producing
        .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    result.map(|()| latency)
}

/// One partition's consume loop, from `offset` up to `end` (the high watermark at the start) or
/// until the run's budget or time is spent. Returns the fetches' latencies.
async fn consume<R: Reader>(
    mut reader: R,
    shared: Arc<Shared>,
    mut offset: u64,
    end: u64,
) -> Result<Histogram, ClientError> {
    let mut latency = Histogram::default();
    let batch = u64::from(shared.plan.batch);
    while offset < end && !shared.stopped() && !shared.out_of_time() {
        let claimed = shared.claim(batch.min(end - offset));
        if claimed == 0 {
            break;
        }
        let first = Instant::now();
        let fetched = loop {
            match reader.fetch(offset, claimed as u32, 0, None).await {
                // Below the high watermark a fetch always has a record; none would loop for ever.
                Ok(f) if f.records == 0 => {
                    let retry = Failure::Retry(format!("no record at offset {offset}"));
                    if !after_failure(retry, first, &shared).await? {
                        shared.unclaim(claimed);
                        return Ok(latency);
                    }
                }
                Ok(f) => break f,
                Err(f) => {
                    if !after_failure(f, first, &shared).await? {
                        shared.unclaim(claimed);
                        return Ok(latency);
                    }
                }
            }
        };
        latency.record_duration(first.elapsed());
        let got = fetched.records.min(claimed);
        shared.unclaim(claimed - got);
        Shared::add(&shared.requests, 1);
        Shared::add(&shared.records, got);
        Shared::add(&shared.bytes, fetched.bytes);
        offset = fetched.next_offset.max(offset + 1);
    }
    Ok(latency)
}

/// One partition's e2e loop: reads new records from `offset` as they arrive until the producers
/// are done and every acknowledged record was read back (or [`E2E_DRAIN`] passed). Returns each
/// stamped record's latency from its send time.
async fn read_back<R: Reader>(
    mut reader: R,
    shared: Arc<Shared>,
    mut offset: u64,
) -> Result<Histogram, ClientError> {
    use std::sync::atomic::Ordering;
    let mut latency = Histogram::default();
    let mut stamps = Vec::new();
    let mut drain_until = None;
    let batch = shared.plan.batch;
    while !shared.stopped() {
        if shared.producing.load(Ordering::Acquire) == 0 {
            if Shared::get(&shared.consumed) >= Shared::get(&shared.records) {
                break;
            }
            let until = *drain_until.get_or_insert_with(|| Instant::now() + E2E_DRAIN);
            if Instant::now() >= until {
                break;
            }
        }
        let first = Instant::now();
        stamps.clear();
        match reader
            .fetch(offset, batch, E2E_WAIT_MS, Some(&mut stamps))
            .await
        {
            Ok(f) => {
                let now = micros_since(&shared, Instant::now());
                for s in &stamps {
                    latency.record(now.saturating_sub(*s));
                }
                Shared::add(&shared.consumed, stamps.len() as u64);
                offset = f.next_offset.max(offset);
            }
            Err(f) => {
                if !after_failure(f, first, &shared).await? {
                    break;
                }
            }
        }
    }
    Ok(latency)
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per produce request, or per fetch (consume).
    pub latency: Histogram,
    /// Per record read back, and how many were (e2e).
    pub e2e: Option<(Histogram, u64)>,
    pub seconds: f64,
    /// Records acknowledged (produce) or read (consume), and their value bytes.
    pub records: u64,
    pub bytes: u64,
    pub requests: u64,
    pub errors: u64,
}

enum Role {
    Worker,
    ReadBack,
}

/// The workers of a run.
pub struct Workers<P, R> {
    producers: Vec<P>,
    /// Value bytes of each produced record.
    record_size: u64,
    /// e2e: one reader per partition, from the offset given.
    read_back: Vec<(R, u64)>,
    /// consume: one reader per partition, from the first offset given up to the second.
    consumers: Vec<(R, u64, u64)>,
}

impl<P: Producer, R: Reader> Workers<P, R> {
    /// Producers, and for e2e the readers that read their records back.
    pub fn produce(producers: Vec<P>, record_size: u64, read_back: Vec<(R, u64)>) -> Self {
        Workers {
            producers,
            record_size,
            read_back,
            consumers: Vec::new(),
        }
    }
}

/// The producer of a run without producers (consume).
pub enum NoProducer {}

impl Producer for NoProducer {
    async fn send(&mut self, _: &Ticket, _: Option<u64>) -> Result<(), Failure> {
        match *self {}
    }
}

impl<R: Reader> Workers<NoProducer, R> {
    /// Readers of the ranges given, one per partition.
    pub fn consume(consumers: Vec<(R, u64, u64)>) -> Self {
        Workers {
            producers: Vec::new(),
            record_size: 0,
            read_back: Vec::new(),
            consumers,
        }
    }
}

/// Runs `workers` to the end, with the progress line unless `quiet`. When `stop` completes every
/// worker finishes its request in flight and the run ends with what was done; the first fatal
/// error of a worker stops the others and is returned.
pub async fn run<P: Producer, R: Reader>(
    plan: Plan,
    workers: Workers<P, R>,
    quiet: bool,
    stop: impl Future<Output = ()>,
) -> Result<Outcome, ClientError> {
    let Workers {
        producers,
        record_size,
        read_back: read_back_from,
        consumers,
    } = workers;
    let shared = Shared::new(plan, producers.len() as u64);
    let e2e = !read_back_from.is_empty();
    let mut set = JoinSet::new();
    for (r, offset) in read_back_from {
        let shared = shared.clone();
        set.spawn(async move { (Role::ReadBack, read_back(r, shared, offset).await) });
    }
    for p in producers {
        let shared = shared.clone();
        set.spawn(async move { (Role::Worker, produce(p, shared, record_size, e2e).await) });
    }
    for (r, offset, end) in consumers {
        let shared = shared.clone();
        set.spawn(async move { (Role::Worker, consume(r, shared, offset, end).await) });
    }
    let progress = (!quiet).then(|| tokio::spawn(progress(shared.clone(), e2e)));
    let mut outcome = Outcome {
        e2e: e2e.then(|| (Histogram::default(), 0)),
        ..Outcome::default()
    };
    let mut first_error = None;
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    loop {
        let joined = tokio::select! {
            joined = set.join_next() => joined,
            () = &mut stop, if !stopping => {
                stopping = true;
                shared.stop();
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (role, result) = joined.map_err(|e| {
            ClientError::Io(std::io::Error::other(format!("a bench worker failed: {e}")))
        })?;
        match (result, role) {
            (Ok(h), Role::Worker) => outcome.latency.merge(&h),
            (Ok(h), Role::ReadBack) => {
                if let Some((e, _)) = outcome.e2e.as_mut() {
                    e.merge(&h)
                }
            }
            (Err(e), _) => {
                shared.stop();
                first_error.get_or_insert(e);
            }
        }
    }
    outcome.seconds = shared.start.elapsed().as_secs_f64();
    outcome.records = Shared::get(&shared.records);
    outcome.bytes = Shared::get(&shared.bytes);
    outcome.requests = Shared::get(&shared.requests);
    outcome.errors = Shared::get(&shared.errors);
    if let Some((_, n)) = outcome.e2e.as_mut() {
        *n = Shared::get(&shared.consumed);
    }
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
        eprintln!();
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let mut v = b"xxxxxxxxxxxxxxxxxxxxxxxx".to_vec();
        write_stamp(&mut v, 1_234_567);
        assert_eq!(&v[..STAMP_LEN], b"0000000001234567");
        assert_eq!(&v[STAMP_LEN..], b"xxxxxxxx");
        assert_eq!(read_stamp(&v), Some(1_234_567));
        assert_eq!(read_stamp(b"000000000123456"), None);
        assert_eq!(read_stamp(b"00000000012345x7"), None);
        assert_eq!(read_stamp(b"xxxxxxxxxxxxxxxxxx"), None);
    }
}
