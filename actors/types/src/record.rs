//! Records and their encodings.
//!
//! A produce request's records for one partition become one Raft entry whose data is
//! [`encode_batch`] of them: that entry, once committed, *is* the stored batch (records are written once).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::Offset;

/// One header of a record: a name and an opaque value. Order is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

/// A record as a producer sends it and as it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Optional key: selects the partition when none is given, and travels with the record.
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; the partition leader sets it when the producer did not.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// A record holding only a value.
    pub fn from_value(value: impl Into<Bytes>) -> Self {
        Record {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// The record with a key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Bytes this record counts against size limits: key, value, header names and values.
    pub fn size_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, |k| k.len())
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }
}

/// A [`Record`] as it lies in a received frame: the decoding step of `daftka_protocol`'s
/// `Framed`, which turns it into a `Record` whose byte fields are slices of the frame. Same serde
/// shape as `Record` (postcard writes `Bytes` and `&[u8]` alike: a length, then the bytes).
#[derive(Deserialize)]
pub struct RecordRef<'a> {
    #[serde(borrow)]
    key: Option<&'a [u8]>,
    value: &'a [u8],
    #[serde(borrow)]
    headers: Vec<HeaderRef<'a>>,
    timestamp_ms: Option<i64>,
}

#[derive(Deserialize)]
struct HeaderRef<'a> {
    key: &'a str,
    value: &'a [u8],
}

impl RecordRef<'_> {
    /// The record, sharing `frame`, the buffer this was decoded from: no copy, and no
    /// allocation unless it has headers.
    pub fn share(self, frame: &Bytes) -> Record {
        Record {
            key: self.key.map(|k| frame.slice_ref(k)),
            value: frame.slice_ref(self.value),
            headers: self
                .headers
                .into_iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: frame.slice_ref(h.value),
                })
                .collect(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A record read back from a partition, with its offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub offset: Offset,
    pub record: Record,
}

/// The data of a partition's Raft entry: postcard of the record list, versioned by a leading tag
/// so the format can grow without breaking stored logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Version 1: a batch of records, stored contiguously in this order.
    Records(Vec<Record>),
}

/// Encodes one batch of records as a Raft entry's data.
pub fn encode_batch(records: Vec<Record>) -> Result<Vec<u8>, crate::Error> {
    // Sized up front (the bytes, plus room for each record's lengths, headers and timestamp),
    // so a large batch is written once instead of regrown as it is encoded.
    let capacity = records
        .iter()
        .map(|r| r.size_bytes() + 24 + 8 * r.headers.len())
        .sum::<usize>()
        + 16;
    postcard::to_extend(
        &EntryPayload::Records(records),
        Vec::with_capacity(capacity),
    )
    .map_err(|e| crate::Error::internal(format!("encode batch: {e}")))
}

/// Decodes a Raft entry's data back into records. Corrupt data is an error value, never a panic.
pub fn decode_batch(data: &[u8]) -> Result<Vec<Record>, crate::Error> {
    match postcard::from_bytes::<EntryPayload>(data) {
        Ok(EntryPayload::Records(r)) => Ok(r),
        Err(e) => Err(crate::Error::internal(format!("decode batch: {e}"))),
    }
}

/// The number of records in an encoded batch, read from its header without decoding the records:
/// postcard writes the enum tag and then the list length, both as varints.
pub fn batch_record_count(data: &[u8]) -> Result<u32, crate::Error> {
    let corrupt = |e: postcard::Error| crate::Error::internal(format!("batch header: {e}"));
    let (tag, rest) = postcard::take_from_bytes::<u32>(data).map_err(corrupt)?;
    if tag != 0 {
        return Err(crate::Error::internal(format!(
            "unknown batch version {tag}"
        )));
    }
    let (len, _) = postcard::take_from_bytes::<u64>(rest).map_err(corrupt)?;
    u32::try_from(len).map_err(|_| crate::Error::internal(format!("batch of {len} records")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header count agrees with the full decode, and garbage is an error, not a panic.
    #[test]
    fn batch_count_matches_decode() -> Result<(), crate::Error> {
        for n in [0usize, 1, 127, 128, 300] {
            let recs: Vec<Record> = (0..n)
                .map(|i| Record::from_value(format!("v{i}")).with_key("k"))
                .collect();
            let data = encode_batch(recs.clone())?;
            assert_eq!(batch_record_count(&data)? as usize, n);
            assert_eq!(decode_batch(&data)?, recs);
        }
        assert!(batch_record_count(&[]).is_err());
        assert!(batch_record_count(&[7, 1]).is_err());
        assert!(decode_batch(&[0, 5, 1]).is_err());
        Ok(())
    }
}
