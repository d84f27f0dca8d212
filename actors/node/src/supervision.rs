//! The in-house supervisor: OTP's `one_for_one`, `one_for_all` and `rest_for_one` restart strategies, and
//! dynamic supervision, on top of ractor's links (ractor itself only reports a child's exit).
//!
//! A [`Supervisor`] owns an ordered list of children, each described by a [`ChildSpec`]: an id unique
//! within the supervisor, a [`Restart`] type, and a [`StartFn`] that spawns the child linked to the
//! supervisor (build one with [`child`], or [`supervisor_child`] for a nested supervisor). Its parent is
//! whoever starts it ([`start_supervisor`] or a parent supervisor's spec); its own restart strategy is
//! the [`Strategy`] in its [`SupervisorArgs`]. It registers the names its specs give (none of its own
//! unless started with one) and joins no pg group.
//!
//! # Messages
//! - In: [`SupervisorMsg::StartChild`], [`SupervisorMsg::TerminateChild`], [`SupervisorMsg::WhichChildren`]
//!   (typed clients: [`start_child`], [`terminate_child`], [`which_children`]); the internal
//!   [`SupervisorMsg::RestartPending`], sent to itself when a backoff delay has elapsed; ractor's
//!   `SupervisionEvent`s of its children.
//! - Out: the children's start and stop, `on_restart(child_id)` on every restart (the
//!   `daftka_supervisor_restarts` metric), and its own exit with a reason when it escalates.
//!
//! # Strategies and restart types
//! When a running child exits, its [`Restart`] type decides whether anything happens: `Permanent` is
//! always restarted, `Transient` only after an abnormal exit (see [`is_normal_exit`]), `Temporary` never
//! (its spec is dropped). If it is to be restarted, the [`Strategy`] picks the children affected:
//! `OneForOne` only the child, `OneForAll` every child, `RestForOne` the child and those started after
//! it. The affected siblings still running are stopped gracefully in reverse start order (unlinked,
//! then `stop_and_wait` so their `post_stop` runs; killed only after [`CHILD_SHUTDOWN_TIMEOUT`]).
//! A stopped `Temporary` sibling is dropped; a `Transient` sibling that had already exited normally stays
//! stopped. The failure is then counted by [`RestartIntensity`]: either every affected child is started
//! again, in start order, after the backoff delay (a message scheduled to itself, never a sleep), or the
//! supervisor escalates: it stops itself with a reason (`post_stop` stops the remaining children), and its
//! parent, which sees an abnormal exit, applies its own strategy.
//!
//! # Dynamic supervision
//! A dynamic supervisor is a `Strategy::OneForOne` supervisor started with no children. [`start_child`]
//! appends a child and starts it (the spec is dropped again if the start fails); [`terminate_child`]
//! stops a child gracefully and removes its spec, so it is not restarted. Both work under any strategy.
//!
//! # Invariants
//! - Child ids are unique within a supervisor; children are kept in start order; at most [`MAX_CHILDREN`].
//! - Only exits of the *current* incarnation of a child are acted on (matched by `ActorId`); children the
//!   supervisor stops itself are unlinked first, so their exit is never mistaken for a failure.
//! - A child's previous incarnation has fully stopped before the next one is spawned, so a registered
//!   name is free again when the new one claims it.
//! - Every restart, including a retry after a restart whose spawn failed, passes through
//!   [`RestartIntensity`]; restarts are never sooner than its backoff delay.
//!
//! # Crash and recovery
//! The supervisor keeps no durable state: a restarted supervisor starts its specs afresh, in order, with
//! a fresh restart history. If a child fails to start in `pre_start`, the children already started are
//! stopped and the supervisor fails to start. If the supervisor itself panics (a bug), ractor kills its
//! linked children without running their `post_stop`; a normal stop or an escalation stops them
//! gracefully, in reverse start order. If a restart's spawn fails, the child and those after it stay
//! down, the failure is counted and the start is retried after the next backoff delay. While waiting for
//! a restart's backoff, a child shows as `None` in [`which_children`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use daftka_core::supervision::{RestartDecision, RestartIntensity, RestartPolicy};
use futures::future::BoxFuture;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RactorErr, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// How long a child may take to run `post_stop` when the supervisor stops it before it is killed.
/// Also bounds the wait for a crashed child's previous incarnation to finish stopping.
pub const CHILD_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Most children one supervisor holds; [`start_child`] beyond it is refused.
pub const MAX_CHILDREN: usize = 65_536;

/// How long the typed clients wait for the supervisor's reply. `start_child` and `terminate_child` can
/// take up to a child's start or [`CHILD_SHUTDOWN_TIMEOUT`], hence the margin.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Exit reason meaning "finished its job": not a failure, a `Transient` child is not restarted.
pub const EXIT_NORMAL: &str = "normal";

/// Exit reason meaning "asked to stop by its supervisor or the node": not a failure. The supervisor uses
/// it when it stops its children.
pub const EXIT_SHUTDOWN: &str = "shutdown";

/// Which children are restarted when one of them has to be restarted (OTP's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that exited. Children are independent.
    OneForOne,
    /// Every child: stop the others (reverse order), then start all in order. Children depend on each
    /// other (a replica's raft, storage and server).
    OneForAll,
    /// The child and every child started after it: those later ones depend on the earlier ones.
    RestForOne,
}

