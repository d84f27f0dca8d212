//! A client of a node's HTTP API: one function per route, over the shared contract ([`crate::json`]),
//! with retries of failures that are safe to retry.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use daftka_protocol::consumer::GroupTransport;
use daftka_protocol::{
    ErrorCode, FetchOffset, FetchRequest, FetchResponse, GroupCommit, Heartbeat, JoinGroup,
};

use crate::json::{
    ActorsJson, AlterTopicBody, ClusterJson, CommitBody, CommitOffsetJson, CreateTopicBody,
    Encoding, ErrorJson, FetchedJson, GroupsJson, HeartbeatBody, JoinBody, NodeJson, ProduceBody,
    ProducedJson, ReassignBody, ReassignmentJson, ReassignmentsJson, ResetBody, ResetJson,
    ResetToJson, TopicJson, TopicsJson,
};

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

/// Why a request (or a client command) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node answered with an error (`{"error": {"code", "message", "retryable"}}`).
    #[error("{code}: {message}")]
    Api {
        code: String,
        message: String,
        retryable: bool,
        /// With `offset_out_of_range`: the partition's first readable offset.
        log_start_offset: Option<u64>,
    },
    /// The node could not be reached, or the connection failed mid-request.
    #[error("unavailable: cannot reach {url}: {message}")]
    Transport {
        url: String,
        message: String,
        /// No connection was made, so the request certainly had no effect.
        connect: bool,
    },
    /// The node answered 2xx with a body this client does not understand.
    #[error("internal: unexpected reply from the node: {0}")]
    Decode(String),
    /// Reading stdin or writing stdout failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The command line is wrong in a way clap could not see (for example a malformed `--url`).
    #[error("usage: {0}")]
    Usage(String),
}

impl ClientError {
    /// The process exit code: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Whether the same request may succeed if sent again.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Api { retryable, .. } => *retryable,
            ClientError::Transport { .. } => true,
            _ => false,
        }
    }

    /// Prints `error: <self>` to stderr and returns the exit code, for `main`.
    pub fn report(&self) -> std::process::ExitCode {
        eprintln!("error: {self}");
        std::process::ExitCode::from(self.exit_code())
    }
}

/// Where a consumer starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The partition's log start offset.
    Earliest,
    /// The partition's high watermark: only records produced from now on.
    Latest,
    /// This exact offset.
    At(u64),
}

impl StartOffset {
    /// The value of the fetch request's `offset` query parameter.
    pub fn as_query(&self) -> String {
        self.to_string()
    }

    /// The `to` of a group offsets reset: `"earliest"`, `"latest"` or the offset as a number.
    pub fn as_json(&self) -> crate::json::ResetToJson {
        match self {
            StartOffset::At(offset) => crate::json::ResetToJson::Offset(*offset),
            named => crate::json::ResetToJson::Named(named.to_string()),
        }
    }
}

impl fmt::Display for StartOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartOffset::Earliest => f.write_str("earliest"),
            StartOffset::Latest => f.write_str("latest"),
            StartOffset::At(offset) => write!(f, "{offset}"),
        }
    }
}

