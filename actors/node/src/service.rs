//! Service: a long-lived task of the node (the replicas' clock, the metrics endpoint, the
//! allocator's trim, the storage gauges) as a supervised actor.
//!
//! Parent: Root (one_for_one). Registered as `names::service(node, what)`.
//! At start it runs its task, made fresh by the factory it was given. A task is meant to run
//! until the node stops: if it ends anyway (it returned, or it panicked), the actor fails with
//! that reason, and its supervisor restarts it (counted in `daftka_supervisor_restarts_total`,
//! and subject to the restart intensity like any child). Stopping the actor aborts the task.
//!
//! # Crash and recovery
//! A task keeps its state in the node's shared handles (the ticker's registry, the metrics), not
//! in itself: a new task picks up where the old one was.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use daftka_protocol::names;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::supervision::{child, ChildSpec, Restart};

/// A [`ChildSpec`] for the service `what` of `node`, whose task `task` makes.
pub fn spec(
    node: &str,
    what: &'static str,
    task: impl Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static,
) -> ChildSpec {
    let task: TaskFactory = Arc::new(task);
    let running = Arc::new(std::sync::Mutex::new(None));
    child(
        what,
        Restart::Permanent,
        Some(names::service(node, what)),
        move || {
            let args = ServiceArgs {
                what,
                task: task.clone(),
                running: running.clone(),
            };
            (Service, args)
        },
    )
}

/// Makes the task, once per start.
pub type TaskFactory = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub struct ServiceArgs {
    /// What the task is, for logs and errors.
    pub what: &'static str,
    pub task: TaskFactory,
    /// The running task, shared by every incarnation of this actor: a new one aborts its
    /// predecessor's task first (a killed actor runs no `post_stop`).
    pub running: Arc<std::sync::Mutex<Option<tokio::task::AbortHandle>>>,
}

pub struct ServiceState {
    what: &'static str,
    /// Aborts the task (the watcher owns its handle).
    task: tokio::task::AbortHandle,
    /// Waits for the task to end and tells the actor.
    watch: tokio::task::JoinHandle<()>,
}

#[derive(ractor_cluster::RactorMessage)]
pub enum ServiceMsg {
    /// The task ended: why.
    Ended(&'static str),
}

pub struct Service;

impl Actor for Service {
    type Msg = ServiceMsg;
    type State = ServiceState;
    type Arguments = ServiceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ServiceMsg>,
        args: ServiceArgs,
    ) -> Result<ServiceState, ActorProcessingErr> {
        let task = {
            let mut running = args.running.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = running.take() {
                old.abort();
            }
            let task = tokio::spawn((args.task)());
            *running = Some(task.abort_handle());
            task
        };
        let abort = task.abort_handle();
        let watch = tokio::spawn(async move {
            let why = match task.await {
                Ok(()) => "it returned",
                Err(e) if e.is_panic() => "it panicked",
                Err(_) => "it was cancelled",
            };
            let _ = myself.cast(ServiceMsg::Ended(why));
        });
        Ok(ServiceState {
            what: args.what,
            task: abort,
            watch,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ServiceMsg>,
        state: &mut ServiceState,
    ) -> Result<(), ActorProcessingErr> {
        // The watcher first: an aborted task is no news for a stopping actor.
        state.watch.abort();
        state.task.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<ServiceMsg>,
        msg: ServiceMsg,
        state: &mut ServiceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServiceMsg::Ended(why) => Err(format!("the {} task ended: {why}", state.what).into()),
        }
    }
}
