//! Peer: this node's entry point for the other nodes of its cluster.
//!
//! Parent: Root (one_for_one). Registered as `names::peer(node)` and a member of two pg
//! groups: [`names::peer_group`] (this node, by Raft id) and [`names::peers_group`] (every node of
//! the cluster). ractor_cluster synchronises pg groups across authenticated sessions, so another
//! node finds this one by its Raft id; in one process (tests) the same groups find local actors.
//!
//! Messages in ([`PeerMsg`], which crosses the network: variant names and field order are the wire
//! format, and every payload is a [`Wire`] that decodes into a `Result`, so a bad frame becomes an
//! error reply, never a crash):
//! - `Raft`: a batch of Raft messages, handed to their groups' actors on this node (the Metadata
//!   actor for group 0, else the replica's Raft actor), one `Step` per group. Answered once every
//!   actor has stepped its messages: the sender keeps one batch in flight per peer, so what waits in
//!   those mailboxes is bounded by one batch per peer.
//! - `ProposeMetadata`: a metadata command for this node's Metadata actor (only taken if it leads).
//! - `Produce`, `Fetch`, `Positions`: requests for a partition replica on this node, sent by
//!   another node's Router; forwarded to the replica's Server with the reply. A produce carries
//!   its caller's deadline and is refused (`unavailable`, not proposed) once it has passed, so a
//!   request held up behind a partition is never carried out after its caller gave up on it.
//! - `Status`: this node's name and whether it is a metadata member (the founding rule).
//!
//! Decoding Raft messages uses protobuf 2 (RUSTSEC-2024-0437: hostile input can overflow the
//! stack): only authenticated peers (same cookie) can reach this actor.
//!
//! # Crash and recovery
//! Stateless. Requests in flight when it dies see their reply drop (their callers get `timeout`
//! or `unavailable`); Raft messages lost with it are sent again by Raft.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use daftka_core::metadata::{Applied, MetadataCommand};
use daftka_protocol::wire::Framed;
use daftka_protocol::{ids, names, rpc, Error, FetchRequest, FetchResponse, GroupId, Record, Wire};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::NodeContext;
use crate::partitions::server::ServerMsg;

/// One Raft message in a batch: its group and its protobuf bytes.
pub type RaftFrame = (u64, Bytes);

#[derive(ractor_cluster::RactorClusterMessage)]
pub enum PeerMsg {
    #[rpc]
    Raft {
        batch: Wire<Vec<RaftFrame>>,
        reply: RpcReplyPort<Wire<()>>,
    },
    #[rpc]
    ProposeMetadata {
        command: Wire<MetadataCommand>,
        reply: RpcReplyPort<Wire<Applied>>,
    },
    /// Records for partition group `target.0`, to be proposed before `target.1` (the caller's
    /// deadline, milliseconds since the Unix epoch): a request that arrives or waits past it is
    /// refused, never proposed after its caller gave up on it.
    #[rpc]
    Produce {
        target: Wire<(GroupId, u64)>,
        records: Framed<Vec<Record>>,
        reply: RpcReplyPort<Wire<u64>>,
    },
    #[rpc]
    Fetch {
        request: Wire<(GroupId, FetchRequest)>,
        reply: RpcReplyPort<Wire<FetchResponse>>,
    },
    #[rpc]
    Positions {
        group: Wire<GroupId>,
        reply: RpcReplyPort<Wire<(u64, u64)>>,
    },
    /// A partition group's members and move as its leader sees them.
    #[rpc]
    GroupStatus {
        group: Wire<GroupId>,
        reply: RpcReplyPort<Wire<daftka_protocol::GroupStatus>>,
    },
    /// Who this node is and whether it is a member of a metadata group (the founding rule).
    #[rpc]
    Status {
        reply: RpcReplyPort<Wire<PeerStatus>>,
    },
}

/// A node's answer to [`PeerMsg::Status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerStatus {
    pub node: String,
    /// It is in a metadata group and has applied what was committed when it started.
    pub member: bool,
}

pub struct PeerArgs {
    pub ctx: Arc<NodeContext>,
}

pub struct Peer;

