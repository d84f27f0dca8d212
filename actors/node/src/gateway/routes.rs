//! The route table and the per-request frame: request id, tracing span, metrics, error rendering.
//!
//! Routing is one `match` on (path segments, method) rather than a tree of warp filters. Every
//! request, the unmatched ones included, then goes through the same frame: the route template (a
//! bounded metric label, never the raw path) and the request id are known before any handler runs,
//! so the handler's logs sit inside the request's span and every answer, 404s too, gets the JSON
//! error shape and an `x-request-id`. warp's rejection merging never decides a status.
//!
//! Wrong methods on a known path answer 404 `not_found` (the message names the allowed methods):
//! one code, one status, mapped in [`super::error`].

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use daftka_protocol::{Error, ErrorCode};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::{admin, cluster, error, groups, records, topics, GatewayState};

/// The request header (and response header) carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest client-supplied request id kept; longer ones are replaced by a generated id.
pub const REQUEST_ID_LEN_MAX: usize = 128;

/// The metric label of requests that match no route.
pub const ROUTE_UNMATCHED: &str = "unmatched";

/// A request body, as warp streams it.
pub type Body = BoxStream<'static, Result<Bytes, warp::Error>>;

/// What the frame needs of one request.
pub struct HttpRequest {
    pub method: Method,
    /// The raw (still percent-encoded) path.
    pub path: String,
    pub headers: HeaderMap,
    /// The raw query string, empty when absent.
    pub query: String,
    pub body: Body,
}

/// A recognised operation with its raw path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Cluster,
    DrainNode { node: String, draining: bool },
    RemoveNode { node: String },
    Reassign { topic: String, partition: String },
    Reassignments,
    ListTopics,
    CreateTopic,
    DescribeTopic { topic: String },
    AlterTopic { topic: String },
    DeleteTopic { topic: String },
    Produce { topic: String },
    Fetch { topic: String, partition: String },
    CommitOffsets { group: String },
    CommittedOffsets { group: String },
    ResetOffsets { group: String },
    ListGroups,
    DescribeGroup { group: String },
    JoinGroup { group: String },
    Heartbeat { group: String, member: String },
    LeaveGroup { group: String, member: String },
    PollGroup { group: String, member: String },
    ListActors,
    KillActor { actor: String },
}

