//! Storage: the partition replica's read side. It serves fetches from fjall directly (never through
//! the Raft actor), bounded by the applied high watermark, and parks long polls until new records
//! are applied or their wait runs out.
//!
//! Parent: ReplicaSup (one_for_all). Registered as `names::replica_reader(node, group)`.
//! Messages in: `Applied` from the Raft actor; `Fetch` and `Positions` forwarded by the Server.
//!
//! # Invariants
//! - Only records below the high watermark are returned: they are committed and applied.
//! - Only the leader replica serves fetches and positions (others answer `not_leader`, and the
//!   Router tries the next replica), so reads follow the acknowledged writes.
//! - Until the Raft actor reports its first high watermark, fetches answer `unavailable`.
//!
//! # Crash and recovery
//! Holds no durable state: the high watermark comes again from the Raft actor after a restart;
//! parked long polls of a killed actor see their reply port drop (the caller gets `unavailable`).

use std::sync::Arc;
use std::time::Duration;

use daftka_protocol::{Error, FetchOffset, FetchRequest, FetchResponse};
use daftka_storage::PartitionReader;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::replica_sup::ReplicaId;
use crate::context::NodeContext;

pub struct ReplicaReaderArgs {
    pub ctx: Arc<NodeContext>,
    pub replica: ReplicaId,
}

/// A long poll parked at the high watermark.
struct Waiter {
    id: u64,
    request: FetchRequest,
    offset: u64,
    reply: RpcReplyPort<Result<FetchResponse, Error>>,
}

pub struct ReplicaReaderState {
    ctx: Arc<NodeContext>,
    replica: ReplicaId,
    reader: PartitionReader,
    /// The applied high watermark; `None` until the Raft actor has recovered and reported.
    high_watermark: Option<u64>,
    log_start_offset: u64,
    /// Whether this replica leads: only the leader serves reads, so a reader never sees a high
    /// watermark behind what the leader acknowledged.
    leader: bool,
    waiters: Vec<Waiter>,
    next_waiter_id: u64,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum ReaderMsg {
    /// The Raft actor applied entries up to this high watermark; the log starts at
    /// `log_start_offset`; `leader` says whether this replica leads its group.
    Applied {
        high_watermark: u64,
        log_start_offset: u64,
        leader: bool,
    },
    Fetch {
        request: FetchRequest,
        reply: RpcReplyPort<Result<FetchResponse, Error>>,
    },
    /// (log start offset, high watermark).
    Positions {
        reply: RpcReplyPort<Result<(u64, u64), Error>>,
    },
    /// A parked long poll's wait ran out.
    WaitExpired { id: u64 },
}

pub struct ReplicaReader;

impl Actor for ReplicaReader {
    type Msg = ReaderMsg;
    type State = ReplicaReaderState;
    type Arguments = ReplicaReaderArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ReaderMsg>,
        args: ReplicaReaderArgs,
    ) -> Result<ReplicaReaderState, ActorProcessingErr> {
        let reader = args.ctx.store.partition_reader(args.replica.group);
        Ok(ReplicaReaderState {
            ctx: args.ctx,
            replica: args.replica,
            reader,
            high_watermark: None,
            log_start_offset: 0,
            leader: false,
            waiters: Vec::new(),
            next_waiter_id: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ReaderMsg>,
        msg: ReaderMsg,
        state: &mut ReplicaReaderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReaderMsg::Applied {
                high_watermark,
                log_start_offset,
                leader,
            } => {
                state.high_watermark = Some(high_watermark);
                state.log_start_offset = log_start_offset;
                state.leader = leader;
                if !leader {
                    // Parked long polls go back to the Router, which finds the new leader.
                    for w in std::mem::take(&mut state.waiters) {
                        let _ = w.reply.send(Err(not_leader()));
                    }
                }
                let (ready, parked): (Vec<Waiter>, Vec<Waiter>) =
                    std::mem::take(&mut state.waiters)
                        .into_iter()
                        .partition(|w| w.offset < high_watermark);
                state.waiters = parked;
                for w in ready {
                    state.read_and_reply(w.request, w.offset, high_watermark, w.reply);
                }
            }
            ReaderMsg::Positions { reply } => {
                let answer = match state.high_watermark {
                    _ if !state.leader => Err(not_leader()),
                    Some(h) => Ok((state.log_start_offset, h)),
                    None => Err(recovering()),
                };
                let _ = reply.send(answer);
            }
            ReaderMsg::Fetch { request, reply } => {
                let Some(hwm) = state.high_watermark else {
                    let _ = reply.send(Err(recovering()));
                    return Ok(());
                };
                if !state.leader {
                    let _ = reply.send(Err(not_leader()));
                    return Ok(());
                }
                let start = state.log_start_offset;
                let offset = match request.offset {
                    FetchOffset::Earliest => start,
                    FetchOffset::Latest => hwm,
                    FetchOffset::At(o) => o,
                };
                if offset < start || offset > hwm {
                    let _ = reply.send(Err(Error::offset_out_of_range(offset, start, hwm)));
                } else if offset == hwm && request.max_wait_ms > 0 {
                    let id = state.next_waiter_id;
                    state.next_waiter_id += 1;
                    let wait = Duration::from_millis(u64::from(request.max_wait_ms));
                    myself.send_after(wait, move || ReaderMsg::WaitExpired { id });
                    state.waiters.push(Waiter {
                        id,
                        request,
                        offset,
                        reply,
                    });
                } else {
                    state.read_and_reply(request, offset, hwm, reply);
                }
            }
            ReaderMsg::WaitExpired { id } => {
                if let Some(pos) = state.waiters.iter().position(|w| w.id == id) {
                    let w = state.waiters.swap_remove(pos);
                    let hwm = state.high_watermark.unwrap_or(w.offset);
                    state.read_and_reply(w.request, w.offset, hwm, w.reply);
                }
            }
        }
        Ok(())
    }
}

fn not_leader() -> Error {
    Error::not_leader("this replica does not lead its partition: fetches go to the leader")
}

fn recovering() -> Error {
    Error::unavailable("the replica is recovering")
}

impl ReplicaReaderState {
    /// Reads on a blocking thread (fjall may block) and answers from there; the actor goes on.
    fn read_and_reply(
        &self,
        request: FetchRequest,
        offset: u64,
        high_watermark: u64,
        reply: RpcReplyPort<Result<FetchResponse, Error>>,
    ) {
        let reader = self.reader.clone();
        let log_start_offset = self.log_start_offset;
        let counter = self.ctx.metrics.fetch_records.with_label_values(&[
            self.replica.topic.as_str(),
            self.replica.partition.to_string().as_str(),
        ]);
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                reader.read(
                    offset,
                    high_watermark,
                    request.max_records,
                    request.max_bytes,
                )
            })
            .await;
            let answer = match read {
                Ok(Ok(records)) => {
                    counter.inc_by(records.len() as u64);
                    let next_offset = records.last().map_or(offset, |r| r.offset + 1);
                    Ok(FetchResponse {
                        records,
                        next_offset,
                        high_watermark,
                        log_start_offset,
                    })
                }
                Ok(Err(e)) => Err(Error::from(e)),
                Err(e) => Err(Error::internal(format!("read task failed: {e}"))),
            };
            let _ = reply.send(answer);
        });
    }
}
