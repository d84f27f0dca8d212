//! The node's HTTP API as the client sees it: wire types and one function per route.
//!
//! Wire types are lenient where the client only prints a field (leaders and replicas are kept as JSON
//! values), and strict where it computes with one (offsets are `u64`).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::ClientError;

// The group endpoints answer the protocol's own types as JSON: the client reads them as they are.
pub use daftka_protocol::{
    GroupDescription, GroupSummary, MemberAssignment, TopicPartitionOffset, TopicPartitions,
};

/// How long one request may take, beyond its own long-poll wait, before the client gives up.
const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How long connecting to the node may take.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Attempts of one request whose failure is retryable (`unavailable`, `not_leader`, connection refused).
const RETRY_ATTEMPTS_MAX: u32 = 5;
/// Wait before the first retry; it doubles with each further attempt.
const RETRY_BACKOFF_MS_INITIAL: u64 = 100;

/// A topic as `GET /v1/topics/{t}` describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TopicDescription {
    pub name: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionDescription>,
}

/// One partition of a [`TopicDescription`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PartitionDescription {
    pub partition: u32,
    /// A node id or name, or null while the partition has no leader.
    #[serde(default)]
    pub leader: serde_json::Value,
    #[serde(default)]
    pub replicas: Vec<serde_json::Value>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
}

#[derive(Debug, Deserialize)]
struct TopicList {
    topics: Vec<TopicDescription>,
}

#[derive(Debug, Serialize)]
struct CreateTopic<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_factor: Option<u32>,
}

/// The body of `POST /v1/topics/{t}/records`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProduceRequest {
    pub records: Vec<ProduceRecord>,
    /// Always `base64` from this client, so any bytes survive.
    pub encoding: &'static str,
}

/// One record of a [`ProduceRequest`]; absent fields are left to the node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProduceRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
}

/// The reply to a produce: one entry per record, in request order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProduceResponse {
    pub offsets: Vec<ProducedOffset>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProducedOffset {
    pub partition: u32,
    pub offset: u64,
}

/// The reply to `GET /v1/topics/{t}/partitions/{p}/records`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FetchResponse {
    pub records: Vec<FetchedRecord>,
    pub next_offset: u64,
    pub high_watermark: u64,
    #[serde(default)]
    pub log_start_offset: u64,
}

/// One fetched record; key and value are base64 text (the client always asks for that encoding).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FetchedRecord {
    pub offset: u64,
    #[serde(default)]
    pub key: Option<String>,
    pub value: String,
}

/// The body of `POST /v1/groups/{g}/offsets`: a member's commit, fenced by its generation.
#[derive(Debug, Serialize)]
struct MemberCommit<'a> {
    member_id: &'a str,
    generation: u64,
    offsets: &'a [TopicPartitionOffset],
}

/// The body of `POST /v1/groups/{g}/members`; absent options are left to the node.
#[derive(Debug, Serialize)]
struct JoinGroup<'a> {
    topics: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    session_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assignor: Option<&'a str>,
}

/// The reply to `GET /v1/groups/{g}/members/{m}/records`: records from the group's positions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PollResponse {
    pub records: Vec<PolledRecord>,
    #[serde(flatten)]
    pub member: MemberAssignment,
}

/// One record a member polled; key and value are base64 text (the client always asks for that).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PolledRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    #[serde(default)]
    pub key: Option<String>,
    pub value: String,
}

#[derive(Debug, Deserialize)]
struct GroupList {
    groups: Vec<GroupSummary>,
}

/// The body of `POST /v1/groups/{g}/offsets/reset`.
#[derive(Debug, Serialize)]
struct ResetOffsets<'a> {
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<u32>,
    /// `"earliest"`, `"latest"` or an offset.
    to: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct ResetAnswer {
    offsets: Vec<TopicPartitionOffset>,
}

/// The body of every non-2xx reply.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    retryable: bool,
}

/// A handle on one node's HTTP API; cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Api {
    base: Url,
    http: reqwest::Client,
}