/// The route template of `path` (the metric label) and the operation `method` selects there.
pub fn recognise(method: &Method, path: &str) -> (&'static str, Result<Route, Error>) {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let m = method.as_str();
    let s = |x: &str| x.to_string();
    let (template, allowed, route): (&'static str, &str, Option<Route>) = match segments.as_slice()
    {
        ["healthz"] => ("/healthz", "GET", (m == "GET").then_some(Route::Healthz)),
        ["readyz"] => ("/readyz", "GET", (m == "GET").then_some(Route::Readyz)),
        ["v1", "cluster"] => ("/v1/cluster", "GET", (m == "GET").then_some(Route::Cluster)),
        ["v1", "cluster", "nodes", node] => (
            "/v1/cluster/nodes/{node}",
            "DELETE",
            (m == "DELETE").then(|| Route::RemoveNode { node: s(node) }),
        ),
        ["v1", "cluster", "nodes", node, action @ ("drain" | "undrain")] => (
            if *action == "drain" {
                "/v1/cluster/nodes/{node}/drain"
            } else {
                "/v1/cluster/nodes/{node}/undrain"
            },
            "POST",
            (m == "POST").then(|| Route::DrainNode {
                node: s(node),
                draining: *action == "drain",
            }),
        ),
        ["v1", "topics"] => (
            "/v1/topics",
            "GET, POST",
            match m {
                "GET" => Some(Route::ListTopics),
                "POST" => Some(Route::CreateTopic),
                _ => None,
            },
        ),
        ["v1", "topics", topic] => (
            "/v1/topics/{topic}",
            "GET, PATCH, DELETE",
            match m {
                "GET" => Some(Route::DescribeTopic { topic: s(topic) }),
                "PATCH" => Some(Route::AlterTopic { topic: s(topic) }),
                "DELETE" => Some(Route::DeleteTopic { topic: s(topic) }),
                _ => None,
            },
        ),
        ["v1", "topics", topic, "records"] => (
            "/v1/topics/{topic}/records",
            "POST",
            (m == "POST").then(|| Route::Produce { topic: s(topic) }),
        ),
        ["v1", "topics", topic, "partitions", partition, "reassign"] => (
            "/v1/topics/{topic}/partitions/{partition}/reassign",
            "POST",
            (m == "POST").then(|| Route::Reassign {
                topic: s(topic),
                partition: s(partition),
            }),
        ),
        ["v1", "reassignments"] => (
            "/v1/reassignments",
            "GET",
            (m == "GET").then_some(Route::Reassignments),
        ),
        ["v1", "topics", topic, "partitions", partition, "records"] => (
            "/v1/topics/{topic}/partitions/{partition}/records",
            "GET",
            (m == "GET").then(|| Route::Fetch {
                topic: s(topic),
                partition: s(partition),
            }),
        ),
        ["v1", "groups", group, "offsets"] => (
            "/v1/groups/{group}/offsets",
            "GET, POST",
            match m {
                "GET" => Some(Route::CommittedOffsets { group: s(group) }),
                "POST" => Some(Route::CommitOffsets { group: s(group) }),
                _ => None,
            },
        ),
        ["v1", "groups", group, "offsets", "reset"] => (
            "/v1/groups/{group}/offsets/reset",
            "POST",
            (m == "POST").then(|| Route::ResetOffsets { group: s(group) }),
        ),
        ["v1", "groups"] => (
            "/v1/groups",
            "GET",
            (m == "GET").then_some(Route::ListGroups),
        ),
        ["v1", "groups", group] => (
            "/v1/groups/{group}",
            "GET",
            (m == "GET").then(|| Route::DescribeGroup { group: s(group) }),
        ),
        ["v1", "groups", group, "members"] => (
            "/v1/groups/{group}/members",
            "POST",
            (m == "POST").then(|| Route::JoinGroup { group: s(group) }),
        ),
        ["v1", "groups", group, "members", member] => (
            "/v1/groups/{group}/members/{member}",
            "DELETE",
            (m == "DELETE").then(|| Route::LeaveGroup {
                group: s(group),
                member: s(member),
            }),
        ),
        ["v1", "groups", group, "members", member, "heartbeat"] => (
            "/v1/groups/{group}/members/{member}/heartbeat",
            "POST",
            (m == "POST").then(|| Route::Heartbeat {
                group: s(group),
                member: s(member),
            }),
        ),
        ["v1", "groups", group, "members", member, "records"] => (
            "/v1/groups/{group}/members/{member}/records",
            "GET",
            (m == "GET").then(|| Route::PollGroup {
                group: s(group),
                member: s(member),
            }),
        ),
        ["v1", "admin", "actors"] => (
            "/v1/admin/actors",
            "GET",
            (m == "GET").then_some(Route::ListActors),
        ),
        ["v1", "admin", "actors", actor] => (
            "/v1/admin/actors/{actor}",
            "DELETE",
            (m == "DELETE").then(|| Route::KillActor { actor: s(actor) }),
        ),
        _ => {
            return (
                ROUTE_UNMATCHED,
                Err(Error::new(
                    ErrorCode::NotFound,
                    format!("no route for {m} {path}"),
                )),
            )
        }
    };
    let route = route.ok_or_else(|| {
        Error::new(
            ErrorCode::NotFound,
            format!("method {m} is not allowed on {template} (allowed: {allowed})"),
        )
    });
    (template, route)
}

/// Serves one request: the frame around [`dispatch`].
pub async fn handle(state: GatewayState, request: HttpRequest) -> Response {
    let started = Instant::now();
    let request_id = request_id(&request.headers);
    let (template, route) = recognise(&request.method, &request.path);
    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        method = %request.method,
        route = template,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let result = match route {
        Ok(route) => {
            dispatch(&state, route, request)
                .instrument(span.clone())
                .await
        }
        Err(e) => Err(e),
    };
    let (mut response, error_code) = match result {
        Ok(response) => (response, None),
        Err(e) => (error::reply(&e), Some(e.code.as_str())),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status();
    state
        .metrics
        .http_requests
        .with_label_values(&[template, status.as_str()])
        .inc();
    let elapsed = started.elapsed().as_secs_f64();
    state
        .metrics
        .http_request_duration
        .with_label_values(&[template])
        .observe(elapsed);
    let latency_ms = elapsed * 1000.0;
    span.record("status", status.as_u16());
    span.record("latency_ms", latency_ms);
    span.in_scope(|| {
        // A 503 is a normal answer while a node starts or a leader is elected: not a warning.
        if status.is_server_error() && status != warp::http::StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error_code, "request failed");
        } else {
            // One line per request is an access log: at debug, so the default (info) does not
            // spend a write to stderr on every produce (`--log-level daftka_node=debug` shows it).
            tracing::debug!(error_code, "request served");
        }
    });
    response
}

