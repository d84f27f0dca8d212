//! Cluster: this node's membership.
//!
//! Parent: Root (one_for_one). Registered as `names::cluster(node)`.
//! It registers this node (name, Raft id, addresses) in the metadata, retrying with backoff until
//! recorded. When `node.cookie` is set it also runs the ractor_cluster `NodeServer` on
//! `node.cluster_addr` only (never all interfaces), dials every seed (`host[:port]`, default port
//! [`CLUSTER_PORT_DEFAULT`]) and every node registered in the metadata that it has no session
//! with, and dials again with backoff (at most `cluster.seed_retry_max`) whenever a dial fails or a
//! session closes. Dials run in tasks bounded by `cluster.dial_timeout`: a peer behind a network
//! partition never holds up this actor. A peer is `up` while an authenticated session with it is
//! open and its heartbeats arrive. Peers must present the same cookie: a session that closes
//! before authenticating counts as a failed attempt of its seed. It publishes what it sees as a
//! [`Membership`] on the node's watch channel (shown by `GET /v1/cluster`, used by every caller of
//! a peer to skip or give up on unresponsive ones).
//!
//! A session alone does not prove a peer alive: a paused (SIGSTOPped) or hung process, or one
//! behind a network partition, keeps its session open. So every `cluster.heartbeat_interval` the
//! actor sends a beat to every other node's [`heartbeat::Heartbeat`] actor (found in a pg group),
//! and a peer whose beats stop for `cluster.heartbeat_timeout` is `down`: its sessions are closed
//! (what they still carry is lost with them, and calls waiting on them fail at once) and it is
//! dialled again, so a healed link is a fresh connection, not one stuck in TCP's retransmission
//! backoff.
//!
//! The node is in a *minority* while it reaches no majority of the registered nodes (itself
//! included): it then logs a WARN, `/readyz` answers 503, and requests that need the cluster are
//! refused at once with `unavailable`; an INFO says when it is whole again.
//!
//! # Crash and recovery
//! Membership is rebuilt from scratch: a restarted Cluster actor stops the previous NodeServer
//! (found by its registered name, even after a kill), starts a new one and dials the seeds again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daftka_core::config::CLUSTER_PORT_DEFAULT;
use daftka_core::metadata::{MetadataCommand, NodeMeta};
use daftka_protocol::{names, ErrorCode, SeedInfo};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, NodeSessionMessage};

use crate::context::{Membership, NodeContext, Peer};

pub mod heartbeat;
pub mod peer;
pub mod transport;

use heartbeat::{Heartbeat, HeartbeatArgs, HeartbeatMsg};

/// How long a node waits for a seed with a smaller cluster address to dial it before dialling
/// that seed itself.
pub const SEED_DIAL_GRACE: Duration = Duration::from_secs(1);

/// How long a restarted Cluster actor waits for its predecessor's NodeServer to stop.
pub const NODE_SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ClusterArgs {
    pub ctx: Arc<NodeContext>,
}

/// One seed and the state of our dialling of it.
struct SeedSlot {
    info: SeedInfo,
    /// The address of the last dial, to recognise its session when it opens.
    dialled: Option<String>,
    /// Delay before the next dial; doubles up to `cluster.seed_retry_max`.
    backoff: Duration,
}

/// One open session, by ractor_cluster node id.
struct Session {
    /// The seed this is our dial of, if it is one.
    seed: Option<usize>,
    /// The peer's Daftka node name, once authenticated.
    name: Option<String>,
    addr: String,
    /// The session's actor: stopping it closes the connection.
    actor: ActorRef<NodeSessionMessage>,
}

/// A node registered in the metadata that is not one of the seeds: dialled while there is no
/// session with it.
struct KnownSlot {
    addr: String,
    /// Not dialled before this.
    next_dial: Instant,
    /// Delay before the next dial after a failed one; doubles up to `cluster.seed_retry_max`.
    backoff: Duration,
    /// A dial is under way.
    dialling: bool,
}

/// What a dial was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    Seed(usize),
    /// A registered node, by name.
    Node(String),
}

