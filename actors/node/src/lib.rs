//! # daftka-node
//!
//! Every actor and supervisor of a Daftka node. The module tree is the supervision tree:
//!
//! ```text
//! Root (one_for_one), children in start order  control_plane
//!  ├─ Service ×4     metrics endpoint, ticker, trim,   service
//!  │                 gauges (long-lived tasks)
//!  ├─ Peer           other nodes' entry point          cluster::peer
//!  ├─ Cluster        membership                        cluster
//!  ├─ MetadataSup    (rest_for_one)                    metadata
//!  │   └─ Metadata   Raft-replicated metadata (group 0)
//!  ├─ Partitions     dynamic supervisor                partitions
//!  │   └─ ReplicaSup (one_for_all) per replica         partitions::replica_sup
//!  │       ├─ Reader   reads, long polls               partitions::reader
//!  │       ├─ Raft     raft-rs RawNode driver          partitions::raft
//!  │       └─ Server   front door of the replica       partitions::server
//!  ├─ Placement     starts/stops replicas             placement
//!  ├─ Router         client entry point                router
//!  └─ Gateway        warp HTTP JSON API                gateway
//! ```
//!
//! [`consensus`] carries out the pure Raft driver (`daftka_core::consensus`) for Metadata and every
//! partition's Raft actor; [`context`] holds the handles every actor of a node shares. The node's
//! long-lived tasks (the metrics endpoint, the partition replicas' clock [`partitions::ticker`],
//! the allocator's trim [`memory`], the storage gauges) run as [`service`] actors in the tree.
//!
//! [`supervision`] holds the in-house supervisor (one_for_one, one_for_all, rest_for_one, dynamic).

pub mod budget;
pub mod cluster;
pub mod consensus;
pub mod context;
pub mod gateway;
pub mod memory;
pub mod metadata;
pub mod metrics;
pub mod partitions;
pub mod placement;
pub mod readiness;
pub mod root;
pub mod router;
pub mod service;
pub mod supervision;

pub use root::{run, start, Listeners, Node, NodeError};
