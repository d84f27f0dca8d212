//! Property tests of Daftka's persisted and wire encodings (postcard).
//!
//! Every public type that is stored or sent comes back equal after encode then decode, the batch
//! header count agrees with the full decode, and arbitrary bytes never make a decoder panic.

use std::fmt::Debug;

use bytes::Bytes;
use daftka_protocol::record::{batch_record_count, decode_batch, encode_batch, EntryPayload};
use daftka_protocol::wire::{Framed, FromFrame, Wire};
use daftka_protocol::{
    ClusterInfo, CommittedOffset, Error, ErrorCode, FetchOffset, FetchRequest, FetchResponse,
    GroupOffsets, Header, NodeInfo, PartitionDescription, ProduceRecord, Record, RecordPosition,
    ReplicaStatus, SeedInfo, StoredRecord, TopicAlter, TopicDescription, TopicPartitionOffset,
    TopicSpec,
};
use proptest::prelude::*;
use ractor::BytesConvertable;
use serde::{de::DeserializeOwned, Serialize};

/// Every error code: the list the types crate keeps (its own test makes a new code join it).
const CODES: [ErrorCode; ErrorCode::ALL.len()] = ErrorCode::ALL;

/// Encodes with postcard, decodes, and checks equality.
fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    x: &T,
) -> Result<(), TestCaseError> {
    let bytes =
        postcard::to_allocvec(x).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    let back: T =
        postcard::from_bytes(&bytes).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&back, x);
    Ok(())
}

fn bytes_s(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    // Any unicode, including multi-byte characters, up to 16 chars.
    prop::collection::vec(any::<char>(), 0..16).prop_map(|c| c.into_iter().collect())
}

fn header() -> impl Strategy<Value = Header> {
    (text(), bytes_s(16)).prop_map(|(key, value)| Header { key, value })
}

fn record() -> impl Strategy<Value = Record> {
    (
        prop::option::of(bytes_s(32)),
        bytes_s(64),
        prop::collection::vec(header(), 0..4),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(key, value, headers, timestamp_ms)| Record {
            key,
            value,
            headers,
            timestamp_ms,
        })
}

fn stored_record() -> impl Strategy<Value = StoredRecord> {
    (any::<u64>(), record()).prop_map(|(offset, record)| StoredRecord { offset, record })
}

fn partition_description() -> impl Strategy<Value = PartitionDescription> {
    (
        any::<u32>(),
        prop::option::of(text()),
        prop::collection::vec(text(), 0..4),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(partition, leader, replicas, log_start_offset, high_watermark)| {
                PartitionDescription {
                    partition,
                    leader,
                    under_replicated: replicas.len() < 3,
                    moving_to: replicas.iter().rev().cloned().collect(),
                    replica_states: replicas
                        .iter()
                        .map(|node| ReplicaStatus {
                            node: node.clone(),
                            state: "follower".into(),
                            lag: high_watermark,
                        })
                        .collect(),
                    replicas,
                    log_start_offset,
                    high_watermark,
                }
            },
        )
}

fn fetch_offset() -> impl Strategy<Value = FetchOffset> {
    prop_oneof![
        Just(FetchOffset::Earliest),
        Just(FetchOffset::Latest),
        any::<u64>().prop_map(FetchOffset::At),
    ]
}