pub struct ClusterState {
    ctx: Arc<NodeContext>,
    /// Delay before the next registration attempt; doubles up to the router's backoff max.
    backoff: Duration,
    /// A registration attempt is running (in its own task: it may wait for a leader).
    registering: bool,
    server: Option<ActorRef<NodeServerMessage>>,
    seeds: Vec<SeedSlot>,
    sessions: BTreeMap<u64, Session>,
    peers: BTreeMap<String, Peer>,
    /// When each peer's last heartbeat arrived, or its session authenticated.
    heard: BTreeMap<String, Instant>,
    /// Peers that have sent a heartbeat since their session authenticated: Daftka nodes, whose
    /// silence means they are gone. A native client (`remote::connect`) joins with a session too,
    /// but sends no heartbeats: it shows as `down` and its session is left open.
    beating: std::collections::BTreeSet<String>,
    /// Registered nodes that are not seeds, by name.
    known: BTreeMap<String, KnownSlot>,
    /// This node reaches no majority of the registered nodes; `None` until the metadata is
    /// loaded (nothing to judge against yet).
    minority: Option<bool>,
    /// When this actor started: a node that has not met its peers yet is connecting, not cut off.
    started: Instant,
    /// A WARN said this node is cut off: the next change says it is whole again.
    warned_cut_off: bool,
    heartbeat: Option<ActorRef<HeartbeatMsg>>,
    /// Beats sent since start.
    beats: u64,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum ClusterMsg {
    /// Registers this node in the metadata if it is not there as it is now.
    Register,
    /// A registration attempt ended.
    RegisterDone {
        ok: bool,
    },
    /// Dials seed number `seed`.
    Dial {
        seed: usize,
    },
    /// A dial's TCP connection was made (the peer's address) or not (why).
    DialDone {
        target: DialTarget,
        result: Result<String, String>,
    },
    SessionOpened {
        node_id: u64,
        addr: String,
        incoming: bool,
        actor: ActorRef<NodeSessionMessage>,
    },
    SessionAuthenticated {
        node_id: u64,
        /// `name@host` as the peer presented itself.
        peer: Option<String>,
        /// The address the peer's own NodeServer listens on, as it advertised it.
        listen: Option<String>,
    },
    SessionClosed {
        node_id: u64,
    },
    /// Time to beat and to check the peers' deadlines.
    Tick,
    /// A peer's heartbeat arrived.
    Heard {
        from: String,
    },
}

/// Forwards the NodeServer's session events to the Cluster actor.
struct Events(ActorRef<ClusterMsg>);

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.cast(ClusterMsg::SessionOpened {
            node_id: ses.node_id,
            addr: ses.peer_addr,
            incoming: ses.is_server,
            actor: ses.actor,
        });
    }
    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.cast(ClusterMsg::SessionClosed {
            node_id: ses.node_id,
        });
    }
    fn node_session_authenticated(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.cast(ClusterMsg::SessionAuthenticated {
            node_id: ses.node_id,
            listen: ses.peer_name.as_ref().map(|n| n.connection_string.clone()),
            peer: ses.peer_name.map(|n| n.name),
        });
    }
}

pub struct Cluster;

