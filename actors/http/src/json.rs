//! The JSON shapes of HTTP API v1 and the encoding of record bytes.
//!
//! These types are the HTTP contract, written once: the gateway answers with them and decodes
//! requests into them, and clients (the CLI, the benchmark harness) send and read the same types.
//! They are kept apart from the protocol types so that a field added to a protocol type never
//! leaks into responses by accident. Fields may be added, never renamed. Request bodies deny
//! unknown fields, so a misspelt field is a 400 rather than silently ignored; absent optional
//! fields are left out of what a client sends.
//!
//! Record keys, values and header values are bytes. They travel as JSON strings in one of two
//! [`Encoding`]s: `utf8` (the default: the string is the bytes) or `base64` (standard alphabet,
//! padded). Header names are always plain strings.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use daftka_protocol::{
    ClusterInfo, CommittedOffset, FetchResponse, GroupOffsets, NodeInfo, PartitionDescription,
    RecordPosition, StoredRecord, TopicDescription,
};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How record bytes are written as JSON strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The string's UTF-8 bytes are the bytes. Bytes that are not valid UTF-8 cannot be
    /// answered this way: a fetch then fails with `invalid_request` asking for `base64`.
    #[default]
    Utf8,
    /// Standard base64 with padding (RFC 4648 section 4).
    Base64,
}

impl Encoding {
    /// Parses a query parameter value.
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "utf8" => Some(Encoding::Utf8),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }

    /// The bytes a request string stands for; `Err` says why the string is not valid.
    pub fn decode(self, s: String) -> Result<Bytes, String> {
        match self {
            Encoding::Utf8 => Ok(Bytes::from(s)),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Bytes::from)
                .map_err(|e| format!("invalid base64: {e}")),
        }
    }

    /// The string that stands for `bytes`; `None` when `utf8` was asked and the bytes are not UTF-8.
    pub fn encode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_owned),
            Encoding::Base64 => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

/// Record headers as a JSON object, in the order written. Duplicate names are kept (a JSON object
/// with repeated names is how they are answered too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadersJson(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for HeadersJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeadersJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(HeadersJson(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for HeadersJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

// ---- requests ----

/// `POST /v1/topics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicBody {
    pub name: String,
    /// Absent: the node's configured default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// Absent: the node's configured default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
}

/// `PATCH /v1/topics/{topic}`: absent fields stay as they are; a retention of `null` returns to
/// the node's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterTopicBody {
    /// The new partition count: only grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_time_ms: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_bytes: Option<Option<u64>>,
}

/// A field that is present (`Some`), possibly as `null` (`Some(None)`); absent fields take the
/// `default` (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/topics/{topic}/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceBody {
    pub records: Vec<ProduceRecordJson>,
    /// Applies to every key, value and header value of the request.
    #[serde(default)]
    pub encoding: Encoding,
}

/// One record of a produce request; only `value` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceRecordJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeadersJson>,
    /// Explicit partition; else a stable hash of the key; else spread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Milliseconds since the Unix epoch; absent: the partition leader sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// `POST /v1/groups/{group}/offsets`. A member sends `member_id` and `generation` (both or
/// neither).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    pub offsets: Vec<CommitOffsetJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// `POST /v1/groups/{group}/members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    pub topics: Vec<String>,
    /// Absent: `groups.session_timeout_default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_timeout_ms: Option<u64>,
    /// `range`, `round_robin` or `sticky` (absent: sticky).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignor: Option<String>,
}

/// `POST /v1/groups/{group}/members/{member}/heartbeat` (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// The partitions the member still reads: revoking partitions left out are released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owned: Option<Vec<daftka_protocol::TopicPartitions>>,
}

/// `POST /v1/groups/{group}/offsets/reset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    pub topic: String,
    /// Absent: every partition of the topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    pub to: ResetToJson,
}

/// `"earliest"`, `"latest"` or an offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResetToJson {
    Named(String),
    Offset(u64),
}

/// One record a group member polled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecordJson {
    pub topic: String,
    pub partition: u32,
    #[serde(flatten)]
    pub record: FetchedRecordJson,
}

