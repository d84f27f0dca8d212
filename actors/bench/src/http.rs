//! The bench over the node's JSON HTTP API: one `reqwest::Client` (one connection) per producer or
//! reader, produce bodies serialized once and sent as shared bytes.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::drive::{read_stamp, write_stamp, Failure, Fetched, Producer, Reader};
use super::plan::Ticket;
use super::{Spread, TopicInfo};
use daftka_http::client::Api;
use daftka_http::client::ClientError;

/// How long one request may take before it counts as a failed attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `max_bytes` of every fetch (the node caps it at its `limits.fetch_bytes_max`).
const FETCH_MAX_BYTES: u32 = 64 * 1024 * 1024;

/// An HTTP client that keeps one connection, without Nagle's delay.
fn connection(url: &Url) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| ClientError::Transport {
            url: url.to_string(),
            message: e.to_string(),
            connect: true,
        })
}

/// Creates the topic (if `create` and it does not exist) and waits until every partition has a
/// leader; answers its partitions and replication factor.
pub async fn prepare_topic(
    api: &Api,
    topic: &str,
    create: Option<(u32, Option<u32>)>,
) -> Result<TopicInfo, ClientError> {
    if let Some((partitions, rf)) = create {
        match api.create_topic(topic, Some(partitions), rf).await {
            Ok(_) => {}
            Err(ClientError::Api { code, .. }) if code == "topic_exists" => {}
            Err(e) => return Err(e),
        }
    }
    super::wait_for_leaders(|| async {
        let t = api.describe_topic(topic).await?;
        let partitions = t.partitions.iter().map(|p| {
            let led = p.leader.is_some();
            (p.partition, p.log_start_offset, p.high_watermark, led)
        });
        Ok(TopicInfo::described(t.replication_factor, partitions))
    })
    .await
}

