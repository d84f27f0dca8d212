//! # daftka-core
//!
//! Daftka's pure logic: no tokio, no fjall, no clock reads. Time and randomness are passed in.
//!
//! | module | role |
//! |---|---|
//! | [`assignor`] | consumer-group partition assignment: range, round robin, sticky |
//! | [`groups`] | the consumer-group coordinator: members, generations, assignments, commit fencing |
//! | [`config`] | the node's configuration, its defaults, parsing and `validate()` |
//! | [`limits`] | request limits checked on every path (HTTP and native) |
//! | [`metadata`] | the metadata state machine replicated by the metadata Raft group |
//! | [`partition`] | partition log rules: offset assignment at apply, partition choice for a record |
//! | [`supervision`] | restart intensity and backoff math of the supervisors |
#![deny(clippy::unwrap_used)]

pub mod assignor;
pub mod config;
pub mod consensus;
pub mod groups;
pub mod limits;
pub mod metadata;
pub mod partition;
pub mod reconfig;
pub mod supervision;