impl Actor for Cluster {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Arguments = ClusterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ClusterMsg>,
        args: ClusterArgs,
    ) -> Result<ClusterState, ActorProcessingErr> {
        let ctx = args.ctx;
        let _ = myself.cast(ClusterMsg::Register);
        let mut state = ClusterState {
            backoff: ctx.config.router.retry_backoff_min,
            registering: false,
            server: None,
            seeds: ctx
                .config
                .node
                .seeds
                .iter()
                .map(|s| SeedSlot {
                    info: SeedInfo {
                        seed: s.clone(),
                        connected: false, // derived from the sessions at each publish
                        failed_attempts: 0,
                    },
                    dialled: None,
                    backoff: ctx.config.cluster.seed_retry_min,
                })
                .collect(),
            sessions: BTreeMap::new(),
            peers: BTreeMap::new(),
            heard: BTreeMap::new(),
            beating: Default::default(),
            known: BTreeMap::new(),
            minority: None,
            started: Instant::now(),
            warned_cut_off: false,
            heartbeat: None,
            beats: 0,
            ticker: None,
            ctx,
        };
        if !state.ctx.config.node.cookie.is_empty() {
            // Not ready before it knows it reaches a majority (a restarted node could otherwise
            // look ready before it met its peers).
            state
                .ctx
                .readiness
                .set_cut_off(Some("not connected to the cluster yet".to_string()));
            state.heartbeat = Some(start_heartbeat(&myself, &state.ctx).await?);
            state.server = Some(start_node_server(&myself, &state.ctx).await?);
            let every = state.ctx.config.cluster.heartbeat_interval;
            state.ticker = Some(myself.send_interval(every, || ClusterMsg::Tick));
            // Two nodes that name each other must not dial each other at once: ractor_cluster
            // resolves such duplicates by closing sessions, and a pair can keep closing. The node
            // with the smaller cluster address dials at once; the other gives it
            // `SEED_DIAL_GRACE` to dial in before dialling itself.
            let own = state.ctx.config.node.cluster_addr.clone();
            for seed in 0..state.seeds.len() {
                if own < seed_address(&state.seeds[seed].info.seed) {
                    let _ = myself.cast(ClusterMsg::Dial { seed });
                } else {
                    myself.send_after(SEED_DIAL_GRACE, move || ClusterMsg::Dial { seed });
                }
            }
        }
        state.publish();
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ClusterMsg>,
        state: &mut ClusterState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.ticker.take() {
            t.abort();
        }
        if let Some(server) = state.server.take() {
            let _ = server
                .stop_and_wait(None, Some(NODE_SERVER_STOP_TIMEOUT))
                .await;
        }
        if let Some(h) = state.heartbeat.take() {
            let _ = h.stop_and_wait(None, Some(NODE_SERVER_STOP_TIMEOUT)).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ClusterMsg>,
        msg: ClusterMsg,
        state: &mut ClusterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClusterMsg::Register => state.register(&myself),
            ClusterMsg::RegisterDone { ok } => {
                state.registering = false;
                if ok {
                    tracing::info!(node = %state.ctx.node, "node registered in the metadata");
                    state.backoff = state.ctx.config.router.retry_backoff_min;
                } else if state.ctx.refused.borrow().is_none() {
                    myself.send_after(state.backoff, || ClusterMsg::Register);
                    state.backoff =
                        (state.backoff * 2).min(state.ctx.config.router.retry_backoff_max);
                }
            }
            ClusterMsg::Dial { seed } => state.dial_seed(&myself, seed),
            ClusterMsg::DialDone { target, result } => state.dial_done(&myself, target, result),
            ClusterMsg::SessionOpened {
                node_id,
                addr,
                incoming,
                actor,
            } => {
                let seed = if incoming {
                    None
                } else {
                    state
                        .seeds
                        .iter()
                        .position(|s| s.dialled.as_deref() == Some(addr.as_str()))
                };
                state.sessions.insert(
                    node_id,
                    Session {
                        seed,
                        name: None,
                        addr,
                        actor,
                    },
                );
            }
            ClusterMsg::SessionAuthenticated {
                node_id,
                peer,
                listen,
            } => {
                if let Some(s) = state.sessions.get_mut(&node_id) {
                    if let Some(listen) = listen.filter(|l| !l.is_empty()) {
                        s.addr = listen;
                    }
                    // A seed that dialled us first is connected through its own session: ours
                    // to it was closed as a duplicate.
                    if s.seed.is_none() {
                        s.seed = state.seeds.iter().position(|slot| {
                            slot.dialled.as_deref() == Some(s.addr.as_str())
                                || seed_address(&slot.info.seed) == s.addr
                        });
                    }
                    // ractor_cluster names a node `name@host`: ours is the part before the `@`.
                    let name = peer
                        .as_deref()
                        .map(|p| p.split('@').next().unwrap_or(p).to_string());
                    if let Some(name) = &name {
                        tracing::info!(peer = %name, addr = %s.addr, "node up");
                        state.heard.insert(name.clone(), Instant::now());
                        state.beating.remove(name);
                        state.peers.insert(
                            name.clone(),
                            Peer {
                                addr: s.addr.clone(),
                                up: true,
                            },
                        );
                    }
                    s.name = name;
                    if let Some(i) = s.seed {
                        state.seeds[i].backoff = state.ctx.config.cluster.seed_retry_min;
                    }
                }
                state.publish();
            }
            ClusterMsg::Tick => state.tick(&myself),
            ClusterMsg::Heard { from } => {
                state.heard.insert(from.clone(), Instant::now());
                state.beating.insert(from.clone());
                let in_session = state
                    .sessions
                    .values()
                    .any(|s| s.name.as_deref() == Some(from.as_str()));
                if let Some(p) = state.peers.get_mut(&from) {
                    if in_session && !p.up {
                        tracing::info!(peer = %from, "node responsive again");
                        p.up = true;
                        state.publish();
                    }
                }
            }
            ClusterMsg::SessionClosed { node_id } => {
                if let Some(s) = state.sessions.remove(&node_id) {
                    // ractor_cluster keeps one session per pair of nodes: when both dialled, the
                    // loser of its election closes, maybe after authenticating. The peer is still
                    // there through the other session.
                    let other = |name: &str| {
                        state
                            .sessions
                            .values()
                            .any(|o| o.name.as_deref() == Some(name))
                    };
                    let seed_alive = s.seed.is_some_and(|i| state.seed_session(i).is_some());
                    match &s.name {
                        Some(name) if other(name) => {
                            tracing::debug!(peer = %name, "duplicate cluster session closed")
                        }
                        Some(name) => {
                            tracing::warn!(peer = %name, addr = %s.addr, "node down");
                            if let Some(p) = state.peers.get_mut(name) {
                                p.up = false;
                            }
                        }
                        None if seed_alive => {
                            tracing::debug!(addr = %s.addr, "duplicate cluster session closed")
                        }
                        None => tracing::warn!(
                            addr = %s.addr,
                            "cluster session closed before authenticating (wrong cookie?)"
                        ),
                    }
                    // A seed still reached through another session is not a failure.
                    if let Some(i) = s.seed.filter(|_| !seed_alive) {
                        if s.name.is_none() {
                            state.seeds[i].info.failed_attempts += 1;
                        }
                        state.retry_later(&myself, i);
                    }
                }
                state.publish();
            }
        }
        Ok(())
    }
}

