//! # daftka-protocol
//!
//! The public face of Daftka: everything an external Rust program needs to talk to a node.
//! External actor systems depend on this crate alone.
//!
//! | module | role |
//! |---|---|
//! | [`ids`] | domain newtypes: topic names, partitions, offsets, raft group ids (from `daftka-types`) |
//! | [`record`] | the record and its stored form, the batch encoding used on disk (from `daftka-types`) |
//! | [`error`] | stable error codes ([`ErrorCode`]) and the error value every reply carries (from `daftka-types`) |
//! | [`names`] | registered actor names (always scoped by node name) |
//! | [`messages`] | the typed messages of Daftka's exposed actor, the Router |
//! | [`rpc`] | one call with a deadline, and which failures may be retried |
//! | [`wire`] | [`Wire`]: typed values across ractor_cluster, decoding into a `Result` |
//! | [`remote`] | [`remote::connect`]: a client from another Rust actor system over ractor_cluster |
//! | [`client`] | [`Client`], the typed native client over those messages |
//! | [`consumer`] | [`Consumer`], a consumer-group member: heartbeats, rebalances, a record stream |
#![deny(clippy::unwrap_used)]

pub mod client;
pub mod consumer;
pub mod messages;
pub mod names;
pub mod remote;
pub mod rpc;
pub mod wire;

// The plain data lives in `daftka-types` (so pure crates need no actor runtime); it is part of
// this crate's public face.
pub use daftka_types::{error, ids, record};

pub use client::Client;
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord};
pub use error::{Error, ErrorCode};
pub use ids::{GroupId, Offset, PartitionId};
pub use messages::*;
pub use record::{Header, Record, StoredRecord};
pub use wire::Wire;
