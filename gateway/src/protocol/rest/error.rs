//! Why a REST request is refused before it is judged, and the error body REST routes answer
//! with: `{"error": {"code", "message"}}` (with `decision_id` on a policy refusal).

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::path::PathProblem;
use crate::protocol::identifier::IdentifierProblem;
use crate::protocol::response;
use crate::text::Quoted;

/// A REST request Warden will not judge as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// The path could reach an operation under another's name.
    #[error("the path {path} is refused: {problem}")]
    Path { path: Quoted, problem: PathProblem },
    /// A path parameter could hide from policy.
    #[error("path parameter {name} is not valid: {problem}")]
    Parameter {
        name: Arc<str>,
        problem: IdentifierProblem,
    },
    /// A path parameter whose look-alike characters fold to a path separator or a dot segment:
    /// sent as judged, it would reach another path.
    #[error(
        "path parameter {name} is refused: its characters read as a path separator or a . or \
         .. segment; send the value in plain characters"
    )]
    FoldedSeparator { name: Arc<str> },
    /// A field the connector folds to lower case (`fold_case:`) could hide from policy.
    #[error("field {field} is not valid: {problem}")]
    FieldIdentifier {
        field: Arc<str>,
        problem: IdentifierProblem,
    },
    /// The request asks the upstream to take it for another method.
    #[error(
        "the {header} header is refused: the method is judged as sent ({method}); send the \
         request with the method you mean"
    )]
    MethodOverride {
        header: &'static str,
        method: Quoted,
    },
    /// The query asks the upstream to take the request for another method (`_method`, which
    /// Rails, Laravel and Symfony honour on a POST).
    #[error(
        "the query parameter {parameter} is refused: the method is judged as sent ({method}); \
         send the request with the method you mean"
    )]
    MethodParameter { parameter: Quoted, method: Quoted },
    /// The body asks the upstream to take the request for another method: a `_method` key in
    /// a form body (Rails, Laravel, Symfony) or a JSON body (Laravel), read where policy reads
    /// the body.
    #[error(
        "the {place} {key} is refused: the method is judged as sent; send the request with the \
         method you mean, without {key}"
    )]
    BodyMethod { place: &'static str, key: Quoted },
    /// A header naming another path than the request's, which some servers route by (IIS's
    /// URL Rewrite module: `X-Original-URL`, `X-Rewrite-URL`).
    #[error(
        "the {header} header is refused: the path is judged as sent; send the request to the \
         path you mean"
    )]
    PathOverride { header: &'static str },
    /// A field policy reads is given more than once.
    #[error("field {field} is given more than once (query and body, or repeated); give it once")]
    RepeatedField { field: Arc<str> },
    /// A key (of a JSON or form body, or a query parameter) spelled otherwise than a field's
    /// key but for case: policy would not read it, an upstream that matches keys
    /// case-insensitively (Go's `encoding/json`, ASP.NET's binding) would.
    #[error(
        "the {place} {key} differs only by case from `{expected}`, which field {field} is read \
         from; spell it `{expected}`"
    )]
    FoldedKey {
        /// `body key`, `form key` or `query parameter`.
        place: &'static str,
        key: Quoted,
        expected: Quoted,
        field: Arc<str>,
    },
    /// A field policy reads has another type than the connector declares.
    #[error("field {field} must be {expected}")]
    FieldType {
        field: Arc<str>,
        expected: &'static str,
    },
    /// The body policy must read is not JSON nor form-encoded.
    #[error(
        "this operation's policy reads its body, which Warden reads as JSON or \
         application/x-www-form-urlencoded, not {content_type}"
    )]
    UnreadableBody { content_type: Quoted },
    /// The JSON body is malformed or repeats a key.
    #[error("the request body is not valid JSON: {detail}")]
    Body { detail: String },
}

impl RestError {
    /// The HTTP status the agent gets.
    pub fn status(&self) -> StatusCode {
        match self {
            RestError::UnreadableBody { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            RestError::Path { .. } => "invalid_path",
            RestError::Parameter { .. }
            | RestError::FoldedSeparator { .. }
            | RestError::FieldIdentifier { .. } => "invalid_identifier",
            RestError::MethodOverride { .. }
            | RestError::MethodParameter { .. }
            | RestError::BodyMethod { .. } => "method_override",
            RestError::PathOverride { .. } => "path_override",
            RestError::RepeatedField { .. } => "repeated_field",
            RestError::FoldedKey { .. } => "folded_key",
            RestError::FieldType { .. } => "invalid_field",
            RestError::UnreadableBody { .. } => "unsupported_media_type",
            RestError::Body { .. } => "malformed_body",
        }
    }
}

/// An error in the REST routes' shape; `code` is Warden's stable error code.
pub fn response(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({ "error": { "code": code, "message": message } });
    response::error(status, code, &body)
}

/// A policy refusal: 403 with the reason and the decision id.
pub fn denied(message: &str, decision_id: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "error": { "code": "request_denied", "message": message, "decision_id": decision_id }
    });
    response::error(StatusCode::FORBIDDEN, "request_denied", &body)
}
