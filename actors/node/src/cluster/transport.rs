//! [`ClusterTransport`]: Raft messages to the other nodes, over ractor_cluster, in batches, with
//! flow control.
//!
//! Every Raft group of the node hands its outgoing messages to [`RaftTransport::send`], which
//! never blocks: each message is encoded and queued on the link to its destination node (found by
//! Raft id). One sender task per link takes everything queued, up to
//! `cluster.raft_batch_bytes_max`, into one `PeerMsg::Raft` call to the peer's [`Peer`] actor and
//! waits for its acknowledgement before sending the next batch: one batch in flight per peer. A
//! link holds at most `cluster.raft_queue_bytes_max` bytes; messages beyond that, and batches for
//! a peer that cannot be reached or does not answer within `cluster.raft_send_timeout`, are
//! dropped and counted (`daftka_raft_messages_total{outcome="dropped"}`). Raft is built for lossy
//! networks: a lost append is sent again, a lost vote is followed by a new election.
//!
//! The transport is not an actor: it is shared by every group of the node and outlives their
//! restarts. Its tasks end when [`ClusterTransport::close`] is called (node shutdown).
//!
//! [`Peer`]: super::peer::Peer

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use daftka_protocol::{rpc, GroupId, Wire};
use raft::eraftpb::Message;
use tokio::sync::Notify;

use super::peer::{peer_of, PeerMsg, RaftFrame};
use crate::consensus::RaftTransport;
use crate::context::NodeContext;

/// What is queued for one peer.
#[derive(Default)]
struct Queue {
    frames: VecDeque<RaftFrame>,
    bytes: usize,
}

/// The link to one peer node.
struct Link {
    to: u64,
    queue: Mutex<Queue>,
    ready: Notify,
}

/// The cluster transport of one node. Built before the node's context, which it then reads
/// through a weak reference (set by [`ClusterTransport::attach`]).
#[derive(Default)]
pub struct ClusterTransport {
    ctx: Mutex<Weak<NodeContext>>,
    links: Mutex<HashMap<u64, Arc<Link>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ClusterTransport {
    pub fn new() -> Arc<ClusterTransport> {
        Arc::new(ClusterTransport::default())
    }

    /// Gives the transport its node's context (configuration, metrics, the peers' groups).
    pub fn attach(&self, ctx: &Arc<NodeContext>) {
        *lock(&self.ctx) = Arc::downgrade(ctx);
    }

    fn link(&self, ctx: &Arc<NodeContext>, to: u64) -> Arc<Link> {
        let mut links = lock(&self.links);
        if let Some(l) = links.get(&to) {
            return l.clone();
        }
        let link = Arc::new(Link {
            to,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        });
        links.insert(to, link.clone());
        let task = tokio::spawn(run_link(Arc::downgrade(ctx), link.clone()));
        lock(&self.tasks).push(task);
        link
    }
}

impl RaftTransport for ClusterTransport {
    fn send(&self, group: GroupId, messages: Vec<Message>) {
        let Some(ctx) = lock(&self.ctx).upgrade() else {
            return;
        };
        let limit = usize::try_from(ctx.config.cluster.raft_queue_bytes_max).unwrap_or(usize::MAX);
        let counter = &ctx.metrics.raft_messages;
        for m in messages {
            let bytes = match protobuf::Message::write_to_bytes(&m) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::error!(%group, error = %e, "a Raft message did not encode");
                    continue;
                }
            };
            let link = self.link(&ctx, m.to);
            let mut q = lock(&link.queue);
            if q.bytes + bytes.len() > limit {
                counter.with_label_values(&["dropped"]).inc();
                continue;
            }
            q.bytes += bytes.len();
            q.frames.push_back((group.0, bytes));
            drop(q);
            link.ready.notify_one();
        }
    }

    fn close(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        lock(&self.links).clear();
    }
}

/// Sends what is queued on `link`, one batch at a time, until the node is gone.
async fn run_link(ctx: Weak<NodeContext>, link: Arc<Link>) {
    loop {
        link.ready.notified().await;
        loop {
            let Some(ctx) = ctx.upgrade() else { return };
            let batch = take_batch(&link, ctx.config.cluster.raft_batch_bytes_max);
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let outcome = match peer_of(&ctx, link.to) {
                Some(peer) => {
                    let timeout = ctx.config.cluster.raft_send_timeout;
                    let call = |reply| PeerMsg::Raft {
                        batch: Wire::ok(batch),
                        reply,
                    };
                    match rpc::call(&peer, call, timeout, "a peer").await {
                        Ok(()) => "sent",
                        Err(e) => {
                            tracing::debug!(to = link.to, error = %e, "raft batch lost");
                            "dropped"
                        }
                    }
                }
                None => "dropped",
            };
            ctx.metrics
                .raft_messages
                .with_label_values(&[outcome])
                .inc_by(n);
        }
    }
}

/// Takes queued frames up to `max` bytes (always at least one).
fn take_batch(link: &Link, max: u64) -> Vec<RaftFrame> {
    let mut q = lock(&link.queue);
    let mut out = Vec::new();
    let mut bytes = 0u64;
    while let Some((_, b)) = q.frames.front() {
        let len = b.len() as u64;
        if !out.is_empty() && bytes + len > max {
            break;
        }
        bytes += len;
        q.bytes -= b.len();
        if let Some(f) = q.frames.pop_front() {
            out.push(f);
        }
    }
    out
}

/// Locks a mutex whose data stays consistent even if a holder panicked (plain queues and maps).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
