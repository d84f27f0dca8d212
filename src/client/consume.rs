//! `daftka consume TOPIC`: print records from one or every partition.
//!
//! With `--group`, the command is a member of the consumer group: see [`super::member`]. Without
//! it, each partition has a cursor: where to read next (`--from`). Without `--follow`, partitions
//! are read in turn, in partition order, without waiting, and a partition is done once its cursor
//! reaches the high watermark the node reported; the command ends when every partition is done. With
//! `--follow`, every partition has one long-poll fetch in flight (`max_wait_ms` =
//! [`FOLLOW_WAIT_MS`]) so a record on any partition is printed as soon as it arrives, and the command
//! runs until `--max-records` or an error.
//!
//! Output: the value per line, or with `--print-offsets` `partition<TAB>offset<TAB>key<TAB>value`
//! (an absent key prints as nothing). Values are written as raw bytes. Each fetched batch is written
//! and flushed in one piece.

use std::future::Future;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::args::{ConsumeArgs, StartOffset};
use super::{member, ClientError};
use daftka_http::client::Api;
use daftka_http::json::{FetchedJson, FetchedRecordJson};

/// Most records asked for in one fetch.
const FETCH_RECORDS_MAX: u64 = 500;
/// How long a `--follow` fetch waits on the node for a first record.
pub const FOLLOW_WAIT_MS: u64 = 1_000;
/// Shortest time between two `--follow` fetches of one partition that returned nothing, in case the
/// node answers at once instead of waiting.
const FOLLOW_POLL_INTERVAL_MS_MIN: u64 = 100;
/// Pause before re-fetching a partition after a retryable error in `--follow` mode.
const FOLLOW_ERROR_PAUSE_MS: u64 = 1_000;

/// Runs `daftka consume`. `stop` ends a group member's loop early (it then leaves the group); it is
/// not polled without `--group`, where ending the process needs no clean-up.
pub async fn run(
    api: &Api,
    args: &ConsumeArgs,
    out: &mut (impl AsyncWrite + Unpin),
    stop: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    if let Some(group) = &args.group {
        return member::run(api, args, group, out, stop).await;
    }
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => {
            let mut ps: Vec<u32> = api
                .describe_topic(&args.topic)
                .await?
                .partitions
                .iter()
                .map(|p| p.partition)
                .collect();
            ps.sort_unstable();
            ps
        }
    };
    let mut consumer = Consumer {
        api,
        args,
        cursors: partitions
            .into_iter()
            .map(|partition| Cursor {
                partition,
                position: args.from,
                done: false,
            })
            .collect(),
        remaining: args.max_records,
    };
    if args.follow {
        consumer.follow(out).await
    } else {
        consumer.drain(out).await
    }
}

/// Where one partition is read next.
#[derive(Debug, Clone)]
struct Cursor {
    partition: u32,
    position: StartOffset,
    /// Without `--follow`: the cursor reached the high watermark.
    done: bool,
}

struct Consumer<'a> {
    api: &'a Api,
    args: &'a ConsumeArgs,
    cursors: Vec<Cursor>,
    /// Records still to print under `--max-records`; `None` for no limit.
    remaining: Option<u64>,
}