impl FromStr for StartOffset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(StartOffset::Earliest),
            "latest" => Ok(StartOffset::Latest),
            _ => s
                .parse::<u64>()
                .map(StartOffset::At)
                .map_err(|_| format!("{s:?} is not `earliest`, `latest` or a non-negative offset")),
        }
    }
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
    ) -> Result<TopicJson, ClientError> {
        let body = CreateTopicBody {
            name: name.to_owned(),
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

    pub async fn list_topics(&self) -> Result<Vec<TopicJson>, ClientError> {
        let list: TopicsJson = self.get(&["v1", "topics"]).await?;
        Ok(list.topics)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicJson, ClientError> {
        self.get(&["v1", "topics", name]).await
    }

    /// The node's registered actors (`GET /v1/admin/actors`; needs `debug.chaos = true`).
    pub async fn list_actors(&self) -> Result<Vec<String>, ClientError> {
        let list: ActorsJson = self
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

    /// The cluster as this node sees it (`GET /v1/cluster`).
    pub async fn cluster(&self) -> Result<ClusterJson, ClientError> {
        self.get(&["v1", "cluster"]).await
    }

    /// Starts moving partition `partition` of `topic` to `replicas`
    /// (`POST /v1/topics/{t}/partitions/{p}/reassign`). Not retried after a lost answer: a second
    /// attempt would be refused as "already moving" although the first was taken.
    pub async fn reassign(
        &self,
        topic: &str,
        partition: u32,
        replicas: &[String],
    ) -> Result<ReassignmentJson, ClientError> {
        let partition = partition.to_string();
        let body = ReassignBody {
            replicas: replicas.to_vec(),
        };
        self.unless_taken(
            Method::POST,
            self.url(&["v1", "topics", topic, "partitions", &partition, "reassign"]),
            &[],
            Some(&body),
            0,
        )
        .await
        .and_then(decode)
    }

    /// Every replica move in flight (`GET /v1/reassignments`).
    pub async fn reassignments(&self) -> Result<Vec<ReassignmentJson>, ClientError> {
        let list: ReassignmentsJson = self.get(&["v1", "reassignments"]).await?;
        Ok(list.reassignments)
    }

    /// Starts (`draining`) or ends the drain of `node`
    /// (`POST /v1/cluster/nodes/{node}/drain|undrain`); retrying is safe.
    pub async fn drain_node(&self, node: &str, draining: bool) -> Result<NodeJson, ClientError> {
        let action = if draining { "drain" } else { "undrain" };
        self.retrying(
            Method::POST,
            self.url(&["v1", "cluster", "nodes", node, action]),
            &[],
            None::<&()>,
            0,
        )
        .await
        .and_then(decode)
    }

    /// Forgets `node` (`DELETE /v1/cluster/nodes/{node}`); answers it as it was, `state`
    /// "removed". Not retried: a second try would answer `unknown_node`.
    pub async fn remove_node(&self, node: &str) -> Result<NodeJson, ClientError> {
        self.once(
            Method::DELETE,
            self.url(&["v1", "cluster", "nodes", node]),
            &[],
            None::<&()>,
            0,
        )
        .await
        .and_then(decode)
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

    /// Grows a topic and changes its retention (`PATCH /v1/topics/{topic}`); answers the
    /// topic. Retrying is safe: the same change twice ends in the same topic.
    pub async fn alter_topic(
        &self,
        name: &str,
        body: &AlterTopicBody,
    ) -> Result<TopicJson, ClientError> {
        self.retrying(
            Method::PATCH,
            self.url(&["v1", "topics", name]),
            &[],
            Some(body),
            0,
        )
        .await
        .and_then(decode)
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
        request: &ProduceBody,
    ) -> Result<ProducedJson, ClientError> {
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
    ) -> Result<FetchedJson, ClientError> {
        let query = [
            ("offset", offset.to_owned()),
            ("max_records", max_records.to_string()),
        ];
        self.fetch_query(topic, partition, &query, max_wait_ms)
            .await
    }

    /// Reads records as a native [`FetchRequest`] asks (a byte limit too), decoded into the
    /// native answer.
    pub async fn fetch_records(
        &self,
        request: &FetchRequest,
    ) -> Result<FetchResponse, ClientError> {
        let offset = match request.offset {
            FetchOffset::Earliest => StartOffset::Earliest,
            FetchOffset::Latest => StartOffset::Latest,
            FetchOffset::At(o) => StartOffset::At(o),
        };
        let query = [
            ("offset", offset.as_query()),
            ("max_records", request.max_records.to_string()),
            ("max_bytes", request.max_bytes.to_string()),
        ];
        let wait_ms = u64::from(request.max_wait_ms);
        let fetched = self
            .fetch_query(&request.topic, request.partition, &query, wait_ms)
            .await?;
        fetched
            .decode(Encoding::Base64)
            .map_err(ClientError::Decode)
    }

    /// A fetch of one partition with `query` (and the wait, in base64), retried like every read.
    async fn fetch_query(
        &self,
        topic: &str,
        partition: u32,
        query: &[(&str, String)],
        max_wait_ms: u64,
    ) -> Result<FetchedJson, ClientError> {
        let partition = partition.to_string();
        let url = self.url(&["v1", "topics", topic, "partitions", &partition, "records"]);
        let mut query = query.to_vec();
        query.push(("max_wait_ms", max_wait_ms.to_string()));
        query.push(("encoding", "base64".to_owned()));
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
        let body = JoinBody {
            topics: topics.to_vec(),
            session_timeout_ms,
            assignor: assignor.map(str::to_owned),
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

    /// Keeps a member alive. With `owned`, the revoking partitions it leaves out are released;
    /// without, nothing is.
    pub async fn heartbeat(
        &self,
        group: &str,
        member: &str,
        owned: Option<Vec<TopicPartitions>>,
    ) -> Result<MemberAssignment, ClientError> {
        self.retrying(
            Method::POST,
            self.url(&["v1", "groups", group, "members", member, "heartbeat"]),
            &[],
            Some(&HeartbeatBody { owned }),
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

    /// Commits a member's offsets (the next offset to read of each partition); retrying is safe,
    /// committing the same offset again changes nothing.
    pub async fn commit_as_member(
        &self,
        group: &str,
        member: &str,
        generation: u64,
        offsets: &[TopicPartitionOffset],
    ) -> Result<(), ClientError> {
        let body = CommitBody {
            offsets: offsets
                .iter()
                .map(|o| CommitOffsetJson {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                })
                .collect(),
            member_id: Some(member.to_owned()),
            generation: Some(generation),
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
        let list: GroupsJson = self.get(&["v1", "groups"]).await?;
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
        to: ResetToJson,
    ) -> Result<Vec<TopicPartitionOffset>, ClientError> {
        let body = ResetBody {
            topic: topic.to_owned(),
            partition,
            to,
        };
        let reset: ResetJson = self
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

impl From<ClientError> for daftka_protocol::Error {
    /// The protocol error a failed request stands for: the node's own code when it answered one;
    /// `unavailable` when no connection was made (nothing happened), `timeout` when the
    /// connection failed mid-request (the outcome is unknown).
    fn from(e: ClientError) -> Self {
        let message = e.to_string();
        let code = match &e {
            ClientError::Api {
                code,
                log_start_offset,
                message,
                ..
            } => {
                let Some(known) = ErrorCode::from_name(code) else {
                    return daftka_protocol::Error::internal(format!("{code}: {message}"));
                };
                let mut error = daftka_protocol::Error::new(known, message.clone());
                error.log_start_offset = *log_start_offset;
                return error;
            }
            ClientError::Transport { connect: true, .. } => ErrorCode::Unavailable,
            ClientError::Transport { connect: false, .. } => ErrorCode::Timeout,
            ClientError::Usage(_) => ErrorCode::InvalidRequest,
            ClientError::Decode(_) | ClientError::Io(_) => ErrorCode::Internal,
        };
        daftka_protocol::Error::new(code, message)
    }
}

impl From<daftka_protocol::Error> for ClientError {
    fn from(e: daftka_protocol::Error) -> Self {
        ClientError::Api {
            code: e.code.as_str().to_owned(),
            retryable: e.retryable(),
            message: e.message,
            log_start_offset: e.log_start_offset,
        }
    }
}

/// The HTTP API as a consumer's transport: [`daftka_protocol::Consumer`] over HTTP is the same
/// group member as over the native client (`daftka consume --group` is one).
impl GroupTransport for Api {
    async fn join_group(&self, r: JoinGroup) -> Result<MemberAssignment, daftka_protocol::Error> {
        let joined = Api::join_group(
            self,
            &r.group,
            &r.topics,
            r.session_timeout_ms,
            r.assignor.as_deref(),
        );
        Ok(joined.await?)
    }

    async fn heartbeat(&self, r: Heartbeat) -> Result<MemberAssignment, daftka_protocol::Error> {
        Ok(Api::heartbeat(self, &r.group, &r.member_id, r.owned).await?)
    }

    async fn fetch(&self, r: FetchRequest) -> Result<FetchResponse, daftka_protocol::Error> {
        Ok(self.fetch_records(&r).await?)
    }

    async fn commit_group(&self, r: GroupCommit) -> Result<(), daftka_protocol::Error> {
        let Some((member, generation)) = &r.member else {
            return Err(daftka_protocol::Error::invalid(
                "a consumer commits as a member",
            ));
        };
        Ok(self
            .commit_as_member(&r.group, member, *generation, &r.offsets)
            .await?)
    }

    async fn leave_group(&self, group: &str, member: &str) -> Result<(), daftka_protocol::Error> {
        Ok(Api::leave_group(self, group, member).await?)
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
    match serde_json::from_slice::<ErrorJson>(body) {
        Ok(ErrorJson { error }) => ClientError::Api {
            code: error.code,
            message: error.message,
            retryable: error.retryable,
            log_start_offset: error.log_start_offset,
        },
        Err(_) => ClientError::Api {
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(body).trim().to_owned(),
            retryable: status == StatusCode::SERVICE_UNAVAILABLE,
            log_start_offset: None,
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
        // Absent key, headers, partition and timestamp are left out, so the node applies its
        // own defaults.
        use crate::json::{Encoding, ProduceRecordJson};
        let record = |key: Option<&str>, value: &str, partition| ProduceRecordJson {
            key: key.map(str::to_owned),
            value: value.into(),
            headers: None,
            partition,
            timestamp: None,
        };
        let body = ProduceBody {
            records: vec![
                record(None, "aGk=", None),
                record(Some("aw=="), "", Some(2)),
            ],
            encoding: Encoding::Base64,
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
