//! One RPC to an actor, with a deadline, and the one mapping of its transport outcomes to error
//! codes. Every caller in Daftka uses it, so the rule for what may be retried lives in one place:
//!
//! - not delivered (no such actor, or it stopped before taking the message): `unavailable`, safe to
//!   retry: the request was not taken;
//! - no answer in time, or the receiver dropped the request (it stopped while holding it):
//!   `timeout`, the outcome is unknown: a retry may apply the request twice.

use std::time::Duration;

use ractor::{ActorRef, Message, RpcReplyPort};

use crate::error::Error;

/// Calls `actor` with the message `build` makes around a reply port; `what` names the callee in
/// error messages.
pub async fn call<M: Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    build: impl FnOnce(RpcReplyPort<Result<T, Error>>) -> M,
    timeout: Duration,
    what: &str,
) -> Result<T, Error> {
    match actor.call(build, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(reply)) => reply,
        Ok(ractor::rpc::CallResult::Timeout) => Err(Error::timeout(format!(
            "{what} did not answer in time: outcome unknown"
        ))),
        Ok(ractor::rpc::CallResult::SenderError) => Err(Error::timeout(format!(
            "{what} stopped while handling the request: outcome unknown"
        ))),
        Err(_) => Err(Error::unavailable(format!("{what} is not running"))),
    }
}

/// Like [`call`], to whichever actor is registered as `name` in this process now.
pub async fn call_named<M: Message, T: Send + 'static>(
    name: &str,
    build: impl FnOnce(RpcReplyPort<Result<T, Error>>) -> M,
    timeout: Duration,
    what: &str,
) -> Result<T, Error> {
    match ractor::registry::where_is(name) {
        Some(cell) => call(&cell.into(), build, timeout, what).await,
        None => Err(Error::unavailable(format!("{what} is not running"))),
    }
}