/// A produce body of `n` records whose values are `value` (JSON-safe ASCII), record `j` naming
/// partition `partition(j)`; with the offsets where each value starts, to stamp them.
fn produce_body(
    n: u32,
    value: &[u8],
    partition: impl Fn(u32) -> Option<u32>,
) -> (Vec<u8>, Vec<usize>) {
    let mut body = Vec::with_capacity(48 + n as usize * (value.len() + 32));
    let mut starts = Vec::with_capacity(n as usize);
    body.extend_from_slice(br#"{"encoding":"utf8","records":["#);
    for j in 0..n {
        if j > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"value":""#);
        starts.push(body.len());
        body.extend_from_slice(value);
        body.push(b'"');
        if let Some(p) = partition(j) {
            body.extend_from_slice(br#","partition":"#);
            body.extend_from_slice(p.to_string().as_bytes());
        }
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    (body, starts)
}

/// One body, pre-built once for every producer: its bytes, shared, and where its values start
/// (to stamp copies of it, e2e).
struct Prebuilt<B> {
    shared: B,
    starts: Vec<usize>,
}

/// A producer over its own HTTP connection.
pub struct HttpProducer<B> {
    http: reqwest::Client,
    url: Url,
    value: Vec<u8>,
    batch: u32,
    spread: Spread,
    /// Full-batch bodies: `spread.variants()` of them, request `i` sends body `i % len`.
    bodies: Arc<Vec<Prebuilt<B>>>,
}

/// Builds `n` producers of `value`-sized records, `batch` per request, spread as `spread`.
pub fn producers(
    api: &Api,
    topic: &str,
    n: u32,
    value: &[u8],
    batch: u32,
    spread: Spread,
) -> Result<Vec<impl Producer>, ClientError> {
    let url = api.url(&["v1", "topics", topic, "records"]);
    let bodies: Arc<Vec<_>> = Arc::new(
        (0..spread.variants())
            .map(|v| {
                let (json, starts) = produce_body(batch, value, |j| spread.partition(v, j));
                Prebuilt {
                    shared: bytes::Bytes::from(json),
                    starts,
                }
            })
            .collect(),
    );
    (0..n)
        .map(|_| {
            Ok(HttpProducer {
                http: connection(&url)?,
                url: url.clone(),
                value: value.to_vec(),
                batch,
                spread,
                bodies: bodies.clone(),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct Ack {
    offsets: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    retryable: bool,
}

/// A non-2xx reply: retried if the node says so (503 `unavailable`, `not_leader`, `timeout`).
fn api_failure(status: StatusCode, body: &[u8]) -> Failure {
    let (code, message, retryable) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => (error.code, error.message, error.retryable),
        Err(_) => (
            format!("http_{}", status.as_u16()),
            String::from_utf8_lossy(body).trim().to_owned(),
            false,
        ),
    };
    if retryable || status == StatusCode::SERVICE_UNAVAILABLE {
        Failure::Retry(format!("{code}: {message}"))
    } else {
        Failure::Fatal(ClientError::Api {
            code,
            message,
            retryable,
            log_start_offset: None,
        })
    }
}

/// A request that got no answer: tried again (the node may be restarting or electing).
fn transport_failure(e: reqwest::Error) -> Failure {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Failure::Retry(message)
}

/// Sends a request and answers its 2xx body.
async fn exchange(request: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status();
    let body = response.bytes().await.map_err(transport_failure)?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(api_failure(status, &body))
    }
}

impl<B> Producer for HttpProducer<B>
where
    B: Clone + AsRef<[u8]> + Into<reqwest::Body> + Send + Sync + 'static,
{
    async fn send(&mut self, ticket: &Ticket, stamp: Option<u64>) -> Result<(), Failure> {
        let variant = (ticket.index % self.bodies.len() as u64) as usize;
        let prebuilt = &self.bodies[variant];
        let body: reqwest::Body = match (ticket.records == self.batch, stamp) {
            (true, None) => prebuilt.shared.clone().into(),
            (true, Some(stamp)) => {
                let mut json = prebuilt.shared.as_ref().to_vec();
                for &at in &prebuilt.starts {
                    write_stamp(&mut json[at..], stamp);
                }
                json.into()
            }
            // The short last request of a run: built for the occasion.
            (false, stamp) => {
                let spread = self.spread;
                let (mut json, starts) = produce_body(ticket.records, &self.value, |j| {
                    spread.partition(variant as u32, j)
                });
                if let Some(stamp) = stamp {
                    for at in starts {
                        write_stamp(&mut json[at..], stamp);
                    }
                }
                json.into()
            }
        };
        let request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let reply = exchange(request).await?;
        let ack: Ack = serde_json::from_slice(&reply)
            .map_err(|e| Failure::Fatal(ClientError::Decode(e.to_string())))?;
        if ack.offsets.len() != ticket.records as usize {
            return Err(Failure::Fatal(ClientError::Decode(format!(
                "{} records sent, {} acknowledged",
                ticket.records,
                ack.offsets.len()
            ))));
        }
        Ok(())
    }
}

/// A reader of one partition over its own HTTP connection.
pub struct HttpReader {
    http: reqwest::Client,
    url: Url,
    /// Asked for once a record turned out not to be UTF-8 (values are then counted, not decoded).
    base64: bool,
}

impl HttpReader {
    pub fn new(api: &Api, topic: &str, partition: u32) -> Result<HttpReader, ClientError> {
        let p = partition.to_string();
        let url = api.url(&["v1", "topics", topic, "partitions", &p, "records"]);
        Ok(HttpReader {
            http: connection(&url)?,
            url,
            base64: false,
        })
    }
}

#[derive(Deserialize)]
struct FetchReply<'a> {
    #[serde(borrow)]
    records: Vec<FetchedValue<'a>>,
    next_offset: u64,
}

#[derive(Deserialize)]
struct FetchedValue<'a> {
    #[serde(borrow)]
    value: Cow<'a, str>,
}

/// The length of the bytes a padded standard base64 text stands for.
fn base64_len(text: &str) -> u64 {
    let pad = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(pad) as u64
}

impl Reader for HttpReader {
    async fn fetch(
        &mut self,
        offset: u64,
        max_records: u32,
        wait_ms: u32,
        mut stamps: Option<&mut Vec<u64>>,
    ) -> Result<Fetched, Failure> {
        loop {
            let mut url = self.url.clone();
            url.set_query(Some(&format!(
                "offset={offset}&max_records={max_records}&max_bytes={FETCH_MAX_BYTES}\
                 &max_wait_ms={wait_ms}&encoding={}",
                if self.base64 { "base64" } else { "utf8" }
            )));
            let reply = match exchange(self.http.get(url)).await {
                Err(Failure::Fatal(ClientError::Api { code, message, .. }))
                    if code == "invalid_request" && message.contains("UTF-8") && !self.base64 =>
                {
                    self.base64 = true;
                    continue;
                }
                other => other?,
            };
            let reply: FetchReply = serde_json::from_slice(&reply)
                .map_err(|e| Failure::Fatal(ClientError::Decode(e.to_string())))?;
            let mut bytes = 0;
            for r in &reply.records {
                if self.base64 {
                    bytes += base64_len(&r.value);
                    if let Some(stamps) = stamps.as_deref_mut() {
                        let prefix = base64::engine::general_purpose::STANDARD
                            .decode(r.value.get(..24).unwrap_or_default())
                            .unwrap_or_default();
                        stamps.extend(read_stamp(&prefix));
                    }
                } else {
                    bytes += r.value.len() as u64;
                    if let Some(stamps) = stamps.as_deref_mut() {
                        stamps.extend(read_stamp(r.value.as_bytes()));
                    }
                }
            }
            return Ok(Fetched {
                records: reply.records.len() as u64,
                bytes,
                next_offset: reply.next_offset,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_bodies_are_the_documented_json() {
        // What the node parses: utf8 values, explicit partitions when asked, stampable values.
        let (body, starts) = produce_body(3, b"0000000000000000ab", |j| (j != 1).then_some(j + 5));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "encoding": "utf8",
                "records": [
                    {"value": "0000000000000000ab", "partition": 5},
                    {"value": "0000000000000000ab"},
                    {"value": "0000000000000000ab", "partition": 7},
                ]
            })
        );
        let mut stamped = body.clone();
        for at in &starts {
            write_stamp(&mut stamped[*at..], 42);
        }
        let v: serde_json::Value = serde_json::from_slice(&stamped).expect("json");
        for r in v["records"].as_array().expect("records") {
            assert_eq!(r["value"], "0000000000000042ab");
        }
    }

    #[test]
    fn replies_are_understood() {
        // Errors the node marks retryable (and any 503) are retried; others end the run.
        let body = br#"{"error":{"code":"not_leader","message":"moved","retryable":true}}"#;
        assert!(matches!(
            api_failure(StatusCode::SERVICE_UNAVAILABLE, body),
            Failure::Retry(m) if m == "not_leader: moved"
        ));
        assert!(matches!(
            api_failure(StatusCode::SERVICE_UNAVAILABLE, b"busy"),
            Failure::Retry(_)
        ));
        let body =
            br#"{"error":{"code":"payload_too_large","message":"too many","retryable":false}}"#;
        match api_failure(StatusCode::PAYLOAD_TOO_LARGE, body) {
            Failure::Fatal(e) => assert_eq!(e.to_string(), "payload_too_large: too many"),
            other => panic!("{other:?}"),
        }
        let reply: FetchReply = serde_json::from_slice(
            br#"{"records":[{"offset":3,"value":"a\"b","timestamp":1},{"offset":4,"value":"xy"}],
                "next_offset":5,"high_watermark":9,"log_start_offset":0}"#,
        )
        .expect("fetch reply");
        assert_eq!(reply.next_offset, 5);
        assert_eq!(reply.records[0].value, "a\"b");
        assert_eq!(base64_len("aGk="), 2);
        assert_eq!(base64_len("aGkh"), 3);
        assert_eq!(base64_len("aA=="), 1);
        assert_eq!(base64_len(""), 0);
    }
}
