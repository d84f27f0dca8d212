//! The Gateway: Daftka's HTTP JSON API v1, served by warp. Stateless: every HTTP request becomes
//! one [`daftka_protocol::Client`] call on the node's Router, so the gateway holds no data.
//!
//! - **Owns**: the HTTP server task on the node's HTTP listener. Nothing else.
//! - **Parent**: Root (one_for_one). **Registered as** `daftka_protocol::names::gateway(node)`
//!   by whoever spawns it.
//! - **Messages in**: [`GatewayMsg::LocalAddr`] (where it serves), [`GatewayMsg::ServerExited`]
//!   (its own server task ended unexpectedly: the actor fails so its supervisor restarts it).
//!   **Out**: `RouterMsg` calls through the `Client`; `daftka_http_requests_total` and
//!   `daftka_http_request_duration_seconds` metrics.
//!
//! | module | role |
//! |---|---|
//! | [`routes`] | the route table and the per-request frame: request id, span, metrics, errors |
//! | [`error`] | the one mapping from `ErrorCode` to HTTP status and the JSON error shape |
//! | [`json`] | the JSON shapes and the utf8 / base64 encoding of record bytes |
//! | [`topics`], [`records`], [`groups`], [`cluster`] | one module per resource |
//!
//! Endpoints: `POST|GET /v1/topics`, `GET|DELETE /v1/topics/{topic}`,
//! `POST /v1/topics/{topic}/records`, `GET /v1/topics/{topic}/partitions/{partition}/records`,
//! `POST|GET /v1/groups/{group}/offsets`, `GET /v1/cluster`, `GET /healthz`, `GET /readyz`.
//! Every answer carries `x-request-id`; every error answer is
//! `{"error": {"code", "message", "retryable"}}` (see [`error`]).
//!
//! # Invariants
//! - Every request, matched or not, is answered in the JSON shape, counted once under its route
//!   template (never the raw path) and status, and logged inside a span with its request id.
//! - A body is never buffered beyond [`HttpLimits::body_bytes_max`], chunked or not.
//! - At most `limits.http_connections_max` connections are served at once, each with TCP_NODELAY
//!   and a read buffer of at most `limits.http_read_buffer_bytes` (see [`serve`]).
//!
//! # Crash and recovery
//! Nothing survives and nothing needs to: a restarted Gateway starts a new server on a
//! `try_clone()` of the same bound listener, so it serves the same port. Connections waiting in the
//! listen backlog while it restarts are accepted by the new server; requests in flight on the old
//! one are cut after [`SHUTDOWN_GRACE`] (their outcome is unknown to the client, as with a timeout).

pub mod admin;
pub mod cluster;
pub mod error;
pub mod groups;
pub mod records;
pub mod routes;
pub mod topics;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use daftka_protocol::{Client, Error};
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::{Filter, Rejection, Reply};

use daftka_core::config::LimitsConfig;

use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// How long a stopping Gateway lets requests in flight finish before it aborts its server.
/// Short, because a restart waits for it; long polls in flight are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The limits of the HTTP API are the node's [`LimitsConfig`]: going over a produce or commit limit
/// answers 413 `payload_too_large` (checked by `daftka_core::limits`, as the Router does for native
/// clients); fetch parameters above their limit are capped.
pub type HttpLimits = LimitsConfig;

/// What every request handler shares. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    /// The node's Router: every request becomes one call on it.
    pub client: Client,
    pub limits: HttpLimits,
    /// Answers `/readyz`.
    pub readiness: Readiness,
    /// Counts requests by route template and status.
    pub metrics: Arc<Metrics>,
    /// This node's name when `debug.chaos` is on: enables `/v1/admin/actors`. `None`: off.
    pub chaos_node: Option<String>,
    /// The node's budget of request bytes in flight: a body is reserved before it is read.
    pub budget: crate::budget::ByteBudget,
}

