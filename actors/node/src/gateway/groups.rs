//! `/v1/groups...`: consumer groups: members (join, heartbeat, leave, poll records), offsets
//! (commit, read, reset), and the groups' list and descriptions.

use daftka_protocol::ids::validate_name;
use daftka_protocol::{
    Error, GroupCommit, Heartbeat, JoinGroup, PollRequest, ResetOffsets, ResetTo,
    TopicPartitionOffset,
};
use warp::http::StatusCode;
use warp::reply::Response;

use super::records::FetchParams;
use super::routes::{json_reply, parse_json};
use super::GatewayState;
use daftka_http::json::{
    CommitBody, CommittedJson, GroupOffsetsJson, GroupsJson, HeartbeatBody, JoinBody, PolledJson,
    ResetBody, ResetJson, ResetToJson,
};

/// `POST /v1/groups/{group}/members` -> 201 with the new member's id, generation and assignment.
pub async fn join(state: &GatewayState, group: &str, body: &[u8]) -> Result<Response, Error> {
    validate_name("group", group)?;
    let body: JoinBody = parse_json(body)?;
    let member = state
        .client
        .join_group(JoinGroup {
            group: group.to_string(),
            topics: body.topics,
            session_timeout_ms: body.session_timeout_ms,
            assignor: body.assignor,
        })
        .await?;
    Ok(json_reply(StatusCode::CREATED, &member))
}

/// `POST /v1/groups/{group}/members/{member}/heartbeat` -> the member's generation and assignment.
/// An empty body is a plain heartbeat.
pub async fn heartbeat(
    state: &GatewayState,
    group: &str,
    member: &str,
    body: &[u8],
) -> Result<Response, Error> {
    validate_name("group", group)?;
    let body: HeartbeatBody = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatBody::default()
    } else {
        parse_json(body)?
    };
    let member = state
        .client
        .heartbeat(Heartbeat {
            group: group.to_string(),
            member_id: member.to_string(),
            owned: body.owned,
        })
        .await?;
    Ok(json_reply(StatusCode::OK, &member))
}

/// `DELETE /v1/groups/{group}/members/{member}` -> 204.
pub async fn leave(state: &GatewayState, group: &str, member: &str) -> Result<Response, Error> {
    validate_name("group", group)?;
    state.client.leave_group(group, member).await?;
    Ok(warp::reply::Reply::into_response(StatusCode::NO_CONTENT))
}

/// `GET /v1/groups/{group}/members/{member}/records?max_records=&max_bytes=&max_wait_ms=&encoding=`
/// -> records of the member's partitions from the group's positions, and the member's standing.
pub async fn poll(
    state: &GatewayState,
    group: &str,
    member: &str,
    query: &[(String, String)],
) -> Result<Response, Error> {
    validate_name("group", group)?;
    if query.iter().any(|(k, _)| k == "offset") {
        return Err(Error::invalid(
            "a member reads from the group's positions: offset is not a parameter here",
        ));
    }
    let p = FetchParams::parse(query, &state.limits)?;
    let response = state
        .client
        .poll_group(PollRequest {
            group: group.to_string(),
            member_id: member.to_string(),
            max_records: p.max_records,
            max_bytes: p.max_bytes,
            max_wait_ms: p.max_wait_ms,
        })
        .await?;
    let body = PolledJson::encode(response, p.encoding).map_err(|e| {
        Error::invalid(format!(
            "the record at offset {} is not valid UTF-8: poll with encoding=base64 (the \
             group's position did move past it)",
            e.offset
        ))
    })?;
    Ok(json_reply(StatusCode::OK, &body))
}

/// `GET /v1/groups` -> every group with members or committed offsets.
pub async fn list(state: &GatewayState) -> Result<Response, Error> {
    let groups = state.client.list_groups().await?;
    Ok(json_reply(StatusCode::OK, &GroupsJson { groups }))
}

/// `GET /v1/groups/{group}` -> state, generation, members, partitions with commits and lag.
pub async fn describe(state: &GatewayState, group: &str) -> Result<Response, Error> {
    validate_name("group", group)?;
    let d = state.client.describe_group(group).await?;
    Ok(json_reply(StatusCode::OK, &d))
}

/// `POST /v1/groups/{group}/offsets/reset` `{"topic", "partition"?, "to"}` -> the new offsets.
pub async fn reset(state: &GatewayState, group: &str, body: &[u8]) -> Result<Response, Error> {
    validate_name("group", group)?;
    let body: ResetBody = parse_json(body)?;
    let to = match body.to {
        ResetToJson::Named(n) if n == "earliest" => ResetTo::Earliest,
        ResetToJson::Named(n) if n == "latest" => ResetTo::Latest,
        ResetToJson::Offset(o) => ResetTo::Offset(o),
        ResetToJson::Named(n) => {
            return Err(Error::invalid(format!(
                "to must be \"earliest\", \"latest\" or an offset, got {n:?}"
            )))
        }
    };
    let offsets = state
        .client
        .reset_offsets(ResetOffsets {
            group: group.to_string(),
            topic: body.topic,
            partition: body.partition,
            to,
        })
        .await?;
    Ok(json_reply(StatusCode::OK, &ResetJson { offsets }))
}

/// `POST /v1/groups/{group}/offsets` -> `{"committed": n}` once durable and replicated. A member
/// adds `member_id` and `generation`; without them the group must have no members.
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
    let member = match (body.member_id, body.generation) {
        (Some(id), Some(generation)) => Some((id, generation)),
        (None, None) => None,
        _ => {
            return Err(Error::invalid(
                "member_id and generation go together: a member sends both",
            ))
        }
    };
    // Bounded by `offsets_per_commit_max`, a u32.
    let committed = u32::try_from(offsets.len()).unwrap_or(u32::MAX);
    state
        .client
        .commit_group(GroupCommit {
            group: group.to_string(),
            member,
            offsets,
        })
        .await?;
    Ok(json_reply(StatusCode::OK, &CommittedJson { committed }))
}

/// `GET /v1/groups/{group}/offsets` with each partition's high watermark and lag.
pub async fn committed(state: &GatewayState, group: &str) -> Result<Response, Error> {
    validate_name("group", group)?;
    let offsets = state.client.committed_offsets(group).await?;
    Ok(json_reply(StatusCode::OK, &GroupOffsetsJson::from(offsets)))
}