/// Runs the operation of one recognised route.
async fn dispatch(state: &GatewayState, route: Route, req: HttpRequest) -> Result<Response, Error> {
    let body_max = state.limits.body_bytes_max;
    match route {
        Route::Healthz => cluster::healthz(),
        Route::Readyz => cluster::readyz(state),
        Route::Cluster => cluster::info(state).await,
        Route::DrainNode { node, draining } => cluster::drain(state, &node, draining).await,
        Route::RemoveNode { node } => cluster::remove(state, &node).await,
        Route::ListTopics => topics::list(state).await,
        Route::CreateTopic => {
            let (body, _held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            topics::create(state, &body).await
        }
        Route::DescribeTopic { topic } => topics::describe(state, &topic).await,
        Route::AlterTopic { topic } => {
            let (body, _held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            topics::alter(state, &topic, &body).await
        }
        Route::DeleteTopic { topic } => topics::delete(state, &topic).await,
        Route::Reassign { topic, partition } => {
            let (body, _held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            topics::reassign(state, &topic, &partition, &body).await
        }
        Route::Reassignments => topics::reassignments(state).await,
        Route::Produce { topic } => {
            let (body, held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            // The body's reservation is handed over to the Router's once the records are decoded.
            records::produce(state, &topic, body, held).await
        }
        Route::Fetch { topic, partition } => {
            let query = parse_query(&req.query)?;
            records::fetch(state, &topic, &partition, &query).await
        }
        Route::CommitOffsets { group } => {
            let (body, _held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            groups::commit(state, &group, &body).await
        }
        Route::CommittedOffsets { group } => groups::committed(state, &group).await,
        Route::ResetOffsets { group } => {
            let (body, _held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            groups::reset(state, &group, &body).await
        }
        Route::ListGroups => groups::list(state).await,
        Route::DescribeGroup { group } => groups::describe(state, &group).await,
        Route::JoinGroup { group } => {
            let (body, _held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            groups::join(state, &group, &body).await
        }
        Route::Heartbeat { group, member } => {
            let (body, _held) = read_reserved(state, &req.headers, req.body, body_max).await?;
            groups::heartbeat(state, &group, &member, &body).await
        }
        Route::LeaveGroup { group, member } => groups::leave(state, &group, &member).await,
        Route::PollGroup { group, member } => {
            let query = parse_query(&req.query)?;
            groups::poll(state, &group, &member, &query).await
        }
        Route::ListActors => admin::list(state),
        Route::KillActor { actor } => admin::kill(state, &actor),
    }
}

/// The request's id: the client's `x-request-id` when sane (1 to 128 visible ASCII characters),
/// else 16 random hex digits.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= REQUEST_ID_LEN_MAX
                && s.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

/// Reserves the body's bytes from the node's budget (its declared length, else `limit`), then
/// reads it like [`read_body`]. The reservation is held until dropped.
async fn read_reserved(
    state: &GatewayState,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<(Bytes, crate::budget::Reservation), Error> {
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match state.budget.reserve(declared.unwrap_or(limit).min(limit)) {
        Ok(held) => Ok((read_body(headers, body, limit).await?, held)),
        Err(refused) => {
            // Read the body to its end, keeping none of it, so the client (still sending) gets
            // the 503 instead of a broken connection.
            drain(body, limit).await;
            Err(refused)
        }
    }
}

/// Reads and drops up to `limit` bytes of `body`.
async fn drain(mut body: Body, limit: u64) {
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}

/// Reads a body of at most `limit` bytes. A declared `content-length` over the limit is refused
/// before reading; a chunked body is refused as soon as it grows past the limit.
pub async fn read_body(headers: &HeaderMap, mut body: Body, limit: u64) -> Result<Bytes, Error> {
    let too_large = || Error::too_large(format!("the request body exceeds {limit} bytes"));
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::invalid(format!("reading the request body: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Parses a JSON body; any syntax or shape error is `invalid_request` with serde's message.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("malformed JSON body: {e}")))
}

/// A JSON response with `status`.
pub fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// Splits and percent-decodes a query string (`+` is a space). Malformed escapes or decoded bytes
/// that are not UTF-8 are `invalid_request`.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, Error> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let bad = || Error::invalid(format!("malformed query string near {s:?}"));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Templates, not raw paths, label requests; wrong methods and unknown paths are not_found.
    #[test]
    fn recognises_routes() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            recognise(&get, "/v1/topics/orders/partitions/7/records"),
            (
                "/v1/topics/{topic}/partitions/{partition}/records",
                Ok(Route::Fetch {
                    topic: "orders".into(),
                    partition: "7".into()
                })
            )
        );
        assert_eq!(recognise(&post, "/v1/topics").1, Ok(Route::CreateTopic));
        let (template, route) = recognise(&Method::PUT, "/v1/topics");
        assert_eq!(template, "/v1/topics");
        assert_eq!(route.map_err(|e| e.code), Err(ErrorCode::NotFound));
        let (template, route) = recognise(&get, "/v1/nope/x");
        assert_eq!(template, ROUTE_UNMATCHED);
        assert_eq!(route.map_err(|e| e.code), Err(ErrorCode::NotFound));
        assert_eq!(recognise(&get, "/v1/topics/").0, "/v1/topics/{topic}");
    }

    /// Query strings decode escapes and refuse malformed ones.
    #[test]
    fn parses_queries() {
        assert_eq!(
            parse_query("a=1&b=x%20y+z&c").expect("valid"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into())
            ]
        );
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%4").is_err());
        assert!(parse_query("a=%ff").is_err());
        assert!(parse_query("").expect("empty").is_empty());
    }

    /// Sane ids are echoed; others are replaced by 16 hex digits.
    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        let id = request_id(&h);
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        h.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_str(&"x".repeat(129)).expect("ascii"),
        );
        assert_eq!(request_id(&h).len(), 16);
        assert_eq!(request_id(&HeaderMap::new()).len(), 16);
    }
}