/// Stops the actor registered as `name`, left by a killed predecessor of the Cluster actor (a kill
/// skips `post_stop`): frees its name and, for the NodeServer, its port.
async fn stop_predecessor(name: &str) {
    if let Some(old) = ractor::registry::where_is(name) {
        let _ = old
            .stop_and_wait(None, Some(NODE_SERVER_STOP_TIMEOUT))
            .await;
    }
}

/// Starts this node's Heartbeat actor, after stopping a predecessor's.
async fn start_heartbeat(
    myself: &ActorRef<ClusterMsg>,
    ctx: &NodeContext,
) -> Result<ActorRef<HeartbeatMsg>, ActorProcessingErr> {
    let name = names::heartbeat(&ctx.node);
    stop_predecessor(&name).await;
    let args = HeartbeatArgs {
        cluster: myself.clone(),
    };
    let (h, _) = Actor::spawn_linked(Some(name), Heartbeat, args, myself.get_cell()).await?;
    Ok(h)
}

/// Starts the NodeServer on `node.cluster_addr`, after stopping a predecessor's.
async fn start_node_server(
    myself: &ActorRef<ClusterMsg>,
    ctx: &NodeContext,
) -> Result<ActorRef<NodeServerMessage>, ActorProcessingErr> {
    let name = names::node_server(&ctx.node);
    stop_predecessor(&name).await;
    let addr: SocketAddr = ctx.config.node.cluster_addr.parse()?;
    let server = NodeServer::new(
        addr.port(),
        ctx.config.node.cookie.clone(),
        ctx.node.clone(),
        addr.ip().to_string(),
        None,
        None,
    )
    .with_listen_addr(addr.ip())
    .with_max_inbound_frame_size(ctx.config.cluster.frame_bytes_max);
    let (server, _) = Actor::spawn_linked(Some(name), server, (), myself.get_cell()).await?;
    server.cast(NodeServerMessage::SubscribeToEvents {
        id: "daftka.cluster".to_string(),
        subscription: Box::new(Events(myself.clone())),
    })?;
    tracing::info!(addr = %addr, "cluster listener started");
    Ok(server)
}

/// `host[:port]` with the default cluster port when none is given.
pub fn seed_address(seed: &str) -> String {
    let has_port = seed
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    if has_port {
        seed.to_string()
    } else {
        format!("{seed}:{CLUSTER_PORT_DEFAULT}")
    }
}

/// Whether a node that reaches `reached` of the `registered` nodes (itself included) is cut off
/// from the majority.
fn in_minority(reached: usize, registered: usize) -> bool {
    registered > 0 && reached * 2 <= registered
}

