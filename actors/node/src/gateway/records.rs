//! `POST /v1/topics/{topic}/records` (produce) and
//! `GET /v1/topics/{topic}/partitions/{partition}/records` (fetch).
//!
//! Produce limits ([`HttpLimits`]) answer 413 `payload_too_large`: records per request, key and
//! value bytes, header count and bytes of one header (name + value), all counted after decoding.
//!
//! Fetch parameters: `offset` (a number, `earliest` or `latest`; default `earliest`),
//! `max_records` (default 500), `max_bytes` (default 1 MiB), `max_wait_ms` (default 0), `encoding`
//! (`utf8` or `base64`, default `utf8`). Numbers must be non-negative decimal integers;
//! `max_records` and `max_bytes` must be at least 1. Values above the gateway's limits are capped,
//! not refused: a smaller answer or a shorter wait is always a valid answer. Unknown or repeated
//! parameters are 400, so a misspelt name is not silently ignored. With `encoding=utf8`, a
//! record whose key, value or a header value is not valid UTF-8 makes the fetch fail with 400
//! `invalid_request` naming its offset and asking for `encoding=base64` (never lossy).

use daftka_protocol::ids::validate_name;
use daftka_protocol::{Error, FetchOffset, FetchRequest, Header, ProduceRecord, Record};
use warp::http::StatusCode;
use warp::reply::Response;

use super::routes::{json_reply, parse_json};
use super::{GatewayState, HttpLimits};
use daftka_http::json::{Encoding, FetchedJson, ProduceBody, ProduceRecordJson, ProducedJson};

/// Default `max_records` of a fetch.
pub const FETCH_MAX_RECORDS_DEFAULT: u32 = 500;
/// Default `max_bytes` of a fetch.
pub const FETCH_MAX_BYTES_DEFAULT: u32 = 1024 * 1024;
/// Default `max_wait_ms` of a fetch: answer at once.
pub const FETCH_MAX_WAIT_MS_DEFAULT: u32 = 0;

/// `POST /v1/topics/{topic}/records` -> each record's position, in request order.
pub async fn produce(
    state: &GatewayState,
    topic: &str,
    raw: bytes::Bytes,
    held: crate::budget::Reservation,
) -> Result<Response, Error> {
    validate_name("topic", topic)?;
    let body: ProduceBody = parse_json(&raw)?;
    drop(raw);
    let limits = &state.limits;
    if body.records.is_empty() {
        return Err(Error::invalid("records must not be empty"));
    }
    let encoding = body.encoding;
    let records = body
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| to_produce_record(i, r, encoding))
        .collect::<Result<Vec<_>, Error>>()?;
    daftka_core::limits::check_produce(records.iter().map(|r| &r.record), limits)?;
    // The records are the request now: the Router reserves their bytes.
    drop(held);
    let positions = state.client.produce(topic, records).await?;
    Ok(json_reply(StatusCode::OK, &ProducedJson::from(positions)))
}

/// Decodes record `i` of a produce request (limits are checked on the decoded records).
fn to_produce_record(
    i: usize,
    r: ProduceRecordJson,
    encoding: Encoding,
) -> Result<ProduceRecord, Error> {
    let decode = |what: &str, s: String| {
        encoding
            .decode(s)
            .map_err(|e| Error::invalid(format!("records[{i}].{what}: {e}")))
    };
    let key = r.key.map(|k| decode("key", k)).transpose()?;
    let value = decode("value", r.value)?;
    let headers = r
        .headers
        .map(|h| h.0)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let value = decode(&format!("headers.{name}"), value)?;
            Ok(Header { key: name, value })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(ProduceRecord {
        partition: r.partition,
        record: Record {
            key,
            value,
            headers,
            timestamp_ms: r.timestamp,
        },
    })
}