/// Whether a child is restarted when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, whatever the exit.
    Permanent,
    /// Restarted only after an abnormal exit: a panic or an error from a handler (`ActorFailed`), a kill,
    /// or a stop with a reason other than none, [`EXIT_NORMAL`] or [`EXIT_SHUTDOWN`]. An escalating
    /// supervisor's exit is abnormal.
    Transient,
    /// Never restarted; its spec is dropped when it exits, or when a sibling's restart stops it.
    Temporary,
}

/// Spawns one incarnation of a child, linked to the supervisor cell it is given.
pub type StartFn =
    Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// Called with a child's id on every restart of that child (used for a metric).
pub type OnRestart = Arc<dyn Fn(&str) + Send + Sync>;

/// How to start and when to restart one child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique within its supervisor; used by `TerminateChild`, in logs and the restart metric.
    pub id: String,
    /// Whether the child is restarted when it exits.
    pub restart: Restart,
    /// Spawns the child linked to the supervisor; called again for every restart.
    pub start: StartFn,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

/// What a supervisor is started with.
#[derive(Clone)]
pub struct SupervisorArgs {
    /// Which children are restarted together.
    pub strategy: Strategy,
    /// Restart budget and backoff.
    pub policy: RestartPolicy,
    /// Children in start order; ids must be unique.
    pub children: Vec<ChildSpec>,
    /// Called with the child id on every restart, e.g. to count restarts in a metric.
    pub on_restart: Option<OnRestart>,
}

impl fmt::Debug for SupervisorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorArgs")
            .field("strategy", &self.strategy)
            .field("policy", &self.policy)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

/// Where one child is in its life.
enum ChildState {
    /// The current incarnation.
    Running(ActorCell),
    /// Waiting for a backoff delay to be started again; the previous incarnation, if any, is awaited
    /// before the new one is spawned so a registered name is free.
    Pending(Option<ActorCell>),
    /// A `Transient` child that exited normally: kept, not restarted.
    Stopped,
    /// Dropped from the list at the end of the current operation (a `Temporary` child that exited).
    Removed,
}

/// One child: its spec and its state.
struct Child {
    spec: ChildSpec,
    state: ChildState,
}

/// A supervisor's state.
pub struct SupervisorState {
    /// Which children are restarted together.
    strategy: Strategy,
    /// Restart history and budget.
    intensity: RestartIntensity,
    /// Time origin for `intensity` (tokio's clock, so tests may pause it).
    epoch: Instant,
    /// Children in start order.
    children: Vec<Child>,
    /// Restart callback (metric).
    on_restart: Option<OnRestart>,
    /// When the latest scheduled restart is due; earlier `RestartPending` messages are ignored so every
    /// restart honours the longest backoff decided so far.
    restart_due: Option<Instant>,
}

/// Messages of a [`Supervisor`].
#[derive(ractor_cluster::RactorMessage)]
pub enum SupervisorMsg {
    /// Append a child and start it; `Err` if the id exists, the limit is reached or the start fails.
    StartChild {
        spec: ChildSpec,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Stop a child gracefully and drop its spec; `false` if there is no such child.
    TerminateChild {
        id: String,
        reply: RpcReplyPort<bool>,
    },
    /// The children in start order, with their current incarnation (`None` while stopped or pending).
    WhichChildren {
        reply: RpcReplyPort<Vec<(String, Option<ActorCell>)>>,
    },
    /// Internal: a backoff delay elapsed; start the children waiting for a restart.
    RestartPending,
}

impl fmt::Debug for SupervisorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StartChild { spec, .. } => write!(f, "StartChild({})", spec.id),
            Self::TerminateChild { id, .. } => write!(f, "TerminateChild({id})"),
            Self::WhichChildren { .. } => write!(f, "WhichChildren"),
            Self::RestartPending => write!(f, "RestartPending"),
        }
    }
}

/// Failures of the typed clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The supervisor is not running (or stopped before replying).
    #[error("supervisor unreachable")]
    Unreachable,
    /// No reply within [`CALL_TIMEOUT`].
    #[error("supervisor call timed out")]
    Timeout,
    /// The supervisor refused or failed to start the child.
    #[error("child not started: {0}")]
    StartChild(String),
}

