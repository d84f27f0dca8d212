//! `daftka produce TOPIC`: one record per stdin line, sent in batches.
//!
//! A line is the bytes before `\n` (a `\r` before it is kept: values are bytes, not text); a last line
//! without `\n` is a record too. Values and keys travel base64-encoded so any bytes survive.
//!
//! Batching: a batch starts with the next line (waiting as long as it takes), then takes more lines
//! until it holds `--batch` lines or `--batch-bytes-max` value bytes, or no further line arrived within
//! `--linger-ms` of the first. Piped input therefore goes out in full batches, and a line typed at a
//! terminal goes out after the linger. Batches are sent one at a time, in order, so records keep the
//! order of the input within each partition.
//!
//! Prints nothing on success, or with `--verbose` a summary line on stdout.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::args::ProduceArgs;
use super::ClientError;
use daftka_http::client::Api;
use daftka_http::json::{Encoding, ProduceBody, ProduceRecordJson};

pub async fn run(
    api: &Api,
    args: &ProduceArgs,
    stdin: impl AsyncBufRead + Unpin,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    let limits = BatchLimits {
        lines_max: usize::try_from(args.batch).unwrap_or(usize::MAX),
        bytes_max: usize::try_from(args.batch_bytes_max).unwrap_or(usize::MAX),
        linger: Duration::from_millis(args.linger_ms),
    };
    let mut lines = LineBatcher::new(stdin);
    let (mut produced, mut requests) = (0usize, 0usize);
    loop {
        let batch = lines.next_batch(&limits).await?;
        if batch.is_empty() {
            break;
        }
        let request = build_request(&batch, args.key.as_deref(), args.partition);
        api.produce(&args.topic, &request).await?;
        produced += batch.len();
        requests += 1;
    }
    if args.verbose {
        let line = format!(
            "% produced {produced} records to {} in {requests} requests\n",
            args.topic
        );
        out.write_all(line.as_bytes()).await?;
    }
    Ok(())
}

/// When a batch is full.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    /// Most lines in one batch (at least one).
    pub lines_max: usize,
    /// Most value bytes (before encoding) in one batch; a longer single line forms a batch alone.
    pub bytes_max: usize,
    /// How long a batch waits for its next line after its first one.
    pub linger: Duration,
}

/// Cuts an input stream into batches of lines.
pub struct LineBatcher<R> {
    input: R,
    /// Bytes of a line being read; kept when a read is cut short by the linger, resumed next time.
    partial: Vec<u8>,
    /// A complete line that did not fit the previous batch's byte limit.
    held: Option<Vec<u8>>,
    eof: bool,
}

impl<R: AsyncBufRead + Unpin> LineBatcher<R> {
    pub fn new(input: R) -> Self {
        LineBatcher {
            input,
            partial: Vec::new(),
            held: None,
            eof: false,
        }
    }

    /// The next batch of lines, without their `\n`; empty only at the end of the input.
    pub async fn next_batch(&mut self, limits: &BatchLimits) -> std::io::Result<Vec<Vec<u8>>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut deadline: Option<Instant> = None;
        if let Some(line) = self.held.take() {
            bytes += line.len();
            batch.push(line);
            deadline = Some(Instant::now() + limits.linger);
        }
        while batch.len() < limits.lines_max.max(1) {
            let line = match deadline {
                None => self.next_line().await?,
                Some(deadline) => {
                    // `read_until` is cancel-safe: bytes read before the deadline stay in `partial`.
                    match tokio::time::timeout_at(deadline, self.next_line()).await {
                        Ok(line) => line?,
                        Err(_elapsed) => break,
                    }
                }
            };
            let Some(line) = line else { break };
            if !batch.is_empty() && bytes + line.len() > limits.bytes_max {
                self.held = Some(line);
                break;
            }
            bytes += line.len();
            batch.push(line);
            deadline.get_or_insert_with(|| Instant::now() + limits.linger);
        }
        Ok(batch)
    }

    /// The next complete line, or the unterminated last one; `None` at the end of the input.
    async fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.eof {
            return Ok(None);
        }
        let read = self.input.read_until(b'\n', &mut self.partial).await?;
        if read == 0 {
            self.eof = true;
            // Bytes left by a cancelled read form the unterminated last line.
            if self.partial.is_empty() {
                return Ok(None);
            }
            return Ok(Some(std::mem::take(&mut self.partial)));
        }
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(Some(line))
    }
}

