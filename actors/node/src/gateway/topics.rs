//! `/v1/topics` and `/v1/topics/{topic}`: create, list, describe, delete.

use daftka_protocol::ids::validate_name;
use daftka_protocol::{Error, TopicSpec};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::routes::{json_reply, parse_json};
use super::GatewayState;
use daftka_http::json::{CreateTopicBody, TopicJson, TopicsJson};

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

/// `DELETE /v1/topics/{topic}` -> 204.
pub async fn delete(state: &GatewayState, topic: &str) -> Result<Response, Error> {
    validate_name("topic", topic)?;
    state.client.delete_topic(topic).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
