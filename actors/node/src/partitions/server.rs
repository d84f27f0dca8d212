//! Server: the partition replica's front door.
//!
//! Parent: ReplicaSup (one_for_all). Registered as `names::replica_server(node, group)`.
//! Messages in (from the Router): `Produce` (records of one request for this partition),
//! `Fetch`, `Positions`. Produce stamps missing timestamps, encodes the batch once and proposes it
//! to the Raft actor; fetches and positions go to the Reader actor, with the caller's reply port.
//!
//! # Invariants
//! - At most `limits.inflight_bytes_per_partition_max` bytes of produce requests wait on this
//!   replica; beyond it a produce is refused with `unavailable` (retryable) before it is proposed,
//!   so overload shows as backpressure, not as memory growth.
//!
//! # Crash and recovery
//! Holds only the in-flight byte count, which restarts at zero with the replica: the requests it
//! counted died with the Raft actor (one_for_all) and their callers were answered with errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use daftka_protocol::record::encode_batch;
use daftka_protocol::{names, Error, FetchRequest, FetchResponse, Record};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::raft::RaftMsg;
use super::reader::ReaderMsg;
use super::replica_sup::ReplicaId;
use crate::context::NodeContext;

pub struct ServerArgs {
    pub ctx: Arc<NodeContext>,
    pub replica: ReplicaId,
}

pub struct ServerState {
    ctx: Arc<NodeContext>,
    replica: ReplicaId,
    /// Bytes of produce requests proposed and not yet answered.
    inflight_bytes: Arc<AtomicU64>,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum ServerMsg {
    /// Appends `records` contiguously, in order; answers the first record's offset. Refused
    /// (`unavailable`, not proposed) if `deadline`, the caller's, passes before the proposal.
    Produce {
        records: Vec<Record>,
        deadline: Instant,
        reply: RpcReplyPort<Result<u64, Error>>,
    },
    Fetch {
        request: FetchRequest,
        reply: RpcReplyPort<Result<FetchResponse, Error>>,
    },
    /// (log start offset, high watermark).
    Positions {
        reply: RpcReplyPort<Result<(u64, u64), Error>>,
    },
    /// The group's members and move, from the Raft actor (`not_leader` on a follower).
    GroupStatus {
        reply: RpcReplyPort<Result<daftka_protocol::GroupStatus, Error>>,
    },
}

pub struct Server;

impl Actor for Server {
    type Msg = ServerMsg;
    type State = ServerState;
    type Arguments = ServerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ServerMsg>,
        args: ServerArgs,
    ) -> Result<ServerState, ActorProcessingErr> {
        Ok(ServerState {
            ctx: args.ctx,
            replica: args.replica,
            inflight_bytes: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ServerMsg>,
        msg: ServerMsg,
        state: &mut ServerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServerMsg::Produce {
                records,
                deadline,
                reply,
            } => state.produce(records, deadline, reply),
            ServerMsg::Fetch { request, reply } => match state.reader() {
                Some(s) => {
                    let _ = s.cast(ReaderMsg::Fetch { request, reply });
                }
                None => {
                    let _ = reply.send(Err(Error::unavailable("replica storage restarting")));
                }
            },
            ServerMsg::Positions { reply } => match state.reader() {
                Some(s) => {
                    let _ = s.cast(ReaderMsg::Positions { reply });
                }
                None => {
                    let _ = reply.send(Err(Error::unavailable("replica storage restarting")));
                }
            },
            ServerMsg::GroupStatus { reply } => {
                match ractor::registry::where_is(names::replica_raft(
                    &state.ctx.node,
                    state.replica.group,
                )) {
                    Some(raft) => {
                        let _ = ActorRef::<RaftMsg>::from(raft).cast(RaftMsg::Status { reply });
                    }
                    None => {
                        let _ = reply.send(Err(Error::unavailable("replica restarting")));
                    }
                }
            }
        }
        Ok(())
    }
}

impl ServerState {
    fn reader(&self) -> Option<ActorRef<ReaderMsg>> {
        ractor::registry::where_is(names::replica_reader(&self.ctx.node, self.replica.group))
            .map(Into::into)
    }

    fn produce(
        &self,
        mut records: Vec<Record>,
        deadline: Instant,
        reply: RpcReplyPort<Result<u64, Error>>,
    ) {
        let size: u64 = records.iter().map(|r| r.size_bytes() as u64).sum();
        let limit = self.ctx.config.limits.inflight_bytes_per_partition_max;
        let before = self.inflight_bytes.fetch_add(size, Ordering::AcqRel);
        if before + size > limit && before > 0 {
            self.inflight_bytes.fetch_sub(size, Ordering::AcqRel);
            let _ = reply.send(Err(Error::unavailable(format!(
                "partition overloaded: {before} bytes in flight (limit {limit})"
            ))));
            return;
        }
        let now_ms = now_ms();
        let count = records.len() as u64;
        for r in &mut records {
            r.timestamp_ms.get_or_insert(now_ms);
        }
        let raft: Option<ActorRef<RaftMsg>> =
            ractor::registry::where_is(names::replica_raft(&self.ctx.node, self.replica.group))
                .map(Into::into);
        let inflight = self.inflight_bytes.clone();
        let appended = self.ctx.metrics.append_records.with_label_values(&[
            self.replica.topic.as_str(),
            self.replica.partition.to_string().as_str(),
        ]);
        let timeout = deadline.saturating_duration_since(Instant::now());
        tokio::spawn(async move {
            let answer = match (raft, encode_batch(records)) {
                (None, _) => Err(Error::unavailable("replica raft restarting")),
                (_, Err(e)) => Err(e),
                (Some(raft), Ok(data)) => {
                    let propose = |reply| RaftMsg::Propose {
                        data,
                        deadline,
                        reply,
                    };
                    daftka_protocol::rpc::call(&raft, propose, timeout, "the replica's raft").await
                }
            };
            inflight.fetch_sub(size, Ordering::AcqRel);
            if answer.is_ok() {
                appended.inc_by(count);
            }
            let _ = reply.send(answer);
        });
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
