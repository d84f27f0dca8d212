//! `/v1/admin/actors`: chaos tooling. Lists this node's registered actors and kills one on purpose,
//! so tests and operators can check that supervision restores service. Off unless the node runs
//! with `debug.chaos = true`; then it answers 404 `not_found` as if it did not exist.
//!
//! A kill is `ActorCell::kill`: no `post_stop`, like a crash. Only actors of this node (registered
//! names starting `daftka.<node>.`) can be named.

use daftka_protocol::{Error, ErrorCode};
use warp::http::StatusCode;
use warp::reply::Response;

use daftka_http::json::{ActorsJson, KilledJson};

use super::routes::json_reply;
use super::GatewayState;

/// The registered-name prefix of this node's actors, if chaos is on.
fn prefix(state: &GatewayState) -> Result<String, Error> {
    match &state.chaos_node {
        Some(node) => Ok(format!("daftka.{node}.")),
        None => Err(Error::new(
            ErrorCode::NotFound,
            "admin endpoints are off: run the node with debug.chaos = true",
        )),
    }
}

/// `GET /v1/admin/actors` -> `{"actors": [registered names, sorted]}`.
pub fn list(state: &GatewayState) -> Result<Response, Error> {
    let prefix = prefix(state)?;
    let mut actors: Vec<String> = ractor::registry::registered()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    actors.sort();
    Ok(json_reply(StatusCode::OK, &ActorsJson { actors }))
}

/// `DELETE /v1/admin/actors/{actor}` kills the actor -> 202 `{"killed": name}`.
pub fn kill(state: &GatewayState, actor: &str) -> Result<Response, Error> {
    let prefix = prefix(state)?;
    let cell = actor
        .starts_with(&prefix)
        .then(|| ractor::registry::where_is(actor))
        .flatten()
        .ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                format!("no actor {actor:?} runs on this node (see GET /v1/admin/actors)"),
            )
        })?;
    tracing::warn!(actor, "chaos: killing an actor on request");
    cell.kill();
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &KilledJson {
            killed: actor.to_string(),
        },
    ))
}
