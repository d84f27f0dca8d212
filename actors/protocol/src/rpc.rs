//! One RPC to an actor, with a deadline, and the one mapping of its transport outcomes to error
//! codes. Every caller in Daftka uses it, so the rule for what may be retried lives in one place:
//!
//! - not delivered (no such actor, or it stopped before taking the message): `unavailable`, safe to
//!   retry: the request was not taken;
//! - no answer in time, or the receiver dropped the request (it stopped while holding it):
//!   `timeout`, the outcome is unknown: a retry may apply the request twice.
//!
//! [`retry_not_taken`] is the one retry loop built on that rule.

use std::future::Future;
use std::time::{Duration, Instant};

use ractor::{ActorRef, Message, RpcReplyPort};

use crate::error::{Error, ErrorCode};
use crate::wire::Wire;

/// What a reply port carries: a result, locally or across the cluster ([`Wire`]).
pub trait Reply: Send + 'static {
    type Out;
    fn into_result(self) -> Result<Self::Out, Error>;
}

impl<T: Send + 'static> Reply for Result<T, Error> {
    type Out = T;
    fn into_result(self) -> Result<T, Error> {
        self
    }
}

impl<T: Send + 'static> Reply for Wire<T> {
    type Out = T;
    fn into_result(self) -> Result<T, Error> {
        self.0
    }
}

/// Calls `actor` with the message `build` makes around a reply port; `what` names the callee in
/// error messages.
pub async fn call<M: Message, R: Reply>(
    actor: &ActorRef<M>,
    build: impl FnOnce(RpcReplyPort<R>) -> M,
    timeout: Duration,
    what: &str,
) -> Result<R::Out, Error> {
    match actor.call(build, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(reply)) => reply.into_result(),
        Ok(ractor::rpc::CallResult::Timeout) => Err(Error::timeout(format!(
            "{what} did not answer in time: outcome unknown"
        ))),
        Ok(ractor::rpc::CallResult::SenderError) => Err(Error::timeout(format!(
            "{what} stopped while handling the request: outcome unknown"
        ))),
        Err(e) => Err(Error::unavailable(format!("{what} is not running ({e})"))),
    }
}

/// Like [`call`], to whichever actor is registered as `name` in this process now (a registry
/// lookup: the hot path of every request to a replica).
pub async fn call_named<M: Message, R: Reply>(
    name: &str,
    build: impl FnOnce(RpcReplyPort<R>) -> M,
    timeout: Duration,
    what: &str,
) -> Result<R::Out, Error> {
    call_cell(ractor::registry::where_is(name), build, timeout, what).await
}

/// Like [`call_named`], for an actor that is also a pg member (a node's Router): found through
/// [`crate::names::find`], which also looks in its groups.
pub async fn call_found<M: Message, R: Reply>(
    name: &str,
    build: impl FnOnce(RpcReplyPort<R>) -> M,
    timeout: Duration,
    what: &str,
) -> Result<R::Out, Error> {
    call_cell(crate::names::find(name), build, timeout, what).await
}

async fn call_cell<M: Message, R: Reply>(
    cell: Option<ractor::ActorCell>,
    build: impl FnOnce(RpcReplyPort<R>) -> M,
    timeout: Duration,
    what: &str,
) -> Result<R::Out, Error> {
    match cell {
        Some(cell) => call(&cell.into(), build, timeout, what).await,
        None => Err(Error::unavailable(format!("{what} is not running"))),
    }
}

/// Whether an error says the request was not taken (`not_leader`, `unavailable`): sending it
/// again cannot apply it twice.
pub fn not_taken(e: &Error) -> bool {
    matches!(e.code, ErrorCode::NotLeader | ErrorCode::Unavailable)
}

/// Runs `attempt(0)`, `attempt(1)`, ... while the answer is [`not_taken`] and the next backoff
/// still ends before `deadline`. Before an attempt `n` for which `pause_before(n)` holds it waits
/// the backoff, which starts at `backoff` and doubles up to `backoff_max`. Any other answer
/// (success, a definite error, `timeout`: outcome unknown) is returned as it is.
pub async fn retry_not_taken<T, Fut>(
    deadline: Instant,
    mut backoff: Duration,
    backoff_max: Duration,
    pause_before: impl Fn(usize) -> bool,
    mut attempt: impl FnMut(usize) -> Fut,
) -> Result<T, Error>
where
    Fut: Future<Output = Result<T, Error>>,
{
    let mut n = 0usize;
    loop {
        match attempt(n).await {
            Err(e) if not_taken(&e) && Instant::now() + backoff < deadline => {
                n += 1;
                if pause_before(n) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(backoff_max);
                }
            }
            other => return other,
        }
    }
}
