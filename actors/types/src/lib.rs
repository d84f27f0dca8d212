//! # daftka-types
//!
//! Daftka's plain data, shared by every other crate: nothing here runs, waits or sends.
//! `daftka-core` (pure logic) and `daftka-storage` build on it alone; `daftka-protocol`
//! re-exports it for other Rust programs.
//!
//! | module | role |
//! |---|---|
//! | [`ids`] | domain newtypes: topic names, partitions, offsets, raft group ids |
//! | [`record`] | the record and its stored form, the batch encoding used on disk |
//! | [`error`] | stable error codes ([`ErrorCode`]) and the error value every reply carries |
#![deny(clippy::unwrap_used)]

pub mod error;
pub mod ids;
pub mod record;

pub use error::{Error, ErrorCode};
pub use ids::{GroupId, Offset, PartitionId};
pub use record::{Header, Record, StoredRecord};
