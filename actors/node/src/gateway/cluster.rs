//! `/v1/cluster`, `/healthz` and `/readyz`.

use daftka_protocol::Error;
use warp::http::StatusCode;
use warp::reply::Response;

use super::routes::json_reply;
use super::GatewayState;
use daftka_http::json::{ClusterJson, NodeJson, StatusJson};

/// `GET /v1/cluster`: the nodes and the metadata leader, as this node sees them.
pub async fn info(state: &GatewayState) -> Result<Response, Error> {
    let info = state.client.cluster_info().await?;
    Ok(json_reply(StatusCode::OK, &ClusterJson::from(info)))
}

/// `POST /v1/cluster/nodes/{node}/drain` (or `/undrain`) -> 202 with the node: its replicas move
/// to other nodes in the background (`state` goes `draining`, then `drained`).
pub async fn drain(state: &GatewayState, node: &str, draining: bool) -> Result<Response, Error> {
    let info = state.client.drain_node(node, draining).await?;
    Ok(json_reply(StatusCode::ACCEPTED, &NodeJson::from(info)))
}

/// `DELETE /v1/cluster/nodes/{node}` -> 200 with the node as it was, `state` "removed". 409
/// `node_active` while it is up and holds replicas.
pub async fn remove(state: &GatewayState, node: &str) -> Result<Response, Error> {
    let info = state.client.remove_node(node).await?;
    Ok(json_reply(StatusCode::OK, &NodeJson::from(info)))
}

/// `GET /healthz`: the process serves HTTP. Says nothing about data: see `/readyz`.
pub fn healthz() -> Result<Response, Error> {
    Ok(json_reply(
        StatusCode::OK,
        &StatusJson {
            status: "ok".into(),
        },
    ))
}

/// `GET /readyz`: 200 once metadata is loaded and every local replica has recovered, else 503
/// `unavailable` saying what is missing.
pub fn readyz(state: &GatewayState) -> Result<Response, Error> {
    state.readiness.check().map_err(Error::unavailable)?;
    Ok(json_reply(
        StatusCode::OK,
        &StatusJson {
            status: "ok".into(),
        },
    ))
}