impl Consumer<'_> {
    fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    fn fetch_limit(&self) -> u64 {
        self.remaining
            .map_or(FETCH_RECORDS_MAX, |r| r.min(FETCH_RECORDS_MAX))
    }

    /// Reads every partition in turn, without waiting, up to the high watermark.
    async fn drain(&mut self, out: &mut (impl AsyncWrite + Unpin)) -> Result<(), ClientError> {
        while !self.exhausted() && self.cursors.iter().any(|c| !c.done) {
            for i in 0..self.cursors.len() {
                if self.cursors[i].done || self.exhausted() {
                    continue;
                }
                let response = self.fetch(i, 0).await?;
                self.on_fetched(i, response, out).await?;
            }
        }
        Ok(())
    }

    /// Keeps one long-poll fetch in flight per partition and prints whatever arrives first.
    async fn follow(&mut self, out: &mut (impl AsyncWrite + Unpin)) -> Result<(), ClientError> {
        let mut in_flight = FuturesUnordered::new();
        for i in 0..self.cursors.len() {
            in_flight.push(self.follow_fetch(i, Duration::ZERO));
        }
        while let Some((i, result)) = in_flight.next().await {
            let mut pause = Duration::ZERO;
            match result {
                Ok(response) => self.on_fetched(i, response, out).await?,
                Err(e) if e.retryable() => {
                    tracing::warn!(partition = self.cursors[i].partition, error = %e, "fetch failed; retrying");
                    pause = Duration::from_millis(FOLLOW_ERROR_PAUSE_MS);
                }
                Err(e) => return Err(e),
            }
            if self.exhausted() {
                return Ok(());
            }
            in_flight.push(self.follow_fetch(i, pause));
        }
        Ok(())
    }

    /// The next `--follow` fetch of cursor `i`, owning what it needs so several can be in flight.
    fn follow_fetch(
        &self,
        i: usize,
        pause: Duration,
    ) -> impl std::future::Future<Output = (usize, Result<FetchedJson, ClientError>)> {
        let cursor = &self.cursors[i];
        follow_fetch(
            self.api.clone(),
            self.args.topic.clone(),
            i,
            cursor.partition,
            cursor.position,
            self.fetch_limit(),
            pause,
        )
    }

    /// One fetch for cursor `i`, waiting up to `wait_ms` for a first record.
    async fn fetch(&self, i: usize, wait_ms: u64) -> Result<FetchedJson, ClientError> {
        let cursor = &self.cursors[i];
        self.api
            .fetch(
                &self.args.topic,
                cursor.partition,
                &cursor.position.as_query(),
                self.fetch_limit(),
                wait_ms,
            )
            .await
    }

    /// Prints a fetched batch (cut to `--max-records`) and moves the cursor.
    async fn on_fetched(
        &mut self,
        i: usize,
        response: FetchedJson,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<(), ClientError> {
        let cursor = &mut self.cursors[i];
        let partition = cursor.partition;
        let mut records = response.records;
        if let Some(remaining) = self.remaining {
            records.truncate(usize::try_from(remaining).unwrap_or(usize::MAX));
        }
        let before = cursor.position;
        cursor.position = StartOffset::At(match records.last() {
            Some(last) if last.offset + 1 < response.next_offset => last.offset + 1,
            _ => response.next_offset,
        });
        let next = response.next_offset;
        let progressed = !records.is_empty() || before != cursor.position;
        // At the high watermark, or stuck without progress (which would otherwise loop forever).
        cursor.done = next >= response.high_watermark || !progressed;
        if records.is_empty() {
            return Ok(());
        }
        let text = format_records(partition, &records, self.args.print_offsets)?;
        out.write_all(&text).await?;
        out.flush().await?;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= records.len() as u64;
        }
        Ok(())
    }
}

/// One `--follow` fetch for cursor `i`, after `pause`; tagged with `i` for the caller.
async fn follow_fetch(
    api: Api,
    topic: String,
    i: usize,
    partition: u32,
    position: StartOffset,
    max_records: u64,
    pause: Duration,
) -> (usize, Result<FetchedJson, ClientError>) {
    tokio::time::sleep(pause).await;
    let started = Instant::now();
    let result = api
        .fetch(
            &topic,
            partition,
            &position.as_query(),
            max_records,
            FOLLOW_WAIT_MS,
        )
        .await;
    if matches!(&result, Ok(r) if r.records.is_empty()) {
        let min = Duration::from_millis(FOLLOW_POLL_INTERVAL_MS_MIN);
        tokio::time::sleep(min.saturating_sub(started.elapsed())).await;
    }
    (i, result)
}

/// The output of one fetched batch: a line per record.
pub fn format_records(
    partition: u32,
    records: &[FetchedRecordJson],
    print_offsets: bool,
) -> Result<Vec<u8>, ClientError> {
    let mut text = Vec::new();
    for record in records {
        let key = record.key.as_deref().map(decode).transpose()?;
        write_record(
            &mut text,
            partition,
            record.offset,
            key.as_deref(),
            &decode(&record.value)?,
            print_offsets,
        );
    }
    Ok(text)
}

/// Appends one record's output line: its value, or with `print_offsets`
/// `partition<TAB>offset<TAB>key<TAB>value` (an absent key as nothing).
pub fn write_record(
    text: &mut Vec<u8>,
    partition: u32,
    offset: u64,
    key: Option<&[u8]>,
    value: &[u8],
    print_offsets: bool,
) {
    if print_offsets {
        text.extend_from_slice(format!("{partition}\t{offset}\t").as_bytes());
        text.extend_from_slice(key.unwrap_or_default());
        text.push(b'\t');
    }
    text.extend_from_slice(value);
    text.push(b'\n');
}

