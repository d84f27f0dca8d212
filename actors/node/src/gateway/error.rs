//! The one place that turns an [`Error`] into an HTTP response.
//!
//! Every error answer has the same body:
//! `{"error": {"code": "<snake_case>", "message": "...", "retryable": bool}}`; an
//! `offset_out_of_range` error also carries `log_start_offset` and `high_watermark` inside `error`
//! so a consumer can reset without another request.

use daftka_protocol::{Error, ErrorCode};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// The HTTP status of an error code. New codes default to 500 until mapped here.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::UnknownTopic
        | ErrorCode::UnknownPartition
        | ErrorCode::NotFound
        | ErrorCode::UnknownMember
        | ErrorCode::UnknownGroup
        | ErrorCode::UnknownNode => StatusCode::NOT_FOUND,
        ErrorCode::TopicExists
        | ErrorCode::StaleGeneration
        | ErrorCode::NotAssigned
        | ErrorCode::GroupActive
        | ErrorCode::OffsetBackwards
        | ErrorCode::AssignorMismatch
        | ErrorCode::NotEnoughNodes
        | ErrorCode::NodeActive
        | ErrorCode::NodeRemoved => StatusCode::CONFLICT,
        ErrorCode::OffsetOutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        // A gateway that cannot reach a partition leader is "unavailable" to its client either way.
        ErrorCode::Unavailable | ErrorCode::NotLeader => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        // `ErrorCode` is non-exhaustive: a code added later is a server-side condition until mapped.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON error response of `err`, with the status of its code.
pub fn reply(err: &Error) -> Response {
    let body = daftka_http::json::ErrorJson::from(err);
    warp::reply::with_status(warp::reply::json(&body), status(err.code)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each code has the status the API documents.
    #[test]
    fn codes_map_to_documented_statuses() {
        let table = [
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::UnknownTopic, 404),
            (ErrorCode::UnknownPartition, 404),
            (ErrorCode::TopicExists, 409),
            (ErrorCode::OffsetOutOfRange, 416),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::Unavailable, 503),
            (ErrorCode::Timeout, 504),
            (ErrorCode::NotLeader, 503),
            (ErrorCode::Internal, 500),
            (ErrorCode::NotFound, 404),
            (ErrorCode::StaleGeneration, 409),
            (ErrorCode::NotAssigned, 409),
            (ErrorCode::UnknownMember, 404),
            (ErrorCode::UnknownGroup, 404),
            (ErrorCode::GroupActive, 409),
            (ErrorCode::OffsetBackwards, 409),
            (ErrorCode::AssignorMismatch, 409),
            (ErrorCode::UnknownNode, 404),
            (ErrorCode::NotEnoughNodes, 409),
            (ErrorCode::NodeActive, 409),
            (ErrorCode::NodeRemoved, 409),
        ];
        for (code, want) in table {
            assert_eq!(status(code).as_u16(), want, "{code}");
        }
    }
}
