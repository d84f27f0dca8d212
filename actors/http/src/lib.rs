//! # daftka-http
//!
//! Daftka's HTTP API v1, written once: [`json`] holds every request and response body as the
//! gateway serves it and clients read it (the OpenAPI document will be generated from these), and
//! [`client`] (feature `client`) is a client of a node's API over them, used by the CLI and the
//! benchmark harness.
#![deny(clippy::unwrap_used)]

#[cfg(feature = "client")]
pub mod client;
pub mod json;
#[cfg(feature = "mock")]
pub mod mock;
