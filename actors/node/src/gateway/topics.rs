//! `/v1/topics` and `/v1/topics/{topic}`: create, list, describe, alter, delete.

use daftka_protocol::ids::validate_name;
use daftka_protocol::{Error, TopicAlter, TopicSpec};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::routes::{json_reply, parse_json};
use super::GatewayState;
use daftka_http::json::{
    AlterTopicBody, CreateTopicBody, ReassignBody, ReassignmentJson, ReassignmentsJson, TopicJson,
    TopicsJson,
};

/// `POST /v1/topics` -> 201 with the topic's description.
pub async fn create(state: &GatewayState, body: &[u8]) -> Result<Response, Error> {
    let body: CreateTopicBody = parse_json(body)?;
    validate_name("topic", &body.name)?;
    let spec = TopicSpec {
        name: body.name,
        partitions: body.partitions,
        replication_factor: body.replication_factor,
    };
    let topic = state.client.create_topic(spec).await?;
    Ok(json_reply(StatusCode::CREATED, &TopicJson::from(topic)))
}

/// `PATCH /v1/topics/{topic}` -> 200 with the topic: grows its partitions (400 to shrink) and
/// sets its retention (`null` returns one to the node's default).
pub async fn alter(state: &GatewayState, topic: &str, body: &[u8]) -> Result<Response, Error> {
    let body: AlterTopicBody = parse_json(body)?;
    validate_name("topic", topic)?;
    let alter = TopicAlter {
        partitions: body.partitions,
        retention_time_ms: body.retention_time_ms,
        retention_bytes: body.retention_bytes,
    };
    let t = state.client.alter_topic(topic, alter).await?;
    Ok(json_reply(StatusCode::OK, &TopicJson::from(t)))
}

/// `GET /v1/topics`.
pub async fn list(state: &GatewayState) -> Result<Response, Error> {
    let topics = state.client.list_topics().await?;
    let body = TopicsJson {
        topics: topics.into_iter().map(TopicJson::from).collect(),
    };
    Ok(json_reply(StatusCode::OK, &body))
}

/// `GET /v1/topics/{topic}`.
pub async fn describe(state: &GatewayState, topic: &str) -> Result<Response, Error> {
    validate_name("topic", topic)?;
    let topic = state.client.describe_topic(topic).await?;
    Ok(json_reply(StatusCode::OK, &TopicJson::from(topic)))
}

/// `POST /v1/topics/{topic}/partitions/{partition}/reassign` `{"replicas": [...]}` -> 202 with
/// the move, which goes on in the background (`GET /v1/reassignments`).
pub async fn reassign(
    state: &GatewayState,
    topic: &str,
    partition: &str,
    body: &[u8],
) -> Result<Response, Error> {
    validate_name("topic", topic)?;
    let partition: u32 = partition
        .parse()
        .map_err(|_| Error::invalid(format!("partition must be a number, got {partition:?}")))?;
    let body: ReassignBody = parse_json(body)?;
    for r in &body.replicas {
        validate_name("replica node", r)?;
    }
    let r = state
        .client
        .reassign(topic, partition, body.replicas)
        .await?;
    Ok(json_reply(StatusCode::ACCEPTED, &ReassignmentJson::from(r)))
}

/// `GET /v1/reassignments` -> every replica move in flight.
pub async fn reassignments(state: &GatewayState) -> Result<Response, Error> {
    let list = state.client.reassignments().await?;
    let body = ReassignmentsJson {
        reassignments: list.into_iter().map(ReassignmentJson::from).collect(),
    };
    Ok(json_reply(StatusCode::OK, &body))
}

/// `DELETE /v1/topics/{topic}` -> 204.
pub async fn delete(state: &GatewayState, topic: &str) -> Result<Response, Error> {
    validate_name("topic", topic)?;
    state.client.delete_topic(topic).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