/// The produce request for one batch: every record base64-encoded, with the same key and partition.
pub fn build_request(lines: &[Vec<u8>], key: Option<&str>, partition: Option<u32>) -> ProduceBody {
    let key = key.map(|k| BASE64.encode(k.as_bytes()));
    ProduceBody {
        records: lines
            .iter()
            .map(|line| ProduceRecordJson {
                key: key.clone(),
                value: BASE64.encode(line),
                headers: None,
                partition,
                timestamp: None,
            })
            .collect(),
        encoding: Encoding::Base64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientCommand, ClientOpts};
    use daftka_http::mock::{MockNode, Reply};
    use serde_json::json;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn limits(lines_max: usize, bytes_max: usize) -> BatchLimits {
        BatchLimits {
            lines_max,
            bytes_max,
            linger: Duration::from_millis(10),
        }
    }

    async fn batches(input: &[u8], limits: &BatchLimits) -> Vec<Vec<Vec<u8>>> {
        let mut batcher = LineBatcher::new(input);
        let mut out = Vec::new();
        loop {
            let batch = batcher.next_batch(limits).await.expect("in-memory read");
            if batch.is_empty() {
                return out;
            }
            out.push(batch);
        }
    }

    fn strs(batches: &[Vec<Vec<u8>>]) -> Vec<Vec<&str>> {
        batches
            .iter()
            .map(|b| {
                b.iter()
                    .map(|l| std::str::from_utf8(l).expect("utf8"))
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn piped_lines_go_in_batches_of_at_most_n() {
        // Available input fills batches to the line limit; the remainder forms a last, short batch.
        let input: String = (0..7).map(|i| format!("v{i}\n")).collect();
        let got = batches(input.as_bytes(), &limits(3, usize::MAX)).await;
        assert_eq!(
            strs(&got),
            vec![vec!["v0", "v1", "v2"], vec!["v3", "v4", "v5"], vec!["v6"]]
        );
        let got = batches(input.as_bytes(), &limits(500, usize::MAX)).await;
        assert_eq!(got.len(), 1, "never one request per line");
        assert_eq!(got[0].len(), 7);
    }

    #[tokio::test]
    async fn lines_keep_their_bytes_but_lose_the_newline() {
        // Empty lines, `\r`, non-UTF-8 bytes and an unterminated last line are all records.
        let input = b"a\n\nb\r\n\xff\x00\nlast";
        let got = batches(input, &limits(500, usize::MAX)).await;
        assert_eq!(
            got,
            vec![vec![
                b"a".to_vec(),
                b"".to_vec(),
                b"b\r".to_vec(),
                b"\xff\x00".to_vec(),
                b"last".to_vec()
            ]]
        );
        assert!(batches(b"", &limits(500, usize::MAX)).await.is_empty());
    }

    #[tokio::test]
    async fn byte_limit_splits_batches_without_losing_lines() {
        // A batch stops before the line that would pass the byte limit; an oversized line goes alone.
        let got = batches(b"aaaa\nbb\ncc\ndddddddd\ne\n", &limits(500, 6)).await;
        assert_eq!(
            strs(&got),
            vec![vec!["aaaa", "bb"], vec!["cc"], vec!["dddddddd"], vec!["e"]]
        );
    }

    #[tokio::test]
    async fn a_slow_writer_gets_its_batch_after_the_linger() {
        // Interactive input: the first line is sent after the linger, not held until the batch fills.
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut batcher = LineBatcher::new(tokio::io::BufReader::new(reader));
        writer.write_all(b"one\ntw").await.expect("write");
        let batch = batcher
            .next_batch(&limits(500, usize::MAX))
            .await
            .expect("read");
        assert_eq!(strs(&[batch]), vec![vec!["one"]]);
        // The half-written line survives the cancelled read and is completed later.
        writer.write_all(b"o\n").await.expect("write");
        drop(writer);
        let batch = batcher
            .next_batch(&limits(500, usize::MAX))
            .await
            .expect("read");
        assert_eq!(strs(&[batch]), vec![vec!["two"]]);
    }

    #[test]
    fn request_body_is_base64_with_key_and_partition() {
        // Every record carries the value and key base64-encoded, and the chosen partition.
        let body = build_request(&[b"hi".to_vec(), b"\xff".to_vec()], Some("k"), Some(1));
        assert_eq!(
            serde_json::to_value(&body).expect("serializes"),
            json!({
                "records": [
                    {"key": "aw==", "value": "aGk=", "partition": 1},
                    {"key": "aw==", "value": "/w==", "partition": 1}
                ],
                "encoding": "base64"
            })
        );
        let body = build_request(&[b"x".to_vec()], None, None);
        assert_eq!(
            serde_json::to_value(&body).expect("serializes"),
            json!({"records": [{"value": "eA=="}], "encoding": "base64"})
        );
    }

    fn produce_args(topic: &str, batch: u32, verbose: bool) -> ProduceArgs {
        ProduceArgs {
            topic: topic.into(),
            key: None,
            partition: None,
            batch,
            batch_bytes_max: 1024 * 1024,
            linger_ms: 10,
            verbose,
        }
    }

    fn counting_node() -> impl Fn(&daftka_http::mock::Request) -> Reply {
        let next = Arc::new(AtomicU64::new(0));
        move |req| {
            assert_eq!(
                (req.method.as_str(), req.path.as_str()),
                ("POST", "/v1/topics/t/records")
            );
            let n = req.json()["records"].as_array().map_or(0, |r| r.len()) as u64;
            let first = next.fetch_add(n, Ordering::SeqCst);
            let offsets: Vec<_> = (first..first + n)
                .map(|o| json!({"partition": 0, "offset": o}))
                .collect();
            Reply::json(200, json!({"offsets": offsets}))
        }
    }

    #[tokio::test]
    async fn produce_sends_batches_and_prints_nothing_unless_verbose() {
        // 5 lines with --batch 2 make 3 requests; the summary appears only with --verbose.
        let node = MockNode::start(counting_node()).await;
        let mut out = Vec::new();
        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Produce(produce_args("t", 2, false)),
            &b"a\nb\nc\nd\ne\n"[..],
            &mut out,
        )
        .await
        .expect("produce");
        assert!(out.is_empty());
        let sizes: Vec<usize> = node
            .requests()
            .iter()
            .map(|r| r.json()["records"].as_array().map_or(0, |a| a.len()))
            .collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(node.requests()[0].json()["encoding"], "base64");

        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Produce(produce_args("t", 500, true)),
            &b"a\nb\n"[..],
            &mut out,
        )
        .await
        .expect("produce");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "% produced 2 records to t in 1 requests\n"
        );
    }

    #[tokio::test]
    async fn produce_errors_carry_the_node_code() {
        // A non-retryable error from the node ends the command with its code and message.
        let node =
            MockNode::start(|_| Reply::error(404, "unknown_topic", "topic \"t\" does not exist"))
                .await;
        let err = crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Produce(produce_args("t", 500, false)),
            &b"a\n"[..],
            Vec::new(),
        )
        .await
        .expect_err("unknown topic");
        assert_eq!(err.to_string(), "unknown_topic: topic \"t\" does not exist");
        assert_eq!(node.requests().len(), 1, "not retried");
    }

    #[tokio::test]
    async fn produce_retries_when_nothing_was_appended() {
        // `unavailable` means the records were not appended: the same batch is sent again.
        let calls = Arc::new(AtomicU64::new(0));
        let node = MockNode::start({
            let calls = calls.clone();
            move |_| match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Reply::error(503, "unavailable", "no leader"),
                _ => Reply::json(200, json!({"offsets": [{"partition": 0, "offset": 0}]})),
            }
        })
        .await;
        crate::client::run(
            ClientOpts { url: node.url() },
            ClientCommand::Produce(produce_args("t", 500, false)),
            &b"a\n"[..],
            Vec::new(),
        )
        .await
        .expect("produce after a retry");
        let requests = node.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body, requests[1].body);
    }
}