/// The answer of a member's records poll: the records and the member's standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolledJson {
    pub records: Vec<GroupRecordJson>,
    #[serde(flatten)]
    pub member: daftka_protocol::MemberAssignment,
}

impl PolledJson {
    /// Encodes a poll; fails on the first record whose bytes `encoding` cannot carry.
    pub fn encode(
        response: daftka_protocol::PollResponse,
        encoding: Encoding,
    ) -> Result<PolledJson, NotUtf8> {
        let records = response
            .records
            .into_iter()
            .map(|r| {
                Ok(GroupRecordJson {
                    topic: r.topic,
                    partition: r.partition,
                    record: encode_record(r.record, encoding)?,
                })
            })
            .collect::<Result<Vec<_>, NotUtf8>>()?;
        Ok(PolledJson {
            records,
            member: response.member,
        })
    }
}

/// `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupsJson {
    pub groups: Vec<daftka_protocol::GroupSummary>,
}

/// One committed position: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitOffsetJson {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

// ---- responses ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionJson {
    pub partition: u32,
    /// Null while the partition has no known leader.
    pub leader: Option<String>,
    pub replicas: Vec<String>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// The topic's replication factor: what the partition is kept at. (Absent from the answers
    /// of nodes older than replica moves: 0 here.)
    #[serde(default)]
    pub desired_replication_factor: u32,
    /// Fewer replicas than that (not enough nodes were alive); topped up once they are.
    #[serde(default)]
    pub under_replicated: bool,
    /// While a replica move is in flight: the replicas it moves to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moving_to: Vec<String>,
    /// Every replica (a move's destinations included) as the leader sees it: `state` (`leader`,
    /// `follower`, `learner`, `offline`) and `lag` (entries behind the leader). Absent when the
    /// leader did not answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_states: Vec<ReplicaStateJson>,
}

/// One replica of a partition in a [`PartitionJson`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStateJson {
    pub node: String,
    pub state: String,
    pub lag: u64,
}

/// A topic description: the answer of create and describe, and one item of list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicJson {
    pub name: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionJson>,
    /// The topic's own retention by time, if set (absent: `topics.retention_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time_ms: Option<u64>,
    /// The topic's own retention by size per partition, if set (absent: `topics.retention_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
}

impl From<TopicDescription> for TopicJson {
    fn from(t: TopicDescription) -> Self {
        let rf = t.replication_factor;
        TopicJson {
            name: t.name,
            replication_factor: rf,
            partitions: t
                .partitions
                .into_iter()
                .map(|p: PartitionDescription| PartitionJson {
                    partition: p.partition,
                    leader: p.leader,
                    replicas: p.replicas,
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    desired_replication_factor: rf,
                    under_replicated: p.under_replicated,
                    moving_to: p.moving_to,
                    replica_states: p
                        .replica_states
                        .into_iter()
                        .map(|r| ReplicaStateJson {
                            node: r.node,
                            state: r.state,
                            lag: r.lag,
                        })
                        .collect(),
                })
                .collect(),
            retention_time_ms: t.retention_time_ms,
            retention_bytes: t.retention_bytes,
        }
    }
}

/// `GET /v1/topics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicsJson {
    pub topics: Vec<TopicJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionJson {
    pub partition: u32,
    pub offset: u64,
}

/// The answer of a produce: each record's position, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducedJson {
    pub offsets: Vec<PositionJson>,
}

impl From<Vec<RecordPosition>> for ProducedJson {
    fn from(positions: Vec<RecordPosition>) -> Self {
        ProducedJson {
            offsets: positions
                .into_iter()
                .map(|p| PositionJson {
                    partition: p.partition,
                    offset: p.offset,
                })
                .collect(),
        }
    }
}

/// One fetched record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchedRecordJson {
    pub offset: u64,
    /// Null when the record has no key.
    pub key: Option<String>,
    pub value: String,
    pub headers: HeadersJson,
    /// Null only if the record was stored without one.
    pub timestamp: Option<i64>,
}

/// The answer of a fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchedJson {
    pub records: Vec<FetchedRecordJson>,
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// Why a fetched record cannot be written in the asked encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8 {
    /// The offset of the first such record.
    pub offset: u64,
}

