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
    postcard::to_allocvec(&EntryPayload::Records(records))
        .map_err(|e| crate::Error::internal(format!("encode batch: {e}")))
}

/// Decodes a Raft entry's data back into records. Corrupt data is an error value, never a panic.
pub fn decode_batch(data: &[u8]) -> Result<Vec<Record>, crate::Error> {
    match postcard::from_bytes::<EntryPayload>(data) {
        Ok(EntryPayload::Records(r)) => Ok(r),
        Err(e) => Err(crate::Error::internal(format!("decode batch: {e}"))),
    }
}