/// The supervisor actor. See the module doc.
pub struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        if args.children.len() > MAX_CHILDREN {
            return Err(format!("{} children > MAX_CHILDREN", args.children.len()).into());
        }
        let mut seen = HashSet::with_capacity(args.children.len());
        for spec in &args.children {
            if !seen.insert(spec.id.as_str()) {
                return Err(format!("duplicate child id {:?}", spec.id).into());
            }
        }
        let sup = myself.get_cell();
        let mut children: Vec<Child> = Vec::with_capacity(args.children.len());
        for spec in args.children {
            match (spec.start)(sup.clone()).await {
                Ok(cell) => children.push(Child {
                    spec,
                    state: ChildState::Running(cell),
                }),
                Err(e) => {
                    error!(child = %spec.id, error = %e, "child failed to start; supervisor not started");
                    for started in children.iter().rev() {
                        if let ChildState::Running(cell) = &started.state {
                            stop_child(&sup, cell).await;
                        }
                    }
                    return Err(format!("child {} failed to start: {e}", spec.id).into());
                }
            }
        }
        Ok(SupervisorState {
            strategy: args.strategy,
            intensity: RestartIntensity::new(args.policy),
            epoch: Instant::now(),
            children,
            on_restart: args.on_restart,
            restart_due: None,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let sup = myself.get_cell();
        for child in state.children.iter().rev() {
            if let ChildState::Running(cell) = &child.state {
                stop_child(&sup, cell).await;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild { spec, reply } => {
                let result = state.start_new_child(&myself, spec).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::TerminateChild { id, reply } => {
                let found = state.terminate_child(&myself, &id).await;
                let _ = reply.send(found);
            }
            SupervisorMsg::WhichChildren { reply } => {
                let _ = reply.send(state.which_children());
            }
            SupervisorMsg::RestartPending => state.restart_pending(&myself).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (who, abnormal, reason) = match event {
            SupervisionEvent::ActorTerminated(who, _, reason) => {
                let abnormal = !is_normal_exit(reason.as_deref());
                (who, abnormal, reason.unwrap_or_else(|| "none".to_string()))
            }
            SupervisionEvent::ActorFailed(who, err) => (who, true, err.to_string()),
            _ => return Ok(()),
        };
        state
            .on_child_exit(&myself, who.get_id(), abnormal, &reason)
            .await;
        Ok(())
    }
}

impl SupervisorState {
    /// Index of the child whose current incarnation is `id`.
    fn running_index(&self, id: ActorId) -> Option<usize> {
        self.children
            .iter()
            .position(|c| matches!(&c.state, ChildState::Running(cell) if cell.get_id() == id))
    }

    /// Applies the restart type, then the strategy, then the restart intensity to a child's exit.
    async fn on_child_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        who: ActorId,
        abnormal: bool,
        reason: &str,
    ) {
        let Some(idx) = self.running_index(who) else {
            debug!(actor = %who, reason, "ignoring exit of an actor that is not a current child");
            return;
        };
        let child = &mut self.children[idx];
        let id = child.spec.id.clone();
        let old = std::mem::replace(&mut child.state, ChildState::Stopped);
        let old_cell = match old {
            ChildState::Running(cell) => cell,
            _ => return,
        };
        match (child.spec.restart, abnormal) {
            (Restart::Temporary, _) => {
                info!(child = %id, reason, "temporary child exited; dropping its spec");
                self.children.remove(idx);
                return;
            }
            (Restart::Transient, false) => {
                info!(child = %id, reason, "transient child exited normally; not restarting");
                return;
            }
            _ => {}
        }
        warn!(child = %id, reason, strategy = ?self.strategy, "child exited; restarting");
        child.state = ChildState::Pending(Some(old_cell));

        let affected = match self.strategy {
            Strategy::OneForOne => idx..idx,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => idx + 1..self.children.len(),
        };
        let sup = myself.get_cell();
        for j in affected.rev() {
            if j == idx {
                continue;
            }
            let sibling = &mut self.children[j];
            if let ChildState::Running(cell) = &sibling.state {
                stop_child(&sup, cell).await;
                sibling.state = if sibling.spec.restart == Restart::Temporary {
                    ChildState::Removed
                } else {
                    ChildState::Pending(None)
                };
            }
        }
        self.children
            .retain(|c| !matches!(c.state, ChildState::Removed));

        self.count_failure(myself, &id);
    }

    /// Feeds one failure of child `id` to the restart intensity: schedules a restart or escalates.
    fn count_failure(&mut self, myself: &ActorRef<SupervisorMsg>, id: &str) {
        let now = Instant::now();
        match self.intensity.on_failure(now.duration_since(self.epoch)) {
            RestartDecision::Restart { delay } => {
                let due = now + delay;
                self.restart_due = Some(self.restart_due.map_or(due, |d| d.max(due)));
                // Detach the timer task: it ends on its own, and if the supervisor is gone by then the
                // send just fails.
                drop(myself.send_after(delay, || SupervisorMsg::RestartPending));
            }
            RestartDecision::Escalate => {
                let p = self.intensity.policy();
                let reason = format!(
                    "escalated: child {id} exceeded {} restarts in {:?}",
                    p.max_restarts, p.window
                );
                error!(child = %id, %reason, "restart intensity exceeded; stopping supervisor");
                // post_stop stops the remaining children gracefully, in reverse order.
                myself.stop(Some(reason));
            }
        }
    }

    /// Starts, in order, every child waiting for a restart, once the latest backoff is due.
    async fn restart_pending(&mut self, myself: &ActorRef<SupervisorMsg>) {
        if self.restart_due.is_some_and(|due| Instant::now() < due) {
            return; // a later timer is coming
        }
        self.restart_due = None;
        let sup = myself.get_cell();
        for i in 0..self.children.len() {
            let child = &mut self.children[i];
            let ChildState::Pending(old) = &child.state else {
                continue;
            };
            if let Some(old) = old {
                // Its name and pg memberships are released only once it has stopped.
                if old.wait(Some(CHILD_SHUTDOWN_TIMEOUT)).await.is_err() {
                    warn!(child = %child.spec.id, "previous incarnation still stopping; killing it");
                    let _ = old.kill_and_wait(Some(CHILD_SHUTDOWN_TIMEOUT)).await;
                }
            }
            match (child.spec.start)(sup.clone()).await {
                Ok(cell) => {
                    info!(child = %child.spec.id, "child restarted");
                    child.state = ChildState::Running(cell);
                    if let Some(cb) = &self.on_restart {
                        cb(&child.spec.id);
                    }
                }
                Err(e) => {
                    let id = child.spec.id.clone();
                    warn!(child = %id, error = %e, "restart failed; retrying after backoff");
                    child.state = ChildState::Pending(None);
                    // Later pending children wait: under rest_for_one / one_for_all they depend on it.
                    self.count_failure(myself, &id);
                    return;
                }
            }
        }
    }

    /// Handles `StartChild`.
    async fn start_new_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        spec: ChildSpec,
    ) -> Result<(), String> {
        if self.children.len() >= MAX_CHILDREN {
            return Err(format!(
                "supervisor holds MAX_CHILDREN ({MAX_CHILDREN}) children"
            ));
        }
        if self.children.iter().any(|c| c.spec.id == spec.id) {
            return Err(format!("child {} already present", spec.id));
        }
        match (spec.start)(myself.get_cell()).await {
            Ok(cell) => {
                info!(child = %spec.id, "child started");
                self.children.push(Child {
                    spec,
                    state: ChildState::Running(cell),
                });
                Ok(())
            }
            Err(e) => Err(format!("child {} failed to start: {e}", spec.id)),
        }
    }

    /// Handles `TerminateChild`: stops the child gracefully and drops its spec.
    async fn terminate_child(&mut self, myself: &ActorRef<SupervisorMsg>, id: &str) -> bool {
        let Some(idx) = self.children.iter().position(|c| c.spec.id == id) else {
            return false;
        };
        let child = self.children.remove(idx);
        if let ChildState::Running(cell) = &child.state {
            stop_child(&myself.get_cell(), cell).await;
        }
        info!(child = %id, "child terminated on request");
        true
    }

    /// Handles `WhichChildren`.
    fn which_children(&self) -> Vec<(String, Option<ActorCell>)> {
        self.children
            .iter()
            .map(|c| {
                let cell = match &c.state {
                    ChildState::Running(cell) => Some(cell.clone()),
                    _ => None,
                };
                (c.spec.id.clone(), cell)
            })
            .collect()
    }
}

/// Whether an exit reason counts as normal (no restart of a `Transient` child): none, [`EXIT_NORMAL`]
/// or [`EXIT_SHUTDOWN`]. Panics and handler errors are always abnormal.
pub fn is_normal_exit(reason: Option<&str>) -> bool {
    matches!(reason, None | Some(EXIT_NORMAL) | Some(EXIT_SHUTDOWN))
}

/// Stops a child gracefully and waits until it has fully stopped: unlinks it first so its exit is not
/// reported as a failure, lets `post_stop` run, kills it after [`CHILD_SHUTDOWN_TIMEOUT`].
async fn stop_child(sup: &ActorCell, cell: &ActorCell) {
    cell.unlink(sup.clone());
    match cell
        .stop_and_wait(
            Some(EXIT_SHUTDOWN.to_string()),
            Some(CHILD_SHUTDOWN_TIMEOUT),
        )
        .await
    {
        Ok(()) => {}
        Err(RactorErr::Timeout) => {
            warn!(actor = %cell.get_id(), "child did not stop in time; killing it");
            let _ = cell.kill_and_wait(Some(CHILD_SHUTDOWN_TIMEOUT)).await;
        }
        Err(_) => {
            // Already stopping on its own: wait until it is gone so its name is free.
            let _ = cell.wait(Some(CHILD_SHUTDOWN_TIMEOUT)).await;
        }
    }
}

/// A [`ChildSpec`] that spawns `A` linked to the supervisor, registered as `name` if given. `make` builds
/// a fresh actor and its arguments for every (re)start.
pub fn child<A: Actor>(
    id: impl Into<String>,
    restart: Restart,
    name: Option<String>,
    make: impl Fn() -> (A, A::Arguments) + Send + Sync + 'static,
) -> ChildSpec {
    let start: StartFn = Arc::new(move |sup: ActorCell| {
        let (actor, args) = make();
        let name = name.clone();
        Box::pin(async move {
            let (actor_ref, _handle) = Actor::spawn_linked(name, actor, args, sup).await?;
            Ok(actor_ref.get_cell())
        })
    });
    ChildSpec {
        id: id.into(),
        restart,
        start,
    }
}

/// A [`ChildSpec`] for a nested [`Supervisor`] started with (a clone of) `args` every time.
pub fn supervisor_child(
    id: impl Into<String>,
    restart: Restart,
    name: Option<String>,
    args: SupervisorArgs,
) -> ChildSpec {
    child(id, restart, name, move || (Supervisor, args.clone()))
}

/// Starts a supervisor, linked to `parent` if given (otherwise unsupervised, e.g. the root).
pub async fn start_supervisor(
    name: Option<String>,
    args: SupervisorArgs,
    parent: Option<ActorCell>,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    match parent {
        Some(parent) => Actor::spawn_linked(name, Supervisor, args, parent).await,
        None => Actor::spawn(name, Supervisor, args).await,
    }
}

/// Asks `sup` to start `spec` as a new child (dynamic supervision).
pub async fn start_child(
    sup: &ActorRef<SupervisorMsg>,
    spec: ChildSpec,
) -> Result<(), SupervisorError> {
    call(sup, |reply| SupervisorMsg::StartChild { spec, reply })
        .await?
        .map_err(SupervisorError::StartChild)
}

/// Asks `sup` to stop child `id` gracefully and forget it; `Ok(false)` if there was no such child.
pub async fn terminate_child(
    sup: &ActorRef<SupervisorMsg>,
    id: impl Into<String>,
) -> Result<bool, SupervisorError> {
    let id = id.into();
    call(sup, |reply| SupervisorMsg::TerminateChild { id, reply }).await
}

/// The children of `sup` in start order, with their current incarnation.
pub async fn which_children(
    sup: &ActorRef<SupervisorMsg>,
) -> Result<Vec<(String, Option<ActorCell>)>, SupervisorError> {
    call(sup, |reply| SupervisorMsg::WhichChildren { reply }).await
}

/// One RPC to a supervisor with [`CALL_TIMEOUT`].
async fn call<T: Send + 'static>(
    sup: &ActorRef<SupervisorMsg>,
    build: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
) -> Result<T, SupervisorError> {
    match sup.call(build, Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        Ok(ractor::rpc::CallResult::Timeout) => Err(SupervisorError::Timeout),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(SupervisorError::Unreachable),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;

    /// Upper bound on any wait in these tests; reached only when a test fails.
    const DEADLINE: Duration = Duration::from_secs(10);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ev {
        Started,
        Stopped,
    }

    #[derive(Default)]
    struct Counters {
        starts: AtomicUsize,
        stops: AtomicUsize,
    }

    /// A child that reports its starts and `post_stop`s, and panics or stops when told to.
    struct Probe;

    #[derive(Clone)]
    struct ProbeArgs {
        id: String,
        counters: Arc<Counters>,
        events: mpsc::UnboundedSender<(String, Ev)>,
        fail_start: Arc<AtomicBool>,
    }

    #[derive(ractor_cluster::RactorMessage)]
    enum ProbeMsg {
        Panic,
        Stop(Option<String>),
    }

    impl Actor for Probe {
        type Msg = ProbeMsg;
        type State = ProbeArgs;
        type Arguments = ProbeArgs;

        async fn pre_start(
            &self,
            _myself: ActorRef<ProbeMsg>,
            args: ProbeArgs,
        ) -> Result<ProbeArgs, ActorProcessingErr> {
            if args.fail_start.load(Ordering::SeqCst) {
                return Err("told to fail at start".into());
            }
            args.counters.starts.fetch_add(1, Ordering::SeqCst);
            let _ = args.events.send((args.id.clone(), Ev::Started));
            Ok(args)
        }

        async fn post_stop(
            &self,
            _myself: ActorRef<ProbeMsg>,
            state: &mut ProbeArgs,
        ) -> Result<(), ActorProcessingErr> {
            state.counters.stops.fetch_add(1, Ordering::SeqCst);
            let _ = state.events.send((state.id.clone(), Ev::Stopped));
            Ok(())
        }

        async fn handle(
            &self,
            myself: ActorRef<ProbeMsg>,
            msg: ProbeMsg,
            _state: &mut ProbeArgs,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                ProbeMsg::Panic => panic!("probe told to panic"),
                ProbeMsg::Stop(reason) => myself.stop(reason),
            }
            Ok(())
        }
    }

    /// Probes of one test: their counters, failure switches and one event stream in causal order.
    struct Harness {
        tx: mpsc::UnboundedSender<(String, Ev)>,
        rx: mpsc::UnboundedReceiver<(String, Ev)>,
        counters: HashMap<String, Arc<Counters>>,
        fail: HashMap<String, Arc<AtomicBool>>,
    }

    impl Harness {
        fn new() -> Self {
            let (tx, rx) = mpsc::unbounded_channel();
            Self {
                tx,
                rx,
                counters: HashMap::new(),
                fail: HashMap::new(),
            }
        }

        fn spec(&mut self, id: &str, restart: Restart, name: Option<String>) -> ChildSpec {
            let args = ProbeArgs {
                id: id.to_string(),
                counters: self.counters.entry(id.to_string()).or_default().clone(),
                events: self.tx.clone(),
                fail_start: self.fail.entry(id.to_string()).or_default().clone(),
            };
            child(id, restart, name, move || (Probe, args.clone()))
        }

        fn starts(&self, id: &str) -> usize {
            self.counters[id].starts.load(Ordering::SeqCst)
        }

        fn stops(&self, id: &str) -> usize {
            self.counters[id].stops.load(Ordering::SeqCst)
        }

        fn set_fail(&self, id: &str, fail: bool) {
            self.fail[id].store(fail, Ordering::SeqCst);
        }

        /// The next `n` events.
        async fn take(&mut self, n: usize) -> Vec<(String, Ev)> {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let ev = tokio::time::timeout(DEADLINE, self.rx.recv())
                    .await
                    .expect("timed out waiting for a probe event")
                    .expect("event channel closed");
                out.push(ev);
            }
            out
        }

        /// Skips events until `id` reports `ev`.
        async fn wait_for(&mut self, id: &str, ev: Ev) {
            loop {
                let got = self.take(1).await.remove(0);
                if got.0 == id && got.1 == ev {
                    return;
                }
            }
        }
    }

    fn evs(list: &[(&str, Ev)]) -> Vec<(String, Ev)> {
        list.iter().map(|(id, ev)| (id.to_string(), *ev)).collect()
    }

    /// Tiny backoff so tests never depend on timing; a long window so no test is saved by forgetting.
    fn fast(max_restarts: u32) -> RestartPolicy {
        RestartPolicy {
            max_restarts,
            window: Duration::from_secs(600),
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
        }
    }

    fn args(strategy: Strategy, policy: RestartPolicy, children: Vec<ChildSpec>) -> SupervisorArgs {
        SupervisorArgs {
            strategy,
            policy,
            children,
            on_restart: None,
        }
    }

    async fn start(args: SupervisorArgs) -> (ActorRef<SupervisorMsg>, JoinHandle<()>) {
        start_supervisor(None, args, None)
            .await
            .expect("supervisor starts")
    }

    async fn cell_of(sup: &ActorRef<SupervisorMsg>, id: &str) -> Option<ActorCell> {
        which_children(sup)
            .await
            .expect("which_children")
            .into_iter()
            .find(|(cid, _)| cid == id)
            .and_then(|(_, cell)| cell)
    }

    async fn ids(sup: &ActorRef<SupervisorMsg>) -> Vec<String> {
        which_children(sup)
            .await
            .expect("which_children")
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    async fn panic_child(sup: &ActorRef<SupervisorMsg>, id: &str) -> ActorCell {
        let cell = cell_of(sup, id).await.expect("child running");
        cell.send_message(ProbeMsg::Panic).expect("send panic");
        cell
    }

    async fn shutdown(sup: ActorRef<SupervisorMsg>, handle: JoinHandle<()>) {
        sup.stop(None);
        tokio::time::timeout(DEADLINE, handle)
            .await
            .expect("supervisor stops")
            .expect("join");
    }

    // one_for_one restarts exactly the failed child, and reports the restart through on_restart.
    #[tokio::test]
    async fn one_for_one_restarts_only_the_failed_child() {
        let mut h = Harness::new();
        let restarted = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = restarted.clone();
        let mut a = args(
            Strategy::OneForOne,
            fast(5),
            vec![
                h.spec("a", Restart::Permanent, None),
                h.spec("b", Restart::Permanent, None),
                h.spec("c", Restart::Permanent, None),
            ],
        );
        a.on_restart = Some(Arc::new(move |id: &str| {
            log.lock().expect("lock").push(id.to_string())
        }));
        let (sup, handle) = start(a).await;
        assert_eq!(
            h.take(3).await,
            evs(&[("a", Ev::Started), ("b", Ev::Started), ("c", Ev::Started)])
        );

        let old = panic_child(&sup, "b").await;
        assert_eq!(h.take(1).await, evs(&[("b", Ev::Started)]));
        let new = cell_of(&sup, "b").await.expect("b running");
        assert_ne!(old.get_id(), new.get_id());
        assert_eq!((h.starts("a"), h.stops("a")), (1, 0));
        assert_eq!((h.starts("b"), h.stops("b")), (2, 0));
        assert_eq!((h.starts("c"), h.stops("c")), (1, 0));
        assert_eq!(*restarted.lock().expect("lock"), vec!["b".to_string()]);
        shutdown(sup, handle).await;
    }

    // one_for_all stops the siblings gracefully (post_stop ran, reverse order) and restarts all in order.
    #[tokio::test]
    async fn one_for_all_restarts_everyone() {
        let mut h = Harness::new();
        let children = vec![
            h.spec("a", Restart::Permanent, None),
            h.spec("b", Restart::Permanent, None),
            h.spec("c", Restart::Permanent, None),
        ];
        let (sup, handle) = start(args(Strategy::OneForAll, fast(5), children)).await;
        h.take(3).await;

        panic_child(&sup, "b").await;
        assert_eq!(
            h.take(5).await,
            evs(&[
                ("c", Ev::Stopped),
                ("a", Ev::Stopped),
                ("a", Ev::Started),
                ("b", Ev::Started),
                ("c", Ev::Started),
            ])
        );
        assert_eq!(ids(&sup).await, ["a", "b", "c"]);
        for id in ["a", "b", "c"] {
            assert!(cell_of(&sup, id).await.is_some(), "{id} running");
        }
        shutdown(sup, handle).await;
    }

    // rest_for_one restarts the failed child and those after it, not those before.
    #[tokio::test]
    async fn rest_for_one_restarts_the_rest() {
        let mut h = Harness::new();
        let children = vec![
            h.spec("a", Restart::Permanent, None),
            h.spec("b", Restart::Permanent, None),
            h.spec("c", Restart::Permanent, None),
        ];
        let (sup, handle) = start(args(Strategy::RestForOne, fast(5), children)).await;
        h.take(3).await;

        panic_child(&sup, "b").await;
        assert_eq!(
            h.take(3).await,
            evs(&[("c", Ev::Stopped), ("b", Ev::Started), ("c", Ev::Started)])
        );
        let _ = ids(&sup).await; // the restart pass is over once the supervisor answers
        assert_eq!((h.starts("a"), h.stops("a")), (1, 0));
        assert_eq!((h.starts("b"), h.stops("b")), (2, 0));
        assert_eq!((h.starts("c"), h.stops("c")), (2, 1));
        shutdown(sup, handle).await;
    }

    // Temporary is never restarted; Transient is not restarted after a normal stop, but is after a panic.
    #[tokio::test]
    async fn restart_types() {
        let mut h = Harness::new();
        let children = vec![
            h.spec("tmp", Restart::Temporary, None),
            h.spec("tr", Restart::Transient, None),
            h.spec("p", Restart::Permanent, None),
        ];
        let (sup, handle) = start(args(Strategy::OneForOne, fast(5), children)).await;
        h.take(3).await;

        // The exit event reaches the supervisor before `wait` returns, so the next call sees its effect.
        let tmp = panic_child(&sup, "tmp").await;
        tmp.wait(Some(DEADLINE)).await.expect("tmp stopped");
        assert_eq!(ids(&sup).await, ["tr", "p"]);

        let tr = cell_of(&sup, "tr").await.expect("tr running");
        tr.send_message(ProbeMsg::Stop(None)).expect("send stop");
        tr.wait(Some(DEADLINE)).await.expect("tr stopped");
        assert_eq!(h.take(1).await, evs(&[("tr", Ev::Stopped)]));
        assert!(cell_of(&sup, "tr").await.is_none());

        // A restart pass starts every pending child in order: had tmp or tr been pending, they would
        // have started before p.
        panic_child(&sup, "p").await;
        assert_eq!(h.take(1).await, evs(&[("p", Ev::Started)]));
        assert_eq!(h.starts("tmp"), 1);
        assert_eq!(h.starts("tr"), 1);

        // A transient child stopped with an abnormal reason is restarted, like after a panic.
        let tr_spec = h.spec("tr2", Restart::Transient, None);
        start_child(&sup, tr_spec).await.expect("tr2 started");
        h.take(1).await;
        let tr2 = cell_of(&sup, "tr2").await.expect("tr2 running");
        tr2.send_message(ProbeMsg::Stop(Some("disk gone".into())))
            .expect("send stop");
        assert_eq!(
            h.take(2).await,
            evs(&[("tr2", Ev::Stopped), ("tr2", Ev::Started)])
        );
        panic_child(&sup, "tr2").await;
        assert_eq!(h.take(1).await, evs(&[("tr2", Ev::Started)]));
        assert_eq!(h.starts("tr2"), 3);
        shutdown(sup, handle).await;
    }

    // Exceeding the intensity stops the supervisor (siblings stopped gracefully) and its parent
    // supervisor restarts it with all its children: nested supervision works.
    #[tokio::test]
    async fn escalation_is_handled_by_the_parent() {
        let mut h = Harness::new();
        let inner = args(
            Strategy::OneForOne,
            fast(1),
            vec![
                h.spec("w", Restart::Permanent, None),
                h.spec("x", Restart::Permanent, None),
            ],
        );
        let restarted = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = restarted.clone();
        let mut top = args(
            Strategy::OneForOne,
            fast(5),
            vec![supervisor_child("inner", Restart::Permanent, None, inner)],
        );
        top.on_restart = Some(Arc::new(move |id: &str| {
            log.lock().expect("lock").push(id.to_string())
        }));
        let (top, handle) = start(top).await;
        h.take(2).await;
        let inner1: ActorRef<SupervisorMsg> = cell_of(&top, "inner").await.expect("inner").into();

        // First failure: within budget, restarted by inner.
        panic_child(&inner1, "w").await;
        h.wait_for("w", Ev::Started).await;

        // Second failure: over budget, inner escalates.
        panic_child(&inner1, "w").await;
        assert_eq!(
            h.take(3).await,
            evs(&[("x", Ev::Stopped), ("w", Ev::Started), ("x", Ev::Started)])
        );
        inner1
            .get_cell()
            .wait(Some(DEADLINE))
            .await
            .expect("old inner stopped");
        let inner2 = cell_of(&top, "inner").await.expect("inner restarted");
        assert_ne!(inner1.get_id(), inner2.get_id());
        assert_eq!((h.starts("w"), h.starts("x"), h.stops("x")), (3, 2, 1));
        assert_eq!(*restarted.lock().expect("lock"), vec!["inner".to_string()]);

        // Stopping the top stops the whole tree gracefully.
        shutdown(top, handle).await;
        assert_eq!(h.take(1).await, evs(&[("x", Ev::Stopped)]));
        assert_eq!(h.take(1).await, evs(&[("w", Ev::Stopped)]));
    }

    // A failing restart counts as a failure: retried after backoff, then escalated.
    #[tokio::test]
    async fn failed_restarts_count_towards_intensity() {
        let mut h = Harness::new();
        let children = vec![h.spec("a", Restart::Permanent, None)];
        let (sup, handle) = start(args(Strategy::OneForOne, fast(3), children)).await;
        h.take(1).await;

        h.set_fail("a", true);
        panic_child(&sup, "a").await;
        tokio::time::timeout(DEADLINE, handle)
            .await
            .expect("supervisor escalated and stopped")
            .expect("join");
        assert_eq!(h.starts("a"), 1);
    }

    // A dynamic supervisor starts and terminates children on demand; terminated ones stay terminated.
    #[tokio::test]
    async fn dynamic_supervisor() {
        let mut h = Harness::new();
        let (sup, handle) = start(args(Strategy::OneForOne, fast(5), vec![])).await;
        assert!(ids(&sup).await.is_empty());

        start_child(&sup, h.spec("a", Restart::Permanent, None))
            .await
            .expect("a");
        start_child(&sup, h.spec("b", Restart::Permanent, None))
            .await
            .expect("b");
        assert!(matches!(
            start_child(&sup, h.spec("a", Restart::Permanent, None)).await,
            Err(SupervisorError::StartChild(_))
        ));
        let bad = h.spec("bad", Restart::Permanent, None);
        h.set_fail("bad", true);
        assert!(start_child(&sup, bad).await.is_err());
        assert_eq!(ids(&sup).await, ["a", "b"]);
        assert_eq!(
            h.take(2).await,
            evs(&[("a", Ev::Started), ("b", Ev::Started)])
        );

        assert!(terminate_child(&sup, "a").await.expect("call"));
        assert_eq!(h.stops("a"), 1);
        assert!(!terminate_child(&sup, "a").await.expect("call"));
        assert_eq!(ids(&sup).await, ["b"]);

        panic_child(&sup, "b").await;
        assert_eq!(
            h.take(2).await,
            evs(&[("a", Ev::Stopped), ("b", Ev::Started)])
        );
        assert_eq!(h.starts("a"), 1);
        shutdown(sup, handle).await;
    }

    // Named children get their name back after a restart, under one_for_all too.
    #[tokio::test]
    async fn named_children_reregister() {
        let mut h = Harness::new();
        let na = "supervision-test-named-a".to_string();
        let nb = "supervision-test-named-b".to_string();
        let children = vec![
            h.spec("a", Restart::Permanent, Some(na.clone())),
            h.spec("b", Restart::Permanent, Some(nb.clone())),
        ];
        let (sup, handle) = start(args(Strategy::OneForAll, fast(5), children)).await;
        h.take(2).await;

        for round in 0..3 {
            let old = panic_child(&sup, "a").await;
            h.wait_for("b", Ev::Started).await;
            let a = cell_of(&sup, "a").await.expect("a running");
            let b = cell_of(&sup, "b").await.expect("b running");
            assert_ne!(old.get_id(), a.get_id(), "round {round}");
            let ra = ractor::registry::where_is(na.clone()).expect("a registered");
            let rb = ractor::registry::where_is(nb.clone()).expect("b registered");
            assert_eq!(ra.get_id(), a.get_id());
            assert_eq!(rb.get_id(), b.get_id());
        }
        shutdown(sup, handle).await;
        assert!(ractor::registry::where_is(na).is_none());
    }

    // If a child fails to start, the supervisor fails to start and the children started are stopped.
    #[tokio::test]
    async fn start_failure_stops_started_children() {
        let mut h = Harness::new();
        let children = vec![
            h.spec("a", Restart::Permanent, None),
            h.spec("b", Restart::Permanent, None),
        ];
        h.set_fail("b", true);
        let result =
            start_supervisor(None, args(Strategy::OneForOne, fast(5), children), None).await;
        assert!(result.is_err());
        assert_eq!(
            h.take(2).await,
            evs(&[("a", Ev::Started), ("a", Ev::Stopped)])
        );
    }

    // Stopping a supervisor stops its children gracefully in reverse start order.
    #[tokio::test]
    async fn stop_is_graceful_and_reversed() {
        let mut h = Harness::new();
        let children = vec![
            h.spec("a", Restart::Permanent, None),
            h.spec("b", Restart::Transient, None),
            h.spec("c", Restart::Temporary, None),
        ];
        let (sup, handle) = start(args(Strategy::OneForAll, fast(5), children)).await;
        h.take(3).await;
        shutdown(sup, handle).await;
        assert_eq!(
            h.take(3).await,
            evs(&[("c", Ev::Stopped), ("b", Ev::Stopped), ("a", Ev::Stopped)])
        );
    }

    // Exit reasons that count as normal for Transient children.
    #[test]
    fn normal_exit_reasons() {
        assert!(is_normal_exit(None));
        assert!(is_normal_exit(Some(EXIT_NORMAL)));
        assert!(is_normal_exit(Some(EXIT_SHUTDOWN)));
        assert!(!is_normal_exit(Some("killed")));
        assert!(!is_normal_exit(Some("escalated: child w")));
    }
}