impl Actor for Peer {
    type Msg = PeerMsg;
    type State = Arc<NodeContext>;
    type Arguments = PeerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PeerMsg>,
        args: PeerArgs,
    ) -> Result<Arc<NodeContext>, ActorProcessingErr> {
        let ctx = args.ctx;
        let cluster = &ctx.config.cluster.name;
        ractor::pg::join(
            names::peer_group(cluster, ctx.raft_id),
            vec![myself.get_cell()],
        );
        ractor::pg::join(names::peers_group(cluster), vec![myself.get_cell()]);
        Ok(ctx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<PeerMsg>,
        msg: PeerMsg,
        ctx: &mut Arc<NodeContext>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PeerMsg::Raft { batch, reply } => match batch.0 {
                Ok(frames) => {
                    let taken = dispatch_raft(ctx, frames);
                    // Answered once every group actor has stepped its messages, in a task so
                    // this actor goes on with other peers' batches meanwhile.
                    tokio::spawn(async move {
                        futures::future::join_all(taken).await;
                        let _ = reply.send(Wire::ok(()));
                    });
                }
                Err(e) => {
                    let _ = reply.send(Wire(Err(e)));
                }
            },
            PeerMsg::ProposeMetadata { command, reply } => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let answer = match command.0 {
                        Ok(cmd) => crate::metadata::propose_local(&ctx, cmd).await,
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(Wire(answer));
                });
            }
            PeerMsg::Produce {
                target,
                records,
                reply,
            } => {
                let request = target.0.and_then(|(g, deadline_ms)| {
                    let deadline = deadline_from_wall_ms(deadline_ms).ok_or_else(|| {
                        Error::unavailable("the request arrived after its deadline: not proposed")
                    })?;
                    Ok((g, (records.0?, deadline)))
                });
                forward(ctx, request, reply, |(records, deadline), reply| {
                    ServerMsg::Produce {
                        records,
                        deadline,
                        reply,
                    }
                })
            }
            PeerMsg::Fetch { request, reply } => {
                forward(ctx, request.0, reply, |request, reply| ServerMsg::Fetch {
                    request,
                    reply,
                })
            }
            PeerMsg::Status { reply } => {
                let _ = reply.send(Wire::ok(PeerStatus {
                    node: ctx.node.clone(),
                    member: ctx.metadata_view().loaded,
                }));
            }
            PeerMsg::Positions { group, reply } => {
                forward(ctx, group.0.map(|g| (g, ())), reply, |(), reply| {
                    ServerMsg::Positions { reply }
                })
            }
            PeerMsg::GroupStatus { group, reply } => {
                forward(ctx, group.0.map(|g| (g, ())), reply, |(), reply| {
                    ServerMsg::GroupStatus { reply }
                })
            }
        }
        Ok(())
    }
}

/// Hands each group's Raft messages to its actor on this node, in one `Step` per group; returns
/// what answers once each actor has stepped them. Messages for a group with no actor here (not
/// started yet, or restarting) are dropped: Raft sends again.
fn dispatch_raft(
    ctx: &NodeContext,
    frames: Vec<RaftFrame>,
) -> Vec<tokio::sync::oneshot::Receiver<()>> {
    let mut by_group: std::collections::BTreeMap<u64, Vec<raft::eraftpb::Message>> =
        Default::default();
    for (group, bytes) in frames {
        match protobuf::Message::parse_from_bytes(&bytes) {
            Ok(m) => by_group.entry(group).or_default().push(m),
            Err(e) => {
                tracing::warn!(group, error = %e, "a peer sent a Raft message that does not decode")
            }
        }
    }
    let mut taken = Vec::with_capacity(by_group.len());
    for (group, messages) in by_group {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let group = GroupId(group);
        let sent = if group == GroupId::METADATA {
            ractor::registry::where_is(names::metadata(&ctx.node)).map(|cell| {
                let actor: ActorRef<crate::metadata::MetadataMsg> = cell.into();
                actor
                    .cast(crate::metadata::MetadataMsg::Step {
                        messages,
                        taken: tx,
                    })
                    .is_ok()
            })
        } else {
            ractor::registry::where_is(names::replica_raft(&ctx.node, group)).map(|cell| {
                let actor: ActorRef<crate::partitions::raft::RaftMsg> = cell.into();
                actor
                    .cast(crate::partitions::raft::RaftMsg::Step {
                        messages,
                        taken: tx,
                    })
                    .is_ok()
            })
        };
        if sent == Some(true) {
            taken.push(rx);
        }
    }
    taken
}