fn committed_offset() -> impl Strategy<Value = CommittedOffset> {
    (
        text(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(topic, partition, offset, high_watermark, lag)| CommittedOffset {
                topic,
                partition,
                offset,
                high_watermark,
                lag,
            },
        )
}

fn node_info() -> impl Strategy<Value = NodeInfo> {
    (
        (text(), text(), text(), text()),
        (text(), any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |((name, cluster_addr, http_addr, status), (state, replicas, leaders))| NodeInfo {
                name,
                cluster_addr,
                http_addr,
                metadata_role: status.chars().rev().collect(),
                status,
                state,
                replicas,
                leaders,
            },
        )
}

fn error() -> impl Strategy<Value = Error> {
    (
        prop::sample::select(CODES.to_vec()),
        text(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(code, message, log_start_offset, high_watermark)| Error {
            code,
            message,
            log_start_offset,
            high_watermark,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    // A record (arbitrary key, value, headers, timestamp) and its stored form survive postcard.
    #[test]
    fn record_and_stored_record_roundtrip(r in record(), s in stored_record()) {
        roundtrip(&r)?;
        roundtrip(&s)?;
    }

    // A batch survives encode_batch/decode_batch and as an EntryPayload; the header count agrees.
    #[test]
    fn batch_roundtrip_and_count(recs in prop::collection::vec(record(), 0..40)) {
        let data = encode_batch(recs.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = decode_batch(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &recs);
        let n = batch_record_count(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(n as usize, back.len());
        // encode_batch is exactly postcard of the EntryPayload.
        let payload = EntryPayload::Records(recs);
        prop_assert_eq!(postcard::to_allocvec(&payload).ok(), Some(data));
        roundtrip(&payload)?;
    }

    // Large batches cross the varint length boundaries (127/128, 16383/16384) with the right count.
    #[test]
    fn batch_count_across_varint_widths(n in prop_oneof![0usize..3, 126usize..131, 16382usize..16386]) {
        let recs = vec![Record::from_value(Bytes::new()); n];
        let data = encode_batch(recs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let count = batch_record_count(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(count as usize, n);
        let back = decode_batch(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.len(), n);
    }

    // Arbitrary bytes never panic the batch decoders; a decodable batch has a matching count.
    #[test]
    fn batch_decoders_never_panic(data in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        // Half the inputs start with the valid version tag, so the decoders get past the header.
        prop::collection::vec(any::<u8>(), 0..256).prop_map(|mut v| { v.insert(0, 0); v }),
    ]) {
        let decoded = decode_batch(&data);
        let count = batch_record_count(&data);
        if let Ok(recs) = decoded {
            // A full decode also parses the header, so the count must agree.
            prop_assert_eq!(count.ok().map(|c| c as usize), Some(recs.len()));
        }
    }

    // Byte flips and truncations of a valid batch never panic the decoders.
    #[test]
    fn corrupted_batch_never_panics(
        recs in prop::collection::vec(record(), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = encode_batch(recs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, b) in flips {
            let at = i.index(data.len());
            data[at] ^= b;
        }
        let data = &data[..cut.index(data.len() + 1)];
        let _ = decode_batch(data);
        let _ = batch_record_count(data);
    }

    // Topic admin types survive postcard.
    #[test]
    fn topic_types_roundtrip(
        name in text(),
        partitions in prop::option::of(any::<u32>()),
        rf in prop::option::of(any::<u32>()),
        rf2 in any::<u32>(),
        parts in prop::collection::vec(partition_description(), 0..6),
        retention in prop::option::of(prop::option::of(any::<u64>())),
    ) {
        roundtrip(&TopicSpec { name: name.clone(), partitions, replication_factor: rf })?;
        for p in &parts {
            roundtrip(p)?;
        }
        roundtrip(&TopicAlter { partitions, retention_time_ms: retention, retention_bytes: retention })?;
        roundtrip(&TopicDescription {
            name,
            replication_factor: rf2,
            partitions: parts,
            retention_time_ms: retention.flatten(),
            retention_bytes: None,
        })?;
    }

    // Produce and fetch types survive postcard.
    #[test]
    fn produce_and_fetch_types_roundtrip(
        pr in (prop::option::of(any::<u32>()), record())
            .prop_map(|(partition, record)| ProduceRecord { partition, record }),
        pos in (any::<u32>(), any::<u64>())
            .prop_map(|(partition, offset)| RecordPosition { partition, offset }),
        fo in fetch_offset(),
        topic in text(),
        nums in (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        recs in prop::collection::vec(stored_record(), 0..8),
        offs in (any::<u64>(), any::<u64>(), any::<u64>()),
    ) {
        roundtrip(&pr)?;
        roundtrip(&pos)?;
        roundtrip(&fo)?;
        roundtrip(&FetchRequest {
            topic,
            partition: nums.0,
            offset: fo,
            max_records: nums.1,
            max_bytes: nums.2,
            max_wait_ms: nums.3,
        })?;
        roundtrip(&FetchResponse {
            records: recs,
            next_offset: offs.0,
            high_watermark: offs.1,
            log_start_offset: offs.2,
        })?;
    }

    // Consumer-group offset types survive postcard.
    #[test]
    fn offset_types_roundtrip(
        tpo in (text(), any::<u32>(), any::<u64>())
            .prop_map(|(topic, partition, offset)| TopicPartitionOffset { topic, partition, offset }),
        group in text(),
        offsets in prop::collection::vec(committed_offset(), 0..6),
    ) {
        roundtrip(&tpo)?;
        for o in &offsets {
            roundtrip(o)?;
        }
        roundtrip(&GroupOffsets { group, offsets })?;
    }

    // Cluster description types survive postcard.
    #[test]
    fn cluster_types_roundtrip(
        nodes in prop::collection::vec(node_info(), 0..5),
        metadata_leader in prop::option::of(text()),
        seeds in prop::collection::vec((text(), any::<bool>(), any::<u64>()), 0..4),
    ) {
        for n in &nodes {
            roundtrip(n)?;
        }
        let seeds: Vec<SeedInfo> = seeds
            .into_iter()
            .map(|(seed, connected, failed_attempts)| SeedInfo { seed, connected, failed_attempts })
            .collect();
        for s in &seeds {
            roundtrip(s)?;
        }
        roundtrip(&ClusterInfo { nodes, metadata_leader, seeds })?;
    }

    // Produce records decoded through `Framed` equal the records sent, the bytes are those of a
    // `Wire` (one format on the wire), and every key, value and header value is a slice of the
    // received frame, not a copy. Truncated frames decode to an error, never a panic.
    #[test]
    fn framed_records_share_the_frame(
        prs in prop::collection::vec(
            (prop::option::of(any::<u32>()), record())
                .prop_map(|(partition, record)| ProduceRecord { partition, record }),
            0..16,
        ),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = Framed::ok(prs.clone()).into_bytes();
        prop_assert_eq!(&bytes, &Wire::ok(prs.clone()).into_bytes());
        let frame = Bytes::from(bytes);
        let back = Vec::<ProduceRecord>::from_frame(&frame)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &prs);
        let inside = |b: &Bytes| {
            let (start, end) = (frame.as_ptr() as usize, frame.as_ptr() as usize + frame.len());
            b.is_empty() || (start <= b.as_ptr() as usize && b.as_ptr() as usize + b.len() <= end)
        };
        for r in back.iter().map(|p| &p.record) {
            prop_assert!(inside(&r.value));
            prop_assert!(r.key.as_ref().is_none_or(inside));
            prop_assert!(r.headers.iter().all(|h| inside(&h.value)));
        }
        // Records sent from one node to another (`Vec<Record>`) decode the same way.
        let plain: Vec<Record> = prs.into_iter().map(|p| p.record).collect();
        let back = Framed::<Vec<Record>>::from_bytes(Framed::ok(plain.clone()).into_bytes());
        prop_assert_eq!(back, Framed::ok(plain));
        // A frame cut short is an error value.
        let short = frame.slice(..cut.index(frame.len()));
        prop_assert!(Framed::<Vec<ProduceRecord>>::from_bytes(short.to_vec()).0.is_err());
    }

    // An error value with any code, message and range survives postcard.
    #[test]
    fn error_roundtrip(e in error()) {
        roundtrip(&e)?;
        roundtrip(&e.code)?;
    }
}

// Every error code round-trips on its own and inside an Error, and codes encode distinctly.
#[test]
fn every_error_code_roundtrips() -> Result<(), TestCaseError> {
    let mut names = std::collections::BTreeSet::new();
    let mut encodings = std::collections::BTreeSet::new();
    for code in CODES {
        roundtrip(&code)?;
        roundtrip(&Error::new(code, "m"))?;
        assert!(names.insert(code.as_str()), "{code:?} listed twice");
        let enc = postcard::to_allocvec(&code).map_err(|e| TestCaseError::fail(e.to_string()))?;
        assert!(encodings.insert(enc), "{code:?} encodes like another code");
    }
    roundtrip(&Error::offset_out_of_range(9, 2, 5))?;
    Ok(())
}