/// A u64 limit as a u32 fetch parameter cap (limits beyond u32 cap at u32::MAX).
fn u32_cap(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The parsed query of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchParams {
    pub offset: FetchOffset,
    pub max_records: u32,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
    pub encoding: Encoding,
}

impl FetchParams {
    /// Parses the decoded query pairs of a fetch; see the module doc for the rules.
    pub fn parse(query: &[(String, String)], limits: &HttpLimits) -> Result<FetchParams, Error> {
        let mut p = FetchParams {
            offset: FetchOffset::Earliest,
            max_records: FETCH_MAX_RECORDS_DEFAULT.min(limits.fetch_records_max),
            max_bytes: FETCH_MAX_BYTES_DEFAULT.min(u32_cap(limits.fetch_bytes_max)),
            // 0: never above any cap.
            max_wait_ms: FETCH_MAX_WAIT_MS_DEFAULT,
            encoding: Encoding::Utf8,
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in query {
            if seen.contains(&name.as_str()) {
                return Err(Error::invalid(format!(
                    "query parameter {name:?} is repeated"
                )));
            }
            seen.push(name);
            match name.as_str() {
                "offset" => {
                    p.offset = match value.as_str() {
                        "earliest" => FetchOffset::Earliest,
                        "latest" => FetchOffset::Latest,
                        v => FetchOffset::At(number(name, v)?),
                    }
                }
                "max_records" => p.max_records = capped(name, value, 1, limits.fetch_records_max)?,
                "max_bytes" => {
                    p.max_bytes = capped(name, value, 1, u32_cap(limits.fetch_bytes_max))?
                }
                "max_wait_ms" => {
                    p.max_wait_ms = capped(
                        name,
                        value,
                        0,
                        u32_cap(limits.fetch_wait_max.as_millis() as u64),
                    )?
                }
                "encoding" => {
                    p.encoding = Encoding::parse(value).ok_or_else(|| {
                        Error::invalid(format!("encoding must be utf8 or base64, got {value:?}"))
                    })?
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown query parameter {name:?} (known: offset, max_records, \
                         max_bytes, max_wait_ms, encoding)"
                    )))
                }
            }
        }
        Ok(p)
    }
}

/// A non-negative decimal integer.
fn number(name: &str, value: &str) -> Result<u64, Error> {
    // `u64::from_str` accepts a leading `+`; the API does not.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(format!(
            "{name} must be a non-negative integer, got {value:?}"
        )));
    }
    value
        .parse::<u64>()
        .map_err(|_| Error::invalid(format!("{name} is too large: {value:?}")))
}

/// A number at least `min`, capped at `max`. Values beyond u64 are malformed, not capped.
fn capped(name: &str, value: &str, min: u64, max: u32) -> Result<u32, Error> {
    let n = number(name, value)?;
    if n < min {
        return Err(Error::invalid(format!(
            "{name} must be at least {min}, got {n}"
        )));
    }
    Ok(u32::try_from(n.min(u64::from(max))).unwrap_or(max))
}

/// `GET /v1/topics/{topic}/partitions/{partition}/records`.
pub async fn fetch(
    state: &GatewayState,
    topic: &str,
    partition: &str,
    query: &[(String, String)],
) -> Result<Response, Error> {
    validate_name("topic", topic)?;
    let partition = u32::try_from(number("partition", partition)?)
        .map_err(|_| Error::invalid(format!("partition {partition} is out of range")))?;
    let p = FetchParams::parse(query, &state.limits)?;
    let response = state
        .client
        .fetch(FetchRequest {
            topic: topic.to_string(),
            partition,
            offset: p.offset,
            max_records: p.max_records,
            max_bytes: p.max_bytes,
            max_wait_ms: p.max_wait_ms,
        })
        .await?;
    let body = FetchedJson::encode(response, p.encoding).map_err(|e| {
        Error::invalid(format!(
            "the record at offset {} is not valid UTF-8: fetch with encoding=base64",
            e.offset
        ))
    })?;
    Ok(json_reply(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Defaults apply, values above the limits are capped, bad values are invalid_request.
    #[test]
    fn fetch_params() {
        let limits = HttpLimits::default();
        let p = FetchParams::parse(&[], &limits).expect("defaults");
        assert_eq!(p.offset, FetchOffset::Earliest);
        assert_eq!(
            (p.max_records, p.max_bytes, p.max_wait_ms),
            (500, 1 << 20, 0)
        );
        let p = FetchParams::parse(
            &q(&[
                ("offset", "latest"),
                ("max_records", "99999999999"),
                ("max_wait_ms", "1000000"),
                ("encoding", "base64"),
            ]),
            &limits,
        )
        .expect("capped");
        assert_eq!(p.offset, FetchOffset::Latest);
        assert_eq!(p.max_records, limits.fetch_records_max);
        assert_eq!(p.max_wait_ms, limits.fetch_wait_max.as_millis() as u32);
        assert_eq!(p.encoding, Encoding::Base64);
        for bad in [
            q(&[("offset", "-1")]),
            q(&[("offset", "+1")]),
            q(&[("offset", "")]),
            q(&[("offset", "1x")]),
            q(&[("offset", "99999999999999999999999")]),
            q(&[("max_records", "0")]),
            q(&[("max_bytes", "-5")]),
            q(&[("encoding", "hex")]),
            q(&[("offest", "1")]),
            q(&[("offset", "1"), ("offset", "2")]),
        ] {
            let err = FetchParams::parse(&bad, &limits).expect_err("invalid");
            assert_eq!(
                err.code,
                daftka_protocol::ErrorCode::InvalidRequest,
                "{bad:?}"
            );
        }
    }
}