/// Dials `target` (`host:port`) from `server` in a task, within `timeout`; the outcome comes
/// back to `myself` as [`ClusterMsg::DialDone`].
fn spawn_dial(
    server: &ActorRef<NodeServerMessage>,
    myself: &ActorRef<ClusterMsg>,
    what: DialTarget,
    target: String,
    timeout: Duration,
) {
    let (server, myself) = (server.clone(), myself.clone());
    tokio::spawn(async move {
        let dial = async {
            let addr = tokio::net::lookup_host(target.as_str())
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("{target} does not resolve"))?;
            ractor_cluster::client_connect(&server, addr)
                .await
                .map(|()| addr.to_string())
                .map_err(|e| e.to_string())
        };
        let result = tokio::time::timeout(timeout, dial)
            .await
            .unwrap_or_else(|_| Err(format!("no connection to {target} within {timeout:?}")));
        let _ = myself.cast(ClusterMsg::DialDone {
            target: what,
            result,
        });
    });
}

impl ClusterState {
    /// Judges whether this node is in a minority, then publishes what it sees.
    fn publish(&mut self) {
        self.judge_minority();
        for (name, p) in &self.peers {
            self.ctx
                .metrics
                .peer_up
                .with_label_values(&[name.as_str()])
                .set(i64::from(p.up));
        }
        self.ctx.membership.send_replace(Membership {
            peers: self.peers.clone(),
            seeds: (0..self.seeds.len())
                .map(|i| SeedInfo {
                    connected: self.seed_session(i).is_some(),
                    ..self.seeds[i].info.clone()
                })
                .collect(),
            minority: self.minority == Some(true),
        });
    }

    /// Sends a beat to every other node's Heartbeat actor; marks `down` every peer whose session
    /// is open but whose beats stopped for longer than the timeout, and closes its sessions; dials
    /// registered nodes it has no session with; and says whether this node is in a minority.
    fn tick(&mut self, myself: &ActorRef<ClusterMsg>) {
        let Some(own) = &self.heartbeat else {
            return;
        };
        self.beats += 1;
        let own_id = own.get_id();
        for member in ractor::pg::get_members(&names::HEARTBEAT_GROUP.to_string()) {
            if member.get_id() != own_id {
                let peer: ActorRef<HeartbeatMsg> = member.into();
                // A beat lost to a closing session is what the deadline is for.
                let _ = peer.cast(HeartbeatMsg::Beat(self.ctx.node.clone(), self.beats));
            }
        }
        let timeout = self.ctx.config.cluster.heartbeat_timeout;
        let mut changed = false;
        for (name, peer) in self.peers.iter_mut() {
            let silent = self.heard.get(name).is_none_or(|t| t.elapsed() > timeout);
            if peer.up && silent {
                peer.up = false;
                changed = true;
                if !self.beating.remove(name) {
                    // Never beat: a client, not a node. Nothing is waiting on its heartbeats.
                    tracing::debug!(peer = %name, "session without heartbeats (a native client?)");
                    continue;
                }
                tracing::warn!(peer = %name, "node unresponsive: no heartbeat within the timeout; closing its sessions");
                for s in self.sessions.values() {
                    if s.name.as_deref() == Some(name.as_str()) {
                        s.actor
                            .stop(Some("no heartbeat within the timeout".to_string()));
                    }
                }
            }
        }
        self.dial_known(myself);
        // The registered nodes change with the metadata, not with membership.
        changed |= self.minority != self.reach().map(|(r, n)| in_minority(r, n));
        if changed {
            self.publish();
        }
    }

    /// How many registered nodes this node reaches (itself included), and how many are
    /// registered; `None` while its metadata is not loaded.
    fn reach(&self) -> Option<(usize, usize)> {
        let view = self.ctx.metadata_view();
        if !view.loaded {
            return None;
        }
        let registered = view.state.nodes.len();
        if self.ctx.config.node.cookie.is_empty() {
            // A standalone node: nobody else to reach.
            return Some((registered, registered));
        }
        let reached = view
            .state
            .nodes
            .keys()
            .filter(|n| **n == self.ctx.node || self.peers.get(*n).is_some_and(|p| p.up))
            .count();
        Some((reached, registered))
    }

