//! `/v1/groups/{group}/offsets`: commit and read a consumer group's offsets.

use daftka_protocol::ids::validate_name;
use daftka_protocol::{Error, TopicPartitionOffset};
use warp::http::StatusCode;
use warp::reply::Response;

use super::json::{CommitBody, CommittedJson, GroupOffsetsJson};
use super::routes::{json_reply, parse_json};
use super::GatewayState;

/// `POST /v1/groups/{group}/offsets` -> `{"committed": n}` once durable and replicated.
pub async fn commit(state: &GatewayState, group: &str, body: &[u8]) -> Result<Response, Error> {
    validate_name("group", group)?;
    let body: CommitBody = parse_json(body)?;
    if body.offsets.is_empty() {
        return Err(Error::invalid("offsets must not be empty"));
    }
    daftka_core::limits::check_commit(body.offsets.len(), &state.limits)?;
    let offsets = body
        .offsets
        .into_iter()
        .map(|o| {
            validate_name("topic", &o.topic)?;
            Ok(TopicPartitionOffset {
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // Bounded by `offsets_per_commit_max`, a u32.
    let committed = u32::try_from(offsets.len()).unwrap_or(u32::MAX);
    state.client.commit_offsets(group, offsets).await?;
    Ok(json_reply(StatusCode::OK, &CommittedJson { committed }))
}

/// `GET /v1/groups/{group}/offsets` with each partition's high watermark and lag.
pub async fn committed(state: &GatewayState, group: &str) -> Result<Response, Error> {
    validate_name("group", group)?;
    let offsets = state.client.committed_offsets(group).await?;
    Ok(json_reply(StatusCode::OK, &GroupOffsetsJson::from(offsets)))
}