impl Api {
    /// Checks the base URL and builds the HTTP client.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = Url::parse(base_url)
            .map_err(|e| ClientError::Usage(format!("bad --url {base_url:?}: {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Usage(format!(
                "bad --url {base_url:?}: expected http://host:port"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .build()
            .map_err(|e| ClientError::Transport {
                url: base_url.to_owned(),
                message: error_chain(&e),
                connect: true,
            })?;
        Ok(Api { base, http })
    }

    /// The URL of a route: the base URL's path, then each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: Option<u32>,
        replication_factor: Option<u32>,
    ) -> Result<TopicDescription, ClientError> {
        let body = CreateTopic {
            name,
            partitions,
            replication_factor,
        };
        // Not retried: a retry after a lost reply would answer `topic_exists`.
        self.once(
            Method::POST,
            self.url(&["v1", "topics"]),
            &[],
            Some(&body),
            0,
        )
        .await
        .and_then(decode)
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicDescription>, ClientError> {
        let list: TopicList = self.get(&["v1", "topics"]).await?;
        Ok(list.topics)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        self.get(&["v1", "topics", name]).await
    }

    /// The node's registered actors (`GET /v1/admin/actors`; needs `debug.chaos = true`).
    pub async fn list_actors(&self) -> Result<Vec<String>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Actors {
            actors: Vec<String>,
        }
        let list: Actors = self
            .once(
                Method::GET,
                self.url(&["v1", "admin", "actors"]),
                &[],
                None::<&()>,
                0,
            )
            .await
            .and_then(decode)?;
        Ok(list.actors)
    }

    /// Kills one registered actor of the node (`DELETE /v1/admin/actors/{actor}`).
    pub async fn kill_actor(&self, name: &str) -> Result<(), ClientError> {
        self.once(
            Method::DELETE,
            self.url(&["v1", "admin", "actors", name]),
            &[],
            None::<&()>,
            0,
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.once(
            Method::DELETE,
            self.url(&["v1", "topics", name]),
            &[],
            None::<&()>,
            0,
        )
        .await
        .map(|_| ())
    }

    /// Appends records. Retried only when nothing was appended: on `unavailable`, `not_leader` and
    /// failed connections. A `timeout` or a connection lost mid-request is returned, since its
    /// outcome is unknown and a retry could duplicate records.
    pub async fn produce(
        &self,
        topic: &str,
        request: &ProduceRequest,
    ) -> Result<ProduceResponse, ClientError> {
        let url = self.url(&["v1", "topics", topic, "records"]);
        self.unless_taken(Method::POST, url, &[], Some(request), 0)
            .await
            .and_then(decode)
    }

    /// Reads records from `offset` (`earliest`, `latest` or a number), waiting up to `max_wait_ms`
    /// for the first one.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: &str,
        max_records: u64,
        max_wait_ms: u64,
    ) -> Result<FetchResponse, ClientError> {
        let partition = partition.to_string();
        let url = self.url(&["v1", "topics", topic, "partitions", &partition, "records"]);
        let query = [
            ("offset", offset.to_owned()),
            ("max_records", max_records.to_string()),
            ("max_wait_ms", max_wait_ms.to_string()),
            ("encoding", "base64".to_owned()),
        ];
        self.retrying(Method::GET, url, &query, None::<&()>, max_wait_ms)
            .await
            .and_then(decode)
    }

    /// Joins `group` as a new member reading `topics`. Retried only when certainly not taken: a
    /// retry after a lost reply would add a second member.
    pub async fn join_group(
        &self,
        group: &str,
        topics: &[String],
        session_timeout_ms: Option<u64>,
        assignor: Option<&str>,
    ) -> Result<MemberAssignment, ClientError> {
        let body = JoinGroup {
            topics,
            session_timeout_ms,
            assignor,
        };
        self.unless_taken(
            Method::POST,
            self.url(&["v1", "groups", group, "members"]),
            &[],
            Some(&body),
            0,
        )
        .await
        .and_then(decode)
    }

    /// Keeps a member alive without releasing anything it is asked to give back.
    pub async fn heartbeat(
        &self,
        group: &str,
        member: &str,
    ) -> Result<MemberAssignment, ClientError> {
        self.retrying(
            Method::POST,
            self.url(&["v1", "groups", group, "members", member, "heartbeat"]),
            &[],
            Some(&serde_json::json!({})),
            0,
        )
        .await
        .and_then(decode)
    }

    /// Leaves the group; its partitions go to the other members at once. A member the node no
    /// longer knows (`unknown_member`: it expired, or an earlier attempt succeeded) is gone as asked.
    pub async fn leave_group(&self, group: &str, member: &str) -> Result<(), ClientError> {
        let result = self
            .retrying(
                Method::DELETE,
                self.url(&["v1", "groups", group, "members", member]),
                &[],
                None::<&()>,
                0,
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(ClientError::Api { code, .. }) if code == "unknown_member" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads up to `max_records` records of the member's partitions from the group's positions,
    /// waiting up to `max_wait_ms` for the first; the poll also heartbeats and releases what the
    /// member was asked to give back. The node moves the member's positions past what it answers,
    /// so this is retried only when certainly not taken.
    pub async fn poll_group(
        &self,
        group: &str,
        member: &str,
        max_records: u64,
        max_wait_ms: u64,
    ) -> Result<PollResponse, ClientError> {
        let url = self.url(&["v1", "groups", group, "members", member, "records"]);
        let query = [
            ("max_records", max_records.to_string()),
            ("max_wait_ms", max_wait_ms.to_string()),
            ("encoding", "base64".to_owned()),
        ];
        self.unless_taken(Method::GET, url, &query, None::<&()>, max_wait_ms)
            .await
            .and_then(decode)
    }

    /// Commits a member's offsets (the next offset to read of each partition); retrying is safe,
    /// committing the same offset again changes nothing.
    pub async fn commit_as_member(
        &self,
        group: &str,
        member: &str,
        generation: u64,
        offsets: &[TopicPartitionOffset],
    ) -> Result<(), ClientError> {
        let body = MemberCommit {
            member_id: member,
            generation,
            offsets,
        };
        self.retrying(
            Method::POST,
            self.url(&["v1", "groups", group, "offsets"]),
            &[],
            Some(&body),
            0,
        )
        .await
        .map(|_| ())
    }

    /// Every group with members or committed offsets.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>, ClientError> {
        let list: GroupList = self.get(&["v1", "groups"]).await?;
        Ok(list.groups)
    }

    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        self.get(&["v1", "groups", group]).await
    }

    /// Moves a group's committed offsets of `topic` (or of one partition) to `to`, which is
    /// `"earliest"`, `"latest"` or an offset; answers the new offsets. Retrying is safe.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partition: Option<u32>,
        to: serde_json::Value,
    ) -> Result<Vec<TopicPartitionOffset>, ClientError> {
        let body = ResetOffsets {
            topic,
            partition,
            to,
        };
        let reset: ResetAnswer = self
            .retrying(
                Method::POST,
                self.url(&["v1", "groups", group, "offsets", "reset"]),
                &[],
                Some(&body),
                0,
            )
            .await
            .and_then(decode)?;
        Ok(reset.offsets)
    }