/// Every route of API v1. Never rejects: unknown routes, wrong methods and malformed requests are
/// answered in the JSON error shape.
pub fn routes(
    state: GatewayState,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(raw_query)
        .and(warp::body::stream())
        .then(
            move |method, path: warp::path::FullPath, headers, query, body| {
                let body = into_body(body);
                let request = routes::HttpRequest {
                    method,
                    path: path.as_str().to_string(),
                    headers,
                    query,
                    body,
                };
                routes::handle(state.clone(), request)
            },
        )
        .recover(|rejection: Rejection| async move {
            // Only reachable if warp could not hand over the body: a bug, not a client error.
            Ok::<_, Infallible>(error::reply(&Error::internal(format!(
                "unhandled rejection: {rejection:?}"
            ))))
        })
        .unify()
}

/// Boxes warp's body stream (an unnameable type) as contiguous chunks.
fn into_body<S, B>(body: S) -> routes::Body
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    body.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining())))
        .boxed()
}

/// Serves API v1 (HTTP/1.1) on `listener` until `shutdown` resolves, then lets requests in
/// flight finish. Our own accept loop rather than `warp::serve`, for what that one does not set:
/// TCP_NODELAY on every connection (a response is never held back waiting for an ACK), at most
/// `limits.http_connections_max` connections (more wait in the backlog), and a read buffer of at
/// most `limits.http_read_buffer_bytes` per connection (else hyper grows it to ~400 KiB while a
/// body streams in, memory the in-flight budget does not see).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: GatewayState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    let connections = Arc::new(tokio::sync::Semaphore::new(
        state.limits.http_connections_max as usize,
    ));
    let read_buffer = state.limits.http_read_buffer_bytes as usize;
    let filter = routes(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let io = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((io, _)) => io,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(warp::service(filter.clone()));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.max_buf_size(read_buffer);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client that goes away mid-request: nothing for the node to act on.
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// An accept that failed: a connection reset before it was taken is nothing; anything else (out
/// of file descriptors, say) is logged and retried after a pause, as hyper's own server does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting an HTTP connection failed; retrying in 100 ms");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// What the Gateway starts from.
pub struct GatewayArgs {
    /// The HTTP listener, bound by the caller. The Gateway serves a `try_clone()` of it, so keep
    /// this one (or another clone) to restart the Gateway on the same port. Starting sets the
    /// shared socket non-blocking.
    pub listener: std::net::TcpListener,
    pub state: GatewayState,
}

/// The running server of one Gateway incarnation. (`GatewayState` is the handlers' shared state.)
pub struct GatewayServer {
    /// Where the server listens.
    local_addr: SocketAddr,
    /// Resolves the server's graceful-shutdown future; taken on stop.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task; aborted if it outlives the grace period or the actor is killed.
    task: JoinHandle<()>,
}

impl Drop for GatewayServer {
    fn drop(&mut self) {
        // `kill()` skips `post_stop`: never leave a server running without its actor.
        self.task.abort();
    }
}

/// The Gateway's messages.
#[derive(ractor_cluster::RactorMessage)]
pub enum GatewayMsg {
    /// Where the Gateway serves.
    LocalAddr { reply: RpcReplyPort<SocketAddr> },
    /// The server task ended while the actor was running.
    ServerExited,
}

/// The Gateway actor: see the module doc.
pub struct Gateway;

impl Actor for Gateway {
    type Msg = GatewayMsg;
    type State = GatewayServer;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GatewayArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let listener = args.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let local_addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, args.state, async move {
                // A dropped sender also means stop.
                let _ = stopped.await;
            })
            .await;
            // Fails harmlessly when the actor is the one stopping.
            let _ = myself.cast(GatewayMsg::ServerExited);
        });
        tracing::info!(%local_addr, "gateway serving HTTP");
        Ok(GatewayServer {
            local_addr,
            shutdown: Some(shutdown),
            task,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut GatewayServer,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(shutdown) = state.shutdown.take() {
            let _ = shutdown.send(());
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut state.task)
            .await
            .is_err()
        {
            tracing::warn!("gateway requests still in flight after the grace period: aborted");
            state.task.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: GatewayMsg,
        state: &mut GatewayServer,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GatewayMsg::LocalAddr { reply } => {
                let _ = reply.send(state.local_addr);
                Ok(())
            }
            GatewayMsg::ServerExited => Err(format!(
                "the HTTP server on {} exited unexpectedly",
                state.local_addr
            )
            .into()),
        }
    }
}