fn decode(text: &str) -> Result<Vec<u8>, ClientError> {
    BASE64
        .decode(text)
        .map_err(|e| ClientError::Decode(format!("record is not base64: {e}")))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::client::{ClientCommand, ClientOpts};
    use daftka_http::mock::{MockNode, Reply, Request};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    fn record(offset: u64, key: Option<&[u8]>, value: &[u8]) -> FetchedRecordJson {
        FetchedRecordJson {
            offset,
            key: key.map(|k| BASE64.encode(k)),
            value: BASE64.encode(value),
            headers: Default::default(),
            timestamp: None,
        }
    }

    #[test]
    fn default_output_is_the_raw_value_per_line() {
        // Values are decoded from base64 and written as bytes, one per line.
        let records = [
            record(0, Some(b"k"), b"hello"),
            record(1, None, b"\xff\x00"),
        ];
        assert_eq!(
            format_records(3, &records, false).expect("valid base64"),
            b"hello\n\xff\x00\n"
        );
    }

    #[test]
    fn print_offsets_adds_partition_offset_and_key() {
        // `--print-offsets` prints four tab-separated fields; a missing key is empty.
        let records = [record(7, Some(b"k1"), b"v1"), record(8, None, b"v2")];
        assert_eq!(
            String::from_utf8(format_records(2, &records, true).expect("valid base64"))
                .expect("utf8"),
            "2\t7\tk1\tv1\n2\t8\t\tv2\n"
        );
    }

    #[test]
    fn bad_base64_is_a_decode_error() {
        // A value the node did not encode as asked is reported, not printed garbled.
        let bad = FetchedRecordJson {
            value: "not base64!".into(),
            ..record(0, None, b"")
        };
        assert!(matches!(
            format_records(0, &[bad], false),
            Err(ClientError::Decode(_))
        ));
    }

    /// One in-memory partition: its log start offset and its records (key, value).
    type Partition = (u64, Vec<(Option<&'static str>, String)>);

    /// An in-memory topic.
    struct Log {
        partitions: Vec<Partition>,
        /// Fetches answered so far.
        fetches: u32,
        /// (fetch count, partition, key, value): appended when the fetch count is reached.
        appends: Vec<(u32, usize, Option<&'static str>, String)>,
    }

    impl Log {
        fn with_values(partitions: &[&[&str]]) -> Arc<Mutex<Log>> {
            Arc::new(Mutex::new(Log {
                partitions: partitions
                    .iter()
                    .map(|values| (0, values.iter().map(|v| (None, v.to_string())).collect()))
                    .collect(),
                fetches: 0,
                appends: Vec::new(),
            }))
        }

        fn reply(&mut self, req: &Request) -> Reply {
            let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
            match (req.method.as_str(), segments.as_slice()) {
                ("GET", ["v1", "topics", "t"]) => {
                    let partitions: Vec<_> = self
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(p, (start, records))| {
                            json!({"partition": p, "leader": "1", "replicas": ["1"],
                                   "log_start_offset": start,
                                   "high_watermark": start + records.len() as u64})
                        })
                        .collect();
                    Reply::json(
                        200,
                        json!({"name": "t", "replication_factor": 1, "partitions": partitions}),
                    )
                }
                ("GET", ["v1", "topics", "t", "partitions", p, "records"]) => {
                    assert_eq!(req.param("encoding").as_deref(), Some("base64"));
                    self.fetches += 1;
                    let fetches = self.fetches;
                    for (_, p, key, value) in self.appends.iter().filter(|a| a.0 == fetches) {
                        self.partitions[*p].1.push((*key, value.clone()));
                    }
                    let Some((start, records)) =
                        p.parse::<usize>().ok().and_then(|p| self.partitions.get(p))
                    else {
                        return Reply::error(404, "unknown_partition", "no such partition");
                    };
                    let hwm = start + records.len() as u64;
                    let offset = match req.param("offset").as_deref() {
                        Some("earliest") => *start,
                        Some("latest") => hwm,
                        Some(n) => n.parse().expect("numeric offset"),
                        None => panic!("offset is required"),
                    };
                    if offset < *start || offset > hwm {
                        return Reply::error(416, "offset_out_of_range", "out of range");
                    }
                    let max: u64 = req
                        .param("max_records")
                        .and_then(|m| m.parse().ok())
                        .expect("max_records");
                    let end = hwm.min(offset + max);
                    let out: Vec<_> = (offset..end)
                        .map(|o| {
                            let (key, value) = &records[(o - start) as usize];
                            json!({"offset": o, "key": key.map(|k| BASE64.encode(k)),
                                   "value": BASE64.encode(value), "headers": {},
                                   "timestamp": 0})
                        })
                        .collect();
                    Reply::json(
                        200,
                        json!({"records": out, "next_offset": end, "high_watermark": hwm,
                               "log_start_offset": start}),
                    )
                }
                _ => Reply::error(404, "not_found", &format!("no route {}", req.path)),
            }
        }
    }

    async fn serve(log: &Arc<Mutex<Log>>) -> MockNode {
        let log = log.clone();
        MockNode::start(move |req| log.lock().expect("lock").reply(req)).await
    }

    /// `daftka consume t ARGS`, parsed.
    pub(in crate::client) fn consume_args(args: &[&str]) -> ConsumeArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: ClientCommand,
        }
        let argv = ["daftka", "consume", "t"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: ClientCommand::Consume(c),
            }) => c,
            Ok(_) => panic!("not consume"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs `daftka consume t ARGS` against `node` until it ends by itself; its output.
    pub(in crate::client) async fn consume(
        node: &MockNode,
        args: &[&str],
    ) -> Result<String, ClientError> {
        let mut out = Vec::new();
        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Consume(consume_args(args)),
            &b""[..],
            &mut out,
        )
        .await?;
        Ok(String::from_utf8(out).expect("utf8"))
    }

    fn values(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[tokio::test]
    async fn reads_every_partition_in_turn_and_stops_at_the_high_watermark() {
        // Without --follow, all records of all partitions are printed, batch by batch in partition
        // order, and the command ends without waiting.
        let p0 = values("a", 600);
        let p1 = values("b", 2);
        let p0_refs: Vec<&str> = p0.iter().map(String::as_str).collect();
        let p1_refs: Vec<&str> = p1.iter().map(String::as_str).collect();
        let log = Log::with_values(&[&p0_refs, &p1_refs, &[]]);
        let node = serve(&log).await;
        let out = consume(&node, &[]).await.expect("consume");
        let expected: Vec<String> = p0[..500]
            .iter()
            .chain(&p1)
            .chain(&p0[500..])
            .map(|v| format!("{v}\n"))
            .collect();
        assert_eq!(out, expected.concat());
        assert!(node
            .requests()
            .iter()
            .all(|r| r.param("max_wait_ms").is_none_or(|w| w == "0")));
    }

    #[tokio::test]
    async fn from_partition_and_max_records_select_records() {
        // --partition, --from N|latest and --max-records narrow what is printed.
        let log = Log::with_values(&[&["a0", "a1", "a2"], &["b0", "b1", "b2"]]);
        let node = serve(&log).await;
        assert_eq!(
            consume(
                &node,
                &["--partition", "1", "--from", "1", "--print-offsets"]
            )
            .await
            .expect("consume"),
            "1\t1\t\tb1\n1\t2\t\tb2\n"
        );
        assert_eq!(
            consume(&node, &["--from", "latest"])
                .await
                .expect("consume"),
            ""
        );
        assert_eq!(
            consume(&node, &["--max-records", "4"])
                .await
                .expect("consume"),
            "a0\na1\na2\nb0\n"
        );
        let err = consume(&node, &["--partition", "5"])
            .await
            .expect_err("no partition 5");
        assert_eq!(err.to_string(), "unknown_partition: no such partition");
    }

    #[tokio::test]
    async fn out_of_range_from_is_the_nodes_error() {
        // An offset below the log start (removed by retention) is reported, not skipped silently.
        let log = Log::with_values(&[&["a5", "a6"]]);
        log.lock().expect("lock").partitions[0].0 = 5;
        let node = serve(&log).await;
        let err = consume(&node, &["--from", "1"]).await.expect_err("range");
        assert_eq!(err.to_string(), "offset_out_of_range: out of range");
        assert_eq!(
            consume(&node, &["--from", "6"]).await.expect("consume"),
            "a6\n"
        );
    }

    #[tokio::test]
    async fn follow_long_polls_until_max_records() {
        // --follow asks the node to wait and keeps going past the high watermark.
        let log = Log::with_values(&[&["a0"], &[]]);
        let node = serve(&log).await;
        // Once both partitions were fetched once, partition 1 gets a record.
        log.lock()
            .expect("lock")
            .appends
            .push((3, 1, Some("k"), "late".into()));
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            consume(
                &node,
                &["--follow", "--max-records", "2", "--print-offsets"],
            ),
        )
        .await
        .expect("follow ends at --max-records")
        .expect("consume");
        assert_eq!(out, "0\t0\t\ta0\n1\t0\tk\tlate\n");
        assert!(node
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/records"))
            .all(|r| r.param("max_wait_ms").as_deref() == Some("1000")));
    }
}