impl FetchedJson {
    /// Encodes a fetch response; fails on the first record whose bytes `encoding` cannot carry.
    pub fn encode(response: FetchResponse, encoding: Encoding) -> Result<FetchedJson, NotUtf8> {
        let records = response
            .records
            .into_iter()
            .map(|r| encode_record(r, encoding))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FetchedJson {
            records,
            next_offset: response.next_offset,
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
        })
    }
}

impl FetchedJson {
    /// The fetch response this answer stands for, its strings read in `encoding` (what the fetch
    /// asked for); `Err` says which record's field is not valid.
    pub fn decode(self, encoding: Encoding) -> Result<FetchResponse, String> {
        let records = self
            .records
            .into_iter()
            .map(|r| r.decode(encoding))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(FetchResponse {
            records,
            next_offset: self.next_offset,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
        })
    }
}

impl FetchedRecordJson {
    /// The stored record this stands for: the inverse of [`encode_record`].
    pub fn decode(self, encoding: Encoding) -> Result<StoredRecord, String> {
        let offset = self.offset;
        let dec = |s: String| {
            encoding
                .decode(s)
                .map_err(|e| format!("record at offset {offset}: {e}"))
        };
        let key = self.key.map(dec).transpose()?;
        let headers = self
            .headers
            .0
            .into_iter()
            .map(|(key, value)| {
                Ok(daftka_protocol::Header {
                    key,
                    value: dec(value)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(StoredRecord {
            offset,
            record: daftka_protocol::Record {
                key,
                value: dec(self.value)?,
                headers,
                timestamp_ms: self.timestamp,
            },
        })
    }
}

pub fn encode_record(r: StoredRecord, encoding: Encoding) -> Result<FetchedRecordJson, NotUtf8> {
    let offset = r.offset;
    let enc = |b: &[u8]| encoding.encode(b).ok_or(NotUtf8 { offset });
    let key = match &r.record.key {
        Some(k) => Some(enc(k)?),
        None => None,
    };
    let value = enc(&r.record.value)?;
    let headers = r
        .record
        .headers
        .iter()
        .map(|h| Ok((h.key.clone(), enc(&h.value)?)))
        .collect::<Result<Vec<_>, NotUtf8>>()?;
    Ok(FetchedRecordJson {
        offset,
        key,
        value,
        headers: HeadersJson(headers),
        timestamp: r.record.timestamp_ms,
    })
}

/// The answer of a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedJson {
    /// How many offsets were committed.
    pub committed: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupOffsetJson {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub high_watermark: u64,
    pub lag: u64,
}

/// `GET /v1/groups/{group}/offsets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupOffsetsJson {
    pub group: String,
    pub offsets: Vec<GroupOffsetJson>,
}

impl From<GroupOffsets> for GroupOffsetsJson {
    fn from(g: GroupOffsets) -> Self {
        GroupOffsetsJson {
            group: g.group,
            offsets: g
                .offsets
                .into_iter()
                .map(|o: CommittedOffset| GroupOffsetJson {
                    topic: o.topic,
                    partition: o.partition,
                    offset: o.offset,
                    high_watermark: o.high_watermark,
                    lag: o.lag,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeJson {
    pub name: String,
    pub cluster_addr: String,
    pub http_addr: String,
    /// `up` or `down`.
    pub status: String,
    /// `active`, `draining`, `drained` or `down`. (Empty from nodes older than drains.)
    #[serde(default)]
    pub state: String,
    /// Partition replicas placed on it.
    #[serde(default)]
    pub replicas: u32,
    /// Partitions it leads.
    #[serde(default)]
    pub leaders: u32,
    /// Its place in the metadata group: `voter`, `learner` or `none`. (Empty from older nodes.)
    #[serde(default)]
    pub metadata_role: String,
}

impl From<NodeInfo> for NodeJson {
    fn from(n: NodeInfo) -> Self {
        NodeJson {
            name: n.name,
            cluster_addr: n.cluster_addr,
            http_addr: n.http_addr,
            status: n.status,
            state: n.state,
            replicas: n.replicas,
            leaders: n.leaders,
            metadata_role: n.metadata_role,
        }
    }
}

/// `POST /v1/topics/{topic}/partitions/{partition}/reassign`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReassignBody {
    /// The partition's new replicas: distinct registered nodes, the first its preferred leader.
    pub replicas: Vec<String>,
}

/// A replica move in flight (the answer of a reassign, one item of `GET /v1/reassignments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReassignmentJson {
    pub topic: String,
    pub partition: u32,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// When it started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Where the partition's leader stands with the move (`adding_learners`, `catching_up`,
    /// `entering_joint`, `transferring_leadership`, `leaving_joint`, `removing_learners`,
    /// `finishing`); absent when the leader did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Bytes the leader sent to the new replicas (throttled by `rebalance.move_bytes_per_sec`).
    #[serde(default)]
    pub bytes_copied: u64,
    /// The partition's stored bytes when the leader took the move up.
    #[serde(default)]
    pub bytes_total: u64,
}

impl From<daftka_protocol::Reassignment> for ReassignmentJson {
    fn from(r: daftka_protocol::Reassignment) -> Self {
        ReassignmentJson {
            topic: r.topic,
            partition: r.partition,
            from: r.from,
            to: r.to,
            started_ms: r.started_ms,
            phase: r.phase,
            bytes_copied: r.bytes_copied,
            bytes_total: r.bytes_total,
        }
    }
}

/// `GET /v1/reassignments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReassignmentsJson {
    pub reassignments: Vec<ReassignmentJson>,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterJson {
    pub nodes: Vec<NodeJson>,
    /// Null while the metadata group has no known leader.
    pub metadata_leader: Option<String>,
    /// This node's seeds and whether it is connected to them.
    pub seeds: Vec<SeedJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedJson {
    pub seed: String,
    pub connected: bool,
    pub failed_attempts: u64,
}

impl From<ClusterInfo> for ClusterJson {
    fn from(c: ClusterInfo) -> Self {
        ClusterJson {
            nodes: c.nodes.into_iter().map(NodeJson::from).collect(),
            metadata_leader: c.metadata_leader,
            seeds: c
                .seeds
                .into_iter()
                .map(|s| SeedJson {
                    seed: s.seed,
                    connected: s.connected,
                    failed_attempts: s.failed_attempts,
                })
                .collect(),
        }
    }
}

/// `GET /healthz` and a successful `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusJson {
    pub status: String,
}

/// The answer of a reset: the new committed offsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetJson {
    pub offsets: Vec<daftka_protocol::TopicPartitionOffset>,
}

/// `GET /v1/admin/actors` (with `debug.chaos = true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorsJson {
    pub actors: Vec<String>,
}

/// `DELETE /v1/admin/actors/{actor}` (with `debug.chaos = true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KilledJson {
    pub killed: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorJson {
    pub error: ErrorObjectJson,
}

/// `error` in an [`ErrorJson`]: a stable code, a message, whether a retry may succeed, and for
/// `offset_out_of_range` the readable range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObjectJson {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<u64>,
}

impl From<&daftka_protocol::Error> for ErrorJson {
    fn from(e: &daftka_protocol::Error) -> Self {
        ErrorJson {
            error: ErrorObjectJson {
                code: e.code.as_str().to_string(),
                message: e.message.clone(),
                retryable: e.retryable(),
                log_start_offset: e.log_start_offset,
                high_watermark: e.high_watermark,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both encodings round-trip bytes they can carry; utf8 refuses invalid UTF-8.
    #[test]
    fn encodings_round_trip() {
        let raw = [0xffu8, 0x00, 0x41];
        let b64 = Encoding::Base64
            .encode(&raw)
            .expect("base64 carries anything");
        assert_eq!(Encoding::Base64.decode(b64).expect("valid").as_ref(), raw);
        assert_eq!(Encoding::Utf8.encode(&raw), None);
        assert_eq!(
            Encoding::Utf8
                .decode("héllo".into())
                .expect("utf8")
                .as_ref(),
            "héllo".as_bytes()
        );
        assert!(Encoding::Base64.decode("not base64!".into()).is_err());
    }

    /// A fetch response encoded for the wire decodes back to itself, in either encoding it fits.
    #[test]
    fn fetched_records_decode_to_what_was_encoded() {
        let record = |offset, key: Option<&'static [u8]>, value: &'static [u8]| StoredRecord {
            offset,
            record: daftka_protocol::Record {
                key: key.map(Bytes::from_static),
                value: Bytes::from_static(value),
                headers: vec![daftka_protocol::Header {
                    key: "h".into(),
                    value: Bytes::from_static(b"\x01x"),
                }],
                timestamp_ms: Some(offset as i64),
            },
        };
        let response = FetchResponse {
            records: vec![record(4, Some(b"k"), b"\xffbin"), record(5, None, b"")],
            next_offset: 6,
            high_watermark: 9,
            log_start_offset: 2,
        };
        let wire = FetchedJson::encode(response.clone(), Encoding::Base64).expect("base64");
        assert_eq!(wire.clone().decode(Encoding::Base64), Ok(response));
        // A value that is not base64: the error names the record.
        let mut bad = wire;
        bad.records[0].value = "%%".into();
        let err = bad.decode(Encoding::Base64).expect_err("invalid");
        assert!(err.contains("offset 4"), "{err}");
    }

    /// Headers keep their written order and duplicates, both ways.
    #[test]
    fn headers_keep_order() {
        let h: HeadersJson = serde_json::from_str(r#"{"z":"1","a":"2","z":"3"}"#).expect("parse");
        assert_eq!(
            h.0,
            vec![
                ("z".into(), "1".into()),
                ("a".into(), "2".into()),
                ("z".into(), "3".into())
            ]
        );
        assert_eq!(
            serde_json::to_string(&h).expect("ser"),
            r#"{"z":"1","a":"2","z":"3"}"#
        );
    }

    /// What one side writes the other reads back unchanged: requests as a client sends them
    /// (absent fields left out) and responses as the gateway answers them.
    #[test]
    fn the_contract_round_trips() {
        fn round_trip<T>(v: T)
        where
            T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        {
            let text = serde_json::to_string(&v).expect("serializes");
            let back: T = serde_json::from_str(&text).expect("deserializes");
            assert_eq!(back, v, "{text}");
        }
        round_trip(CreateTopicBody {
            name: "t".into(),
            partitions: None,
            replication_factor: Some(3),
        });
        round_trip(ProduceBody {
            records: vec![ProduceRecordJson {
                key: Some("k".into()),
                value: "v".into(),
                headers: Some(HeadersJson(vec![("h".into(), "1".into())])),
                partition: None,
                timestamp: Some(7),
            }],
            encoding: Encoding::Base64,
        });
        round_trip(ResetBody {
            topic: "t".into(),
            partition: Some(1),
            to: ResetToJson::Offset(5),
        });
        round_trip(ResetBody {
            topic: "t".into(),
            partition: None,
            to: ResetToJson::Named("earliest".into()),
        });
        round_trip(TopicJson {
            name: "t".into(),
            replication_factor: 3,
            partitions: vec![PartitionJson {
                partition: 0,
                leader: None,
                replicas: vec!["a".into(), "b".into()],
                log_start_offset: 1,
                high_watermark: 9,
                desired_replication_factor: 3,
                under_replicated: true,
                moving_to: vec!["a".into(), "b".into(), "c".into()],
                replica_states: vec![ReplicaStateJson {
                    node: "c".into(),
                    state: "learner".into(),
                    lag: 12,
                }],
            }],
            retention_time_ms: None,
            retention_bytes: Some(1 << 30),
        });
        round_trip(AlterTopicBody {
            partitions: Some(12),
            retention_time_ms: Some(None),
            retention_bytes: Some(Some(1 << 30)),
        });
        round_trip(AlterTopicBody::default());
        // Absent is "unchanged", null is "back to the default".
        let parsed: AlterTopicBody =
            serde_json::from_str(r#"{"retention_bytes": null}"#).expect("parses");
        assert_eq!(
            (
                parsed.partitions,
                parsed.retention_time_ms,
                parsed.retention_bytes
            ),
            (None, None, Some(None))
        );
        round_trip(FetchedJson {
            records: vec![FetchedRecordJson {
                offset: 3,
                key: None,
                value: "v".into(),
                headers: HeadersJson::default(),
                timestamp: Some(1),
            }],
            next_offset: 4,
            high_watermark: 4,
            log_start_offset: 0,
        });
        round_trip(ErrorJson::from(
            &daftka_protocol::Error::offset_out_of_range(9, 2, 5),
        ));
    }
}