    /// A GET of the path made of `segments`, retried like every request, decoded from JSON.
    async fn get<T: for<'de> Deserialize<'de>>(&self, segments: &[&str]) -> Result<T, ClientError> {
        self.retrying(Method::GET, self.url(segments), &[], None::<&()>, 0)
            .await
            .and_then(decode)
    }

    /// Sends a request that is not idempotent, retrying only failures that certainly had no effect.
    async fn unless_taken<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&B>,
        wait_ms: u64,
    ) -> Result<Vec<u8>, ClientError> {
        self.sending(method, url, query, body, wait_ms, nothing_done)
            .await
    }

    /// Sends an idempotent request, retrying retryable failures up to [`RETRY_ATTEMPTS_MAX`] times.
    async fn retrying<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&B>,
        wait_ms: u64,
    ) -> Result<Vec<u8>, ClientError> {
        self.sending(method, url, query, body, wait_ms, ClientError::retryable)
            .await
    }

    /// Sends a request, again after a backoff while `again` says so, up to [`RETRY_ATTEMPTS_MAX`]
    /// attempts.
    async fn sending<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&B>,
        wait_ms: u64,
        again: fn(&ClientError) -> bool,
    ) -> Result<Vec<u8>, ClientError> {
        let mut attempt = 0;
        loop {
            match self
                .once(method.clone(), url.clone(), query, body, wait_ms)
                .await
            {
                Err(ref e) if again(e) && attempt + 1 < RETRY_ATTEMPTS_MAX => {
                    tracing::debug!(%url, error = %e, attempt, "retrying");
                    backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends one request; a non-2xx reply becomes [`ClientError::Api`], its body the 2xx body.
    async fn once<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&B>,
        wait_ms: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.to_string(),
            message: error_chain(&e),
            connect: e.is_connect(),
        };
        let mut request = self
            .http
            .request(method, url.clone())
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS + wait_ms));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(api_error(status, &bytes))
        }
    }
}

