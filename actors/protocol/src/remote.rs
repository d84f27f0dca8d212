//! Reaching a Daftka cluster from another Rust actor system over ractor_cluster.
//!
//! [`connect`] starts a ractor_cluster `NodeServer` in this process (listening on loopback only),
//! opens an authenticated session with one Daftka node (same cookie), and waits until that node's
//! Router appears in the pg group [`crate::names::routers_group`]. The [`Client`] it returns sends
//! typed [`crate::RouterMsg`]s to that Router; any Router serves any request (it forwards to the
//! partition leaders). A program needs only this crate, ractor and ractor_cluster.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};

use crate::{names, Client, Error};

/// How to reach a cluster.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// A Daftka node's cluster address, `host:port`.
    pub seed: String,
    /// The cluster's cookie.
    pub cookie: String,
    /// The cluster's name (`cluster.name`, default `daftka`).
    pub cluster: String,
    /// This actor system's node name, as the cluster will see it; by default one of its own for
    /// every `RemoteOptions` ([`unique_name`]). Two open sessions must not share one.
    pub name: String,
    /// How long to wait for the session and the Router to appear.
    pub timeout: Duration,
    /// The connection's in-flight window: record bytes of produces sent and not yet answered
    /// ([`Client::with_inflight_bytes_max`]); a produce beyond it waits. 0: no window.
    pub inflight_bytes_max: u32,
}

impl RemoteOptions {
    pub fn new(seed: impl Into<String>, cookie: impl Into<String>) -> Self {
        RemoteOptions {
            seed: seed.into(),
            cookie: cookie.into(),
            cluster: "daftka".into(),
            name: unique_name("daftka-client"),
            timeout: Duration::from_secs(10),
            inflight_bytes_max: crate::client::INFLIGHT_BYTES_DEFAULT,
        }
    }
}

/// `prefix-PID-N`, N counting the names this process made: a node refuses a session whose name
/// one it still holds has (the previous connection's may not be torn down on its side yet), so
/// every connection of a process gets its own.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// How long [`Remote::close`] waits for the session's actors to be gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a cluster: the client, and the NodeServer that carries it.
pub struct Remote {
    pub client: Client,
    server: ActorRef<NodeServerMessage>,
    /// The pg group its Router was found in.
    group: String,
}

impl Remote {
    /// Closes the session (stops this process's NodeServer) and waits (at most 5 s) until the
    /// session's stand-ins for the cluster's actors have left this process's Router group. They
    /// stop after the NodeServer; a stand-in still there would be found by the next `connect` of
    /// this process (its ids can be the new session's: every NodeServer numbers its peers from
    /// 0), and calls to it would fail as it stops.
    pub async fn close(self) {
        let _ = self.server.stop_and_wait(None, Some(CLOSE_TIMEOUT)).await;
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while remote_member(&self.group).is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A member of `group` that is not an actor of this process.
fn remote_member(group: &str) -> Option<ractor::ActorCell> {
    ractor::pg::get_members(&group.to_string())
        .into_iter()
        .find(|c| !c.get_id().is_local())
}

/// Connects to the node at `opts.seed` and returns a client of a Router of the cluster.
pub async fn connect(opts: RemoteOptions) -> Result<Remote, Error> {
    let addr = tokio::net::lookup_host(opts.seed.as_str())
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::invalid(format!("{} does not resolve", opts.seed)))?;
    // Port 0: this side only dials out; the listener is on loopback and takes no one in practice.
    let server = NodeServer::new(
        0,
        opts.cookie.clone(),
        opts.name.clone(),
        "127.0.0.1".into(),
        None,
        None,
    )
    .with_listen_addr(std::net::IpAddr::from([127, 0, 0, 1]));
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| Error::unavailable(format!("starting a NodeServer: {e}")))?;
    let closed = Arc::new(AtomicBool::new(false));
    let _ = server.cast(NodeServerMessage::SubscribeToEvents {
        id: "daftka.remote".into(),
        subscription: Box::new(Closed(closed.clone())),
    });
    if let Err(e) = ractor_cluster::client_connect(&server, addr).await {
        server.stop(None);
        return Err(Error::unavailable(format!("connecting to {addr}: {e}")));
    }
    let group = names::routers_group(&opts.cluster);
    let deadline = Instant::now() + opts.timeout;
    loop {
        if let Some(router) = remote_member(&group) {
            return Ok(Remote {
                client: Client::new(router.into()).with_inflight_bytes_max(opts.inflight_bytes_max),
                server,
                group,
            });
        }
        if closed.load(Ordering::Acquire) || Instant::now() >= deadline {
            server.stop(None);
            return Err(Error::unavailable(format!(
                "no Daftka router of cluster {:?} appeared through {addr}{}: \
                 wrong cookie or cluster name?",
                opts.cluster,
                if closed.load(Ordering::Acquire) {
                    " (the node closed the session)".to_string()
                } else {
                    format!(" within {:?}", opts.timeout)
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Notes that the session closed (a wrong cookie closes it during authentication).
struct Closed(Arc<AtomicBool>);

impl ractor_cluster::NodeEventSubscription for Closed {
    fn node_session_opened(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}
    fn node_session_disconnected(&self, _: ractor_cluster::node::NodeServerSessionInformation) {
        self.0.store(true, Ordering::Release);
    }
    fn node_session_authenticated(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name is new, and tells the process it came from.
    #[test]
    fn unique_names_differ() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("x-{}-", std::process::id())), "{a}");
        assert_ne!(
            RemoteOptions::new("s", "c").name,
            RemoteOptions::new("s", "c").name
        );
    }
}