    /// Judges whether this node is in a minority; logs and reports a change.
    fn judge_minority(&mut self) {
        let Some((reached, registered)) = self.reach() else {
            return;
        };
        let minority = in_minority(reached, registered);
        if self.minority == Some(minority) {
            return;
        }
        let first = self.minority.is_none();
        let warned = std::mem::take(&mut self.warned_cut_off);
        self.minority = Some(minority);
        self.ctx.metrics.minority.set(i64::from(minority));
        if minority {
            let why = format!(
                "cut off: this node reaches {reached} of the {registered} registered nodes, not a majority"
            );
            let cfg = &self.ctx.config.cluster;
            if first || self.started.elapsed() < cfg.dial_timeout + cfg.heartbeat_timeout {
                tracing::info!(
                    reached,
                    registered,
                    "waiting to reach a majority of the cluster"
                );
            } else {
                tracing::warn!(
                    reached,
                    registered,
                    "{why}; refusing requests that need the cluster"
                );
                self.warned_cut_off = true;
            }
            self.ctx.readiness.set_cut_off(Some(why));
        } else {
            if !warned {
                tracing::info!(
                    reached,
                    registered,
                    "this node reaches a majority of the cluster"
                );
            } else {
                tracing::info!(
                    reached,
                    registered,
                    "whole again: this node reaches a majority of the cluster"
                );
            }
            self.ctx.readiness.set_cut_off(None);
        }
    }

    /// Dials every registered node that is not a seed and has no session with this node, once
    /// its slot's delay has passed. Of two nodes that have to dial each other, the one with the
    /// smaller cluster address dials at once and the other after `SEED_DIAL_GRACE`.
    fn dial_known(&mut self, myself: &ActorRef<ClusterMsg>) {
        let Some(server) = self.server.clone() else {
            return;
        };
        let view = self.ctx.metadata_view();
        let own = self.ctx.config.node.cluster_addr.clone();
        let now = Instant::now();
        for (name, meta) in &view.state.nodes {
            let addr = &meta.cluster_addr;
            let seeded = self
                .seeds
                .iter()
                .any(|s| seed_address(&s.info.seed) == *addr);
            let unusable = addr.rsplit_once(':').is_none_or(|(_, port)| port == "0");
            if *name == self.ctx.node || seeded || unusable {
                continue;
            }
            let in_session = self
                .sessions
                .values()
                .any(|s| s.name.as_deref() == Some(name.as_str()) || s.addr == *addr);
            let min = self.ctx.config.cluster.seed_retry_min;
            let slot = self.known.entry(name.clone()).or_insert_with(|| KnownSlot {
                addr: addr.clone(),
                next_dial: if own < *addr {
                    now
                } else {
                    now + SEED_DIAL_GRACE
                },
                backoff: min,
                dialling: false,
            });
            slot.addr.clone_from(addr);
            if in_session {
                // Connected (or connecting): a later loss waits a grace before the next dial.
                slot.backoff = min;
                slot.next_dial = now + if own < *addr { min } else { SEED_DIAL_GRACE };
                continue;
            }
            if !slot.dialling && now >= slot.next_dial {
                slot.dialling = true;
                spawn_dial(
                    &server,
                    myself,
                    DialTarget::Node(name.clone()),
                    addr.clone(),
                    self.ctx.config.cluster.dial_timeout,
                );
            }
        }
    }

    /// An authenticated session with seed `seed`'s node, whoever dialled: the seed is connected
    /// exactly when there is one.
    fn seed_session(&self, seed: usize) -> Option<u64> {
        let slot = &self.seeds[seed];
        let addr = seed_address(&slot.info.seed);
        self.sessions
            .iter()
            .find(|(_, s)| {
                s.name.is_some()
                    && (slot.dialled.as_deref() == Some(s.addr.as_str()) || s.addr == addr)
            })
            .map(|(id, _)| *id)
    }

    /// Dials seed `seed` again after its backoff, with jitter (0.5x to 1.5x): two nodes that dial
    /// each other must not stay in step, or every pair of dials ends as duplicates.
    fn retry_later(&mut self, myself: &ActorRef<ClusterMsg>, seed: usize) {
        let slot = &mut self.seeds[seed];
        let delay = slot.backoff.mul_f64(rand::random::<f64>() + 0.5);
        slot.backoff = (slot.backoff * 2).min(self.ctx.config.cluster.seed_retry_max);
        myself.send_after(delay, move || ClusterMsg::Dial { seed });
    }