/// Whether a failed request certainly had no effect, so that even a non-idempotent one may be retried.
pub fn nothing_done(e: &ClientError) -> bool {
    match e {
        ClientError::Api { code, .. } => code == "unavailable" || code == "not_leader",
        ClientError::Transport { connect, .. } => *connect,
        _ => false,
    }
}

/// Turns a non-2xx reply into an error, even when its body is not the documented JSON.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Api {
            code: error.code,
            message: error.message,
            retryable: error.retryable,
        },
        Err(_) => ClientError::Api {
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(body).trim().to_owned(),
            retryable: status == StatusCode::SERVICE_UNAVAILABLE,
        },
    }
}

fn decode<T: for<'de> Deserialize<'de>>(body: Vec<u8>) -> Result<T, ClientError> {
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
}

async fn backoff(attempt: u32) {
    let ms = RETRY_BACKOFF_MS_INITIAL.saturating_mul(1 << attempt.min(10));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// reqwest's top-level message only repeats the URL ("error sending request for url (...)"); the
/// causes say why.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let Some(first) = e.source() else {
        return e.to_string();
    };
    let mut message = first.to_string();
    let mut source = first.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        // Routes are appended to the base URL's path and names are percent-encoded.
        let api = Api::new("http://h:1/prefix/").expect("valid url");
        assert_eq!(
            api.url(&["v1", "topics", "a b/c"]).as_str(),
            "http://h:1/prefix/v1/topics/a%20b%2Fc"
        );
        let api = Api::new("http://h:1").expect("valid url");
        assert_eq!(api.url(&["v1", "topics"]).as_str(), "http://h:1/v1/topics");
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        // A URL that cannot be a base is a usage error (exit 2), found before any request.
        for url in ["", "h:1", "mailto:x@y", "ftp://h/"] {
            match Api::new(url) {
                Err(e @ ClientError::Usage(_)) => assert_eq!(e.exit_code(), 2),
                other => panic!("{url:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_bodies_become_api_errors() {
        // The documented error body is kept; anything else still says the status.
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"unknown_topic","message":"topic \"x\" does not exist","retryable":false}}"#,
        );
        assert_eq!(e.to_string(), r#"unknown_topic: topic "x" does not exist"#);
        assert!(!e.retryable());
        let e = api_error(StatusCode::BAD_GATEWAY, b"oops\n");
        assert_eq!(e.to_string(), "http_502: oops");
        assert!(!e.retryable());
    }

    #[test]
    fn produce_body_omits_absent_fields() {
        // Absent key and partition are left out, so the node applies its own defaults.
        let body = ProduceRequest {
            records: vec![
                ProduceRecord {
                    key: None,
                    value: "aGk=".into(),
                    partition: None,
                },
                ProduceRecord {
                    key: Some("aw==".into()),
                    value: "".into(),
                    partition: Some(2),
                },
            ],
            encoding: "base64",
        };
        assert_eq!(
            serde_json::to_value(&body).expect("serializes"),
            serde_json::json!({
                "records": [{"value": "aGk="}, {"key": "aw==", "value": "", "partition": 2}],
                "encoding": "base64"
            })
        );
    }
}