/// Forwards a request for partition group `group` to its Server on this node, in a task.
fn forward<A: Send + 'static, T: Send + 'static>(
    ctx: &NodeContext,
    request: Result<(GroupId, A), Error>,
    reply: RpcReplyPort<Wire<T>>,
    build: impl FnOnce(A, RpcReplyPort<Result<T, Error>>) -> ServerMsg + Send + 'static,
) {
    let (group, args) = match request {
        Ok(r) => r,
        Err(e) => {
            let _ = reply.send(Wire(Err(e)));
            return;
        }
    };
    let server = names::replica_server(&ctx.node, group);
    // The caller's own deadline ends the wait sooner; this bounds a call whose caller is gone.
    let timeout = ctx.config.router.request_timeout + ctx.config.limits.fetch_wait_max;
    tokio::spawn(async move {
        let answer = rpc::call_named(&server, |r| build(args, r), timeout, "the replica").await;
        let _ = reply.send(Wire(answer));
    });
}

/// `deadline` as milliseconds since the Unix epoch, to travel to another node (clocks are
/// assumed in step, as NTP keeps them).
pub fn wall_ms(deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(Instant::now());
    crate::metadata::wall_clock_ms()
        .saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
}

/// A deadline received as milliseconds since the Unix epoch, on this node's clock; `None` if it
/// has passed.
pub fn deadline_from_wall_ms(ms: u64) -> Option<Instant> {
    let left = ms.checked_sub(crate::metadata::wall_clock_ms())?;
    (left > 0).then(|| Instant::now() + Duration::from_millis(left))
}

/// What an abandoned call to a peer means for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandon {
    /// A write: it may still be carried out (`timeout`, outcome unknown).
    OutcomeUnknown,
    /// A read, or anything safe to send again (`unavailable`).
    Retry,
}

/// Calls node `node`'s Peer actor with the message `build` makes, within `timeout`; `what` names
/// the callee in errors. A node the heartbeat marks unresponsive is not called (`unavailable`,
/// counted as `skipped`), and a call waiting on a node that becomes unresponsive is given up at
/// once (counted as `abandoned`; its error follows `abandon`), instead of waiting out `timeout`
/// behind a silent connection.
pub async fn call_peer<R: rpc::Reply>(
    ctx: &NodeContext,
    node: &str,
    build: impl FnOnce(RpcReplyPort<R>) -> PeerMsg,
    timeout: Duration,
    what: &str,
    abandon: Abandon,
) -> Result<R::Out, Error> {
    let count = |outcome: &str| {
        ctx.metrics
            .peer_calls
            .with_label_values(&[node, outcome])
            .inc()
    };
    if !ctx.reachable(node) {
        count("skipped");
        return Err(Error::unavailable(format!(
            "node {node} is unresponsive (no heartbeat): {what} not called"
        )));
    }
    // Ids come from the metadata (a directory's id depends on its incarnation); a node not
    // registered yet can only have the id its name gives.
    let raft_id = ctx
        .metadata
        .borrow()
        .state
        .nodes
        .get(node)
        .map_or_else(|| ids::raft_id(node), |n| n.raft_id);
    let Some(peer) = peer_of(ctx, raft_id) else {
        return Err(Error::unavailable(format!("node {node} is not reachable")));
    };
    tokio::select! {
        answer = rpc::call(&peer, build, timeout, what) => answer,
        () = ctx.unreachable(node) => {
            count("abandoned");
            let why = format!("node {node} became unresponsive while {what} handled the request");
            Err(match abandon {
                Abandon::OutcomeUnknown => Error::timeout(format!("{why}: outcome unknown")),
                Abandon::Retry => Error::unavailable(why),
            })
        }
    }
}

/// The Peer actor of the node with Raft id `raft_id` in this node's cluster: the local one when
/// the node runs in this process, else the remote one ractor_cluster shows.
pub fn peer_of(ctx: &NodeContext, raft_id: u64) -> Option<ActorRef<PeerMsg>> {
    let members = ractor::pg::get_members(&names::peer_group(&ctx.config.cluster.name, raft_id));
    members
        .iter()
        .find(|c| c.get_id().is_local())
        .or_else(|| members.first())
        .cloned()
        .map(Into::into)
}

/// Every other node's Peer actor this node can reach now, one per node (local ones preferred).
pub fn other_peers(ctx: &NodeContext) -> Vec<ActorRef<PeerMsg>> {
    let own = names::peer(&ctx.node);
    let mut seen = std::collections::BTreeSet::new();
    let mut members = ractor::pg::get_members(&names::peers_group(&ctx.config.cluster.name));
    members.sort_by_key(|c| !c.get_id().is_local());
    members
        .into_iter()
        .filter(|c| c.get_name().as_deref() != Some(own.as_str()))
        .filter(|c| seen.insert(c.get_name().unwrap_or_default()))
        .map(Into::into)
        .collect()
}