    /// Dials seed `seed` in a task, unless a session with it is open.
    fn dial_seed(&mut self, myself: &ActorRef<ClusterMsg>, seed: usize) {
        let Some(server) = self.server.clone() else {
            return;
        };
        if self.seed_session(seed).is_some() {
            // Connected already, maybe through the seed's own dial: that session is ours too.
            return;
        }
        let target = seed_address(&self.seeds[seed].info.seed);
        spawn_dial(
            &server,
            myself,
            DialTarget::Seed(seed),
            target,
            self.ctx.config.cluster.dial_timeout,
        );
    }

    /// A dial ended: its session's events tell how it goes from a made connection; a failed one
    /// is tried again after the target's backoff.
    fn dial_done(
        &mut self,
        myself: &ActorRef<ClusterMsg>,
        target: DialTarget,
        result: Result<String, String>,
    ) {
        match (target, result) {
            (DialTarget::Seed(seed), Ok(addr)) => self.seeds[seed].dialled = Some(addr),
            (DialTarget::Seed(seed), Err(e)) => {
                tracing::debug!(seed = %self.seeds[seed].info.seed, error = %e, "seed dial failed");
                self.seeds[seed].info.failed_attempts += 1;
                self.publish();
                self.retry_later(myself, seed);
            }
            (DialTarget::Node(name), result) => {
                let max = self.ctx.config.cluster.seed_retry_max;
                let wait = self.ctx.config.cluster.dial_timeout;
                if let Some(slot) = self.known.get_mut(&name) {
                    slot.dialling = false;
                    match result {
                        // Give the session time to authenticate before dialling again.
                        Ok(_) => slot.next_dial = Instant::now() + wait,
                        Err(e) => {
                            tracing::debug!(node = %name, addr = %slot.addr, error = %e, "dial failed");
                            slot.next_dial =
                                Instant::now() + slot.backoff.mul_f64(rand::random::<f64>() + 0.5);
                            slot.backoff = (slot.backoff * 2).min(max);
                        }
                    }
                }
            }
        }
    }

    /// Registers this node through the metadata leader, wherever it is (a joining node reaches it
    /// through any peer), in a task; the outcome comes back as `RegisterDone`.
    fn register(&mut self, myself: &ActorRef<ClusterMsg>) {
        let ctx = self.ctx.clone();
        let me = NodeMeta {
            name: ctx.node.clone(),
            raft_id: ctx.raft_id,
            cluster_addr: ctx.config.node.cluster_addr.clone(),
            http_addr: ctx.http_addr.to_string(),
        };
        let incarnation = ctx.store.incarnation();
        let view = ctx.metadata_view();
        let known = view.loaded
            && view.state.nodes.get(&me.name) == Some(&me)
            && view.state.incarnations.get(&me.name) == Some(&incarnation);
        if self.registering || known || ctx.refused.borrow().is_some() {
            return;
        }
        self.registering = true;
        let myself = myself.clone();
        tokio::spawn(async move {
            let join = MetadataCommand::JoinNode {
                node: me,
                incarnation,
            };
            let result = crate::metadata::propose(&ctx, join).await;
            match &result {
                Err(e) if e.code == ErrorCode::NodeRemoved => ctx.refuse(e.message.clone()),
                Err(e) => tracing::debug!(error = %e, "node registration retried"),
                Ok(_) => {}
            }
            let _ = myself.cast(ClusterMsg::RegisterDone { ok: result.is_ok() });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node is cut off when it reaches half of the registered nodes or fewer, itself included.
    #[test]
    fn a_minority_is_half_or_less() {
        assert!(!in_minority(1, 1));
        assert!(in_minority(1, 2));
        assert!(!in_minority(2, 2));
        assert!(in_minority(1, 3));
        assert!(!in_minority(2, 3));
        assert!(in_minority(2, 4));
        assert!(!in_minority(3, 5));
        assert!(
            !in_minority(0, 0),
            "nothing registered yet: not judged cut off"
        );
    }

    /// A seed without a port takes the default cluster port; one with a port keeps it.
    #[test]
    fn seeds_take_the_default_port() {
        assert_eq!(seed_address("b"), "b:7000");
        assert_eq!(seed_address("10.0.0.2:7101"), "10.0.0.2:7101");
        assert_eq!(seed_address("host.example"), "host.example:7000");
    }
}
